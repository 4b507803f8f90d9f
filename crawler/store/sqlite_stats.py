"""`crawler stats` for a SQLite crawl file: every number in one function, as plain data."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from typing import Any

# The media type of a Content-Type header, lower-cased: "text/html; charset=utf-8" -> "text/html".
_MEDIA_TYPE = (
    "coalesce(nullif(lower(trim(substr(content_type, 1, CASE WHEN instr(content_type, ';') > 0 "
    "THEN instr(content_type, ';') - 1 ELSE length(content_type) END))), ''), '(none)')"
)
# Why a page failed: the error's kind (the text before ':') or its HTTP status when >= 400.
_REASON = (
    "CASE WHEN error IS NULL THEN 'HTTP ' || status "
    "WHEN instr(error, ':') > 0 THEN substr(error, 1, instr(error, ':') - 1) ELSE error END"
)
_FAILED = "(error IS NOT NULL OR status >= 400)"


def stats(db: sqlite3.Connection, *, top: int = 10) -> dict[str, Any]:
    """Everything `crawler stats` shows, as plain data (also its --json output)."""

    def one(sql: str, *args: Any) -> Any:
        return db.execute(sql, args).fetchone()[0]

    def table(sql: str, names: tuple[str, ...], *args: Any) -> list[dict[str, Any]]:
        return [dict(zip(names, row, strict=True)) for row in db.execute(sql, args)]

    crawl = db.execute(
        "SELECT seeds, started_at, resumed_at, finished_at FROM crawl WHERE id = 1"
    ).fetchone()
    pages = one("SELECT count(*) FROM pages")
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    runs, duration = _runs(db) if "runs" in tables else (0, 0.0)
    if not runs:  # a file from before `runs` was kept
        duration = _page_span(db)
    # pages.data came with 0006: a file no crawler of that version opened yet has none.
    hook_errors = (
        one("SELECT count(*) FROM page_rows WHERE json_extract(data, '$.hook_error') NOT NULL")
        if "data" in {r[1] for r in db.execute("PRAGMA table_info(page_rows)")}
        else 0
    )
    skipped = (
        table("SELECT reason, count FROM skipped ORDER BY count DESC, reason", ("reason", "links"))
        if "skipped" in tables
        else []
    )
    sitemaps = sitemap_counts(one) if "sitemaps" in tables else dict.fromkeys(SITEMAP_KEYS, 0)
    return {
        "pages": pages,
        "ok": one("SELECT count(*) FROM pages WHERE status BETWEEN 200 AND 299"),
        "redirects": one("SELECT count(*) FROM pages WHERE status BETWEEN 300 AND 399"),
        "http_errors": one("SELECT count(*) FROM pages WHERE status >= 400"),
        "network_errors": one("SELECT count(*) FROM pages WHERE status IS NULL"),
        "failed": one(f"SELECT count(*) FROM pages WHERE {_FAILED}"),
        "hook_errors": hook_errors,  # pages a hook failed on (pages.data.hook_error)
        "hosts": one("SELECT count(DISTINCT host) FROM pages"),
        "bytes": one("SELECT coalesce(sum(size), 0) FROM pages"),
        "links": one("SELECT count(*) FROM links"),
        "queued": one("SELECT count(*) FROM urls WHERE state = 'queued'"),
        "disallowed": one("SELECT count(*) FROM urls WHERE state = 'disallowed'"),
        "dropped": one("SELECT count(*) FROM urls WHERE state = 'dropped'"),
        "by_status_class": table(
            "SELECT CASE WHEN status IS NULL THEN 'error' ELSE (status / 100) || 'xx' END AS k, "
            "count(*) FROM pages GROUP BY k ORDER BY k",
            ("class", "pages"),
        ),
        "by_status": table(
            "SELECT status, count(*) FROM pages WHERE status IS NOT NULL "
            "GROUP BY status ORDER BY status",
            ("status", "pages"),
        ),
        "by_content_type": table(
            f"SELECT {_MEDIA_TYPE} AS k, count(*) AS n FROM pages "
            "GROUP BY k ORDER BY n DESC, k LIMIT ?",
            ("content_type", "pages"),
            top,
        ),
        "top_hosts": table(
            f"SELECT host, count(*) AS n, sum({_FAILED}), round(avg(elapsed), 3) FROM pages "
            "GROUP BY host ORDER BY n DESC, host LIMIT ?",
            ("host", "pages", "failed", "avg_elapsed_s"),
            top,
        ),
        "error_reasons": table(
            f"SELECT {_REASON} AS k, count(*) AS n FROM pages WHERE {_FAILED} "
            "GROUP BY k ORDER BY n DESC, k LIMIT ?",
            ("reason", "pages"),
            top,
        ),
        "depths": table(
            "SELECT depth, count(*) FROM pages GROUP BY depth ORDER BY depth", ("depth", "pages")
        ),
        "skipped": skipped,
        "sitemaps": sitemaps,
        "runs": runs,
        "per_run": table(PER_RUN, PER_RUN_KEYS) if "fetches" in tables else [],
        "duration_s": round(duration, 3),
        "pages_per_s": round(pages / duration, 2) if duration > 0 else None,
        "seeds": json.loads(crawl[0]) if crawl else [],
        "started_at": crawl[1] if crawl else None,
        "resumed_at": crawl[2] if crawl else None,
        "finished_at": crawl[3] if crawl else None,
    }


SITEMAP_KEYS = ("fetched", "failed", "queued", "urls")


def sitemap_counts(one: Callable[[str], Any]) -> dict[str, int]:
    """Sitemaps fetched (done), failed (with an error), queued, and the URLs they listed
    on hosts they may speak for: the same SQL on both backends."""
    return {
        "fetched": int(one("SELECT count(*) FROM sitemaps WHERE state = 'done'")),
        "failed": int(one("SELECT count(*) FROM sitemaps WHERE error IS NOT NULL")),
        "queued": int(one("SELECT count(*) FROM sitemaps WHERE state = 'queued'")),
        "urls": int(one("SELECT count(DISTINCT url) FROM sitemap_urls")),
    }


# What each run fetched (`fetches`, by what it found); the same SQL on both stores.
PER_RUN = """
SELECT r.id, r.kind, count(f.id),
       coalesce(sum(CASE WHEN f.change = 'new' THEN 1 ELSE 0 END), 0),
       coalesce(sum(CASE WHEN f.change = 'changed' THEN 1 ELSE 0 END), 0),
       coalesce(sum(CASE WHEN f.change = 'unchanged' THEN 1 ELSE 0 END), 0),
       coalesce(sum(CASE WHEN f.change = 'gone' THEN 1 ELSE 0 END), 0),
       coalesce(sum(CASE WHEN f.change = 'failed' THEN 1 ELSE 0 END), 0)
FROM runs AS r LEFT JOIN fetches AS f ON f.run_id = r.id
GROUP BY r.id, r.kind
ORDER BY r.id
"""
PER_RUN_KEYS = ("run", "kind", "fetched", "new", "changed", "unchanged", "gone", "failed")

# Each run lasts from its start to its end; a run without an end (killed, or still going)
# to its last stored page: fetched after it started and before the next run started.
_RUN_SECONDS = """
SELECT count(*), coalesce(sum(max(coalesce(r.ended_at, (
    SELECT max(p.fetched_at) FROM pages AS p
    WHERE p.fetched_at >= r.started_at
      AND p.fetched_at < coalesce(
          (SELECT min(n.started_at) FROM runs AS n WHERE n.started_at > r.started_at), 1e308)
), r.started_at) - r.started_at, 0)), 0)
FROM runs AS r
"""


def _runs(db: sqlite3.Connection) -> tuple[int, float]:
    """(runs, seconds crawled): the sum of every run's own duration, pauses left out."""
    n, seconds = db.execute(_RUN_SECONDS).fetchone()
    return int(n), float(seconds)


def _page_span(db: sqlite3.Connection) -> float:
    """Seconds from the first to the last stored page (a file from before `runs`)."""
    first, last = db.execute("SELECT min(fetched_at), max(fetched_at) FROM pages").fetchone()
    return float(last - first) if first is not None else 0.0
