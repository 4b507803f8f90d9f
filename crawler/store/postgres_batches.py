"""Batched writes of the PostgreSQL store: outcomes in, one transaction per batch out.

The same contract as `sqlite_batches`: outcomes commit in batches, in order, each batch in
one transaction; a URL stays queued until the commit that carries its fetch; a value the
server refuses (a NUL in text, a number out of range, a NOT NULL) costs its outcome an
`internal:` error row and the rest commits; a failure of the store itself (connection
lost, disk full, the server shutting down, this worker's lease lost) raises
`StoreFailure`, on that flush and every later one.

Each table gets one statement per batch, arrays (built by `postgres_rows`) `unnest`ed
server-side (links by binary COPY): a flush costs a handful of round trips whatever its
size. New URLs go in with `ON CONFLICT (url) DO NOTHING RETURNING url`: the database
deduplicates across workers, and `on_commit(batch, inserted)` tells the frontier which
URLs were really new. Rows many workers share (new URLs, hosts, skipped counts) are
written in a fixed order (sorted), so two workers' batches wait for each other instead
of deadlocking; a deadlock or serialization failure nonetheless retries the batch.

No transaction of a worker waits long for a row another worker's transaction holds (one
cut off mid-commit holds its rows until the server ends its session, a lease later): past
`lock_wait` it rolls back and tries again (`Retries`). The worker's own `workers` row is
the last a commit locks, after every shared row, so a commit waiting for another
worker's rows holds up none of its own worker's lease renewals (which lock that row).
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import TYPE_CHECKING

from crawler.errors import LeaseLost, StoreFailure
from crawler.records import Outcome
from crawler.store import postgres_revisits as revisits
from crawler.store.buffer import OutcomeBuffer
from crawler.store.postgres_rows import Rows, batch_rows
from crawler.store.postgres_schema import driver
from crawler.store.sqlite_batches import _error_row, _one_line, error_outcome
from crawler.urls import host_key, server_key

if TYPE_CHECKING:
    import asyncpg

log = logging.getLogger(__name__)

RETRIES = 5  # a batch that deadlocked with another worker's is written again
# Continues the WITH of a statement `flipped` that set `hosts.queued` (RETURNING server),
# as `WITH flipped AS (...) {QUEUE_SERVERS}`: their servers
# have work too (the lease is per server). Sorted: commits lock servers in one order,
# after the origins, as a release does. The rows are locked FOR KEY SHARE and only those
# not flagged yet are updated: a lease renewal (it updates other columns) does not wait
# for that lock, so a worker stuck here (cut off mid-commit) holds up no other worker's
# renewal, while a release (FOR UPDATE) still waits and then sees this commit's URLs.
# (An upsert of every server locked each row it met, flagged or not: a stuck one made
# the server's holder lapse.) New servers are inserted.
QUEUE_SERVERS = (
    ", locked AS (SELECT s.server, s.queued FROM servers AS s "
    "WHERE s.server IN (SELECT server FROM flipped) ORDER BY s.server FOR KEY SHARE), "
    "flagged AS (UPDATE servers SET queued = true FROM locked "
    "WHERE servers.server = locked.server AND NOT locked.queued) "
    "INSERT INTO servers (server) SELECT DISTINCT f.server FROM flipped AS f "
    "WHERE f.server NOT IN (SELECT server FROM locked) ORDER BY 1 "
    "ON CONFLICT (server) DO UPDATE SET queued = true WHERE NOT servers.queued"
)


class Retries:
    """When a transaction of a worker is tried again: the server rolled it back (a
    deadlock, a serialization failure: nobody's fault, `RETRIES` times at most), or it
    gave up waiting for rows another worker's transaction holds (`lock_wait`: until this
    worker's store fails, its leases lapsed, or `limit` seconds passed since the first
    try, the bound a statement had before, `command_timeout`)."""

    def __init__(self, store: PostgresWriter) -> None:
        self.store = store
        self.since = time.monotonic()
        self.limit = max(60.0, 2 * store.lease_seconds)
        self.rollbacks = 0
        self.told = False

    def rolled_back(self, exc: BaseException) -> None:
        """Return to try again; raise `exc` after `RETRIES` rollbacks."""
        self.rollbacks += 1
        if self.rollbacks == RETRIES:
            raise exc
        log.info("rolled back by the server (%s); trying again", self.rollbacks)

    def waited(self, exc: BaseException) -> None:
        """Return to try again; raise the store's failure, or `exc` past the limit."""
        if self.store.failure is not None:
            raise self.store.failure from exc
        waited = time.monotonic() - self.since
        if waited > self.limit:
            raise exc
        log.info("rows held by another worker's transaction (%s); trying again", _one_line(exc))
        if waited > self.store.lease_seconds and not self.told:
            self.told = True  # a stall the user sees, once per transaction
            log.warning(
                "waiting %.0f s so far for rows another worker's transaction holds in %s "
                "(a worker cut off mid-commit holds them until the server ends its session)",
                waited,
                self.store.name,
            )


class PostgresWriter(OutcomeBuffer):
    """The write side of a PostgreSQL store: a connection pool, one batch at a time."""

    def __init__(
        self, pool: asyncpg.Pool, name: str, *, lease_seconds: float = 30.0, batch_size: int = 500
    ) -> None:
        super().__init__(batch_size)
        self.pool = pool
        self.name = name
        self.lease_seconds = lease_seconds
        self.worker = uuid.uuid4()  # this store's id in `workers`, `hosts`, `urls.claimed_by`
        self.run_id: int | None = None  # the run whose fetches are written (`fetches.run_id`)
        self._committing: list[Outcome] = []  # the batch being written
        self._units = 0  # page-budget units this worker holds (its `workers.taken`)
        # New-URL rows sent to the database's dedup, and those it found new: what the
        # seen-cache in front (`seen.RecentSeen`) saves shows in the first.
        self.dedup_sent = 0
        self.dedup_new = 0

    async def _flush(self) -> int:
        async with self._lock:
            if self.failure is not None:
                raise self.failure
            batch = self._take()
            if not batch:
                return 0
            self._committing = batch
            try:
                inserted = await self._commit_retrying(batch)
            except BaseException as exc:
                self._buffer[:0] = batch
                if isinstance(exc, Exception) and is_store_failure(exc):
                    self.failure = self._failure(exc)
                    raise self.failure from exc
                raise
            finally:
                self._committing = []
        if self.on_commit is not None:
            self.on_commit(batch, inserted)
        return len(batch)

    def servers_pending(self) -> set[str]:
        """Servers with an outcome not committed yet (in the buffer, or in the batch being
        written): not to be given back yet, or their next holder would find the URLs
        still queued and fetch them again."""
        pending = (*self._buffer, *self._committing)
        return {server_key(host_key(o.url)) for o in pending if o.url}

    async def _commit_retrying(self, batch: list[Outcome]) -> list[str]:
        apg = driver()
        retries = Retries(self)
        while True:
            try:
                try:
                    return await self._commit(batch)
                except Exception as exc:
                    if is_store_failure(exc) or isinstance(exc, apg.TransactionRollbackError):
                        raise
                    log.warning(
                        "a batch of %d outcomes was refused (%s); writing them one by one",
                        len(batch),
                        _one_line(exc),
                    )
                    return await self._commit_each(batch)
            except apg.TransactionRollbackError as exc:
                retries.rolled_back(exc)
            except apg.LockNotAvailableError as exc:  # waited `lock_wait` for rows
                retries.waited(exc)

    async def _commit(self, batch: list[Outcome]) -> list[str]:
        rows = batch_rows(batch, self.run_id)
        async with self.pool.acquire() as conn, conn.transaction():
            used = await self._begin(conn, rows.pages_sent)
            inserted, pages = await _write(conn, rows)
            await self._finish(conn, inserted, pages, used)
        self._units -= used  # only once committed: a rollback leaves the units ours
        self.dedup_sent += len(rows.new_urls)
        self.dedup_new += len(inserted)
        return [url for url, _ in inserted]

    async def _commit_each(self, batch: list[Outcome]) -> list[str]:
        """The batch in one transaction, each outcome in a savepoint; an outcome still
        refused is stored as an error row for its URL, without its links."""
        apg = driver()
        inserted: list[tuple[str, str]] = []
        pages_in = 0
        async with self.pool.acquire() as conn, conn.transaction():
            used = await self._begin(conn, sum(o.page is not None for o in batch))
            for outcome in batch:
                rows = batch_rows([outcome], self.run_id)
                try:
                    async with conn.transaction():
                        new, n = await _write(conn, rows)
                except Exception as exc:
                    if is_store_failure(exc) or isinstance(exc, apg.TransactionRollbackError):
                        raise
                    error = exc
                else:
                    inserted += new
                    pages_in += n
                    continue
                log.debug("outcome for %r refused", outcome.url, exc_info=error)
                row = _error_row(outcome, error)
                if row is None:
                    log.error("dropped an outcome the store refused: %s", _one_line(error))
                    continue
                log.warning("%s: stored as an error row: %s", row.url, row.error)
                try:
                    async with conn.transaction():
                        _, n = await _write(
                            conn,
                            batch_rows([error_outcome(outcome, row)], self.run_id),
                        )
                        pages_in += n
                except Exception as exc:
                    if is_store_failure(exc) or isinstance(exc, apg.TransactionRollbackError):
                        raise
                    log.error("dropped an outcome the store refused: %s", _one_line(exc))
            await self._finish(conn, inserted, pages_in, used)
        self._units -= used
        return [url for url, _ in inserted]

    async def _begin(self, conn: asyncpg.Connection, pages_sent: int) -> int:
        """The budget units the batch's pages spend (taken off in `_finish`); every wait
        for a row lock bounded."""
        await self.bound_lock_waits(conn)
        return min(pages_sent, self._units)

    @property
    def lock_wait(self) -> float:
        """Seconds a statement of this worker waits for a row lock: a quarter of the lease,
        so a renewal that meets a lock (a release of its own worker's holding a server's
        row) tries again well within the lease."""
        return self.lease_seconds / 4

    async def bound_lock_waits(self, conn: asyncpg.Connection) -> None:
        """For the rest of this transaction: a row lock is waited for `lock_wait` at most."""
        await conn.execute(f"SET LOCAL lock_timeout = {max(1, round(self.lock_wait * 1000))}")

    async def _finish(
        self, conn: asyncpg.Connection, inserted: list[tuple[str, str]], pages: int, used: int
    ) -> None:
        """The rows every worker shares, last and in a fixed order: hosts that have work,
        the crawl's page count; then this worker's own row: its lease extended, the units
        its pages spent taken off. Locked last (as the budget's operations do), that row
        is never held while the commit waits for another worker's rows: the worker's
        lease renewals, which lock it, never wait behind such a commit. (It was locked
        first once; a commit held up by a peer cut off mid-commit then held up the
        renewals too, and at a short lease the worker lapsed.) A worker reaped meanwhile
        finds its row gone and its commit rolled back: LeaseLost."""
        hosts = sorted({host for _, host in inserted})
        if hosts:
            # The flag is set with the URLs it stands for: a lease holder that clears it
            # (finding none queued) either sees these URLs or is seen by this statement.
            await conn.execute(
                "WITH flipped AS (INSERT INTO hosts (host) SELECT unnest($1::text[]) ORDER BY 1 "
                "ON CONFLICT (host) DO UPDATE SET queued = true WHERE NOT hosts.queued "
                f"RETURNING server) {QUEUE_SERVERS}",
                hosts,
            )
        if pages or used:
            await conn.execute(
                "UPDATE page_budget SET stored = stored + $1, in_flight = in_flight - $2 "
                "WHERE id = 1",
                pages,
                used,
            )
        await self._own_row(conn, -used)

    async def _own_row(self, conn: asyncpg.Connection, taken: int = 0) -> None:
        """This worker's row, the last a transaction of it locks (but a renewal's first):
        its lease extended, `taken` budget units added to those it holds. LeaseLost when
        the row is gone (the worker was reaped: its servers are others' now)."""
        alive = await conn.fetchval(
            "UPDATE workers SET taken = taken + $2, "
            "lease_until = greatest(lease_until, extract(epoch FROM clock_timestamp()) + $3) "
            "WHERE id = $1 RETURNING true",
            self.worker,
            taken,
            self.lease_seconds,
        )
        if not alive:
            raise LeaseLost(
                f"store failed: this worker was cut off from {self.name} longer than its lease "
                "and its hosts went to other workers; what it committed is intact"
            )

    @staticmethod
    def is_store_failure(exc: BaseException) -> bool:
        return is_store_failure(exc)


# ---------------------------------------------------------------------- statements

_PAGE_TYPES = (
    "text", "text", "int", "int", "text", "text", "int", "float8", "text", "text", "float8",
    "int8", "int", "int", "int", "text", "int", "text", "text", "text", "int",
)  # fmt: skip
_B = len(_PAGE_TYPES) + 1  # the bodies' first parameter
_INSERT_PAGES = (
    "WITH p AS (INSERT INTO page_rows (url, final_url, status, final_status, error, "
    "content_type, depth, fetched_at, host, headers, elapsed, size, truncated, links_found, "
    "links_truncated, redirect_to, attempts, content_hash, title, canonical_url, noindex) "
    f"SELECT * FROM unnest({', '.join(f'${i + 1}::{t}[]' for i, t in enumerate(_PAGE_TYPES))}) "
    "ON CONFLICT (url) DO NOTHING "
    "RETURNING id, url, fetched_at, status, error, content_hash), "
    "b AS (INSERT INTO bodies (page_id, body, body_codec) SELECT p.id, b.body, b.codec FROM p "
    f"JOIN unnest(${_B}::text[], ${_B + 1}::bytea[], ${_B + 2}::text[]) AS b (url, body, codec) "
    "USING (url)), "
    # Each new page's first fetch, in the same statement (no round trip of its own).
    "f AS (INSERT INTO fetches (url, run_id, fetched_at, status, error, content_hash, change) "
    f"SELECT url, ${_B + 3}::int8, fetched_at, status, error, content_hash, 'new' FROM p), "
    "t AS (INSERT INTO page_text (page_id, title, text, truncated) "
    "SELECT p.id, t.title, t.text, t.truncated FROM p "
    f"JOIN unnest(${_B + 4}::text[], ${_B + 5}::text[], ${_B + 6}::text[], ${_B + 7}::int[]) "
    "AS t (url, title, text, truncated) USING (url)) "
    "SELECT count(*) FROM p"
)
# Both lookups are index searches: pages by url, the chain's other hops by urls_origin.
END_CHAIN = (
    "UPDATE page_rows SET final_url = $1, "
    "final_status = coalesce($2, (SELECT f.final_status FROM page_rows AS f WHERE f.url = $1)), "
    "error = coalesce(error, $3) "
    "WHERE url IN (SELECT $4 UNION ALL SELECT url FROM urls WHERE origin = $4)"
)


async def _write(conn: asyncpg.Connection, rows: Rows) -> tuple[list[tuple[str, str]], int]:
    """A batch's rows; (url, host) of the URLs really inserted, and pages inserted."""
    # Order matters: a URL discovered and fetched within one batch must exist before its
    # state is set to done; a page before its body; pages before a chain's end.
    inserted: list[tuple[str, str]] = []
    if rows.new_urls:
        new = sorted(rows.new_urls.values())  # the same order in every worker: no deadlock
        found = await conn.fetch(
            "INSERT INTO urls (url, host, depth, hops, origin, discovered_at) "
            "SELECT u.*, $6::float8 "
            "FROM unnest($1::text[], $2::text[], $3::int[], $4::int[], $5::text[]) "
            "AS u (url, host, depth, hops, origin) "
            "ON CONFLICT (url) DO NOTHING RETURNING url, host",
            *zip(*new, strict=True),
            time.time(),
        )
        inserted = [(r[0], r[1]) for r in found]
    pages = 0
    if rows.pages:
        columns = list(zip(*rows.pages.values(), strict=True))
        bodies = [list(c) for c in zip(*rows.bodies, strict=True)] or [[], [], []]
        texts = [list(c) for c in zip(*rows.texts, strict=True)] or [[], [], [], []]
        pages = await conn.fetchval(_INSERT_PAGES, *columns, *bodies, rows.run_id, *texts)
    if rows.data:
        # Apart from the INSERT, so that a crawl without hooks sends no extra column.
        urls, data = zip(*rows.data, strict=True)
        await conn.execute(
            "UPDATE page_rows SET data = d.data::jsonb "
            "FROM unnest($1::text[], $2::text[]) AS d (url, data) WHERE page_rows.url = d.url",
            urls,
            data,
        )
    pages += await revisits.write(conn, rows.revisits, rows.run_id)
    if rows.links:
        await conn.copy_records_to_table(
            "links", records=rows.links, columns=("src_url", "dst_url", "nofollow", "kind")
        )
    if rows.states:
        urls, states = zip(*sorted(rows.states.items()), strict=True)
        await conn.execute(
            "UPDATE urls SET state = s.state, reason = s.reason "
            "FROM unnest($1::text[], $2::text[], $3::text[]) AS s (url, state, reason) "
            "WHERE urls.url = s.url",
            urls,
            [s for s, _ in states],
            [r for _, r in states],
        )
    if rows.chains:
        await conn.executemany(END_CHAIN, rows.chains)
    if rows.skipped:
        reasons_, counts = zip(*sorted(rows.skipped.items()), strict=True)
        await conn.execute(
            "INSERT INTO skipped (reason, count) "
            "SELECT * FROM unnest($1::text[], $2::int8[]) ORDER BY 1 "
            "ON CONFLICT (reason) DO UPDATE SET count = skipped.count + excluded.count",
            reasons_,
            counts,
        )
    if rows.sitemaps:
        # Every row is added when found; a done one is then marked with its fetch.
        await conn.executemany(
            "INSERT INTO sitemaps (url, host, robots_host, source, level, discovered_at) "
            "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (url) DO NOTHING",
            sorted(rows.sitemaps),
        )
        # A host with a sitemap to read is work: some worker must lease it (its URLs may
        # all be done), and releasing it keeps it queued until the sitemap is read.
        await conn.execute(
            "WITH flipped AS (UPDATE hosts SET queued = true WHERE host = ANY($1::text[]) "
            f"AND NOT queued RETURNING server) {QUEUE_SERVERS}",
            sorted({r[2] for r in rows.sitemaps}),
        )
    if rows.sitemaps_done:
        await conn.executemany(
            "UPDATE sitemaps SET state = 'done', kind = $1, status = $2, error = $3, "
            "urls = $4, fetched_at = $5 WHERE url = $6",
            rows.sitemaps_done,
        )
    if rows.sitemap_urls:
        await conn.execute(
            "INSERT INTO sitemap_urls (url, sitemap, lastmod, changefreq, priority) "
            "SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], "
            "$5::float8[]) ORDER BY 1, 2 ON CONFLICT (url, sitemap) DO NOTHING",
            *zip(*rows.sitemap_urls, strict=True),
        )
    return inserted, int(pages)


# ---------------------------------------------------------------------- errors

# SQLSTATE classes that are a value's fault: 22 data exception (a NUL in text, a number
# out of range, bad encoding), 23 integrity (NOT NULL...), 54 program limit (a URL too
# long for an index row).
_DATA_CLASSES = ("22", "23", "54")


def is_store_failure(exc: BaseException) -> bool:
    """Connection lost, server shutting down, disk full, lease lost: not a row's fault."""
    apg = driver()
    if isinstance(exc, StoreFailure | OSError | TimeoutError):
        return True
    if isinstance(exc, apg.PostgresError):
        state = getattr(exc, "sqlstate", None) or ""
        return state[:2] not in _DATA_CLASSES
    if isinstance(exc, apg.InterfaceError):
        # A closed or broken connection; but an argument asyncpg cannot encode is data.
        return not isinstance(exc, apg.exceptions.DataError)
    # Encoding a value (a lone surrogate, an int past 64 bits, a list for text) fails in
    # the driver, before anything is sent.
    return not isinstance(exc, ValueError | TypeError | OverflowError | UnicodeError)
