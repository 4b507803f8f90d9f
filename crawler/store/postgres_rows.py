"""A batch of outcomes as the PostgreSQL writer's statement parameters: one column list
(or row list) per statement, for `postgres_batches` to send."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

from crawler.records import Change, Outcome, PageRow
from crawler.store.postgres_revisits import Revisits


@dataclass(slots=True)
class Rows:
    """A batch as statement parameters: one column list (or row list) per statement."""

    new_urls: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    pages: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    bodies: list[tuple[str, bytes, str | None]] = field(default_factory=list)
    texts: list[tuple[str, str | None, str, int]] = field(default_factory=list)
    links: list[tuple[str, str, int, str]] = field(default_factory=list)
    states: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    chains: list[tuple[Any, ...]] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    sitemaps: list[tuple[Any, ...]] = field(default_factory=list)
    sitemaps_done: list[tuple[Any, ...]] = field(default_factory=list)
    sitemap_urls: list[tuple[Any, ...]] = field(default_factory=list)
    data: list[tuple[str, str]] = field(default_factory=list)  # (url, pages.data)
    pages_sent: int = 0  # page rows in the batch, inserted or not (budget units spent)
    run_id: int | None = None
    revisits: Revisits = field(default_factory=Revisits)  # a recrawl's stored pages


def batch_rows(batch: list[Outcome], run_id: int | None = None) -> Rows:
    """`batch` as the parameters of `postgres_batches`' statements."""
    r = Rows(run_id=run_id)
    for o in batch:
        for n in o.new_urls:
            if n.url not in r.new_urls:  # the first of a URL wins, as in SQLite
                r.new_urls[n.url] = (n.url, n.host, n.depth, n.hops, n.origin)
        if (p := o.page) is not None and o.change is not Change.NEW:
            r.pages_sent += 1
            r.revisits.add(o, p, _page(p) if o.change is Change.CHANGED else ())
        elif (p := o.page) is not None:
            r.pages_sent += 1
            if p.url not in r.pages:  # a second row for a URL is ignored, and its body
                r.pages[p.url] = _page(p)
                if p.body is not None:
                    r.bodies.append((p.url, p.body, p.body_codec))
                if p.data is not None:
                    r.data.append((p.url, p.data))
                if p.text is not None:
                    r.texts.append((p.url, p.title, p.text, int(p.text_truncated)))
        r.links.extend((src, dst, nf, kind) for src, dsts, nf, kind in o.links for dst in dsts)
        if o.state is not None:
            r.states[o.url] = (o.state, o.reason)
        if (c := o.chain_end) is not None:
            r.chains.append((c.final_url, c.final_status, c.error, c.origin))
        for reason, count in o.skipped:
            r.skipped[reason] = r.skipped.get(reason, 0) + count
        now = time.time()
        for m in o.sitemaps:
            r.sitemaps.append((m.url, m.host, m.robots_host, m.source, m.level, now))
            if m.state == "done":
                r.sitemaps_done.append((m.kind, m.status, m.error, m.urls, m.fetched_at, m.url))
        r.sitemap_urls.extend(o.sitemap_urls)
    return r


def _page(p: PageRow) -> tuple[Any, ...]:
    final_status = p.final_status
    if final_status is None and not (p.status is not None and 300 <= p.status < 400):
        final_status = p.status
    content_hash = p.content_hash
    if content_hash is None and p.body_codec is None and p.body:
        content_hash = hashlib.sha1(p.body).hexdigest()
    return (
        p.url, p.final_url, p.status, final_status, p.error, p.content_type, p.depth,
        p.fetched_at, p.host, p.headers, p.elapsed, p.size, int(p.truncated), p.links_found,
        int(p.links_truncated), p.redirect_to, p.attempts, content_hash, p.title,
        p.canonical_url, None if p.noindex is None else int(p.noindex),
    )  # fmt: skip
