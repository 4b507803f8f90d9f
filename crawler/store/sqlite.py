"""The SQLite store: one crawl in one file, the embedded default (`--db PATH`).

It implements `crawler.store.protocol.Store`: the crawl record and its runs, the
persisted frontier (claimed per host through the `(host, id)` partial index), robots.txt
and sitemaps (`SQLiteRobots`), and batched outcome writes (`BatchWriter`). One aiosqlite
connection owns every write; with `--processes`, several processes share the file and
take turns (WAL).

`pages` is a view over `page_rows` (the hot row) and `bodies` (migrations/sqlite/0002):
the writer fills the two tables; everything else reads the view.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import aiosqlite

from crawler.config import Settings
from crawler.errors import StorageError, UsageError
from crawler.records import CrawlRecord, QueuedURL, TextOf
from crawler.revisit import stored_page
from crawler.store import lock, sqlite_text
from crawler.store.selection import recrawl_selection
from crawler.store.sqlite_batches import _rollback, log
from crawler.store.sqlite_query import chunks, first, rows
from crawler.store.sqlite_robots import SQLiteRobots
from crawler.store.sqlite_schema import check_and_migrate


class SQLiteStore(SQLiteRobots):
    """A crawl file opened for a running crawl."""

    dedups = False  # the frontier's seen-set deduplicates: every new URL sent is new

    def __init__(self, db: aiosqlite.Connection, path: str, *, batch_size: int = 500) -> None:
        super().__init__(db, path, batch_size=batch_size)
        # Per host, the newest row id `claim` has looked at: rows at or below it are in
        # RAM, being fetched or done. And the newest id `new_work` has looked at.
        self._cursors: dict[str, int] = {}
        self._watermark = 0
        self._held: list[int] = []  # the run lock's descriptors (`lock`)
        # A recrawl is going (`crawl.recrawling`): claims carry each URL's stored page.
        self.revisit = False

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
            store = cls(db, path)
            await store._load_recrawl()
        except BaseException:
            await db.close()
            raise
        return store

    async def _load_recrawl(self) -> None:
        # A process of --processes opens the file after its parent started the run: the
        # newest run is the one its fetches belong to.
        row = await first(
            self.db,
            "SELECT (SELECT max(id) FROM runs), (SELECT recrawling FROM crawl WHERE id = 1)",
        )
        if row is not None:
            self.run_id, self.revisit = row[0], bool(row[1])

    async def close(self) -> None:
        try:
            await self.db.close()
        finally:
            while self._held:
                os.close(self._held.pop())  # after the connection: see `lock.hold`

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the file for one run (`crawl`, `resume`): a second run exits 2. Released
        as the store closes, after its connection (`lock.hold` says why)."""
        lock.hold(self.path, self._held)
        yield

    # ------------------------------------------------------------------ crawl metadata

    async def load_crawl(self) -> CrawlRecord | None:
        row = await first(
            self.db, "SELECT settings, seeds, started_at, finished_at FROM crawl WHERE id = 1"
        )
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
        self.run_id = cur.lastrowid
        return cur.lastrowid

    async def end_run(self, run_id: int, pages: int, interrupted: bool) -> float:
        """Record the end of a run; returns its duration (ended_at - started_at, seconds),
        the number `crawler stats` adds up."""
        async with self._lock, self._writing():
            row = await first(
                self.db,
                "UPDATE runs SET ended_at = ?, pages = ?, interrupted = ? WHERE id = ? "
                "RETURNING ended_at - started_at",
                (time.time(), pages, int(interrupted), run_id),
            )
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
            # A recrawl replaces a changed page's links, found by their page: the index
            # lives only while one runs, so that other runs write links at no extra cost.
            if self.revisit:
                await self.db.execute(_LINKS_SRC)
            else:
                await self.db.execute("DROP INDEX IF EXISTS links_src")
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
            await self.db.execute(_FINISHED, (time.time(),))

    async def reindex_text(self, text_of: TextOf, *, batch: int = 100) -> int:
        async with self._writing():
            return await sqlite_text.reindex(self.db, self._lock, text_of, batch)

    # ------------------------------------------------------------------ frontier

    async def seen_urls(self) -> AsyncIterator[str]:
        """Every URL the frontier has ever held, to rebuild the seen-set on resume."""
        sql = "SELECT id, url FROM urls WHERE id > ? ORDER BY id LIMIT ?"
        async for found in chunks(self.db, sql, (), 0):
            for _, url in found:
                yield url

    async def queued_hosts(self) -> list[str]:
        """Hosts with queued URLs (on resume: whose queues live only in the file)."""
        found = await rows(
            self.db, "SELECT DISTINCT host FROM urls WHERE state = 'queued' ORDER BY host"
        )
        return [row[0] for row in found]

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
            async with self._lock:
                found = await rows(
                    self.db, _CLAIM_REVISITS if self.revisit else _CLAIM, (host, after, batch)
                )
            full = False
            for row in map(_queued, found):
                if skip(row.url):
                    after = row.id
                    continue
                if len(out) == limit:
                    full = True  # rows remain for the next claim
                    break
                after = row.id
                out.append(row)
            if full or len(found) < batch:
                self._cursors[host] = after
                return out, not full
            if len(out) == limit:
                self._cursors[host] = after
                return out, False

    def release(self, host: str) -> None:
        """Forget what was handed out of `host`: its queued rows may be claimed again."""
        self._cursors.pop(host, None)

    async def page_count(self) -> int:
        """Pages stored; in a recrawl, not those queued to be fetched again (each is
        counted again once its fetch is stored, as `max_pages` counts pages stored)."""
        row = await first(
            self.db, f"SELECT count(*) FROM page_rows AS p {_NOT_REVISITED if self.revisit else ''}"
        )
        return int(row[0]) if row else 0

    async def host_page_counts(self) -> dict[str, int]:
        found = await rows(
            self.db,
            f"SELECT host, count(*) FROM page_rows AS p {_NOT_REVISITED if self.revisit else ''} "
            "GROUP BY host",
        )
        return dict(found)

    # ------------------------------------------------------------------ recrawl

    async def select_recrawl(
        self, where: str | None, older_than: float | None, due: float | None
    ) -> int:
        """Queue the stored pages that match again and mark the crawl as recrawling; how
        many. `where` is an SQL condition on `pages` (UsageError when SQLite refuses it,
        nothing changed); `older_than`: fetched before that unix time; `due`: the first
        revisit interval (seconds) of pages never recrawled, to take only due pages."""
        sql, params = recrawl_selection(where, older_than, due, time.time())
        async with self._lock:
            try:
                # Run once as a read: whatever SQLite says of it is the condition's fault.
                await first(self.db, f"SELECT count(*) FROM ({sql})", params)
            except sqlite3.Error as exc:
                raise UsageError(f"invalid --where condition: {exc}") from None
        async with self._lock, self._writing():
            await self.db.execute("BEGIN IMMEDIATE")
            try:
                cur = await self.db.execute(
                    f"UPDATE urls SET state = 'queued', reason = NULL WHERE url IN ({sql})", params
                )
                await self.db.execute(
                    "UPDATE crawl SET recrawling = 1, finished_at = NULL WHERE id = 1"
                )
                await self.db.execute(_LINKS_SRC)  # see deferred_indexes
                await self.db.commit()
            except BaseException:
                await _rollback(self.db)
                raise
        self.revisit = True
        return cur.rowcount

    # ------------------------------------------------------------------ other processes

    async def watch(self) -> None:
        """Start noticing what other processes queue: rows from now on are `new_work`."""
        row = await first(self.db, "SELECT coalesce(max(id), 0) FROM urls")
        self._watermark = int(row[0]) if row else 0

    async def new_work(self) -> list[str]:
        """Hosts with queued rows written since the last call that `claim` has not seen.

        One row per host, however many URLs: what other processes found, in bounded
        memory. Row ids grow with each commit (one writer at a time, max(id) + 1), so the
        watermark sees every row once. Under the write lock, as `claim` is.
        """
        async with self._lock:
            found = await rows(
                self.db,
                # NOT INDEXED: a range of the rowid (the new rows), never all queued rows.
                "SELECT host, max(id) FROM urls NOT INDEXED WHERE id > ? AND state = 'queued' "
                "GROUP BY host",
                (self._watermark,),
            )
        hosts = []
        for host, newest in found:
            self._watermark = max(self._watermark, newest)
            if newest > self._cursors.get(host, 0):
                hosts.append(host)
        return hosts

    async def any_queued(self) -> bool:
        """Whether any process still has work: a URL stays queued until its fetch commits."""
        async with self._lock:
            row = await first(self.db, "SELECT EXISTS (SELECT 1 FROM urls WHERE state = 'queued')")
        return bool(row and row[0])


_CLAIM = (
    "SELECT id, url, host, depth, hops, origin FROM urls "
    "WHERE host = ? AND state = 'queued' AND id > ? ORDER BY id LIMIT ?"
)
# In a recrawl, each queued URL with its stored page (one probe of page_rows' url index).
_CLAIM_REVISITS = (
    "SELECT u.id, u.url, u.host, u.depth, u.hops, u.origin, p.id, p.status, p.content_hash, "
    "p.headers, p.revisit_interval FROM urls AS u LEFT JOIN page_rows AS p ON p.url = u.url "
    "WHERE u.host = ? AND u.state = 'queued' AND u.id > ? ORDER BY u.id LIMIT ?"
)
_LINKS_SRC = "CREATE INDEX IF NOT EXISTS links_src ON links (src_url)"
# A recrawl is over once no stored page waits to be fetched again: one stopped by
# `max_pages` stays a recrawl for `resume` (its pages would not be stored otherwise).
_FINISHED = (
    "UPDATE crawl SET finished_at = ?, recrawling = recrawling AND EXISTS (SELECT 1 FROM urls "
    "AS u JOIN page_rows AS p ON p.url = u.url WHERE u.state = 'queued') WHERE id = 1"
)
_NOT_REVISITED = (
    "WHERE NOT EXISTS (SELECT 1 FROM urls AS u WHERE u.url = p.url AND u.state = 'queued')"
)


def _queued(row: Any) -> QueuedURL:
    stored = None
    if len(row) > 6 and row[6] is not None:
        stored = stored_page(row[7], row[8], row[9], row[10])
    return QueuedURL(row[0], row[1], row[2], row[3], row[4], row[5], stored)
