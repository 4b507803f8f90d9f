"""The SQLite store: one crawl in one file, the embedded default (`--db PATH`).

It implements `crawler.store.protocol.Store`: the crawl record and its runs, the
persisted frontier (claimed per host through the `(host, id)` partial index), robots.txt,
and batched outcome writes (`BatchWriter`). One aiosqlite connection owns every write;
with `--processes`, several processes share the file and take turns (WAL).

`pages` is a view over `page_rows` (the hot row) and `bodies` (migrations/sqlite/0002):
the writer fills the two tables; everything else reads the view.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import ClassVar

import aiosqlite

from crawler.config import Settings
from crawler.errors import StorageError
from crawler.records import CrawlRecord, QueuedURL, Sitemap, TextOf
from crawler.store import lock, sqlite_text
from crawler.store.sqlite_batches import BatchWriter, _rollback, _sha1, log
from crawler.store.sqlite_schema import check_and_migrate


class SQLiteStore(BatchWriter):
    """A crawl file opened for a running crawl."""

    dedups = False  # the frontier's seen-set deduplicates: every new URL sent is new

    def __init__(self, db: aiosqlite.Connection, path: str, *, batch_size: int = 500) -> None:
        super().__init__(db, path, batch_size=batch_size)
        # Per host, the newest row id `claim` has looked at: rows at or below it are in
        # RAM, being fetched or done. And the newest id `new_work` has looked at.
        self._cursors: dict[str, int] = {}
        self._watermark = 0

    # ------------------------------------------------------------------ open / close

    @classmethod
    async def open(cls, path: str, *, create: bool) -> SQLiteStore:
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
            await check_and_migrate(db, path)
            # Hashing bodies in SQL runs it on the writer's thread, where hashlib releases
            # the GIL: the event loop's core stays free for fetching and parsing.
            await db.create_function("crawler_sha1", 1, _sha1, deterministic=True)
        except BaseException:
            await db.close()
            raise
        return cls(db, path)

    async def close(self) -> None:
        await self.db.close()

    def lock(self) -> contextlib.AbstractContextManager[None]:
        """Hold the file for one run (`crawl`, `resume`): a second run exits 2."""
        return lock.exclusive(self.path)

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

    async def reindex_text(self, text_of: TextOf, *, batch: int = 100) -> int:
        async with self._writing():
            return await sqlite_text.reindex(self.db, self._lock, text_of, batch)

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

    async def claim(
        self, host: str, limit: int, skip: Callable[[str], bool], *, batch: int = 2000
    ) -> tuple[list[QueuedURL], bool]:
        """Up to `limit` queued URLs of `host` not handed out before (nor `skip`ped, which
        are in RAM already), in discovery order; and whether the host has no more.

        Each call reads on from the host's cursor through the `(host, id)` partial index,
        so a host with a million queued URLs costs one short indexed read per call. Under
        the write lock: on this one connection a read between a flush's BEGIN and COMMIT
        would see rows the frontier has not been told about (`on_commit`).
        """
        after = self._cursors.get(host, 0)
        out: list[QueuedURL] = []
        while True:
            async with (
                self._lock,
                self.db.execute(
                    "SELECT id, url, host, depth, hops, origin FROM urls "
                    "WHERE host = ? AND state = 'queued' AND id > ? ORDER BY id LIMIT ?",
                    (host, after, batch),
                ) as cur,
            ):
                rows = [QueuedURL(*row) for row in await cur.fetchall()]
            full = False
            for row in rows:
                if skip(row.url):
                    after = row.id
                    continue
                if len(out) == limit:
                    full = True  # rows remain for the next claim
                    break
                after = row.id
                out.append(row)
            if full or len(rows) < batch:
                self._cursors[host] = after
                return out, not full
            if len(out) == limit:
                self._cursors[host] = after
                return out, False

    def release(self, host: str) -> None:
        """Forget what was handed out of `host`: its queued rows may be claimed again."""
        self._cursors.pop(host, None)

    async def page_count(self) -> int:
        async with self.db.execute("SELECT count(*) FROM pages") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def host_page_counts(self) -> dict[str, int]:
        async with self.db.execute("SELECT host, count(*) FROM pages GROUP BY host") as cur:
            return {host: n for host, n in await cur.fetchall()}

    # ------------------------------------------------------------------ other processes

    async def watch(self) -> None:
        """Start noticing what other processes queue: rows from now on are `new_work`."""
        async with self.db.execute("SELECT coalesce(max(id), 0) FROM urls") as cur:
            row = await cur.fetchone()
        self._watermark = int(row[0]) if row else 0

    async def new_work(self) -> list[str]:
        """Hosts with queued rows written since the last call that `claim` has not seen.

        One row per host, however many URLs: what other processes found, in bounded
        memory. Row ids grow with each commit (one writer at a time, max(id) + 1), so the
        watermark sees every row once. Under the write lock, as `claim` is.
        """
        async with (
            self._lock,
            self.db.execute(
                # NOT INDEXED: a range of the rowid (the new rows), never all queued rows.
                "SELECT host, max(id) FROM urls NOT INDEXED WHERE id > ? AND state = 'queued' "
                "GROUP BY host",
                (self._watermark,),
            ) as cur,
        ):
            found = await cur.fetchall()
        hosts = []
        for host, newest in found:
            self._watermark = max(self._watermark, newest)
            if newest > self._cursors.get(host, 0):
                hosts.append(host)
        return hosts

    async def any_queued(self) -> bool:
        """Whether any process still has work: a URL stays queued until its fetch commits."""
        async with (
            self._lock,
            self.db.execute("SELECT EXISTS (SELECT 1 FROM urls WHERE state = 'queued')") as cur,
        ):
            row = await cur.fetchone()
        return bool(row and row[0])

    # ------------------------------------------------------------------ robots.txt

    async def robots_for(self, host: str, since: float) -> tuple[int, str | None, float] | None:
        """(status, body, fetched_at) of `host`'s robots.txt if it answered (2xx, or 4xx
        but 429) at or after `since`: a copy the crawl may use again (RFC 9309 2.4).

        Under the write lock, as `claim` is: a read left open on this connection while a
        batch begins would make that batch's write fail at once ("database is locked")
        when another process has committed in between (--processes)."""
        async with (
            self._lock,
            self.db.execute(
                "SELECT status, body, fetched_at FROM robots WHERE host = ? AND fetched_at >= ? "
                "AND status >= 200 AND status < 500 AND status <> 429",
                (host, since),
            ) as cur,
        ):
            row = await cur.fetchone()
        return (row[0], row[1], row[2]) if row else None

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

    async def sitemaps(self) -> list[Sitemap]:
        """Every sitemap the crawl found (the queued ones are fetched on resume)."""
        async with (
            self._lock,
            self.db.execute(
                "SELECT url, host, robots_host, source, level, state FROM sitemaps"
            ) as cur,
        ):
            return [Sitemap(*row) for row in await cur.fetchall()]

    async def stored_robots(
        self, since: float
    ) -> AsyncIterator[tuple[str, int, str | None, float]]:
        """(host, status, body, fetched_at) of robots.txt fetched at or after `since` that
        answered (2xx or 4xx other than 429): what a resumed crawl reuses (RFC 9309 2.4)."""
        async with self.db.execute(
            "SELECT host, status, body, fetched_at FROM robots WHERE fetched_at >= ? "
            "AND status >= 200 AND status < 500 AND status <> 429",
            (since,),
        ) as cur:
            while rows := await cur.fetchmany(10_000):
                for host, status, body, fetched_at in rows:
                    yield host, status, body, fetched_at
