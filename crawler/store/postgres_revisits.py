"""A recrawl's writes on PostgreSQL: stored pages replaced (changed: body and full text
too) or kept (unchanged, gone, failed), and each fetch's `fetches` row, in the batch's
transaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from crawler.records import Change, Outcome, PageRow

if TYPE_CHECKING:
    import asyncpg

# A recrawl found the page changed: every column the fetch sets (the depth stays).
_REPLACE_PAGE = (
    "UPDATE page_rows SET final_url = $1, status = $2, final_status = $3, error = $4, "
    "content_type = $5, fetched_at = $6, headers = $7, elapsed = $8, size = $9, "
    "truncated = $10, links_found = $11, links_truncated = $12, redirect_to = $13, "
    "attempts = $14, content_hash = $15, title = $16, canonical_url = $17, noindex = $18, "
    "data = $19::jsonb, revisit_interval = $20, due_at = $21 WHERE url = $22"
)
# Unchanged, gone or failed: the stored page (and body) stays; a gone or failed fetch
# records its status and error, an unchanged one ($1) keeps the stored ones.
_KEEP_PAGE = (
    "UPDATE page_rows SET status = CASE WHEN $1 THEN status ELSE $2::int END, "
    "final_status = CASE WHEN $1 THEN final_status ELSE $2::int END, "
    "error = CASE WHEN $1 THEN error ELSE $3::text END, fetched_at = $4, elapsed = $5, "
    "attempts = $6, revisit_interval = $7, due_at = $8 WHERE url = $9"
)


@dataclass(slots=True)
class Revisits:
    """A batch's fetches of stored pages, as statement parameters."""

    replaced: list[tuple[Any, ...]] = field(default_factory=list)
    replaced_bodies: list[tuple[Any, ...]] = field(default_factory=list)
    kept: list[tuple[Any, ...]] = field(default_factory=list)
    # A changed page's new text (url, title, text, truncated), or its url alone: it has
    # none now (not HTML any more, or the crawl keeps no text), and the old one goes.
    texts: list[tuple[Any, ...]] = field(default_factory=list)
    textless: list[str] = field(default_factory=list)
    # (url, fetched_at, status, error, content_hash, change)
    fetches: list[tuple[Any, ...]] = field(default_factory=list)

    def add(self, o: Outcome, p: PageRow, row: tuple[Any, ...]) -> None:
        """`row`: the page's insert parameters (url, final_url, status, final_status, error,
        content_type, depth, fetched_at, host, headers, elapsed, size, truncated,
        links_found, links_truncated, redirect_to, attempts, content_hash, title,
        canonical_url, noindex), used when it changed."""
        due = p.fetched_at + o.interval if o.interval is not None else None
        self.fetches.append((p.url, p.fetched_at, p.status, p.error, p.content_hash, str(o.change)))
        if o.change is Change.CHANGED:
            self.replaced.append((*row[1:6], *row[7:8], *row[9:21], p.data, o.interval, due, p.url))
            body = p.body if p.body is not None else b""
            self.replaced_bodies.append((body, p.body_codec, p.url))
            if p.text is not None:
                self.texts.append((p.url, p.title, p.text, int(p.text_truncated)))
            else:
                self.textless.append(p.url)
            return
        keep = o.change is Change.UNCHANGED
        self.kept.append(
            (keep, p.status, p.error, p.fetched_at, p.elapsed, p.attempts, o.interval, due, p.url)
        )


async def write(conn: asyncpg.Connection, r: Revisits, run_id: int | None) -> int:
    """The batch's revisits, before its links (a changed page's old links go first); the
    pages stored again (the page budget counts them back)."""
    if r.replaced:
        await conn.executemany(_REPLACE_PAGE, r.replaced)
        await conn.executemany(
            "INSERT INTO bodies (page_id, body, body_codec) SELECT id, $1, $2 FROM page_rows "
            "WHERE url = $3 ON CONFLICT (page_id) DO UPDATE SET body = excluded.body, "
            "body_codec = excluded.body_codec",
            r.replaced_bodies,
        )
        if r.texts:
            # The generated tsvector follows the row: the old words are no longer found.
            await conn.executemany(
                "INSERT INTO page_text (page_id, title, text, truncated) "
                "SELECT id, $2, $3, $4 FROM page_rows WHERE url = $1 "
                "ON CONFLICT (page_id) DO UPDATE SET title = excluded.title, "
                "text = excluded.text, truncated = excluded.truncated",
                r.texts,
            )
        if r.textless:
            await conn.execute(
                "DELETE FROM page_text WHERE page_id IN "
                "(SELECT id FROM page_rows WHERE url = ANY($1::text[]))",
                r.textless,
            )
        await conn.execute(
            "DELETE FROM links WHERE src_url = ANY($1::text[])", [x[-1] for x in r.replaced]
        )
    if r.kept:
        await conn.executemany(_KEEP_PAGE, r.kept)
    if r.fetches:
        await conn.execute(
            "INSERT INTO fetches (url, run_id, fetched_at, status, error, content_hash, change) "
            "SELECT url, $2::int8, fetched_at, status, error, content_hash, change "
            "FROM unnest($1::text[], $3::float8[], $4::int[], $5::text[], $6::text[], $7::text[]) "
            "AS f (url, fetched_at, status, error, content_hash, change)",
            [f[0] for f in r.fetches],
            run_id,
            *[[f[k] for f in r.fetches] for k in range(1, 6)],
        )
    return len(r.fetches)
