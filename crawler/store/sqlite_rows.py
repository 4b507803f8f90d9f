"""A batch of outcomes as the SQLite writer's statement parameters, built on the event
loop's thread (the writer thread gets them ready to bind)."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field

from crawler.records import Change, Outcome
from crawler.store.sqlite_revisits import Revisits

__all__ = ["Rows", "rows_of"]


def _sha1(body: bytes | None) -> str | None:
    """The body's SHA-1, hashed here on the event loop's thread (about 9 µs for 15 KB).

    Not in SQL: a Python function SQLite calls on the writer's thread takes the GIL back
    from the event loop for every row, two thread switches a page.
    """
    return hashlib.sha1(body).hexdigest() if body else None


# A run of links as one JSON array, one bound value for ~30 rows: binding holds the GIL
# (the event loop's thread waits meanwhile), json_each expands it with the GIL released.
_dumps = json.JSONEncoder(check_circular=False).encode


@dataclass(slots=True)
class Rows:
    """A batch as statement parameters, one list per statement."""

    new_urls: list[tuple[object, ...]] = field(default_factory=list)
    pages: list[tuple[object, ...]] = field(default_factory=list)
    bodies: list[tuple[object, ...]] = field(default_factory=list)
    texts: list[tuple[object, ...]] = field(default_factory=list)
    links: list[tuple[str, str, int, str]] = field(default_factory=list)  # dst_urls: JSON
    states: list[tuple[object, ...]] = field(default_factory=list)
    chains: list[tuple[object, ...]] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    sitemaps: list[tuple[object, ...]] = field(default_factory=list)
    sitemaps_done: list[tuple[object, ...]] = field(default_factory=list)
    sitemap_urls: list[tuple[object, ...]] = field(default_factory=list)
    data: list[tuple[str, int]] = field(default_factory=list)  # (pages.data, page id)
    last_id: int = 0
    new_fetches: tuple[object, ...] = ()  # (run, after id, last id): the new pages' ids
    revisits: Revisits = field(default_factory=Revisits)  # a recrawl's stored pages


def rows_of(batch: list[Outcome], last_id: int, run_id: int | None = None) -> Rows:
    """Parameters for a batch whose pages get ids after `last_id`."""
    now = time.time()
    r = Rows()
    first_id = last_id
    for o in batch:
        for n in o.new_urls:
            r.new_urls.append((n.url, n.host, n.depth, n.hops, n.origin, now))
        if o.page is not None and o.change is not Change.NEW:
            r.revisits.add(o, o.page, run_id)
        elif o.page is not None:
            p = o.page
            last_id += 1
            final_status = p.final_status
            if final_status is None and not (p.status is not None and 300 <= p.status < 400):
                final_status = p.status
            r.pages.append(
                (last_id, p.url, p.final_url, p.status, final_status, p.error, p.content_type,
                 p.depth, p.fetched_at, p.host, p.headers, p.elapsed, p.size, int(p.truncated),
                 p.links_found, int(p.links_truncated), p.redirect_to, p.attempts,
                 p.content_hash if p.content_hash is not None or p.body_codec is not None
                 else _sha1(p.body), p.title, p.canonical_url,
                 None if p.noindex is None else int(p.noindex))
            )  # fmt: skip
            if p.body is not None:
                r.bodies.append((p.body, p.body_codec, last_id))
            if p.data is not None:
                r.data.append((p.data, last_id))
            if p.text is not None:
                r.texts.append((p.title, p.text, int(p.text_truncated), last_id))
        for src, dsts, nofollow, kind in o.links:
            r.links.append((src, _dumps(dsts), nofollow, kind))
        if o.state is not None:
            r.states.append((o.state, o.reason, o.url))
        if (c := o.chain_end) is not None:
            r.chains.append((c.final_url, c.final_status, c.error, c.origin))
        for reason, count in o.skipped:
            r.skipped[reason] = r.skipped.get(reason, 0) + count
        for m in o.sitemaps:
            r.sitemaps.append((m.url, m.host, m.robots_host, m.source, m.level, now))
            if m.state == "done":
                r.sitemaps_done.append((m.kind, m.status, m.error, m.urls, m.fetched_at, m.url))
        r.sitemap_urls.extend(o.sitemap_urls)
    if last_id > first_id:
        r.new_fetches = (run_id, first_id, last_id)
    r.last_id = last_id
    return r
