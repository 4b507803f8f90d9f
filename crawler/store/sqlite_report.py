"""What `crawler report` shows, gathered in SQL: every number is an aggregate, no query
returns more than a few hundred rows however large the crawl.

Takes a read-only connection from `crawler.queries.connect`; the headline numbers and the
small tables are `crawler stats`' own (`queries.stats`), so the two never disagree.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from crawler.records import STATUS_CLASSES, BrokenLink, Bucket, HostRow, ReportData
from crawler.store.sqlite_stats import stats as _stats

# The widths a time bucket can have, in seconds: the smallest that keeps a chart within
# MAX_BUCKETS bars, so the x axis reads in round steps.
BUCKET_WIDTHS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 86400)
MAX_BUCKETS = 120

# A page that a link to it cannot reach: an HTTP error where its redirect chain ended, or
# no response at all (network error, failed chain).
_BROKEN = "(error IS NOT NULL OR coalesce(final_status, status) >= 400)"


def gather(
    db: sqlite3.Connection, *, top: int = 20, top_hosts: int = 100, sources: int = 3
) -> ReportData:
    """Every number of the report, read in one transaction (a live crawl keeps writing)."""
    db.execute("BEGIN")  # one snapshot: the tables agree with each other
    try:
        stats = _stats(db, top=top)
        width, buckets = _timeline(db)
        broken, broken_pages, broken_links = _broken(db, top, sources)
        return ReportData(
            stats=stats,
            generated_at=time.time(),
            bucket_width=width,
            buckets=buckets,
            hosts=_hosts(db, top_hosts),
            slowest=_rows(
                db,
                "SELECT url, elapsed, status FROM pages WHERE elapsed IS NOT NULL "
                "ORDER BY elapsed DESC, id LIMIT ?",
                ("url", "elapsed", "status"),
                top,
            ),
            largest=_rows(
                db,
                "SELECT url, size, content_type FROM pages WHERE size IS NOT NULL "
                "ORDER BY size DESC, id LIMIT ?",
                ("url", "size", "content_type"),
                top,
            ),
            broken=broken,
            broken_pages=broken_pages,
            broken_links=broken_links,
            not_followed=_rows(
                db,
                "SELECT state, coalesce(reason, '(no reason)') AS r, count(*) AS n, min(url) "
                "FROM frontier WHERE state IN ('disallowed', 'dropped') "
                "GROUP BY state, r ORDER BY n DESC, state, r LIMIT ?",
                ("state", "reason", "urls", "example"),
                top,
            ),
        )
    finally:
        db.execute("ROLLBACK")


def _rows(
    db: sqlite3.Connection, sql: str, names: tuple[str, ...], *args: Any
) -> list[dict[str, Any]]:
    return [dict(zip(names, row, strict=True)) for row in db.execute(sql, args)]


def bucket_width(span: float) -> int:
    """Seconds per time bucket for a crawl that lasted `span` seconds.

    >>> bucket_width(30), bucket_width(3600)
    (1, 30)
    """
    for width in BUCKET_WIDTHS:
        if span / width <= MAX_BUCKETS:
            return width
    return int(span // MAX_BUCKETS) + 1


def _timeline(db: sqlite3.Connection) -> tuple[int, list[Bucket]]:
    """Pages, bytes and status classes per time bucket, empty buckets included (a pause
    between runs shows as a gap, not as a jump)."""
    first, last = db.execute("SELECT min(fetched_at), max(fetched_at) FROM pages").fetchone()
    if first is None:
        return 1, []
    width = bucket_width(last - first)
    origin = first - first % width  # buckets start on round clock times
    found = {
        b: row
        for b, *row in db.execute(
            "SELECT CAST((fetched_at - ?) / ? AS INTEGER) AS b, count(*), coalesce(sum(size), 0), "
            # count(), not sum(): in a bucket of network errors only, every status is
            # NULL, and sum() of only NULLs is NULL, not 0.
            "count(CASE WHEN status BETWEEN 200 AND 299 THEN 1 END), "
            "count(CASE WHEN status BETWEEN 300 AND 399 THEN 1 END), "
            "count(CASE WHEN status BETWEEN 400 AND 499 THEN 1 END), "
            "count(CASE WHEN status >= 500 THEN 1 END), count(CASE WHEN status IS NULL THEN 1 END) "
            "FROM pages GROUP BY b ORDER BY b",
            (origin, width),
        )
    }
    return width, [_bucket(origin + b * width, found.get(b)) for b in range(max(found) + 1)]


def _bucket(start: float, row: list[Any] | None) -> Bucket:
    if row is None:
        return Bucket(start, 0, 0, dict.fromkeys(STATUS_CLASSES, 0))
    pages, size, *classes = row
    return Bucket(start, pages, size, dict(zip(STATUS_CLASSES, classes, strict=True)))


def _hosts(db: sqlite3.Connection, limit: int) -> list[HostRow]:
    """The busiest hosts, with response-time percentiles (nearest rank) per host.

    `+host`: one scan of the table is faster than visiting it in `pages_host` order (a
    random read per row); the window functions then sort only the chosen hosts' rows.
    """
    sql = """
    WITH top AS (
        SELECT host, count(*) AS n, sum(error IS NOT NULL OR status >= 400) AS errors,
               min(fetched_at) AS first, max(fetched_at) AS last
        FROM pages GROUP BY +host ORDER BY n DESC, host LIMIT ?
    ), ranked AS (
        SELECT host, elapsed,
               row_number() OVER (PARTITION BY host ORDER BY elapsed) AS rank,
               count(*) OVER (PARTITION BY host) AS timed
        FROM pages WHERE elapsed IS NOT NULL AND host IN (SELECT host FROM top)
    ), pct AS (
        SELECT host,
               max(CASE WHEN rank = (timed + 1) / 2 THEN elapsed END) AS median,
               max(CASE WHEN rank = (95 * timed + 99) / 100 THEN elapsed END) AS p95
        FROM ranked GROUP BY host
    )
    SELECT top.host, n, errors, median, p95,
           CASE WHEN last > first THEN n / (last - first) END
    FROM top LEFT JOIN pct USING (host)
    ORDER BY n DESC, top.host
    """
    return [HostRow(*row) for row in db.execute(sql, (limit,))]


def _broken(db: sqlite3.Connection, limit: int, sources: int) -> tuple[list[BrokenLink], int, int]:
    """The broken targets with the most links to them, a few pages linking to each, and
    (pages that failed, links to them) over the whole crawl."""
    pages = int(db.execute(f"SELECT count(*) FROM pages WHERE {_BROKEN}").fetchone()[0])
    indexed = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'links_dst'").fetchone()
    # With links_dst (a finished run): from the few failed pages to their links. Without
    # it (deferred while a crawl runs): one pass over `links`, each looking its target up
    # by pages.url (unique). CROSS JOIN fixes SQLite's loop order.
    join = (
        "pages AS p CROSS JOIN links AS l ON l.dst_url = p.url"
        if indexed
        else "links AS l CROSS JOIN pages AS p ON p.url = l.dst_url"
    )
    targets = db.execute(
        "SELECT url, n, final_status, status, error, sum(n) OVER () FROM ("
        "  SELECT p.url, count(*) AS n, p.final_status, p.status, p.error"
        f"  FROM {join} WHERE {_BROKEN} GROUP BY p.id"
        ") ORDER BY n DESC, url LIMIT ?",
        (limit,),
    ).fetchall()
    if not targets:
        return [], pages, 0
    links = int(targets[0][5])
    # One pass over `links` for all targets (IN (...) is a set lookup), first few per target.
    marks = ", ".join("?" * len(targets))
    linking: dict[str, list[str]] = {}
    for dst, src in db.execute(
        "SELECT dst_url, src_url FROM ("
        "  SELECT dst_url, src_url,"
        "         row_number() OVER (PARTITION BY dst_url ORDER BY src_url) AS rank"
        f"  FROM (SELECT DISTINCT dst_url, src_url FROM links WHERE dst_url IN ({marks}))"
        ") WHERE rank <= ? ORDER BY dst_url, src_url",
        (*(t[0] for t in targets), sources),
    ):
        linking.setdefault(dst, []).append(src)
    found = [
        BrokenLink(url, final if final is not None else status, error, n, linking.get(url, []))
        for url, n, final, status, error, _ in targets
    ]
    return found, pages, links
