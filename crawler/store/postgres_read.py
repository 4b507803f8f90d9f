"""Read-only questions to a PostgreSQL crawl: stats, exports, `why`, stored settings.

The CLI is synchronous and asyncpg is not: the reader runs its own event loop on a
private thread and waits for each answer, so it works from plain code and from inside
another event loop alike. Its session is `default_transaction_read_only`, so a report
(or a user's `--where` filter) cannot change the crawl; asyncpg sends one statement per
query, so "1); DROP TABLE pages; --" fails instead of doing harm.
"""

from __future__ import annotations

import asyncio
import decimal
import json
import threading
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

from crawler.config import Settings
from crawler.errors import StorageError, UsageError
from crawler.records import ReportData, SearchHit
from crawler.store import postgres_text
from crawler.store.bodies import plain
from crawler.store.postgres_schema import connect_error, driver, public_name
from crawler.store.protocol import LINK_FIELDS, PAGE_FIELDS
from crawler.store.sqlite_stats import PER_RUN, PER_RUN_KEYS, sitemap_counts

T = TypeVar("T")

BATCH = 500
BODY_BATCH = 16

_MEDIA_TYPE = "coalesce(nullif(lower(trim(split_part(content_type, ';', 1))), ''), '(none)')"
_REASON = (
    "CASE WHEN error IS NULL THEN 'HTTP ' || status "
    "WHEN strpos(error, ':') > 0 THEN substr(error, 1, strpos(error, ':') - 1) ELSE error END"
)
_FAILED = "(error IS NOT NULL OR status >= 400)"

# Runs may overlap (workers): the crawl's duration is the union of the runs' spans, each
# from its start to its end, or to the last page stored after it started while it runs
# (or was killed).
_RUN_SECONDS = """
WITH r AS (
    SELECT started_at AS s,
           greatest(coalesce(ended_at, (SELECT max(p.fetched_at) FROM page_rows AS p
                                        WHERE p.fetched_at >= runs.started_at), started_at),
                    started_at) AS e
    FROM runs
), o AS (
    SELECT s, e, max(e) OVER (ORDER BY s, e ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
           AS reach
    FROM r
), i AS (
    SELECT s, e, sum(CASE WHEN reach IS NULL OR s > reach THEN 1 ELSE 0 END)
           OVER (ORDER BY s, e) AS island
    FROM o
)
SELECT (SELECT count(*) FROM runs),
       coalesce((SELECT sum(e - s) FROM (SELECT min(s) AS s, max(e) AS e FROM i
                                           GROUP BY island) AS spans), 0)
"""


class PostgresReader:
    """A read-only session on a PostgreSQL crawl; StorageError when it is not one."""

    def __init__(self, dsn: str, *, timeout: float = 10.0) -> None:
        apg = driver()
        self.name = public_name(dsn)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="crawler-pg-reader", daemon=True
        )
        self._thread.start()
        try:
            self.db = self._run(
                apg.connect(
                    dsn,
                    timeout=timeout,
                    server_settings={
                        "application_name": "crawler (read)",
                        "default_transaction_read_only": "on",
                    },
                )
            )
        except (OSError, TimeoutError, apg.PostgresError, apg.InterfaceError) as exc:
            self._stop()
            raise connect_error(self.name, exc) from None
        tables = {
            r[0]
            for r in self._fetch(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = current_schema()"
            )
        }
        if not {"pages", "links", "urls", "crawl", "schema_migrations"} <= tables:
            self.close()
            raise StorageError(f"{self.name} is not a crawl database")
        # A database no worker of this version has opened (readers never migrate) lacks the
        # columns of migration 0004: they read as what the migration gives old rows.
        self._new = bool(
            self._fetch(
                "SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() "
                "AND table_name = 'links' AND column_name = 'kind'"
            )
        )
        self._kind = "kind" if self._new else "'a'"

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _fetch(self, sql: str, *args: Any) -> list[Any]:
        rows: list[Any] = self._run(self.db.fetch(sql, *args))
        return rows

    def _one(self, sql: str, *args: Any) -> Any:
        return self._run(self.db.fetchval(sql, *args))

    def _stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def close(self) -> None:
        if self._loop.is_closed():
            return
        try:
            self._run(self.db.close(timeout=5))
        except Exception:
            self.db.terminate()
        finally:
            self._stop()

    # ------------------------------------------------------------------ the crawl

    def crawl(self) -> tuple[Settings, list[str]] | None:
        rows = self._fetch("SELECT settings, seeds FROM crawl WHERE id = 1")
        if not rows:
            return None
        return Settings.from_json(rows[0][0]), json.loads(rows[0][1])

    def user_agent(self) -> str | None:
        settings = self._one("SELECT settings FROM crawl WHERE id = 1")
        ua = json.loads(settings).get("user_agent") if settings else None
        return ua if isinstance(ua, str) else None

    def report(self, *, top: int = 20) -> ReportData:
        """What `crawler report` draws, aggregated in SQL (never every row in RAM), read in
        one snapshot (repeatable read: workers keep writing while it reads)."""
        from crawler.store.postgres_report import gather

        transaction = self.db.transaction(isolation="repeatable_read", readonly=True)
        self._run(transaction.start())
        try:
            return gather(self._fetch, self.stats(top=top), top=top)
        finally:
            self._run(transaction.rollback())

    def stats(self, *, top: int = 10) -> dict[str, Any]:
        """What `crawler stats` shows: the same keys as the SQLite reader's."""

        def one(sql: str, *args: Any) -> Any:
            return self._one(sql, *args)

        def table(sql: str, names: tuple[str, ...], *args: Any) -> list[dict[str, Any]]:
            return [dict(zip(names, _plain(row), strict=True)) for row in self._fetch(sql, *args)]

        crawl = self._fetch(
            "SELECT seeds, started_at, resumed_at, finished_at FROM crawl WHERE id = 1"
        )
        pages = int(one("SELECT count(*) FROM page_rows"))
        runs, duration = self._fetch(_RUN_SECONDS)[0]
        duration = float(duration)
        return {
            "pages": pages,
            "ok": one("SELECT count(*) FROM page_rows WHERE status BETWEEN 200 AND 299"),
            "redirects": one("SELECT count(*) FROM page_rows WHERE status BETWEEN 300 AND 399"),
            "http_errors": one("SELECT count(*) FROM page_rows WHERE status >= 400"),
            "network_errors": one("SELECT count(*) FROM page_rows WHERE status IS NULL"),
            "failed": one(f"SELECT count(*) FROM page_rows WHERE {_FAILED}"),
            "hook_errors": one("SELECT count(*) FROM page_rows WHERE data ? 'hook_error'"),
            "hosts": one("SELECT count(DISTINCT host) FROM page_rows"),
            "bytes": int(one("SELECT coalesce(sum(size), 0) FROM page_rows")),
            "links": one("SELECT count(*) FROM links"),
            "queued": one("SELECT count(*) FROM urls WHERE state = 'queued'"),
            "disallowed": one("SELECT count(*) FROM urls WHERE state = 'disallowed'"),
            "dropped": one("SELECT count(*) FROM urls WHERE state = 'dropped'"),
            "by_status_class": table(
                "SELECT CASE WHEN status IS NULL THEN 'error' ELSE (status / 100) || 'xx' END "
                "AS k, count(*) FROM page_rows GROUP BY k ORDER BY k",
                ("class", "pages"),
            ),
            "by_status": table(
                "SELECT status, count(*) FROM page_rows WHERE status IS NOT NULL "
                "GROUP BY status ORDER BY status",
                ("status", "pages"),
            ),
            "by_content_type": table(
                f"SELECT {_MEDIA_TYPE} AS k, count(*) AS n FROM page_rows "
                "GROUP BY k ORDER BY n DESC, k LIMIT $1",
                ("content_type", "pages"),
                top,
            ),
            "top_hosts": table(
                f"SELECT host, count(*) AS n, sum(CASE WHEN {_FAILED} THEN 1 ELSE 0 END), "
                "round(avg(elapsed)::numeric, 3) FROM page_rows "
                "GROUP BY host ORDER BY n DESC, host LIMIT $1",
                ("host", "pages", "failed", "avg_elapsed_s"),
                top,
            ),
            "error_reasons": table(
                f"SELECT {_REASON} AS k, count(*) AS n FROM page_rows WHERE {_FAILED} "
                "GROUP BY k ORDER BY n DESC, k LIMIT $1",
                ("reason", "pages"),
                top,
            ),
            "depths": table(
                "SELECT depth, count(*) FROM page_rows GROUP BY depth ORDER BY depth",
                ("depth", "pages"),
            ),
            "skipped": table(
                "SELECT reason, count FROM skipped ORDER BY count DESC, reason",
                ("reason", "links"),
            ),
            "sitemaps": sitemap_counts(one),
            "runs": int(runs),
            "per_run": table(PER_RUN, PER_RUN_KEYS),
            "duration_s": round(duration, 3),
            "pages_per_s": round(pages / duration, 2) if duration > 0 else None,
            "seeds": json.loads(crawl[0][0]) if crawl else [],
            "started_at": crawl[0][1] if crawl else None,
            "resumed_at": crawl[0][2] if crawl else None,
            "finished_at": crawl[0][3] if crawl else None,
        }

    def pages(
        self,
        *,
        where: str | None = None,
        since: float | None = None,
        with_body: bool = False,
        with_headers: bool = False,
        with_data: bool = False,
    ) -> Iterator[dict[str, Any]]:
        """Pages one at a time, in crawl order, through a server-side cursor.

        The query is prepared before this returns, so a bad `where` raises UsageError
        here, before anything has been written anywhere.
        """
        cols = list(PAGE_FIELDS)
        if with_headers:
            cols.append("headers")
        if with_data:
            cols.append("data")
        if with_body:
            cols += ["body", "body_codec"]
        old = () if self._new else ("canonical_url", "noindex")
        sql = f"SELECT {', '.join(f'NULL AS {c}' if c in old else c for c in cols)} FROM pages"
        clauses, args = [], []
        if where:
            clauses.append(f"({where}\n)")
        if since is not None:
            clauses.append("fetched_at >= $1")
            args.append(since)
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY id"
        return self._stream(sql, args, cols, BODY_BATCH if with_body else BATCH, bool(where))

    def links(self, *, where: str | None = None) -> Iterator[dict[str, Any]]:
        # No ORDER BY: links has no key to sort by cheaply; storage order is insertion order.
        cols = ", ".join(c if c != "kind" else f"{self._kind} AS kind" for c in LINK_FIELDS)
        sql = f"SELECT {cols} FROM links"
        if where:
            sql += f" WHERE ({where}\n)"
        return self._stream(sql, [], list(LINK_FIELDS), BATCH, bool(where))

    def _stream(
        self, sql: str, args: list[Any], cols: list[str], size: int, filtered: bool
    ) -> Iterator[dict[str, Any]]:
        apg = driver()
        transaction = self.db.transaction(readonly=True)
        self._run(transaction.start())
        try:
            cursor = self._run(self._cursor(sql, args))
        except apg.PostgresError as exc:
            self._run(transaction.rollback())
            raise UsageError(f"invalid --where filter: {_line(exc)}") from None
        except BaseException:
            self._run(transaction.rollback())
            raise
        return self._records(cursor, transaction, cols, size, filtered)

    async def _cursor(self, sql: str, args: list[Any]) -> Any:
        return await self.db.cursor(sql, *args)

    def _records(
        self, cursor: Any, transaction: Any, cols: list[str], batch: int, filtered: bool
    ) -> Iterator[dict[str, Any]]:
        apg = driver()
        try:
            while rows := self._run(cursor.fetch(batch)):
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
        except apg.PostgresError as exc:
            if filtered:
                raise UsageError(f"invalid --where filter: {_line(exc)}") from None
            raise StorageError(f"cannot read pages: {_line(exc)}") from None
        finally:
            if not self._loop.is_closed():
                self._run(transaction.rollback())

    # ------------------------------------------------------------------ one URL (`why`)

    def search(self, query: str, limit: int) -> list[SearchHit]:
        apg = driver()
        text, prefixes = postgres_text.split_query(query)
        try:
            if not self._one(postgres_text.LEXEMES, text, prefixes):
                raise postgres_text.refuse(query)
            return postgres_text.hits(self._fetch(postgres_text.SEARCH, text, prefixes, limit))
        except apg.UndefinedTableError:
            raise StorageError(
                f"{self.name} has no search index yet (an older crawl): "
                "run crawler search --reindex to build it"
            ) from None
        except apg.PostgresSyntaxError as exc:  # a prefix term to_tsquery cannot read
            raise UsageError(f"bad search query {query!r}: {exc}") from None

    def text_pages(self) -> int:
        try:
            return int(self._one("SELECT count(*) FROM page_text"))
        except driver().UndefinedTableError:
            return 0

    def page(self, url: str) -> dict[str, Any] | None:
        return self._record(
            "SELECT status, final_status, final_url, error, depth, fetched_at, attempts, "
            + ("canonical_url, noindex" if self._new else "NULL AS canonical_url, NULL AS noindex")
            + " FROM page_rows WHERE url = $1",
            url,
        )

    def url_state(self, url: str) -> dict[str, Any] | None:
        return self._record("SELECT state, reason, depth, origin FROM urls WHERE url = $1", url)

    def linked_from(self, url: str, limit: int) -> tuple[list[tuple[str, bool, str]], int]:
        rows = self._fetch(
            f"SELECT src_url, nofollow, {self._kind} FROM links WHERE dst_url = $1 LIMIT $2",
            url,
            limit,
        )
        n = self._one("SELECT count(*) FROM links WHERE dst_url = $1", url)
        return [(r[0], bool(r[1]), r[2]) for r in rows], int(n)

    def links_on(self, url: str) -> list[tuple[str, bool, str]]:
        """(target, nofollow, kind) of every link on the page `url`; a scan of `links`."""
        kind = "kind" if self._new else "'a'"
        rows = self._fetch(f"SELECT dst_url, nofollow, {kind} FROM links WHERE src_url = $1", url)
        return [(r[0], bool(r[1]), r[2]) for r in rows]

    def redirected_from(self, url: str, limit: int) -> list[str]:
        rows = self._fetch("SELECT url FROM page_rows WHERE redirect_to = $1 LIMIT $2", url, limit)
        return [r[0] for r in rows]

    def linking_depth(self, url: str) -> tuple[int | None, bool, list[str]]:
        kind = "l.kind" if self._new else "'a'"
        depth, nofollow, kinds = self._fetch(
            f"SELECT min(p.depth), min(CASE WHEN {kind} = 'a' THEN l.nofollow END), "
            f"string_agg(DISTINCT {kind}, ',') FROM links AS l "
            "JOIN page_rows AS p ON p.url = l.src_url WHERE l.dst_url = $1",
            url,
        )[0]
        return depth, nofollow == 1, sorted(kinds.split(",")) if kinds else []

    def _record(self, sql: str, url: str) -> dict[str, Any] | None:
        rows = self._fetch(sql, url)
        return dict(rows[0].items()) if rows else None


def _plain(row: Any) -> list[Any]:
    """JSON-ready values: PostgreSQL's numeric (from round) as a float, as SQLite gives."""
    return [float(v) if isinstance(v, decimal.Decimal) else v for v in row]


def _line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
