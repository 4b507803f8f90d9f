"""Full-text search in a PostgreSQL crawl: `websearch_to_tsquery` over the generated
`page_text.tsv` (GIN-indexed), ranked by `ts_rank`, snippets by `ts_headline`; and filling
`page_text` for stored pages that have none (`crawler search --reindex`).

The query language is PostgreSQL's web search syntax (words, "phrases", OR, -word), plus
FTS5's `word*` for a prefix, which websearch_to_tsquery would drop: each `word*` becomes
a `word:*` term ANDed with the rest. A query with no searchable word at all is refused
(UsageError), as FTS5 refuses one it cannot parse.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from crawler.errors import UsageError
from crawler.records import SearchHit, TextOf
from crawler.store.bodies import page_texts

if TYPE_CHECKING:
    import asyncpg

_PREFIX = re.compile(r"(?<![\w\"-])(\w+)\*")

# ts_rank weighs title lexemes (A) 1.0 against text ones (B) 0.4. ts_headline re-parses
# a page's text, so it runs only for the `limit` best rows.
SEARCH = """
WITH q AS (SELECT CASE WHEN $2::text = '' THEN websearch_to_tsquery('simple', $1)
                       WHEN $1::text = '' THEN to_tsquery('simple', $2)
                       ELSE websearch_to_tsquery('simple', $1) && to_tsquery('simple', $2)
                  END AS q),
best AS (
    SELECT t.page_id, t.title, ts_rank(t.tsv, q.q) AS score
    FROM page_text AS t, q
    WHERE t.tsv @@ q.q
    ORDER BY score DESC, t.page_id
    LIMIT $3
)
SELECT p.url, best.title, best.score,
       ts_headline('simple', t.text, q.q,
                   'StartSel=[, StopSel=], MaxWords=20, MinWords=10, MaxFragments=1')
FROM best JOIN page_rows AS p ON p.id = best.page_id
JOIN page_text AS t ON t.page_id = best.page_id, q
ORDER BY best.score DESC, best.page_id
"""

LEXEMES = """
SELECT numnode(CASE WHEN $2::text = '' THEN websearch_to_tsquery('simple', $1)
                    WHEN $1::text = '' THEN to_tsquery('simple', $2)
                    ELSE websearch_to_tsquery('simple', $1) && to_tsquery('simple', $2) END)
"""


def split_query(query: str) -> tuple[str, str]:
    """(web search text, tsquery of the prefix terms) for a query.

    >>> split_query('"full text" crawl* -spam')
    ('"full text"  -spam', 'crawl:*')
    """
    prefixes = [f"{word}:*" for word in _PREFIX.findall(query)]
    return _PREFIX.sub("", query).strip(), " & ".join(prefixes)


def hits(rows: list[Any]) -> list[SearchHit]:
    return [
        SearchHit(rank=i, score=float(r[2]), url=r[0], title=r[1], snippet=r[3] or "")
        for i, r in enumerate(rows, 1)
    ]


def refuse(query: str) -> UsageError:
    return UsageError(f"bad search query {query!r}: no word to search for")


# Pages that should have text and have none, as in the SQLite store.
_MISSING = """
SELECT p.id, p.content_type, b.body, b.body_codec
FROM page_rows AS p JOIN bodies AS b ON b.page_id = p.id
WHERE p.id > $1 AND p.status BETWEEN 200 AND 299 AND p.content_type LIKE '%html%'
  AND NOT EXISTS (SELECT 1 FROM page_text AS t WHERE t.page_id = p.id)
ORDER BY p.id
LIMIT $2
"""


async def reindex(pool: asyncpg.Pool, text_of: TextOf, batch: int) -> int:
    """Store the text of every page that should have some and has none; how many.

    Each batch commits on its own; a page a worker indexed meanwhile is left as it is.
    """
    done = after = 0
    while True:
        async with pool.acquire() as conn:
            rows = await conn.fetch(_MISSING, after, batch)
        if not rows:
            return done
        after = rows[-1][0]
        texts = page_texts(rows, text_of)
        if texts:
            async with pool.acquire() as conn:
                await conn.executemany(
                    "INSERT INTO page_text (page_id, title, text, truncated) "
                    "VALUES ($1, $2, $3, $4) ON CONFLICT (page_id) DO NOTHING",
                    texts,
                )
        done += len(texts)
