"""`crawler search`: full-text search of a crawl's pages, a command of its own (the
library side is crawler/search.py and the stores' readers); crawler/cli.py registers it."""

from __future__ import annotations

import contextlib

import click

from crawler.errors import UsageError
from crawler.store import open_reader


@click.command()
@click.argument("terms", nargs=-1)
@click.option("--db", default="crawl.db", show_default=True, help="The crawl database.")
@click.option(
    "--limit", default=10, show_default=True, type=click.IntRange(min=1), help="Most hits shown."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per hit and line.")
@click.option(
    "--reindex",
    is_flag=True,
    help="First index the stored HTML pages that have no text yet (crawled with --no-text, "
    "or before full-text search existed).",
)
def search(terms: tuple[str, ...], db: str, limit: int, as_json: bool, reindex: bool) -> int:
    """Full-text search over the stored pages' titles and visible text.

    TERMS are words (all must match), "a phrase" in quotes, word* for a prefix, and OR.
    SQLite takes FTS5's syntax (NOT, NEAR, title:word); PostgreSQL its web search syntax
    (-word excludes). Prints the best pages first, one per line: score, URL, title and
    a snippet with the matched words in [brackets], tab-separated. Exit 1 when nothing
    matches (as grep), 2 when the query is malformed.
    """
    import asyncio

    from crawler import search as fts

    query = " ".join(terms).strip()
    if not query and not reindex:
        raise UsageError('no search terms given (crawler search "words" or --reindex)')
    if reindex:
        added = asyncio.run(fts.reindex(db))
        click.echo(f"indexed the text of {added:,} pages", err=True)
        if not query:
            return 0
    with contextlib.closing(open_reader(db)) as reader:
        hits = reader.search(query, limit)
        for hit in hits:
            click.echo(fts.json_line(hit) if as_json else fts.line(hit))
        if not hits:
            click.echo(f"crawler: {fts.no_hits(reader, query)}", err=True)
    return 0 if hits else 1
