"""Read-only questions to a SQLite crawl file: stats, exports, `why`, stored settings.

Opened with `mode=ro` and `PRAGMA query_only`, so a report (or a user's `--where`
filter) can never change the crawl, and can run while a crawl is writing (WAL lets
readers and one writer work at once).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from crawler.config import Settings
from crawler.errors import StorageError, UsageError
from crawler.records import ReportData, SearchHit
from crawler.store import sqlite_text
from crawler.store.bodies import plain
from crawler.store.protocol import LINK_FIELDS, PAGE_FIELDS
from crawler.store.sqlite_stats import stats

# Rows fetched per step: bodies can be up to max_bytes each, so far fewer of them.
BATCH = 500
BODY_BATCH = 16


class SQLiteReader:
    """A read-only connection to a crawl file; StorageError when it is not one."""

    def __init__(self, path: str) -> None:
        if not Path(path).is_file():
            raise StorageError(f"no crawl database at {path}")
        try:
            db = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True)
            db.execute("PRAGMA query_only = ON")
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"{path} is not a SQLite database ({exc})") from None
        if not {"pages", "links", "urls", "crawl", "schema_migrations"} <= tables:
            db.close()
            raise StorageError(f"{path} is not a crawl database")
        self.db = db
        self.name = path
        # A file no crawler of this version has opened yet (read-only: never upgraded here)
        # lacks the newest columns: they read as what the migration gives old rows.
        self._kind = "kind" if _has_column(db, "links", "kind") else "'a'"
        self._page_columns = frozenset(row[1] for row in db.execute("PRAGMA table_info(pages)"))

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> SQLiteReader:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ the crawl

    def crawl(self) -> tuple[Settings, list[str]] | None:
        """The stored settings and seeds; None when the file holds no crawl."""
        row = self.db.execute("SELECT settings, seeds FROM crawl WHERE id = 1").fetchone()
        if row is None:
            return None
        return Settings.from_json(row[0]), json.loads(row[1])

    def user_agent(self) -> str | None:
        """The User-Agent the crawl sent, read leniently (for WARC request records)."""
        row = self.db.execute("SELECT settings FROM crawl WHERE id = 1").fetchone()
        ua = json.loads(row[0]).get("user_agent") if row else None
        return ua if isinstance(ua, str) else None

    def stats(self, *, top: int = 10) -> dict[str, Any]:
        return stats(self.db, top=top)

    def report(self, *, top: int = 20) -> ReportData:
        """What `crawler report` draws, aggregated in SQL (never every row in RAM)."""
        from crawler.store.sqlite_report import gather

        return gather(self.db, top=top)

    def pages(
        self,
        *,
        where: str | None = None,
        since: float | None = None,
        with_body: bool = False,
        with_headers: bool = False,
        with_data: bool = False,
    ) -> Iterator[dict[str, Any]]:
        return iter_pages(
            self.db,
            where=where,
            since=since,
            with_body=with_body,
            with_headers=with_headers,
            with_data=with_data,
            present=self._page_columns,
        )

    def links(self, *, where: str | None = None) -> Iterator[dict[str, Any]]:
        cols = ", ".join(c if c != "kind" else f"{self._kind} AS kind" for c in LINK_FIELDS)
        sql = f"SELECT {cols} FROM links"
        if where:
            sql += f" WHERE ({where}\n)"
        try:
            cur = self.db.execute(sql + " ORDER BY rowid")
        except sqlite3.Error as exc:
            raise UsageError(f"invalid --where filter: {exc}") from None
        return _records(cur, list(LINK_FIELDS), BATCH, bool(where))

    # ------------------------------------------------------------------ one URL (`why`)

    def search(self, query: str, limit: int) -> list[SearchHit]:
        return sqlite_text.search(self.db, self.name, query, limit)

    def text_pages(self) -> int:
        return sqlite_text.text_pages(self.db)

    @property
    def _signals(self) -> str:
        """The page signal columns (migration 0005), as NULLs in a file from before it."""
        if "noindex" in self._page_columns:
            return "canonical_url, noindex"
        return "NULL AS canonical_url, NULL AS noindex"

    def page(self, url: str) -> dict[str, Any] | None:
        # A file from before migration 0002 has no final_status: the status stands for it.
        final = "final_status" if "final_status" in self._page_columns else "status AS final_status"
        return self._one(
            f"SELECT status, {final}, final_url, error, depth, fetched_at, attempts, "
            f"{self._signals} FROM pages WHERE url = ?",
            url,
        )

    def url_state(self, url: str) -> dict[str, Any] | None:
        return self._one("SELECT state, reason, depth, origin FROM urls WHERE url = ?", url)

    def linked_from(self, url: str, limit: int) -> tuple[list[tuple[str, bool, str]], int]:
        """Up to `limit` (page, nofollow, kind) that link to `url`, and how many links."""
        rows = self.db.execute(
            f"SELECT src_url, nofollow, {self._kind} FROM links WHERE dst_url = ? LIMIT ?",
            (url, limit),
        ).fetchall()
        n = self.db.execute("SELECT count(*) FROM links WHERE dst_url = ?", (url,)).fetchone()[0]
        return [(src, bool(nf), kind) for src, nf, kind in rows], int(n)

    def links_on(self, url: str) -> list[tuple[str, bool, str]]:
        """(target, nofollow, kind) of every link on the page `url`; a scan of `links`."""
        rows = self.db.execute(
            f"SELECT dst_url, nofollow, {self._kind} FROM links WHERE src_url = ? ORDER BY rowid",
            (url,),
        ).fetchall()
        return [(dst, bool(nf), kind) for dst, nf, kind in rows]

    def redirected_from(self, url: str, limit: int) -> list[str]:
        rows = self.db.execute(
            "SELECT url FROM pages WHERE redirect_to = ? LIMIT ?", (url, limit)
        ).fetchall()
        return [r[0] for r in rows]

    def linking_depth(self, url: str) -> tuple[int | None, bool, list[str]]:
        """The least depth of a stored page linking to `url`, whether every <a> link to it
        is nofollow, and the kinds it is linked as."""
        kind = self._kind.replace("kind", "l.kind")
        depth, nofollow, kinds = self.db.execute(
            f"SELECT min(p.depth), min(CASE WHEN {kind} = 'a' THEN l.nofollow END), "
            f"group_concat(DISTINCT {kind}) FROM links l JOIN pages p ON p.url = l.src_url "
            "WHERE l.dst_url = ?",
            (url,),
        ).fetchone()
        return depth, nofollow == 1, sorted(kinds.split(",")) if kinds else []

    def _one(self, sql: str, url: str) -> dict[str, Any] | None:
        cur = self.db.execute(sql, (url,))
        row = cur.fetchone()
        if row is None:
            return None
        return {d[0]: v for d, v in zip(cur.description, row, strict=True)}


def _has_column(db: sqlite3.Connection, table: str, column: str) -> bool:
    return any(row[1] == column for row in db.execute(f"PRAGMA table_info({table})"))


def iter_pages(
    db: sqlite3.Connection,
    *,
    where: str | None = None,
    since: float | None = None,
    with_body: bool = False,
    with_headers: bool = False,
    with_data: bool = False,
    present: frozenset[str] | None = None,
) -> Iterator[dict[str, Any]]:
    """Pages one at a time, in crawl order, in constant memory however large the database.
    A column not `present` (a file from before its migration) reads as NULL.

    The query runs before this returns, so a bad `where` raises UsageError here,
    before anything has been written anywhere.
    """
    cols = list(PAGE_FIELDS)
    if with_headers:
        cols.append("headers")
    if with_data:
        cols.append("data")
    if with_body:
        cols += ["body", "body_codec"]
    select = ", ".join(c if present is None or c in present else f"NULL AS {c}" for c in cols)
    sql = f"SELECT {select} FROM pages"
    clauses, args = [], []
    if where:
        # A filter, not a statement: sqlite3 runs one statement only, and the connection
        # is read-only, so "1); DROP TABLE pages; --" fails instead of doing harm.
        clauses.append(f"({where}\n)")
    if since is not None:
        clauses.append("fetched_at >= ?")
        args.append(since)
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    sql += " ORDER BY id"
    try:
        cur = db.execute(sql, args)
    except sqlite3.Error as exc:
        raise UsageError(f"invalid --where filter: {exc}") from None
    return _records(cur, cols, BODY_BATCH if with_body else BATCH, bool(where))


def _records(
    cur: sqlite3.Cursor, cols: list[str], batch: int, filtered: bool
) -> Iterator[dict[str, Any]]:
    try:
        while rows := cur.fetchmany(batch):
            for row in rows:
                rec = dict(zip(cols, row, strict=True))
                if "body" in rec:
                    codec = rec.pop("body_codec")
                    if rec["body"] is not None:
                        rec["body"] = plain(rec["body"], codec)
                if rec.get("headers"):
                    rec["headers"] = json.loads(rec["headers"])
                if rec.get("data") is not None:
                    rec["data"] = json.loads(rec["data"])
                yield rec
    except sqlite3.Error as exc:  # e.g. a filter that fails on some rows only
        if filtered:
            raise UsageError(f"invalid --where filter: {exc}") from None
        raise StorageError(f"cannot read pages: {exc}") from None
    finally:
        cur.close()
