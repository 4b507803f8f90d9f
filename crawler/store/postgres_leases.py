"""What many workers on many machines share in PostgreSQL: server leases, live workers,
claims and the page budget.

A worker (one `PostgresStore`, a uuid) holds a row in `workers` that it renews with its
leases. It crawls only the servers it leases (`lease_hosts`: `FOR UPDATE SKIP LOCKED` on
`servers`, a batch at a time), every origin of each (`hosts.server`: http and https of one
name are one server, as politeness counts them), renews them while it works (`renew`) and
gives them back with the time the server may be fetched again (`release_servers`), so
`per_host`, `delay`, Crawl-delay and Retry-After hold across machines. Times are the
database's clock (`clock_timestamp()`), never a worker's: machines' clocks may disagree.

A worker that dies keeps its leases until they expire (`lease_seconds`); then its row is
reaped: its claimed URLs go back to the queue and its page-budget units to the budget.
A worker cut off for longer than its lease finds its row gone and fails with `LeaseLost`
(exit 1) instead of writing: its servers are someone else's by then.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, TypeVar

from crawler.store.postgres_batches import PostgresWriter, Retries
from crawler.store.postgres_schema import driver

if TYPE_CHECKING:
    import asyncpg

T = TypeVar("T")

_NOW = "extract(epoch FROM clock_timestamp())"
# A host of the queue: its queued URLs, claimed or not (one partial index each).
_HAS_QUEUED = (
    "(EXISTS (SELECT 1 FROM urls AS u WHERE u.host = {h} AND u.state = 'queued' "
    "AND u.claimed_by IS NULL) OR EXISTS (SELECT 1 FROM urls AS u WHERE u.host = {h} "
    "AND u.state = 'queued' AND u.claimed_by IS NOT NULL) OR EXISTS (SELECT 1 FROM sitemaps "
    "AS s WHERE s.robots_host = {h} AND s.state = 'queued'))"
)
# Free servers that may be fetched now, in the order they may: a range of the partial index
# `servers_free`, whatever the number of servers done. Each leased server comes with its
# origins that have work (none: NULL) and, taken from a lapsed lease, the seconds since.
LEASE = (
    f"WITH now AS MATERIALIZED (SELECT {_NOW} AS t), "
    "free AS (SELECT s.server, s.lease_owner AS lapsed, s.lease_until AS lapsed_at "
    "FROM servers AS s, now WHERE s.queued AND s.next_start <= now.t "
    "AND (s.lease_owner IS NULL OR s.lease_until < now.t) "
    "ORDER BY s.next_start LIMIT $2 FOR UPDATE OF s SKIP LOCKED), "
    "leased AS (UPDATE servers SET lease_owner = $1, lease_until = (SELECT t FROM now) + $3 "
    "FROM free WHERE servers.server = free.server RETURNING servers.server, "
    "CASE WHEN free.lapsed IS NOT NULL THEN (SELECT t FROM now) - free.lapsed_at END AS since) "
    "SELECT l.server, h.host, l.since FROM leased AS l "
    "LEFT JOIN hosts AS h ON h.server = l.server AND h.queued"
)


class Leases(PostgresWriter):
    """Host leases, worker liveness and the shared page budget (mixed into the store)."""

    leased: set[str]  # servers (`server_key`) this worker holds, as far as it knows

    async def _transaction(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """`work` in one transaction, again when the server rolled it back (a deadlock with
        another worker's: the shared rows are locked in one order, `page_budget` and then
        the worker's own `workers` row last, but a claim and a commit of one host may
        still cross) or it gave up waiting for rows another transaction holds (`Retries`).
        Only a renewal locks the worker's row first: no other transaction holds it while
        waiting for someone else's rows, so renewals never wait behind their own worker."""
        apg = driver()
        retries = Retries(self)
        async with self._writing():  # what is not tried again is the store's failure
            while True:
                try:
                    async with self.pool.acquire() as conn, conn.transaction():
                        await self.bound_lock_waits(conn)
                        return await work(conn)
                except apg.TransactionRollbackError as exc:
                    retries.rolled_back(exc)
                except apg.LockNotAvailableError as exc:  # another worker holds rows it needs
                    retries.waited(exc)

    _lease: list[float]  # the lease new connections are set up for (`open`)

    async def use_lease(self, seconds: float) -> None:
        """The crawl's `--lease`, known once its settings are read: for this worker's row
        and leases, and for the server's idle-in-transaction timeout of its sessions."""
        self.lease_seconds = seconds
        if getattr(self, "_lease", None) is not None and self._lease[0] != seconds:
            self._lease[0] = seconds
            await self.pool.expire_connections()  # set up again, with the new timeout

        async def work(conn: asyncpg.Connection) -> None:
            await conn.execute(
                f"UPDATE workers SET lease_until = {_NOW} + $2 WHERE id = $1",
                self.worker,
                seconds,
            )

        await self._transaction(work)

    async def _register(self) -> None:
        """Join the crawl: reap dead workers, then add this one."""

        async def work(conn: asyncpg.Connection) -> None:
            await _reap(conn, self.worker)
            await conn.execute(
                f"INSERT INTO workers (id, started_at, lease_until) VALUES ($1, $2, {_NOW} + $3)",
                self.worker,
                time.time(),
                self.lease_seconds,
            )

        await self._transaction(work)

    async def _unregister(self) -> None:
        """Leave the crawl: leases, claims and budget units go back at once."""

        async def work(conn: asyncpg.Connection) -> None:
            await self._release(conn, dict.fromkeys(self.leased, 0.0))
            await conn.execute(
                "UPDATE urls SET claimed_by = NULL WHERE state = 'queued' AND claimed_by = $1",
                self.worker,
            )
            # The budget, then this worker's row, as every transaction but a renewal.
            await conn.execute(
                "UPDATE page_budget SET in_flight = in_flight - w.taken FROM workers AS w "
                "WHERE page_budget.id = 1 AND w.id = $1 AND w.taken <> 0",
                self.worker,
            )
            await conn.execute("DELETE FROM workers WHERE id = $1", self.worker)

        async with self._lock:  # no commit spends units meanwhile
            await self._transaction(work)
            self._units = 0

    # ------------------------------------------------------------------ leases

    async def lease_hosts(self, n: int) -> dict[str, float | None]:
        """Lease up to `n` servers with queued work that no live lease holds and that may
        be fetched now; their origins with queued work, whose stale claims (a dead
        worker's) go back to the queue.

        A lease is per server (`server_key`: http and https of one name are one), so no
        two workers fetch one server at once; an origin of it that gets work later is
        this worker's too (`new_work`). Each origin comes with the seconds since its
        server's last holder's lease lapsed (None: released). That holder fetched until
        the lapse, and `next_start` knows none of it (a release writes it): the next
        request waits the server's delay from the lapse. A span of the database's clock,
        so no worker's clock needs to agree with the database's."""

        async def work(conn: asyncpg.Connection) -> tuple[set[str], dict[str, float | None]]:
            await _reap(conn, self.worker)
            rows = await conn.fetch(LEASE, self.worker, n, self.lease_seconds)
            hosts = {r[1]: r[2] for r in sorted(rows, key=lambda r: str(r[1])) if r[1]}
            if hosts:
                await conn.execute(
                    "UPDATE urls SET claimed_by = NULL WHERE host = ANY($1::text[]) "
                    "AND state = 'queued' AND claimed_by IS NOT NULL",
                    list(hosts),
                )
            await self._own_row(conn)  # last: see `_transaction`
            return {r[0] for r in rows}, hosts

        servers, hosts = await self._transaction(work)
        self.leased.update(servers)
        return hosts

    async def renew(self, servers: Iterable[str] | None = None) -> list[str]:
        """Extend this worker's leases (all it holds by default); the servers it still
        holds. LeaseLost when the worker's own row expired and was reaped."""
        wanted = sorted(self.leased if servers is None else set(servers))

        async def work(conn: asyncpg.Connection) -> list[str]:
            await self._own_row(conn)
            rows = await conn.fetch(
                f"UPDATE servers SET lease_until = {_NOW} + $3 "
                "WHERE server = ANY($2::text[]) AND lease_owner = $1 RETURNING server",
                self.worker,
                wanted,
                self.lease_seconds,
            )
            return sorted(r[0] for r in rows)

        held = await self._transaction(work)
        self.leased.difference_update(set(wanted) - set(held))
        return held

    async def release_servers(self, waits: Mapping[str, float]) -> None:
        """Give servers back, each with the seconds until it may be fetched again (its
        politeness delay, Crawl-delay or Retry-After). Flush first: a URL in flight stays
        queued, and the next holder would fetch it again."""

        async def work(conn: asyncpg.Connection) -> None:
            await self._release(conn, waits)

        await self._transaction(work)

    async def release_server(self, server: str, wait: float = 0.0) -> None:
        await self.release_servers({server: wait})

    async def _release(self, conn: asyncpg.Connection, waits: Mapping[str, float]) -> None:
        servers = sorted(waits)
        self.leased.difference_update(servers)
        if not servers:
            return
        c = conn
        # Lock the rows first, origins then servers (the order a commit locks them in):
        # the next statement's snapshot then sees every URL a flush committed before, and
        # a flush after us sees `queued` false and sets it again.
        await c.execute(
            "SELECT 1 FROM hosts WHERE server = ANY($1::text[]) ORDER BY host FOR UPDATE",
            servers,
        )
        await c.execute(
            "SELECT 1 FROM servers WHERE server = ANY($1::text[]) AND lease_owner = $2 "
            "ORDER BY server FOR UPDATE",
            servers,
            self.worker,
        )
        await c.execute(
            "UPDATE urls SET claimed_by = NULL WHERE host IN (SELECT host FROM hosts "
            "WHERE server = ANY($1::text[])) AND state = 'queued' AND claimed_by = $2",
            servers,
            self.worker,
        )
        await c.execute(
            "WITH mine AS (SELECT server FROM servers WHERE server = ANY($1::text[]) "
            "AND lease_owner = $2), "
            f"origins AS (UPDATE hosts SET queued = {_HAS_QUEUED.format(h='hosts.host')} "
            "FROM mine WHERE hosts.server = mine.server RETURNING hosts.server, hosts.queued) "
            "UPDATE servers SET lease_owner = NULL, lease_until = 0, "
            f"next_start = greatest(next_start, {_NOW} + w.wait), "
            "queued = EXISTS (SELECT 1 FROM origins AS o WHERE o.server = servers.server "
            "AND o.queued) "
            "FROM unnest($1::text[], $3::float8[]) AS w (server, wait) "
            "WHERE servers.server = w.server AND servers.lease_owner = $2",
            servers,
            self.worker,
            [waits[s] for s in servers],
        )

    async def any_leased(self) -> bool:
        """Whether any worker holds a live lease (with `any_queued`: the crawl's end test)."""
        async with self._writing(), self.pool.acquire() as conn:
            return bool(
                await conn.fetchval(
                    "SELECT EXISTS (SELECT 1 FROM servers WHERE lease_owner IS NOT NULL "
                    f"AND lease_until >= {_NOW})"
                )
            )

    # ------------------------------------------------------------------ the page budget

    async def take_pages(self, limit: int, n: int = 1) -> int:
        """Reserve up to `n` pages of `limit` (stored + in flight, across every worker);
        how many were granted (0: the budget is spent)."""

        async def work(conn: asyncpg.Connection) -> int:
            granted = await conn.fetchval(
                "UPDATE page_budget SET "
                "granted = least($2, $1 - stored - in_flight), "
                "in_flight = in_flight + least($2, $1 - stored - in_flight) "
                "WHERE id = 1 AND stored + in_flight < $1 RETURNING granted",
                limit,
                n,
            )
            await self._own_row(conn, int(granted or 0))  # this worker's row last, as commits
            return int(granted or 0)

        granted = await self._transaction(work)
        self._units += granted
        return granted

    async def take_page(self, limit: int) -> bool:
        return await self.take_pages(limit, 1) == 1

    async def add_pages(self, n: int) -> None:
        """Count `n` pages as taken whatever the limit (a row stored without a fetch), or,
        negative, give units back (fetches that stored nothing)."""
        # Under the writer's lock: a commit spends units too, and both must not give back
        # the same one (the shared count would then pass the limit).
        async with self._lock:
            if n < 0:
                n = -min(-n, self._units)
            if not n:
                return

            async def work(conn: asyncpg.Connection) -> None:
                await conn.execute(
                    "UPDATE page_budget SET in_flight = in_flight + $1 WHERE id = 1", n
                )
                await self._own_row(conn, n)

            await self._transaction(work)
            self._units += n

    async def give_pages(self, n: int) -> None:
        await self.add_pages(-n)

    async def pages_left(self, limit: int) -> int:
        stored, in_flight = await self.page_budget()
        return limit - stored - in_flight

    async def page_budget(self) -> tuple[int, int]:
        """(pages stored, units held for fetches under way) across the crawl's workers,
        once dead workers' units came back (a worker waiting for units reaps them)."""

        async def work(conn: asyncpg.Connection) -> tuple[int, int]:
            await _reap(conn, self.worker)
            row = await conn.fetchrow("SELECT stored, in_flight FROM page_budget WHERE id = 1")
            return int(row[0]), int(row[1])

        return await self._transaction(work)


async def _reap(conn: asyncpg.Connection, mine: uuid.UUID) -> None:
    """Workers whose row expired are gone: their claims and budget units come back.
    Not the caller's own (`mine`): its row, expired or not, is extended later in the
    transaction, as it was when the row came first.

    Rows locked are skipped, reaped by a later call: a worker whose loop stalled in the
    middle of a transaction may hold its own row locked, and waiting for it here kept a
    live worker from renewing its leases until they lapsed too."""
    c = conn
    dead = await c.fetch(
        "DELETE FROM workers WHERE id IN (SELECT id FROM workers "
        f"WHERE lease_until < {_NOW} AND id <> $1 FOR UPDATE SKIP LOCKED) RETURNING id, taken",
        mine,
    )
    if not dead:
        return
    await c.execute(
        "UPDATE urls SET claimed_by = NULL WHERE state = 'queued' AND claimed_by = ANY($1::uuid[])",
        [r[0] for r in dead],
    )
    units = sum(r[1] for r in dead)
    if units:
        await c.execute("UPDATE page_budget SET in_flight = in_flight - $1 WHERE id = 1", units)
