"""Read-only questions to a finished or running crawl database: stats and exports.

Opened with `mode=ro`, so a report can never change the crawl, and can run while a
crawl is writing (WAL lets readers and one writer work at once).
"""

from __future__ import annotations

import json
import sqlite3
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crawler.errors import StorageError

PAGE_FIELDS = (
    "url",
    "final_url",
    "status",
    "error",
    "content_type",
    "depth",
    "fetched_at",
    "size",
    "truncated",
    "elapsed",
    "title",
    "content_hash",
)


def connect(path: str) -> sqlite3.Connection:
    """A read-only connection to a crawl database; StorageError when it is not one."""
    if not Path(path).is_file():
        raise StorageError(f"no crawl database at {path}")
    try:
        db = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True)
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
    except sqlite3.DatabaseError as exc:
        raise StorageError(f"{path} is not a SQLite database ({exc})") from None
    if not {"pages", "links", "urls", "schema_migrations"} <= tables:
        db.close()
        raise StorageError(f"{path} is not a crawl database")
    return db


@dataclass(frozen=True, slots=True)
class Stats:
    data: dict[str, Any]


def stats(db: sqlite3.Connection, *, top: int = 10) -> dict[str, Any]:
    """Everything `crawler stats` shows, as plain data (also its --json output)."""

    def one(sql: str, *args: Any) -> Any:
        return db.execute(sql, args).fetchone()[0]

    def pairs(sql: str, *args: Any) -> list[list[Any]]:
        return [list(r) for r in db.execute(sql, args)]

    crawl = db.execute("SELECT settings, seeds, started_at, finished_at FROM crawl").fetchone()
    first, last = db.execute("SELECT min(fetched_at), max(fetched_at) FROM pages").fetchone()
    pages = one("SELECT count(*) FROM pages")
    duration = (last - first) if first is not None and last is not None else 0.0
    return {
        "pages": pages,
        "ok": one("SELECT count(*) FROM pages WHERE status BETWEEN 200 AND 299"),
        "errors": one("SELECT count(*) FROM pages WHERE error IS NOT NULL"),
        "network_errors": one("SELECT count(*) FROM pages WHERE status IS NULL"),
        "hosts": one("SELECT count(DISTINCT host) FROM pages"),
        "bytes": one("SELECT coalesce(sum(size), 0) FROM pages"),
        "links": one("SELECT count(*) FROM links"),
        "queued": one("SELECT count(*) FROM urls WHERE state = 'queued'"),
        "disallowed": one("SELECT count(*) FROM urls WHERE state = 'disallowed'"),
        "dropped": one("SELECT count(*) FROM urls WHERE state = 'dropped'"),
        "by_status_class": pairs(
            "SELECT CASE WHEN status IS NULL THEN 'error' ELSE (status / 100) || 'xx' END AS k, "
            "count(*) FROM pages GROUP BY k ORDER BY k"
        ),
        "by_status": pairs(
            "SELECT status, count(*) FROM pages WHERE status IS NOT NULL "
            "GROUP BY status ORDER BY status"
        ),
        "by_content_type": pairs(
            "SELECT coalesce(lower(trim(substr(content_type, 1, "
            "CASE WHEN instr(content_type, ';') > 0 THEN instr(content_type, ';') - 1 "
            "ELSE length(content_type) END))), '(none)') AS k, count(*) AS n "
            "FROM pages GROUP BY k ORDER BY n DESC LIMIT ?",
            top,
        ),
        "top_hosts": pairs(
            "SELECT host, count(*) AS n FROM pages GROUP BY host ORDER BY n DESC, host LIMIT ?",
            top,
        ),
        "error_reasons": pairs(
            "SELECT CASE WHEN instr(error, ':') > 0 THEN substr(error, 1, instr(error, ':') - 1) "
            "ELSE error END AS k, count(*) AS n FROM pages WHERE error IS NOT NULL "
            "GROUP BY k ORDER BY n DESC LIMIT ?",
            top,
        ),
        "depths": pairs("SELECT depth, count(*) FROM pages GROUP BY depth ORDER BY depth"),
        "duration_s": round(duration, 3),
        "pages_per_s": round(pages / duration, 2) if duration > 0 else None,
        "started_at": crawl[2] if crawl else None,
        "finished_at": crawl[3] if crawl else None,
        "seeds": json.loads(crawl[1]) if crawl else [],
    }


def iter_pages(
    db: sqlite3.Connection,
    *,
    where: str | None = None,
    since: float | None = None,
    with_body: bool = False,
    with_headers: bool = False,
) -> Iterator[dict[str, Any]]:
    """Pages one at a time (constant memory however large the database)."""
    cols = list(PAGE_FIELDS)
    if with_headers:
        cols.append("headers")
    if with_body:
        cols += ["body", "body_codec"]
    sql = f"SELECT {', '.join(cols)} FROM pages"
    clauses, args = [], []
    if where:
        clauses.append(f"({where})")
    if since is not None:
        clauses.append("fetched_at >= ?")
        args.append(since)
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    sql += " ORDER BY id"
    try:
        cur = db.execute(sql, args)
    except sqlite3.Error as exc:
        raise StorageError(f"invalid --where filter: {exc}") from None
    while rows := cur.fetchmany(500):
        for row in rows:
            rec = dict(zip(cols, row, strict=True))
            if with_body:
                body = rec.pop("body")
                if body is not None and rec.pop("body_codec") == "zlib":
                    body = zlib.decompress(body)
                else:
                    rec.pop("body_codec", None)
                rec["body"] = body
            if with_headers and rec.get("headers"):
                rec["headers"] = json.loads(rec["headers"])
            yield rec
