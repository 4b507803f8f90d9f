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
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import ClassVar

import aiosqlite

from crawler.config import Settings
from crawler.errors import StorageError

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
class Outcome:
    """Everything one fetch changes in the database, committed together."""

    url: str
    state: str | None  # the URL's new frontier state: done | disallowed | dropped (None: none)
    reason: str | None = None
    page: PageRow | None = None
    links: Sequence[tuple[str, str, int]] = ()  # (src_url, dst_url, nofollow)
    new_urls: Sequence[NewURL] = ()
    chain_end: tuple[str, str | None] | None = (
        None  # (origin, final_url): a redirect chain resolved
    )


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
        await self.db.execute(
            "INSERT INTO crawl (id, settings, seeds, started_at) VALUES (1, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET settings = excluded.settings, "
            "seeds = excluded.seeds, resumed_at = ?, finished_at = NULL",
            (settings.to_json(), json.dumps(list(seeds)), now, now),
        )

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
        for name in self._DEFERRED_INDEXES:
            await self.db.execute(f"DROP INDEX IF EXISTS {name}")
        try:
            yield
        finally:
            for sql in self._DEFERRED_INDEXES.values():
                await self.db.execute(sql)

    async def mark_finished(self) -> None:
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
                "SELECT host, max(id) FROM urls WHERE id > ? AND state = 'queued' GROUP BY host",
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
        async with self._lock:
            await self.db.execute(
                "INSERT OR REPLACE INTO robots (host, status, error, body, fetched_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (host, status, error, body, time.time()),
            )

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

        Shielded: a writer cancelled mid-batch (a stop, a second Ctrl-C) would otherwise
        leave BEGIN without COMMIT, or put back a batch whose COMMIT already ran and
        write its links twice. The batch finishes; the next flush waits on the lock.
        """
        return await asyncio.shield(self._flush())

    async def _flush(self) -> int:
        async with self._lock:
            batch, self._buffer = self._buffer, []
            self.backlog_bytes = 0
            if not batch:
                return 0
            new_urls, pages, links, states, chains = _rows(batch)
            db = self.db
            await db.execute("BEGIN IMMEDIATE")
            try:
                # Order matters: a URL discovered and fetched within one batch must exist
                # before its state is set to done.
                if new_urls:
                    await db.executemany(
                        "INSERT OR IGNORE INTO urls "
                        "(url, host, depth, hops, origin, discovered_at) VALUES (?,?,?,?,?,?)",
                        new_urls,
                    )
                if pages:
                    await db.executemany(_INSERT_PAGE, pages)
                if links:
                    await db.executemany(
                        "INSERT INTO links (src_url, dst_url, nofollow) VALUES (?,?,?)", links
                    )
                if states:
                    await db.executemany(
                        "UPDATE urls SET state = ?, reason = ? WHERE url = ?", states
                    )
                if chains:
                    await db.executemany(
                        "UPDATE pages SET final_url = ? WHERE url = ? OR url IN "
                        "(SELECT url FROM urls WHERE origin = ?)",
                        chains,
                    )
                await db.commit()
            except BaseException:
                # Cancellation or a write error: nothing of this batch may stay half-written.
                with contextlib.suppress(sqlite3.Error):
                    await asyncio.shield(db.rollback())
                self._buffer[:0] = batch
                raise
        if self.on_commit is not None:
            self.on_commit(batch)
        return len(batch)


_PAGE_COLUMNS = (
    "url, final_url, status, error, content_type, depth, fetched_at, body, host, headers, "
    "elapsed, size, truncated, links_found, links_truncated, redirect_to, attempts, "
    "body_codec, content_hash, title"
)
# content_hash: the engine's value, else the SHA-1 of the (plain) body, computed in SQL.
_INSERT_PAGE = (
    f"INSERT OR IGNORE INTO pages ({_PAGE_COLUMNS}) "
    f"VALUES ({', '.join('?' * 18)}, coalesce(?, crawler_sha1(?)), ?)"
)


def _sha1(body: bytes | None) -> str | None:
    return hashlib.sha1(body).hexdigest() if body else None


def _rows(
    batch: list[Outcome],
) -> tuple[list[tuple], list[tuple], list[tuple], list[tuple], list[tuple]]:  # type: ignore[type-arg]
    now = time.time()
    new_urls: list[tuple] = []  # type: ignore[type-arg]
    pages: list[tuple] = []  # type: ignore[type-arg]
    links: list[tuple] = []  # type: ignore[type-arg]
    states: list[tuple] = []  # type: ignore[type-arg]
    chains: list[tuple] = []  # type: ignore[type-arg]
    for o in batch:
        for n in o.new_urls:
            new_urls.append((n.url, n.host, n.depth, n.hops, n.origin, now))
        if o.page is not None:
            p = o.page
            pages.append(
                (p.url, p.final_url, p.status, p.error, p.content_type, p.depth, p.fetched_at,
                 p.body, p.host, p.headers, p.elapsed, p.size, int(p.truncated), p.links_found,
                 int(p.links_truncated), p.redirect_to, p.attempts, p.body_codec,
                 p.content_hash, p.body if p.content_hash is None and p.body_codec is None
                 else None, p.title)
            )  # fmt: skip
        links.extend(o.links)
        if o.state is not None:
            states.append((o.state, o.reason, o.url))
        if o.chain_end is not None:
            origin, final = o.chain_end
            chains.append((final, origin, origin))
    return new_urls, pages, links, states, chains


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
