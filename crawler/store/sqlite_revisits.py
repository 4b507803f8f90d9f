"""A recrawl's writes on SQLite: stored pages replaced (changed: body and full text too)
or kept (unchanged, gone, failed), and each fetch's `fetches` row, in the batch's
transaction (as store/postgres_revisits.py does on PostgreSQL)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field

from crawler.records import Change, Outcome, PageRow
from crawler.store.sqlite_many import write_many

# A recrawl found the page changed: every column the fetch sets (the depth stays).
_REPLACE_PAGE = (
    "UPDATE page_rows SET final_url = ?, status = ?, final_status = ?, error = ?, "
    "content_type = ?, fetched_at = ?, headers = ?, elapsed = ?, size = ?, truncated = ?, "
    "links_found = ?, links_truncated = ?, redirect_to = ?, attempts = ?, content_hash = ?, "
    "title = ?, canonical_url = ?, noindex = ?, data = ?, revisit_interval = ?, due_at = ? "
    "WHERE url = ?"
)
# Unchanged, gone or failed: the stored page (and body) stays; a gone or failed fetch
# records its status and error, an unchanged one (?1 = 1) keeps the stored ones.
_KEEP_PAGE = (
    "UPDATE page_rows SET status = CASE WHEN ?1 THEN status ELSE ?2 END, "
    "final_status = CASE WHEN ?1 THEN final_status ELSE ?2 END, "
    "error = CASE WHEN ?1 THEN error ELSE ?3 END, fetched_at = ?4, elapsed = ?5, "
    "attempts = ?6, revisit_interval = ?7, due_at = ?8 WHERE url = ?9"
)
# An upsert, not INSERT OR REPLACE: its UPDATE fires page_text_update, which takes the
# old words out of the FTS5 index (a REPLACE's implicit delete fires no trigger).
_UPSERT_TEXT = (
    "INSERT INTO page_text (page_id, title, text, truncated) "
    "SELECT id, ?, ?, ? FROM page_rows WHERE url = ? "
    "ON CONFLICT (page_id) DO UPDATE SET title = excluded.title, text = excluded.text, "
    "truncated = excluded.truncated"
)


@dataclass(slots=True)
class Revisits:
    """A batch's fetches of stored pages, as statement parameters."""

    replaced: list[tuple[object, ...]] = field(default_factory=list)
    replaced_bodies: list[tuple[object, ...]] = field(default_factory=list)
    kept: list[tuple[object, ...]] = field(default_factory=list)
    fetches: list[tuple[object, ...]] = field(default_factory=list)
    # A changed page's new text, or its url alone: it has none now (not HTML any more,
    # or the crawl keeps no text), and the old one goes.
    texts: list[tuple[object, ...]] = field(default_factory=list)
    textless: list[tuple[str]] = field(default_factory=list)

    def add(self, o: Outcome, p: PageRow, run_id: int | None) -> None:
        due = p.fetched_at + o.interval if o.interval is not None else None
        self.fetches.append(
            (p.url, run_id, p.fetched_at, p.status, p.error, p.content_hash, o.change)
        )
        if o.change is Change.CHANGED:
            final_status = p.final_status
            if final_status is None and not (p.status is not None and 300 <= p.status < 400):
                final_status = p.status
            self.replaced.append(
                (p.final_url, p.status, final_status, p.error, p.content_type, p.fetched_at,
                 p.headers, p.elapsed, p.size, int(p.truncated), p.links_found,
                 int(p.links_truncated), p.redirect_to, p.attempts, p.content_hash, p.title,
                 p.canonical_url, None if p.noindex is None else int(p.noindex), p.data,
                 o.interval, due, p.url)
            )  # fmt: skip
            body = p.body if p.body is not None else b""
            self.replaced_bodies.append((body, p.body_codec, p.url))
            if p.text is not None:
                self.texts.append((p.title, p.text, int(p.text_truncated), p.url))
            else:
                self.textless.append((p.url,))
            return
        keep = int(o.change is Change.UNCHANGED)
        self.kept.append(
            (keep, p.status, p.error, p.fetched_at, p.elapsed, p.attempts, o.interval, due, p.url)
        )


def write(db: sqlite3.Connection, r: Revisits) -> None:
    """The batch's revisits, before its links (a changed page's old links go first)."""
    if r.replaced:
        db.executemany(_REPLACE_PAGE, r.replaced)
        db.executemany(
            "INSERT OR REPLACE INTO bodies (page_id, body, body_codec) "
            "SELECT id, ?, ? FROM page_rows WHERE url = ?",
            r.replaced_bodies,
        )
        if r.texts:
            db.executemany(_UPSERT_TEXT, r.texts)
        if r.textless:
            db.executemany(
                "DELETE FROM page_text WHERE page_id = (SELECT id FROM page_rows WHERE url = ?)",
                r.textless,
            )
        db.executemany("DELETE FROM links WHERE src_url = ?", [(p[-1],) for p in r.replaced])
    if r.kept:
        db.executemany(_KEEP_PAGE, r.kept)
    write_many(
        db,
        "INSERT INTO fetches (url, run_id, fetched_at, status, error, content_hash, change) "
        "VALUES {values}",
        "(?, ?, ?, ?, ?, ?, ?)",
        r.fetches,
    )
