"""The PostgreSQL store: one crawl shared by many workers on many machines
(`--db postgresql://user@host/dbname`).

It implements `crawler.store.protocol.Store` as the SQLite store does, with what sharing
needs: dedup in the database (`dedups`: new URLs are reported by `on_commit` once
inserted, and `seen_urls` yields nothing), claims marked in `urls.claimed_by` rather than
a cursor (ids carry no order across concurrent writers), and host leases, live workers
and an exact page budget (`postgres_leases`). A small asyncpg pool serves one worker:
a batch writes on one connection while claims and leases use another.

`lock()` holds nothing: `crawler work` processes join a running crawl by design. What
the SQLite lock prevents, two runs interleaving on one host, the host leases prevent
here; a second `crawl` into a database that holds one is refused by the crawl record.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from crawler.config import Settings
from crawler.errors import UsageError
from crawler.records import CrawlRecord, QueuedURL, TextOf
from crawler.revisit import stored_page
from crawler.store import postgres_text
from crawler.store.buffer import one_line
from crawler.store.postgres_batches import QUEUE_SERVERS, is_store_failure
from crawler.store.postgres_leases import Leases
from crawler.store.postgres_robots import PostgresRobots
from crawler.store.postgres_schema import check_and_migrate, connect_error, driver, public_name
from crawler.store.selection import recrawl_selection

log = logging.getLogger(__name__)


class PostgresStore(Leases, PostgresRobots):
    """A PostgreSQL crawl database opened by one worker for one run."""

    dedups = True  # the database deduplicates: on_commit reports what was really new
    # The URL as given, password included: only for this machine's worker processes
    # (`--processes`), handed to them through a pipe; `name` is what messages show.
    dsn: str = ""

    def __init__(self, pool: Any, name: str, *, lease_seconds: float = 30.0) -> None:
        super().__init__(pool, name, lease_seconds=lease_seconds)
        self.leased: set[str] = set()  # servers (`server_key`), with all their origins
        self._released: set[str] = set()  # hosts whose claims `claim` hands out again
        self.revisit = False  # a recrawl is going: claims carry each URL's stored page
        self._restore_handler: Callable[[], None] = lambda: None  # see _quiet_after_failure

    # ------------------------------------------------------------------ open / close

    @classmethod
    async def open(
        cls, dsn: str, *, create: bool, lease_seconds: float = 30.0, timeout: float = 10.0
    ) -> PostgresStore:
        """Connect and migrate; StorageError (exit 2) when the database is unusable."""
        apg = driver()
        name = public_name(dsn)
        lease = [lease_seconds]  # read by every new connection: `use_lease` changes it

        async def init(conn: Any) -> None:
            # A worker cut off inside a transaction keeps its row locks on the server
            # until the server notices: the lease's length at most, or the others could
            # not reap it (they wait for those locks) and its hosts would stay stuck.
            timeout_ms = int(lease[0] * 1000)
            await conn.execute(f"SET idle_in_transaction_session_timeout = {timeout_ms}")

        try:
            pool = await apg.create_pool(
                dsn,
                min_size=1,
                max_size=3,
                timeout=timeout,
                # A server that stops answering (a cut network) is a store failure, not a
                # hang; twice the lease, so a short cut is ridden out.
                command_timeout=max(60.0, 2 * lease_seconds),
                server_settings={"application_name": "crawler"},
                init=init,
            )
        except (OSError, TimeoutError, apg.PostgresError, apg.InterfaceError) as exc:
            raise connect_error(name, exc) from None
        try:
            async with pool.acquire() as conn:
                await check_and_migrate(conn, name, create=create)
            store = cls(pool, name, lease_seconds=lease_seconds)
            store._quiet_after_failure()
            store._lease = lease
            store.dsn = dsn
            await store._register()
            async with pool.acquire() as conn:
                # A sitemap left queued (a worker killed while reading it) makes its host
                # work again, whatever its URLs: someone must lease it and read it.
                await conn.execute(
                    "WITH flipped AS (UPDATE hosts SET queued = true FROM sitemaps AS s "
                    "WHERE s.state = 'queued' AND hosts.host = s.robots_host "
                    f"AND NOT hosts.queued RETURNING hosts.server) {QUEUE_SERVERS}"
                )
                row = await conn.fetchrow(
                    "SELECT (SELECT max(id) FROM runs), (SELECT recrawling FROM crawl WHERE id = 1)"
                )
            store.run_id, store.revisit = row[0], bool(row[1])
        except BaseException as exc:
            pool.terminate()
            if isinstance(exc, OSError | TimeoutError | apg.PostgresError | apg.InterfaceError):
                raise connect_error(name, exc) from None
            raise
        return store

    def _quiet_after_failure(self) -> None:
        """Once the store has failed (a lost lease, a cut network), the driver's own
        background tasks fail too as their connections die (a pool `release` no one
        awaits): the failure is already told in one line, so these are not printed.

        A store closed without failing gives the loop its handler back (a program that
        opens store after store in one loop would otherwise pile them up); a failed one
        keeps it, as its driver's tasks may fail after the close."""
        loop = asyncio.get_running_loop()
        previous = loop.get_exception_handler()

        def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            exc = context.get("exception")
            if self.failure is not None and exc is not None and is_store_failure(exc):
                log.debug("after the store failed: %s", context.get("message"))
            elif previous is not None:
                previous(loop, context)
            else:
                loop.default_exception_handler(context)

        loop.set_exception_handler(handler)

        def restore() -> None:
            if loop.get_exception_handler() is handler:
                loop.set_exception_handler(previous)

        self._restore_handler = restore

    async def close(self) -> None:
        """Give back leases, claims and budget units, then disconnect."""
        try:
            if self.failure is None:
                await self._unregister()
        except Exception as exc:  # a dead server: the leases expire by themselves
            if not is_store_failure(exc):
                raise
        finally:
            if self.failure is None:
                try:
                    await self.pool.close()
                except Exception:
                    self.pool.terminate()
                self._restore_handler()
            else:
                self.pool.terminate()

    def lock(self) -> contextlib.AbstractContextManager[None]:
        """Nothing to hold: many workers share this crawl (see the module docstring)."""
        return contextlib.nullcontext()

    # ------------------------------------------------------------------ crawl metadata

    async def load_crawl(self) -> CrawlRecord | None:
        async with self._writing(), self.pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT settings, seeds, started_at, finished_at FROM crawl WHERE id = 1"
            )
        if row is None:
            return None
        return CrawlRecord(Settings.from_json(row[0]), tuple(json.loads(row[1])), row[2], row[3])

    async def save_crawl(self, settings: Settings, seeds: Sequence[str]) -> None:
        """Record (or replace) the settings and seeds; marks the crawl unfinished again."""
        now = time.time()
        async with self._writing(), self.pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO crawl (id, settings, seeds, started_at) VALUES (1, $1, $2, $3) "
                "ON CONFLICT (id) DO UPDATE SET settings = excluded.settings, "
                "seeds = excluded.seeds, resumed_at = $3, finished_at = NULL",
                settings.to_json(),
                json.dumps(list(seeds)),
                now,
            )

    async def start_run(self, kind: str) -> int:
        """Record the start of a `crawl`, `resume` or `work` run; a resume sets resumed_at."""
        now = time.time()
        async with self._writing(), self.pool.acquire() as conn, conn.transaction():
            run_id = await conn.fetchval(
                "INSERT INTO runs (kind, started_at) VALUES ($1, $2) RETURNING id", kind, now
            )
            if kind == "resume":
                await conn.execute("UPDATE crawl SET resumed_at = $1 WHERE id = 1", now)
        self.run_id = int(run_id)
        return int(run_id)

    async def end_run(self, run_id: int, pages: int, interrupted: bool) -> float:
        async with self._writing(), self.pool.acquire() as conn:
            took = await conn.fetchval(
                "UPDATE runs SET ended_at = $1, pages = $2, interrupted = $3 WHERE id = $4 "
                "RETURNING ended_at - started_at",
                time.time(),
                pages,
                int(interrupted),
                run_id,
            )
        return float(took) if took is not None else 0.0

    @contextlib.asynccontextmanager
    async def deferred_indexes(self) -> AsyncIterator[None]:
        """Nothing deferred: workers come and go, so no run may drop an index the others
        write (PostgreSQL maintains links_dst at a fraction of SQLite's cost)."""
        yield

    async def mark_finished(self) -> None:
        async with self._writing(), self.pool.acquire() as conn:
            await conn.execute(
                "UPDATE crawl SET finished_at = $1, recrawling = CASE WHEN recrawling = 1 AND "
                "EXISTS (SELECT 1 FROM urls AS u JOIN page_rows AS p ON p.url = u.url "
                "WHERE u.state = 'queued') THEN 1 ELSE 0 END WHERE id = 1",
                time.time(),
            )

    async def reindex_text(self, text_of: TextOf, *, batch: int = 100) -> int:
        async with self._writing():
            return await postgres_text.reindex(self.pool, text_of, batch)

    # ------------------------------------------------------------------ frontier

    async def seen_urls(self) -> AsyncIterator[str]:
        """Nothing: the database deduplicates (`INSERT ... ON CONFLICT DO NOTHING`)."""
        return
        yield  # an async generator that yields nothing

    async def queued_hosts(self) -> list[str]:
        """Hosts that may have queued URLs (leased or not)."""
        async with self._writing(), self.pool.acquire() as conn:
            rows = await conn.fetch("SELECT host FROM hosts WHERE queued ORDER BY host")
        return [r[0] for r in rows]

    async def claim(
        self, host: str, limit: int, skip: Callable[[str], bool], *, batch: int = 2000
    ) -> tuple[list[QueuedURL], bool]:
        """Up to `limit` queued URLs of `host` that no one has claimed, now claimed by this
        worker (`skip`ped ones, in RAM already, are claimed and not returned); and whether
        the host had no more.

        Rows are claimed exactly as many as are wanted, so none is marked without being
        handed out; `FOR UPDATE SKIP LOCKED` lets two claimers pass each other. The
        `urls_queued` partial index makes it a short range read at any queue length.
        """
        out: list[QueuedURL] = []
        async with self._writing(), self.pool.acquire() as conn:
            if host in self._released:
                self._released.discard(host)
                await conn.execute(
                    "UPDATE urls SET claimed_by = NULL WHERE host = $1 AND state = 'queued' "
                    "AND claimed_by = $2",
                    host,
                    self.worker,
                )
            while len(out) < limit:
                want = min(batch, limit - len(out))
                rows = await conn.fetch(
                    CLAIM_REVISITS if self.revisit else CLAIM, self.worker, host, want
                )
                for row in sorted(rows, key=lambda r: r[0]):
                    if not skip(row[1]):
                        out.append(_queued(row))
                if len(rows) < want:
                    return out, True
        return out, False

    def release(self, host: str) -> None:
        """This worker's claims of `host` may be handed out again (by its next claim)."""
        self._released.add(host)

    async def page_count(self) -> int:
        """Pages stored; in a recrawl, not those queued to be fetched again."""
        not_queued = _NOT_REVISITED if self.revisit else ""
        async with self._writing(), self.pool.acquire() as conn:
            return int(await conn.fetchval(f"SELECT count(*) FROM page_rows AS p {not_queued}"))

    async def host_page_counts(self) -> dict[str, int]:
        not_queued = _NOT_REVISITED if self.revisit else ""
        async with self._writing(), self.pool.acquire() as conn:
            rows = await conn.fetch(
                f"SELECT host, count(*) FROM page_rows AS p {not_queued} GROUP BY host"
            )
        return {r[0]: int(r[1]) for r in rows}

    # ------------------------------------------------------------------ recrawl

    async def select_recrawl(
        self, where: str | None, older_than: float | None, due: float | None
    ) -> int:
        """Queue again the stored pages that match, in one transaction (see Store): their
        hosts are flagged as having work, and the page budget counts them as not stored
        until their fetch is (max_pages counts pages stored)."""
        apg = driver()
        sql, params = recrawl_selection(where, older_than, due, time.time(), lambda i: f"${i}")
        bad: str | None = None
        async with self._writing(), self.pool.acquire() as conn:
            try:
                await conn.fetchval(f"SELECT count(*) FROM ({sql}) AS s", *params)
            except apg.PostgresError as exc:
                if (getattr(exc, "sqlstate", None) or "")[:2] not in _CONDITION_CLASSES:
                    raise
                bad = one_line(exc)
        if bad is not None:  # outside `_writing`: the condition's fault, not the store's
            raise UsageError(f"invalid --where condition: {bad}")
        async with self._writing(), self.pool.acquire() as conn, conn.transaction():
            hosts = await conn.fetch(
                "WITH q AS (UPDATE urls SET state = 'queued', reason = NULL, claimed_by = NULL "
                f"WHERE url IN ({sql}) RETURNING host) SELECT host, count(*) FROM q GROUP BY host "
                "ORDER BY host",
                *params,
            )
            count = sum(int(r[1]) for r in hosts)
            await conn.execute(
                "WITH flipped AS (INSERT INTO hosts (host) SELECT unnest($1::text[]) ORDER BY 1 "
                f"ON CONFLICT (host) DO UPDATE SET queued = true RETURNING server) {QUEUE_SERVERS}",
                [r[0] for r in hosts],
            )
            await conn.execute(
                "UPDATE page_budget SET stored = greatest(stored - $1, 0) WHERE id = 1", count
            )
            await conn.execute("UPDATE crawl SET recrawling = 1, finished_at = NULL WHERE id = 1")
            # A changed page's old links go by their page: found by an index.
            await conn.execute("CREATE INDEX IF NOT EXISTS links_src ON links (src_url)")
        self.revisit = True
        return count

    # ------------------------------------------------------------------ other workers

    async def watch(self) -> None:
        """Nothing to start: `new_work` asks the database each time."""

    async def new_work(self) -> list[str]:
        """Origins of the servers this worker leases that have unclaimed queued URLs
        (another worker found them, maybe of an origin new to the server): a poll, one
        index probe per origin. LISTEN/NOTIFY would save the probes but not the round
        trip, and a notification lost with a connection would need the poll anyway."""
        servers = sorted(self.leased)
        if not servers:
            return []
        async with self._writing(), self.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT h.host FROM hosts AS h WHERE h.server = ANY($1::text[]) AND EXISTS "
                "(SELECT 1 FROM urls WHERE host = h.host AND state = 'queued' "
                "AND claimed_by IS NULL) ORDER BY h.host",
                servers,
            )
        return [r[0] for r in rows]

    async def any_queued(self) -> bool:
        """Whether any URL is queued anywhere (claimed or not): a URL stays queued until
        its fetch commits."""
        async with self._writing(), self.pool.acquire() as conn:
            return bool(
                await conn.fetchval(
                    "SELECT EXISTS (SELECT 1 FROM urls WHERE state = 'queued' "
                    "AND claimed_by IS NULL) OR EXISTS (SELECT 1 FROM urls "
                    "WHERE state = 'queued' AND claimed_by IS NOT NULL) "
                    "OR EXISTS (SELECT 1 FROM sitemaps WHERE state = 'queued')"
                )
            )


# SQLSTATE classes a bad condition raises: 42 syntax or an unknown column, function or
# type; 22 data (a bad cast); 21 cardinality (a subquery of several rows); 0A unsupported.
_CONDITION_CLASSES = ("42", "22", "21", "0A")


def _queued(row: Any) -> QueuedURL:
    stored = None
    if len(row) > 6 and row[6] is not None:
        stored = stored_page(row[7], row[8], row[9], row[10])
    return QueuedURL(row[0], row[1], row[2], row[3], row[4], row[5], stored)


_NOT_REVISITED = (
    "WHERE NOT EXISTS (SELECT 1 FROM urls AS u WHERE u.url = p.url AND u.state = 'queued')"
)
# Claimed rows must be exactly those returned: the inner LIMIT is the number wanted.
CLAIM = (
    "UPDATE urls SET claimed_by = $1 WHERE id IN (SELECT id FROM urls WHERE host = $2 "
    "AND state = 'queued' AND claimed_by IS NULL ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED) "
    "RETURNING id, url, host, depth, hops, origin"
)
# In a recrawl, each claimed URL with its stored page (one probe of page_rows' url index).
CLAIM_REVISITS = (
    f"WITH c AS ({CLAIM}) SELECT c.id, c.url, c.host, c.depth, c.hops, c.origin, p.id, "
    "p.status, p.content_hash, p.headers, p.revisit_interval FROM c "
    "LEFT JOIN page_rows AS p ON p.url = c.url"
)
