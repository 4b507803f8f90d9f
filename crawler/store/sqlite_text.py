"""Full-text search in a SQLite crawl: FTS5 queries over `page_text_fts`, and filling
`page_text` for stored pages that have none (`crawler search --reindex`).

The index is external-content FTS5 kept by triggers on `page_text` (migration 0007): a
crawl's batch, a reindex or any later UPDATE changes the index row by row in the same
transaction, so it is never rebuilt. A query is FTS5's own syntax, passed as a bound
parameter: a syntax error is the user's (UsageError, exit 2), never an injection.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3

import aiosqlite

from crawler.errors import StorageError, UsageError
from crawler.records import SearchHit, TextOf
from crawler.store import sqlite_query as query
from crawler.store.bodies import page_texts

# Title matches weigh ten times a match in the text (bm25's per-column weights). bm25 is
# lower for better pages: the score shown is its negation, higher is better.
_SEARCH = """
SELECT p.url, f.title, -bm25(page_text_fts, 10.0, 1.0) AS score,
       snippet(page_text_fts, 1, '[', ']', '...', 16) AS snippet
FROM page_text_fts AS f
JOIN page_rows AS p ON p.id = f.rowid
WHERE page_text_fts MATCH ?
ORDER BY bm25(page_text_fts, 10.0, 1.0), p.id
LIMIT ?
"""

# Pages that should have text and have none: 2xx with a stored body, an HTML-ish type
# (the extractor decides for sure), no page_text row. In id order, from a cursor.
_MISSING = """
SELECT p.id, p.content_type, b.body, b.body_codec
FROM page_rows AS p JOIN bodies AS b ON b.page_id = p.id
WHERE p.id > ? AND p.status BETWEEN 200 AND 299 AND p.content_type LIKE '%html%'
  AND NOT EXISTS (SELECT 1 FROM page_text AS t WHERE t.page_id = p.id)
ORDER BY p.id
LIMIT ?
"""


def search(db: sqlite3.Connection, name: str, query: str, limit: int) -> list[SearchHit]:
    """The `limit` best pages for an FTS5 query; UsageError when the query is malformed."""
    try:
        rows = db.execute(_SEARCH, (query, limit)).fetchall()
    except sqlite3.OperationalError as exc:
        message = str(exc)
        if "no such table" in message:
            raise StorageError(
                f"{name} has no search index yet (an older crawl): "
                "run crawler search --reindex to build it"
            ) from None
        # fts5: syntax error near "..."; no such column: x (a `x:` column filter);
        # unknown special query; unterminated string...
        raise UsageError(f"bad search query {query!r}: {message}") from None
    return [
        SearchHit(rank=i, score=float(score), url=url, title=title, snippet=snippet or "")
        for i, (url, title, score, snippet) in enumerate(rows, 1)
    ]


def text_pages(db: sqlite3.Connection) -> int:
    """Pages with text stored (0 when the file predates full-text search)."""
    with contextlib.suppress(sqlite3.OperationalError):
        return int(db.execute("SELECT count(*) FROM page_text").fetchone()[0])
    return 0


async def reindex(db: aiosqlite.Connection, lock: asyncio.Lock, text_of: TextOf, batch: int) -> int:
    """Store the text of every page that should have some and has none; how many.

    Each batch commits on its own (under the store's write lock), so an interrupted
    reindex keeps what it did and the next one goes on from there.
    """
    done = 0
    async for rows in query.chunks(db, _MISSING, (), 0, batch):
        texts = page_texts(rows, text_of)
        async with lock:
            await db.execute("BEGIN IMMEDIATE")
            try:
                await db.executemany(
                    "INSERT OR IGNORE INTO page_text (page_id, title, text, truncated) "
                    "VALUES (?, ?, ?, ?)",
                    texts,
                )
                await db.commit()
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    await db.rollback()
                raise
        done += len(texts)
    return done
