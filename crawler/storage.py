"""SQLite storage for a running crawl: migrations, the persisted frontier, batched writes.

This is the one module that writes SQL (read-only reports live in `queries`). It is the
narrow interface a second backend (a shared PostgreSQL frontier) would implement: open,
crawl metadata, the seen-set and queued URLs for the frontier, and `add` + `flush` for
outcomes. One aiosqlite connection owns every write.

Crash safety: every fetch becomes one `Outcome` (its page row, its links, the URLs it
discovered and its frontier change); outcomes are committed in batches, in the order they
were added, each batch in one transaction. A `kill -9` loses at most the batch in flight:
those URLs are still `queued` in the file and are fetched again on resume, and the UNIQUE
constraint on `pages.url` makes a second row for one URL impossible.

Failures: a batch refused because of its data (a value SQLite cannot bind, a constraint)
is written again outcome by outcome, each in a savepoint, and an outcome still refused
becomes an `internal: ...` error row for its URL: no value can stall the writer. A
failure of the store itself (disk full, I/O error, a lock held past busy_timeout) raises
`StoreFailure`; every later flush raises it again and the file keeps what was committed.

`pages` is a view over `page_rows` (the hot row) and `bodies` (migrations/0002): this
module writes the two tables; everything else reads the view.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import ClassVar

import aiosqlite

from crawler.config import Settings
from crawler.errors import StorageError, StoreFailure

log = logging.getLogger(__name__)

_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True, slots=True)
class NewURL:
    """A URL to add to the frontier (ignored when already present)."""

    url: str
    host: str
    depth: int
    hops: int = 0
    origin: str | None = None


@dataclass(frozen=True, slots=True)
class QueuedURL:
    """A frontier row waiting to be fetched."""

    id: int
    url: str
    host: str
    depth: int
    hops: int
    origin: str | None


@dataclass(frozen=True, slots=True)
class PageRow:
    """One `pages` row; see migrations/0001_initial.sql for each column."""

    url: str
    final_url: str | None
    status: int | None
    error: str | None
    content_type: str | None
    depth: int
    fetched_at: float
    body: bytes | None
    host: str
    headers: str | None
    elapsed: float | None
    size: int | None
    truncated: bool
    links_found: int | None
    links_truncated: bool
    redirect_to: str | None
    attempts: int
    body_codec: str | None
    content_hash: str | None  # None: storage hashes the plain body itself
    title: str | None
    final_status: int | None = None  # None: `status` unless a 3xx (a chain's end sets it)

    @classmethod
    def failed(cls, url: str, host: str, depth: int, reason: str, *, attempts: int) -> PageRow:
        """An error row: the URL was given up on without a usable response."""
        return cls(
            url=url, final_url=None, status=None, error=reason, content_type=None, depth=depth,
            fetched_at=time.time(), body=None, host=host, headers=None, elapsed=None, size=None,
            truncated=False, links_found=None, links_truncated=False, redirect_to=None,
            attempts=attempts, body_codec=None, content_hash=None, title=None,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class ChainEnd:
    """A redirect chain ended: every row of the chain (its origin and each URL whose
    `urls.origin` is it) gets `final_url` and `final_status`, and `error` when they have
    none. A None `final_status` with a `final_url` is looked up: that page's own."""

    origin: str
    final_url: str | None
    final_status: int | None
    error: str | None


@dataclass(frozen=True, slots=True)
class Outcome:
    """Everything one fetch changes in the database, committed together."""

    url: str
    state: str | None  # the URL's new frontier state: done | disallowed | dropped (None: none)
    reason: str | None = None
    page: PageRow | None = None
    links: Sequence[tuple[str, str, int]] = ()  # (src_url, dst_url, nofollow)
    new_urls: Sequence[NewURL] = ()
    chain_end: ChainEnd | None = None
    skipped: Sequence[tuple[str, int]] = ()  # (crawler.reasons.Reason value, links) not followed


@dataclass(frozen=True, slots=True)
class CrawlRecord:
    settings: Settings
    seeds: tuple[str, ...]
    started_at: float
    finished_at: float | None


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) for every file in migrations/, in order."""
    found = []
    for entry in resources.files("crawler.migrations").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found)


SCHEMA_VERSION = max(v for v, _, _ in migrations())


class Storage:
    """A crawl database opened for a running crawl."""

    def __init__(self, db: aiosqlite.Connection, path: str, *, batch_size: int = 500) -> None:
        self.db = db
        self.path = path
        self.batch_size = batch_size
        self.on_commit: Callable[[list[Outcome]], None] | None = None
        self._buffer: list[Outcome] = []
        self.backlog_bytes = 0
        self._lock = asyncio.Lock()
        self._full = asyncio.Event()
        self.failure: StoreFailure | None = None  # set once the store could not write

    # ------------------------------------------------------------------ open / close

    @classmethod
    async def open(cls, path: str, *, create: bool) -> Storage:
        """Open (or create) a crawl database; StorageError, file untouched, when it is unusable."""
        file = Path(path)
        if not create and not file.exists():
            raise StorageError(f"no crawl database at {path}")
        if file.exists() and not file.is_file():
            raise StorageError(f"{path} is not a file")
        if not file.exists() and not file.parent.exists():
            raise StorageError(f"directory {file.parent} does not exist")
        connection = aiosqlite.connect(path, isolation_level=None)
        try:
            db = await connection
        except sqlite3.Error as exc:
            # aiosqlite queues its worker thread's stop without waiting for it; a thread
            # still running when the event loop closes prints a traceback at exit.
            thread = getattr(connection, "_thread", None)
            if thread is not None:
                await asyncio.to_thread(thread.join, 5.0)
            raise StorageError(f"cannot open {path}: {exc}") from None
        try:
            await _check_and_migrate(db, path)
            # Hashing bodies in SQL runs it on the writer's thread, where hashlib releases
            # the GIL: the event loop's core stays free for fetching and parsing.
            await db.create_function("crawler_sha1", 1, _sha1, deterministic=True)
        except BaseException:
            await db.close()
            raise
        return cls(db, path)

    async def close(self) -> None:
        await self.db.close()

    # ------------------------------------------------------------------ crawl metadata

    async def load_crawl(self) -> CrawlRecord | None:
        async with self.db.execute(
            "SELECT settings, seeds, started_at, finished_at FROM crawl WHERE id = 1"
        ) as cur:
            row = await cur.fetchone()
        if row is None:
            return None
        return CrawlRecord(Settings.from_json(row[0]), tuple(json.loads(row[1])), row[2], row[3])

    async def save_crawl(self, settings: Settings, seeds: Sequence[str]) -> None:
        """Record (or replace) the settings and seeds; marks the crawl unfinished again."""
        now = time.time()
        async with self._writing():
            await self.db.execute(
                "INSERT INTO crawl (id, settings, seeds, started_at) VALUES (1, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET settings = excluded.settings, "
                "seeds = excluded.seeds, resumed_at = ?, finished_at = NULL",
                (settings.to_json(), json.dumps(list(seeds)), now, now),
            )

    async def start_run(self, kind: str) -> int:
        """Record the start of a `crawl` or `resume` run; a resume sets `crawl.resumed_at`."""
        now = time.time()
        async with self._lock, self._writing():
            await self.db.execute("BEGIN IMMEDIATE")
            try:
                cur = await self.db.execute(
                    "INSERT INTO runs (kind, started_at) VALUES (?, ?)", (kind, now)
                )
                if kind == "resume":
                    await self.db.execute("UPDATE crawl SET resumed_at = ? WHERE id = 1", (now,))
                await self.db.commit()
            except BaseException:
                await _rollback(self.db)
                raise
        assert cur.lastrowid is not None
        return cur.lastrowid

    async def end_run(self, run_id: int, pages: int, interrupted: bool) -> float:
        """Record the end of a run; returns its duration (ended_at - started_at, seconds),
        the number `crawler stats` adds up."""
        async with (
            self._lock,
            self._writing(),
            self.db.execute(
                "UPDATE runs SET ended_at = ?, pages = ?, interrupted = ? WHERE id = ? "
                "RETURNING ended_at - started_at",
                (time.time(), pages, int(interrupted), run_id),
            ) as cur,
        ):
            row = await cur.fetchone()
        return float(row[0]) if row else 0.0

    # Indexes only queries need, kept in step with migrations/. Maintaining links_dst row
    # by row costs more than all other writes together (random inserts into a B-tree of
    # URLs): it is dropped while a run writes and rebuilt, sorted in one go, when it ends.
    _DEFERRED_INDEXES: ClassVar[dict[str, str]] = {
        "links_dst": "CREATE INDEX IF NOT EXISTS links_dst ON links (dst_url)"
    }

    @contextlib.asynccontextmanager
    async def deferred_indexes(self) -> AsyncIterator[None]:
        """Around one run (one engine's, or all processes' together): the deferred indexes
        are dropped, and rebuilt however the run ends."""
        async with self._writing():
            for name in self._DEFERRED_INDEXES:
                await self.db.execute(f"DROP INDEX IF EXISTS {name}")
        try:
            yield
        finally:
            if self.failure is not None:
                # A store that failed may fail again, or wait out a lock: the next run
                # that ends rebuilds them, as after a kill -9.
                log.info("deferred indexes not rebuilt: the store failed")
            else:
                async with self._writing():
                    for sql in self._DEFERRED_INDEXES.values():
                        await self.db.execute(sql)

    async def mark_finished(self) -> None:
        async with self._writing():
            await self.db.execute("UPDATE crawl SET finished_at = ? WHERE id = 1", (time.time(),))

    # ------------------------------------------------------------------ frontier

    async def seen_urls(self) -> AsyncIterator[str]:
        """Every URL the frontier has ever held, to rebuild the seen-set on resume."""
        async with self.db.execute("SELECT url FROM urls") as cur:
            while rows := await cur.fetchmany(10_000):
                for (url,) in rows:
                    yield url

    async def queued_hosts(self) -> list[str]:
        """Hosts with queued URLs (on resume: whose queues live only in the file)."""
        async with self.db.execute(
            "SELECT DISTINCT host FROM urls WHERE state = 'queued' ORDER BY host"
        ) as cur:
            return [row[0] for row in await cur.fetchall()]

    async def queued_for_host(self, host: str, after_id: int, limit: int) -> list[QueuedURL]:
        """A host's queued URLs in discovery order, from just past `after_id`.

        Under the write lock: on this one connection a read between a flush's BEGIN and
        COMMIT would see rows the frontier has not been told about (`on_commit`), and
        queue URLs twice or never.
        """
        async with (
            self._lock,
            self.db.execute(
                "SELECT id, url, host, depth, hops, origin FROM urls "
                "WHERE host = ? AND state = 'queued' AND id > ? ORDER BY id LIMIT ?",
                (host, after_id, limit),
            ) as cur,
        ):
            return [QueuedURL(*row) for row in await cur.fetchall()]

    async def last_url_id(self) -> int:
        """The newest `urls` row id: a watermark for `queued_since`."""
        async with self.db.execute("SELECT coalesce(max(id), 0) FROM urls") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def queued_since(self, after_id: int) -> list[tuple[str, int]]:
        """(host, newest id) per host with queued rows newer than `after_id`.

        One row per host, however many URLs: what other processes found, in bounded memory.
        Row ids grow with each commit (one writer at a time, max(id) + 1), so a watermark
        sees every row once. Under the write lock, as `queued_for_host` is.
        """
        async with (
            self._lock,
            self.db.execute(
                # NOT INDEXED: a range of the rowid (the new rows), never all queued rows.
                "SELECT host, max(id) FROM urls NOT INDEXED WHERE id > ? AND state = 'queued' "
                "GROUP BY host",
                (after_id,),
            ) as cur,
        ):
            return [(row[0], row[1]) for row in await cur.fetchall()]

    async def any_queued(self) -> bool:
        """Whether any process still has work: a URL stays queued until its fetch commits."""
        async with (
            self._lock,
            self.db.execute("SELECT EXISTS (SELECT 1 FROM urls WHERE state = 'queued')") as cur,
        ):
            row = await cur.fetchone()
        return bool(row and row[0])

    async def page_count(self) -> int:
        async with self.db.execute("SELECT count(*) FROM pages") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def host_page_counts(self) -> dict[str, int]:
        async with self.db.execute("SELECT host, count(*) FROM pages GROUP BY host") as cur:
            return {host: n for host, n in await cur.fetchall()}

    async def save_robots(
        self, host: str, status: int | None, error: str | None, body: str | None
    ) -> None:
        # Under the lock: between a read's first step and its last fetch the connection
        # holds a read transaction, and a write from there fails at once ("database is
        # locked", no busy wait) when another process has committed in the meantime.
        async with self._lock, self._writing():
            await self.db.execute(
                "INSERT OR REPLACE INTO robots (host, status, error, body, fetched_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (host, status, error, body, time.time()),
            )

    async def stored_robots(
        self, since: float
    ) -> AsyncIterator[tuple[str, int, str | None, float]]:
        """(host, status, body, fetched_at) of robots.txt fetched at or after `since` that
        answered (2xx or 4xx other than 429): what a resumed crawl reuses (RFC 9309 2.4)."""
        async with self.db.execute(
            "SELECT host, status, body, fetched_at FROM robots WHERE fetched_at >= ? "
            "AND status IS NOT NULL AND status < 500 AND status <> 429",
            (since,),
        ) as cur:
            while rows := await cur.fetchmany(10_000):
                for host, status, body, fetched_at in rows:
                    yield host, status, body, fetched_at

    # ------------------------------------------------------------------ batched writes

    def add(self, outcome: Outcome) -> None:
        """Queue an outcome for the next batch (committed by `flush`)."""
        self._buffer.append(outcome)
        page = outcome.page
        # A rough count of the RAM the outcome holds: its body and ~100 bytes per row.
        self.backlog_bytes += (len(page.body) if page and page.body else 0) + 100 * (
            len(outcome.links) + len(outcome.new_urls) + 1
        )
        if len(self._buffer) >= self.batch_size:
            self._full.set()

    @property
    def backlog(self) -> int:
        return len(self._buffer)

    async def wait_full(self, interval: float) -> None:
        """Wait until a batch is full or `interval` seconds passed, whichever comes first."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._full.wait(), interval)
        self._full.clear()

    async def flush(self) -> int:
        """Commit every queued outcome in one transaction; returns how many.

        StoreFailure when the store cannot write (then and on every later call); the
        batch stays in the buffer, its URLs still queued in the file for `resume`.

        Shielded: a writer cancelled mid-batch (a stop, a second Ctrl-C) would otherwise
        leave BEGIN without COMMIT, or put back a batch whose COMMIT already ran and
        write its links twice. The batch finishes; the next flush waits on the lock.
        """
        task = asyncio.ensure_future(self._flush())
        # A caller cancelled while its batch was written no longer awaits the result: a
        # failure then is not lost (`self.failure` keeps it), only not logged as unretrieved.
        task.add_done_callback(_retrieved)
        return await asyncio.shield(task)

    async def _flush(self) -> int:
        async with self._lock:
            if self.failure is not None:
                raise self.failure
            batch, self._buffer = self._buffer, []
            self.backlog_bytes = 0
            if not batch:
                return 0
            try:
                try:
                    await self._commit(batch)
                except Exception as exc:
                    if _is_store_failure(exc):
                        raise
                    # Refused for its data: one value must not hold up the batch, or stop
                    # the writer for good by being retried on every flush.
                    log.warning(
                        "a batch of %d outcomes was refused (%s); writing them one by one",
                        len(batch),
                        _one_line(exc),
                    )
                    await self._commit_each(batch)
            except BaseException as exc:
                self._buffer[:0] = batch
                if isinstance(exc, Exception) and _is_store_failure(exc):
                    self.failure = self._failure(exc)
                    raise self.failure from exc
                raise
        if self.on_commit is not None:
            self.on_commit(batch)
        return len(batch)

    async def _commit(self, batch: list[Outcome]) -> None:
        """The batch in one transaction; rolled back whole when any statement fails."""
        db = self.db
        await db.execute("BEGIN IMMEDIATE")
        try:
            await self._write(_rows(batch, await self._last_page_id()))
            await db.commit()
        except BaseException:
            # Cancellation or a write error: nothing of this batch may stay half-written.
            await _rollback(db)
            raise

    async def _commit_each(self, batch: list[Outcome]) -> None:
        """The batch in one transaction, each outcome in its own savepoint; an outcome that
        is still refused is stored as an error row for its URL, without its links."""
        db = self.db
        await db.execute("BEGIN IMMEDIATE")
        try:
            last_id = await self._last_page_id()
            for outcome in batch:
                try:
                    last_id = await self._write_savepoint([outcome], last_id)
                    continue
                except Exception as exc:
                    if _is_store_failure(exc):
                        raise
                    error = exc
                log.debug("outcome for %r refused", outcome.url, exc_info=error)
                row = _error_row(outcome, error)
                if row is None:
                    log.error("dropped an outcome the store refused: %s", _one_line(error))
                    continue
                log.warning("%s: stored as an error row: %s", row.url, row.error)
                try:
                    last_id = await self._write_savepoint(
                        [Outcome(url=row.url, state="done", page=row)], last_id
                    )
                except Exception as exc:
                    if _is_store_failure(exc):
                        raise
                    log.error("dropped an outcome the store refused: %s", _one_line(exc))
            await db.commit()
        except BaseException:
            await _rollback(db)
            raise

    async def _write_savepoint(self, outcomes: list[Outcome], last_id: int) -> int:
        rows = _rows(outcomes, last_id)
        await self.db.execute("SAVEPOINT outcome")
        try:
            await self._write(rows)
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                await self.db.execute("ROLLBACK TO outcome")
                await self.db.execute("RELEASE outcome")
            raise
        await self.db.execute("RELEASE outcome")
        return rows.last_id

    async def _last_page_id(self) -> int:
        # Page ids are given here, not by SQLite, so that a body can name its page within
        # the same executemany. Under BEGIN IMMEDIATE: no other writer can take one.
        async with self.db.execute("SELECT coalesce(max(id), 0) FROM page_rows") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def _write(self, rows: _Rows) -> None:
        db = self.db
        # Order matters: a URL discovered and fetched within one batch must exist before
        # its state is set to done; a page before its body; pages before a chain's end.
        if rows.new_urls:
            await db.executemany(
                "INSERT OR IGNORE INTO urls "
                "(url, host, depth, hops, origin, discovered_at) VALUES (?,?,?,?,?,?)",
                rows.new_urls,
            )
        if rows.pages:
            await db.executemany(_INSERT_PAGE, rows.pages)
        if rows.bodies:
            # A page ignored as a second row for its URL has no row with the given id.
            await db.executemany(
                "INSERT INTO bodies (page_id, body, body_codec) "
                "SELECT id, ?, ? FROM page_rows WHERE id = ?",
                rows.bodies,
            )
        if rows.links:
            await db.executemany(
                "INSERT INTO links (src_url, dst_url, nofollow) VALUES (?,?,?)", rows.links
            )
        if rows.states:
            await db.executemany("UPDATE urls SET state = ?, reason = ? WHERE url = ?", rows.states)
        if rows.chains:
            await db.executemany(_END_CHAIN, rows.chains)
        if rows.skipped:
            await db.executemany(
                "INSERT INTO skipped (reason, count) VALUES (?, ?) "
                "ON CONFLICT (reason) DO UPDATE SET count = count + excluded.count",
                rows.skipped.items(),
            )

    def _failure(self, exc: BaseException) -> StoreFailure:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        return StoreFailure(
            f"store failed: {_one_line(reason)} ({self.path}); everything committed before "
            "is intact: `crawler resume` continues"
        )

    @contextlib.asynccontextmanager
    async def _writing(self) -> AsyncIterator[None]:
        """A write outside the batches: a store that cannot write raises StoreFailure."""
        try:
            yield
        except Exception as exc:
            if not _is_store_failure(exc):
                raise
            self.failure = self.failure or self._failure(exc)
            raise self.failure from exc


_PAGE_COLUMNS = (
    "id, url, final_url, status, final_status, error, content_type, depth, fetched_at, host, "
    "headers, elapsed, size, truncated, links_found, links_truncated, redirect_to, attempts, "
    "content_hash, title"
)
# content_hash: the engine's value, else the SHA-1 of the (plain) body, computed in SQL.
# A second row for a URL is ignored; unlike INSERT OR IGNORE, a NULL in a NOT NULL column
# is an error (that row becomes an error row), not a page silently missing.
_INSERT_PAGE = (
    f"INSERT INTO page_rows ({_PAGE_COLUMNS}) "
    f"VALUES ({', '.join('?' * 18)}, coalesce(?, crawler_sha1(?)), ?) "
    "ON CONFLICT (url) DO NOTHING"
)
# Both lookups are index searches: pages by url, the chain's other hops by urls_origin.
_END_CHAIN = (
    "UPDATE page_rows SET final_url = ?1, "
    "final_status = coalesce(?2, (SELECT f.final_status FROM page_rows AS f WHERE f.url = ?1)), "
    "error = coalesce(error, ?3) "
    "WHERE url = ?4 OR url IN (SELECT url FROM urls WHERE origin = ?4)"
)

# sqlite3 errors that are a value's fault (with InterfaceError, outside DatabaseError).
_DATA_ERRORS = (sqlite3.IntegrityError, sqlite3.DataError, sqlite3.ProgrammingError)


def _is_store_failure(exc: Exception) -> bool:
    """Disk full, I/O error, locked, read-only, corrupt: not a row's fault."""
    if isinstance(exc, OSError):
        return True
    return isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, _DATA_ERRORS)


def _retrieved(task: asyncio.Future[int]) -> None:
    if not task.cancelled():
        task.exception()


async def _rollback(db: aiosqlite.Connection) -> None:
    # Some failures (SQLITE_FULL, IOERR) have rolled the transaction back already.
    with contextlib.suppress(sqlite3.Error):
        await asyncio.shield(db.rollback())


def _one_line(value: object) -> str:
    text = str(value).encode("utf-8", "backslashreplace").decode("utf-8")
    return " ".join(text.split())[:300]


def _error_row(outcome: Outcome, exc: Exception) -> PageRow | None:
    """The error row that stands for a refused outcome; None when it had no page row."""
    page = outcome.page
    if page is None:
        return None
    # Only the URL is kept as it came: any other field may be the value that was refused.
    return PageRow.failed(
        page.url,
        page.host if isinstance(page.host, str) else "",
        page.depth if isinstance(page.depth, int) else 0,
        f"internal: {type(exc).__name__}: {_one_line(exc)}",
        attempts=page.attempts if isinstance(page.attempts, int) else 1,
    )


def _sha1(body: bytes | None) -> str | None:
    return hashlib.sha1(body).hexdigest() if body else None


@dataclass(slots=True)
class _Rows:
    """A batch as statement parameters, one list per statement."""

    new_urls: list[tuple[object, ...]] = field(default_factory=list)
    pages: list[tuple[object, ...]] = field(default_factory=list)
    bodies: list[tuple[object, ...]] = field(default_factory=list)
    links: list[tuple[str, str, int]] = field(default_factory=list)
    states: list[tuple[object, ...]] = field(default_factory=list)
    chains: list[tuple[object, ...]] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    last_id: int = 0


def _rows(batch: list[Outcome], last_id: int) -> _Rows:
    """Parameters for a batch whose pages get ids after `last_id`."""
    now = time.time()
    r = _Rows()
    for o in batch:
        for n in o.new_urls:
            r.new_urls.append((n.url, n.host, n.depth, n.hops, n.origin, now))
        if o.page is not None:
            p = o.page
            last_id += 1
            final_status = p.final_status
            if final_status is None and not (p.status is not None and 300 <= p.status < 400):
                final_status = p.status
            r.pages.append(
                (last_id, p.url, p.final_url, p.status, final_status, p.error, p.content_type,
                 p.depth, p.fetched_at, p.host, p.headers, p.elapsed, p.size, int(p.truncated),
                 p.links_found, int(p.links_truncated), p.redirect_to, p.attempts,
                 p.content_hash, p.body if p.content_hash is None and p.body_codec is None
                 else None, p.title)
            )  # fmt: skip
            if p.body is not None:
                r.bodies.append((p.body, p.body_codec, last_id))
        r.links.extend(o.links)
        if o.state is not None:
            r.states.append((o.state, o.reason, o.url))
        if (c := o.chain_end) is not None:
            r.chains.append((c.final_url, c.final_status, c.error, c.origin))
        for reason, count in o.skipped:
            r.skipped[reason] = r.skipped.get(reason, 0) + count
    r.last_id = last_id
    return r


async def _check_and_migrate(db: aiosqlite.Connection, path: str) -> None:
    """Refuse files we must not touch, then bring the schema up to date.

    Every check reads only: PRAGMA journal_mode=WAL rewrites the file header, so it comes
    after we know the file is a crawl database (or an empty new one).
    """
    try:
        async with db.execute("SELECT name FROM sqlite_master WHERE type = 'table'") as cur:
            tables = {row[0] for row in await cur.fetchall()}
    except sqlite3.DatabaseError as exc:
        raise StorageError(f"{path} is not a SQLite database ({exc})") from None
    applied: set[int] = set()
    if "schema_migrations" in tables:
        async with db.execute("SELECT version FROM schema_migrations") as cur:
            applied = {row[0] for row in await cur.fetchall()}
        if applied and max(applied) > SCHEMA_VERSION:
            raise StorageError(
                f"{path} has schema version {max(applied)}, newer than this crawler "
                f"understands ({SCHEMA_VERSION}); upgrade crawler"
            )
    elif tables:
        raise StorageError(f"{path} is a SQLite database but not a crawl database")
    pending = [m for m in migrations() if m[0] not in applied]
    try:
        await db.execute("PRAGMA journal_mode = WAL")
        await db.execute("PRAGMA synchronous = NORMAL")
        await db.execute("PRAGMA foreign_keys = ON")
        # Writers take turns: with --processes, each commit may wait for the others'.
        await db.execute("PRAGMA busy_timeout = 30000")
        if "schema_migrations" not in tables:
            await db.executescript(
                "BEGIN; CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, "
                "name TEXT NOT NULL, applied_at REAL NOT NULL); COMMIT;"
            )
        for version, name, sql in pending:
            log.info("applying migration %s", name)
            try:
                await db.executescript(
                    f"BEGIN;\n{sql}\nINSERT INTO schema_migrations VALUES "
                    f"({version}, '{name}', {time.time()});\nCOMMIT;"
                )
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    await db.rollback()
                # Any error, not only OperationalError (a data migration can hit a constraint).
                raise StorageError(f"{path}: migration {name} failed: {exc}") from None
    except sqlite3.OperationalError as exc:
        raise StorageError(f"cannot write {path}: {exc}") from None
