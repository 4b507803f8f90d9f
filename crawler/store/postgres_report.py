"""What `crawler report` shows for a PostgreSQL crawl, gathered in SQL: the numbers of
`sqlite_report`, every one an aggregate, in PostgreSQL's dialect.

Takes the reader's `fetch` (inside the one snapshot its `report` opens) and its `stats`,
so the headline numbers are `crawler stats`' own. Text tie-breaks sort `COLLATE "C"`:
byte order, as SQLite sorts, whatever the database's collation.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from crawler.records import STATUS_CLASSES, BrokenLink, Bucket, HostRow, ReportData
from crawler.store.sqlite_report import bucket_width

Fetch = Callable[..., list[Any]]

# A page that a link to it cannot reach: an HTTP error where its redirect chain ended, or
# no response at all (network error, failed chain).
_BROKEN = "(error IS NOT NULL OR coalesce(final_status, status) >= 400)"


def gather(
    fetch: Fetch, stats: dict[str, Any], *, top: int = 20, top_hosts: int = 100, sources: int = 3
) -> ReportData:
    """Every number of the report but `stats`; `fetch(sql, *args)` runs in one snapshot."""
    width, buckets = _timeline(fetch)
    broken, broken_pages, broken_links = _broken(fetch, top, sources)
    return ReportData(
        stats=stats,
        generated_at=time.time(),
        bucket_width=width,
        buckets=buckets,
        hosts=_hosts(fetch, top_hosts),
        slowest=_rows(
            fetch,
            "SELECT url, elapsed, status FROM page_rows WHERE elapsed IS NOT NULL "
            "ORDER BY elapsed DESC, id LIMIT $1",
            ("url", "elapsed", "status"),
            top,
        ),
        largest=_rows(
            fetch,
            "SELECT url, size, content_type FROM page_rows WHERE size IS NOT NULL "
            "ORDER BY size DESC, id LIMIT $1",
            ("url", "size", "content_type"),
            top,
        ),
        broken=broken,
        broken_pages=broken_pages,
        broken_links=broken_links,
        not_followed=_rows(
            fetch,
            "SELECT * FROM ("
            "  SELECT state, coalesce(reason, '(no reason)') AS r, count(*) AS n,"
            '         min(url COLLATE "C") FROM urls'
            "  WHERE state IN ('disallowed', 'dropped') GROUP BY state, r"
            ') AS g ORDER BY n DESC, state COLLATE "C", r COLLATE "C" LIMIT $1',
            ("state", "reason", "urls", "example"),
            top,
        ),
    )


def _rows(fetch: Fetch, sql: str, names: tuple[str, ...], *args: Any) -> list[dict[str, Any]]:
    return [dict(zip(names, row, strict=True)) for row in fetch(sql, *args)]


def _timeline(fetch: Fetch) -> tuple[int, list[Bucket]]:
    """Pages, bytes and status classes per time bucket, empty buckets included."""
    first, last = fetch("SELECT min(fetched_at), max(fetched_at) FROM page_rows")[0]
    if first is None:
        return 1, []
    width = bucket_width(last - first)
    origin = first - first % width  # as SQLite's: the same float arithmetic, in Python
    # floor() of a non-negative offset is SQLite's CAST(... AS INTEGER).
    found = {
        b: row
        for b, *row in fetch(
            "SELECT floor((fetched_at - $1::float8) / $2::float8)::bigint AS b, count(*), "
            "coalesce(sum(size), 0)::bigint, "
            "count(*) FILTER (WHERE status BETWEEN 200 AND 299), "
            "count(*) FILTER (WHERE status BETWEEN 300 AND 399), "
            "count(*) FILTER (WHERE status BETWEEN 400 AND 499), "
            "count(*) FILTER (WHERE status >= 500), count(*) FILTER (WHERE status IS NULL) "
            "FROM page_rows GROUP BY b ORDER BY b",
            float(origin),
            float(width),
        )
    }
    empty = [0, 0] + [0] * len(STATUS_CLASSES)
    return width, [_bucket(origin + b * width, found.get(b, empty)) for b in range(max(found) + 1)]


def _bucket(start: float, row: list[Any]) -> Bucket:
    pages, size, *classes = row
    return Bucket(start, pages, size, dict(zip(STATUS_CLASSES, classes, strict=True)))


def _hosts(fetch: Fetch, limit: int) -> list[HostRow]:
    """The busiest hosts, with response-time percentiles per host.

    percentile_disc(p) is the value at rank ceil(p * n), SQLite's nearest rank; only the
    chosen hosts' timed rows are sorted.
    """
    sql = """
    WITH top AS (
        SELECT host, count(*) AS n,
               count(*) FILTER (WHERE error IS NOT NULL OR status >= 400) AS errors,
               min(fetched_at) AS first_at, max(fetched_at) AS last_at
        FROM page_rows GROUP BY host ORDER BY n DESC, host COLLATE "C" LIMIT $1
    ), pct AS (
        SELECT host,
               percentile_disc(0.5) WITHIN GROUP (ORDER BY elapsed) AS median,
               percentile_disc(0.95) WITHIN GROUP (ORDER BY elapsed) AS p95
        FROM page_rows WHERE elapsed IS NOT NULL AND host IN (SELECT host FROM top)
        GROUP BY host
    )
    SELECT top.host, n, errors, median, p95,
           CASE WHEN last_at > first_at THEN n / (last_at - first_at) END
    FROM top LEFT JOIN pct USING (host)
    ORDER BY n DESC, top.host COLLATE "C"
    """
    return [HostRow(*row) for row in fetch(sql, limit)]


def _broken(fetch: Fetch, limit: int, sources: int) -> tuple[list[BrokenLink], int, int]:
    """The broken targets with the most links to them, a few pages linking to each, and
    (pages that failed, links to them) over the whole crawl."""
    pages = int(fetch(f"SELECT count(*) FROM page_rows WHERE {_BROKEN}")[0][0])
    # From the few failed pages to their links through links_dst; the total of links to
    # every broken target is taken before the LIMIT.
    targets = fetch(
        "SELECT url, n, final_status, status, error, (sum(n) OVER ())::bigint FROM ("
        "  SELECT p.url, count(*) AS n, p.final_status, p.status, p.error"
        "  FROM page_rows AS p JOIN links AS l ON l.dst_url = p.url"
        f"  WHERE {_BROKEN} GROUP BY p.id"
        ') AS t ORDER BY n DESC, url COLLATE "C" LIMIT $1',
        limit,
    )
    if not targets:
        return [], pages, 0
    links = int(targets[0][5])
    linking: dict[str, list[str]] = {}
    for dst, src in fetch(
        "SELECT dst_url, src_url FROM ("
        "  SELECT dst_url, src_url,"
        '         row_number() OVER (PARTITION BY dst_url ORDER BY src_url COLLATE "C") AS rank'
        "  FROM (SELECT DISTINCT dst_url, src_url FROM links WHERE dst_url = ANY($1::text[]))"
        "  AS d"
        ') AS r WHERE rank <= $2 ORDER BY dst_url COLLATE "C", src_url COLLATE "C"',
        [t[0] for t in targets],
        sources,
    ):
        linking.setdefault(dst, []).append(src)
    return (
        [
            BrokenLink(url, final if final is not None else status, error, n, linking.get(url, []))
            for url, n, final, status, error, _ in targets
        ],
        pages,
        links,
    )
