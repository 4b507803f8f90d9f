"""Full-text search over a crawl's stored pages: the hits as lines or JSON, and the
reindex that extracts text from bodies stored without it.

The index itself lives in the store (`page_text`: FTS5 in SQLite, a tsvector in
PostgreSQL); a crawl fills it when the `text` setting is on. `reindex` fills it later for
pages stored with text off or before full-text search existed, with the crawl's own
extractor (`crawler.text`), so both give the same text.
"""

from __future__ import annotations

import json

from crawler.parser import is_html
from crawler.records import SearchHit
from crawler.store import Reader, open_store
from crawler.text import page_text


def text_of(body: bytes, content_type: str | None) -> tuple[str | None, str, bool] | None:
    """(title, visible text, truncated) of a stored HTML body; None for anything else."""
    if not is_html(content_type) or not body:
        return None
    return page_text(body, content_type)


async def reindex(db: str) -> int:
    """Index the stored HTML pages of `db` that have no text yet; how many were added.

    Holds the crawl as `resume` does (a SQLite file being crawled is refused, exit 2).
    """
    store = await open_store(db, create=False)
    try:
        with store.lock():
            return await store.reindex_text(text_of)
    finally:
        await store.close()


def line(hit: SearchHit) -> str:
    """score, URL, title and snippet, tab-separated (`cut -f2` gives the URLs)."""
    title = " ".join((hit.title or "").split())
    return f"{hit.score:.4g}\t{hit.url}\t{title}\t{' '.join(hit.snippet.split())}"


def json_line(hit: SearchHit) -> str:
    return json.dumps(
        {"rank": hit.rank, "score": hit.score, "url": hit.url, "title": hit.title,
         "snippet": hit.snippet},
        ensure_ascii=False,
    )  # fmt: skip


def no_hits(reader: Reader, query: str) -> str:
    """Why nothing was found: no match, or no text stored at all (and how to get some)."""
    indexed = reader.text_pages()
    if indexed == 0:
        return f"no page text in {reader.name}: crawl with --text, or run crawler search --reindex"
    return f"no page matches {query!r} ({indexed:,} pages indexed)"
