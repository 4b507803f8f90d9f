"""Storage: migrations, refusing files that are not ours, batched and crash-safe writes."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import random
import resource
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support import rows, threaded_site

import crawler.store.sqlite_batches
import crawler.store.sqlite_schema
from crawler.config import Settings
from crawler.errors import StorageError, StoreFailure, UsageError
from crawler.reasons import Reason
from crawler.records import ChainEnd, NewURL, Outcome, PageRow
from crawler.store import lock
from crawler.store.buffer import OutcomeBuffer
from crawler.store.sqlite import SQLiteStore as Storage
from crawler.store.sqlite_many import byte_chunk_sizes, chunk_sizes, on_thread
from crawler.store.sqlite_query import chunks
from crawler.store.sqlite_schema import migrations

HOST = "http://127.0.0.2:8000"
CRAWL_TABLES = {"crawl", "urls", "page_rows", "bodies", "links", "robots", "schema_migrations"}
CRAWL_TABLES |= {"skipped", "runs"}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def schema_objects(db: str) -> set[str]:
    return {r[0] for r in rows(db, "SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'")}


def applied(db: str) -> list[tuple[Any, ...]]:
    return rows(db, "SELECT version, name, applied_at FROM schema_migrations ORDER BY version")


async def open_and_close(db: str, *, create: bool = True) -> None:
    storage = await Storage.open(db, create=create)
    await storage.close()


# ---------------------------------------------------------------------- migrations


async def test_new_file_gets_every_migration(db: str) -> None:
    await open_and_close(db)
    expected = [(version, name) for version, name, _ in migrations()]
    assert [(v, n) for v, n, _ in applied(db)] == expected
    assert expected[0] == (1, "0001_initial.sql")
    assert CRAWL_TABLES | {"frontier", "pages"} <= schema_objects(db)
    assert rows(db, "PRAGMA journal_mode") == [("wal",)]


async def test_opening_again_applies_nothing(db: str) -> None:
    await open_and_close(db)
    before = applied(db)
    await open_and_close(db)
    await open_and_close(db, create=False)
    assert applied(db) == before  # same rows, same applied_at: nothing ran twice


async def test_pages_url_is_unique_in_the_schema(db: str) -> None:
    await open_and_close(db)
    insert = "INSERT INTO pages (url, depth, fetched_at, host) VALUES (?, 0, 0, ?)"
    with sqlite3.connect(db) as conn:
        conn.execute(insert, (HOST + "/", HOST))
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
            conn.execute(insert, (HOST + "/", HOST))


FIXED = "CREATE TABLE extra_a (x INTEGER UNIQUE);\nCREATE TABLE extra_b (y INTEGER);\n"


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        pytest.param(
            "CREATE TABLE extra_a (x INTEGER);\nCREATE INDEX extra_a_x ON extra_a (x);\n"
            "INSERT INTO no_such_table VALUES (1);\nCREATE TABLE extra_b (y INTEGER);\n",
            "no such table: no_such_table",
            id="missing-table",
        ),
        pytest.param(
            "CREATE TABLE extra_a (x INTEGER UNIQUE);\nINSERT INTO extra_a VALUES (1);\n"
            "INSERT INTO extra_a VALUES (1);\nCREATE TABLE extra_b (y INTEGER);\n",
            "UNIQUE constraint failed",
            id="constraint",
        ),
    ],
)
@pytest.mark.parametrize(
    "existing", [pytest.param(False, id="new-file"), pytest.param(True, id="existing-file")]
)
async def test_failed_migration_leaves_no_trace(
    db: str, existing: bool, broken: str, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if existing:
        await open_and_close(db)
    real = migrations()
    extra = max(v for v, _, _ in real) + 1  # numbers may have gaps (0006 before 0003)
    name = f"{extra:04d}_extra.sql"
    monkeypatch.setattr(
        crawler.store.sqlite_schema, "migrations", lambda: [*real, (extra, name, broken)]
    )
    with pytest.raises(StorageError, match=f"migration {name} failed: {message}"):
        await Storage.open(db, create=True)
    assert not {"extra_a", "extra_a_x", "extra_b"} & schema_objects(db)
    assert [v for v, _, _ in applied(db)] == [v for v, _, _ in real]  # no row for the failure
    assert rows(db, "PRAGMA integrity_check") == [("ok",)]

    # The file is still a good crawl database: the corrected migration applies on the next open.
    monkeypatch.setattr(
        crawler.store.sqlite_schema, "migrations", lambda: [*real, (extra, name, FIXED)]
    )
    await open_and_close(db)
    assert {"extra_a", "extra_b"} <= schema_objects(db)
    assert [v for v, _, _ in applied(db)] == [*(v for v, _, _ in real), extra]


def write_newer_schema(path: Path) -> None:
    # A crawl database written by a future crawler: our schema and one migration more.
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
            "applied_at REAL NOT NULL)"
        )
        for version, name, sql in migrations():
            conn.executescript(sql)
            conn.execute("INSERT INTO schema_migrations VALUES (?, ?, 0)", (version, name))
        conn.execute("INSERT INTO schema_migrations VALUES (9999, '9999_future.sql', 0)")
    conn.close()


def write_foreign_sqlite(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
        conn.execute("INSERT INTO notes (text) VALUES ('keep me')")
    conn.close()


def write_foreign_pages(path: Path) -> None:
    # Another program's database that happens to have a `pages` table.
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE pages (url TEXT, body TEXT)")
        conn.execute("INSERT INTO pages VALUES ('http://x/', 'keep me')")
    conn.close()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        pytest.param(
            lambda p: p.write_text("hello, I am a text file\n" * 200),
            "not a SQLite database",
            id="text-file",
        ),
        pytest.param(
            lambda p: p.write_bytes(bytes(range(256)) * 64), "not a SQLite database", id="binary"
        ),
        pytest.param(
            lambda p: p.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000),
            "not a SQLite database",
            id="sqlite-header-then-garbage",
        ),
        pytest.param(write_foreign_sqlite, "not a crawl database", id="other-sqlite-db"),
        pytest.param(write_foreign_pages, "not a crawl database", id="other-db-with-pages"),
        pytest.param(write_newer_schema, "schema version 9999, newer", id="newer-schema"),
    ],
)
@pytest.mark.parametrize(
    "create", [pytest.param(True, id="crawl"), pytest.param(False, id="resume")]
)
async def test_unusable_file_is_refused_and_untouched(
    tmp_path: Path, make: Any, message: str, create: bool
) -> None:
    path = tmp_path / "crawl.db"
    make(path)
    before = sha256(path)
    with pytest.raises(StorageError, match=message):
        await Storage.open(str(path), create=create)
    assert sha256(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["crawl.db"]  # no -wal, no -journal


async def test_missing_file_is_not_created_for_resume(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="no crawl database"):
        await Storage.open(str(tmp_path / "crawl.db"), create=False)
    assert list(tmp_path.iterdir()) == []


async def test_missing_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="does not exist"):
        await Storage.open(str(tmp_path / "nope" / "crawl.db"), create=True)


# ---------------------------------------------------------------------- batched writes


def page(path: str, status: int = 200, depth: int = 0) -> PageRow:
    row = PageRow.failed(HOST + path, HOST, depth, "unused", attempts=1)
    return dataclasses.replace(row, status=status, error=None, final_url=HOST + path)


def outcome(path: str, links: tuple[str, ...] = (), status: int = 200) -> Outcome:
    src = HOST + path
    return Outcome(
        url=src,
        state="done",
        page=page(path, status),
        links=[(src, [HOST + dst for dst in links], 0, "a")],
        new_urls=[NewURL(HOST + dst, HOST, 1) for dst in links],
    )


def batch() -> list[Outcome]:
    # "/" is discovered by "/b" and fetched in the same batch: order inside a flush matters.
    return [outcome("/a", ("/c", "/d")), outcome("/b", ("/",)), outcome("/", ("/a",))]


async def seeded(db: str) -> Storage:
    storage = await Storage.open(db, create=True)
    await storage.db.executemany(
        "INSERT INTO urls (url, host, depth, discovered_at) VALUES (?, ?, 0, 0)",
        [(HOST + p, HOST) for p in ("/a", "/b")],
    )
    return storage


def table_counts(db: str) -> dict[str, int]:
    return {t: rows(db, f"SELECT count(*) FROM {t}")[0][0] for t in ("pages", "links", "urls")}


async def test_flush_commits_a_batch(db: str) -> None:
    storage = await seeded(db)
    committed: list[int] = []
    storage.on_commit = lambda done, new: committed.append(len(done))
    try:
        for o in batch():
            storage.add(o)
        assert table_counts(db)["pages"] == 0  # nothing is written before the flush
        assert await storage.flush() == 3
        assert await storage.flush() == 0
    finally:
        await storage.close()
    assert committed == [3]
    assert table_counts(db) == {"pages": 3, "links": 4, "urls": 5}
    states = dict(rows(db, "SELECT url, state FROM urls"))
    assert states == {
        HOST + "/a": "done",
        HOST + "/b": "done",
        HOST + "/": "done",
        HOST + "/c": "queued",
        HOST + "/d": "queued",
    }


async def test_a_batch_of_many_rows_per_statement_keeps_every_row_in_order(db: str) -> None:
    # More rows than one statement carries (crawler.store.sqlite_many): links split into
    # chunks of 2,048 and powers of two, pages into chunks of 256; nothing is lost,
    # doubled or reordered, and a URL's state is its last outcome's.
    assert chunk_sizes(2500, 4) == [2048, 256, 128, 64, 4]
    assert sum(chunk_sizes(1337, 22)) == 1337 and max(chunk_sizes(1337, 22)) == 256
    storage = await Storage.open(db, create=True)
    paths = [f"/p{i}" for i in range(1337)]
    links = [f"/l{i}" for i in range(3)]
    try:
        await storage.db.executemany(
            "INSERT INTO urls (url, host, depth, discovered_at) VALUES (?, ?, 0, 0)",
            [(HOST + p, HOST) for p in paths],
        )
        for p in paths:
            o = outcome(p, tuple(f"{p}{dst}" for dst in links))
            assert o.page is not None
            storage.add(dataclasses.replace(o, page=dataclasses.replace(o.page, body=p.encode())))
        assert await storage.flush() == len(paths)
    finally:
        await storage.close()
    assert table_counts(db) == {"pages": 1337, "links": 1337 * 3, "urls": 1337 * 4}
    stored = [u for (u,) in rows(db, "SELECT url FROM pages ORDER BY id")]
    assert stored == [HOST + p for p in paths]
    expected = [(HOST + p, HOST + p + dst) for p in paths for dst in links]
    assert rows(db, "SELECT src_url, dst_url FROM links ORDER BY rowid") == expected
    states = dict(rows(db, "SELECT url, state FROM urls"))
    assert {states[HOST + p] for p in paths} == {"done"}
    assert sum(1 for s in states.values() if s == "queued") == 1337 * 3
    bodies = rows(db, "SELECT url, body FROM bodies JOIN page_rows ON id = page_id")
    assert sorted(bodies) == sorted((HOST + p, p.encode()) for p in paths)
    hashes = rows(db, "SELECT url, content_hash FROM page_rows")
    assert sorted(hashes) == sorted((HOST + p, hashlib.sha1(p.encode()).hexdigest()) for p in paths)


def test_body_chunks_are_powers_of_two_within_their_bytes() -> None:
    rng = random.Random(7)
    for _ in range(200):
        weights = [
            rng.choice((0, 10, 15_000, 900_000, 3_000_000)) for _ in range(rng.randrange(1, 700))
        ]
        sizes = byte_chunk_sizes(weights, 2_000_000, 256)
        assert sum(sizes) == len(weights)
        start = 0
        for size in sizes:
            assert size & (size - 1) == 0 and size <= 256
            assert size == 1 or sum(weights[start : start + size]) <= 2_000_000
            start += size


async def test_bodies_of_every_size_go_in_byte_bounded_statements_intact(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Bodies are bound (and copied by SQLite) a few MB per statement, not so many rows: a
    # statement of 16 pages at the 10 MB --max-bytes would have held 160 MB more.
    sizes = [0, 1, 15_000, 1_500_000, 2_500_000, 15_000, 700_000, 3, 1_999_999, 2_000_001]
    paths = [f"/b{i}" for i in range(len(sizes) * 6)]
    bodies = {p: bytes([i % 251]) * sizes[i % len(sizes)] for i, p in enumerate(paths)}
    bound: list[int] = []
    real = crawler.store.sqlite_batches.write_many

    def write_many(db: sqlite3.Connection, statement: str, *args: Any, **kw: Any) -> None:
        if statement.startswith("INSERT OR IGNORE INTO bodies"):
            bound.extend(kw["sizes"])
        real(db, statement, *args, **kw)

    monkeypatch.setattr(crawler.store.sqlite_batches, "write_many", write_many)
    storage = await Storage.open(db, create=True)
    try:
        for p in paths:
            o = outcome(p)
            assert o.page is not None
            storage.add(dataclasses.replace(o, page=dataclasses.replace(o.page, body=bodies[p])))
        assert await storage.flush() == len(paths)
    finally:
        await storage.close()
    stored = dict(rows(db, "SELECT url, body FROM pages"))
    assert stored == {HOST + p: bodies[p] for p in paths}
    assert sum(bound) == len(paths) and len(bound) > 6


@pytest.mark.parametrize("turns", range(4))
@pytest.mark.parametrize("fills", ["before", "while-waiting"])
async def test_a_writer_cancelled_as_its_batch_fills_stops(fills: str, turns: int) -> None:
    # The engine cancels its write loop as the crawl ends. Python 3.11's wait_for, cancelled
    # just as the batch filled, returned instead of raising: the loop went on waiting for
    # batches and the crawl, its work all committed, never ended. Every turn of the loop
    # at which the cancel may come: the wait either ended before it, or is cancelled.
    buffer = OutcomeBuffer(batch_size=1)
    if fills == "before":
        buffer.add(outcome("/a"))
    waiting = asyncio.create_task(buffer.wait_full(3600))
    await asyncio.sleep(0)  # one turn of the loop: the writer waits
    if fills == "while-waiting":
        buffer.add(outcome("/a"))
    for _ in range(turns):
        await asyncio.sleep(0)
    ended_before = waiting.done()
    waiting.cancel()
    if ended_before:
        await waiting
    else:
        with pytest.raises(asyncio.CancelledError):
            await waiting


class Gate:
    """Holds the writer thread inside a batch (at its pages' insert) until released."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.entered = [threading.Event(), threading.Event()]
        self.release = [threading.Event(), threading.Event()]
        self.batches = 0
        real = crawler.store.sqlite_batches.write_many

        def write_many(db: sqlite3.Connection, statement: str, *args: Any, **kw: Any) -> None:
            if statement.startswith("INSERT INTO page_rows"):
                n, self.batches = self.batches, self.batches + 1
                if n < len(self.entered):
                    self.entered[n].set()
                    assert self.release[n].wait(10), "the test never released the writer"
            real(db, statement, *args, **kw)

        monkeypatch.setattr(crawler.store.sqlite_batches, "write_many", write_many)

    async def inside(self, n: int) -> None:
        """Until the writer thread holds batch `n` (0-based) in the gate."""
        assert await asyncio.to_thread(self.entered[n].wait, 10), f"batch {n} never came"


@pytest.mark.parametrize("cancelled", ["caller", "flush"])
async def test_cancelled_flush_commits_its_batch_once(
    db: str, cancelled: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flush cancelled while the writer thread is inside its batch (a stop, a second
    Ctrl-C, the loop's teardown): the batch is committed whole, once, and not put back."""
    storage = await seeded(db)
    gate = Gate(monkeypatch)
    try:
        for o in batch():
            storage.add(o)
        # The caller of `flush`, or the flush task itself (as a loop's teardown does).
        task = (
            asyncio.ensure_future(storage.flush())
            if cancelled == "caller"
            else (storage._pending())
        )
        await gate.inside(0)
        assert storage.backlog == 0  # taken by the batch
        task.cancel()
        gate.release[0].set()
        with pytest.raises(asyncio.CancelledError):
            await task
        storage.add(outcome("/c"))  # added after the cancel: committed by the next flush
        gate.release[1].set()
        assert await storage.flush() == 1
        assert storage.backlog == 0
    finally:
        await storage.close()
    assert table_counts(db) == {"pages": 4, "links": 4, "urls": 5}
    assert [u for (u,) in rows(db, "SELECT url FROM pages ORDER BY id")] == [
        HOST + p for p in ("/a", "/b", "/", "/c")
    ]


@pytest.mark.parametrize("read", ["any_queued", "page_count", "new_work", "load_crawl"])
async def test_a_read_cancelled_before_it_ran_leaves_no_statement_open(db: str, read: str) -> None:
    """A read whose caller is cancelled (the coordination's watcher as a crawl ends) still
    runs on the connection's thread; its statement must not stay open. An open one holds
    a read transaction, and SQLite refuses the next batch's BEGIN IMMEDIATE at once
    ("database is locked", no busy_timeout wait) when another process has committed
    meanwhile: with --processes, about one crawl in 40 stopped so. (Before the fix, how
    long the lost cursor lived varied: most runs of these four failed one or more.)"""
    storage = await seeded(db)
    await storage.save_crawl(Settings(), [HOST + "/"])
    other = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    begun = threading.Event()

    def another_process_commits(sql: str) -> None:
        # Traced as BEGIN IMMEDIATE starts, before it asks for the write lock.
        if sql.startswith("BEGIN IMMEDIATE") and not begun.is_set():
            begun.set()
            other.execute("INSERT INTO runs (kind, started_at) VALUES ('crawl', 0)")

    hold = threading.Event()
    try:
        await on_thread(storage.db, lambda conn: conn.set_trace_callback(another_process_commits))
        # The thread is held, so the read is still queued when its caller is cancelled.
        holding = asyncio.ensure_future(on_thread(storage.db, lambda conn: hold.wait(10)))
        reading = getattr(storage, read)()
        # Cancelled as a task is: run to its first wait (the read's job is queued), then
        # CancelledError thrown in there.
        reading.send(None)
        with pytest.raises(asyncio.CancelledError):
            reading.throw(asyncio.CancelledError())
        await storage.save_robots("http://b.test", 200, None, "User-agent: *")
        flushing = asyncio.ensure_future(storage.flush())
        hold.set()
        assert await holding
        assert await flushing == 0  # no outcomes, one robots.txt row: committed
        assert begun.is_set() and storage.failure is None
    finally:
        hold.set()
        await storage.close()
        other.close()
    assert rows(db, "SELECT host FROM robots") == [("http://b.test",)]


async def test_callers_waiting_for_the_writer_share_one_batch(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A group commit: flushes asked for while a batch is being written are one batch,
    and back-pressure (`make_room`) waits for that batch to be taken, not committed."""
    storage = await seeded(db)
    gate = Gate(monkeypatch)
    try:
        first = batch()
        storage.add(first[0])
        writing = asyncio.ensure_future(storage.flush())
        await gate.inside(0)
        waiting = []
        for o in [*first[1:], outcome("/c"), outcome("/d")]:
            storage.add(o)  # as workers do, each adding before it asks
            waiting.append(asyncio.ensure_future(storage.flush()))
        room = asyncio.ensure_future(storage.make_room())
        gate.release[0].set()
        assert await writing == 1
        await gate.inside(1)  # the second batch is taken, not yet committed
        await asyncio.wait_for(room, 10)
        assert not any(w.done() for w in waiting)
        gate.release[1].set()
        assert await asyncio.gather(*waiting) == [4, 4, 4, 4]
        assert gate.batches == 2
    finally:
        await storage.close()
    assert table_counts(db)["pages"] == 5


@pytest.mark.parametrize(
    ("error", "message"),
    [
        pytest.param(sqlite3.OperationalError("disk I/O error"), "disk I/O error", id="io"),
        pytest.param(sqlite3.OperationalError("database is locked"), "locked", id="locked"),
        pytest.param(OSError(28, "No space left on device"), "No space left", id="oserror"),
        pytest.param(sqlite3.DatabaseError("database disk image is malformed"), "malformed",
                     id="corrupt"),
    ],
)  # fmt: skip
async def test_store_failure_stops_every_later_flush_and_keeps_the_batch(
    db: str, error: Exception, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = await seeded(db)
    real = crawler.store.sqlite_batches.write_many
    calls: list[str] = []

    def failing(db: sqlite3.Connection, sql: str, *args: Any, **kw: Any) -> None:
        calls.append(sql)
        if sql.startswith("INSERT INTO links"):  # after urls and pages were written
            raise error
        real(db, sql, *args, **kw)

    try:
        for o in batch():
            storage.add(o)
        monkeypatch.setattr(crawler.store.sqlite_batches, "write_many", failing)
        with pytest.raises(StoreFailure) as failure:
            await storage.flush()
        text = str(failure.value)
        assert message in text and db in text and "`crawler resume` continues" in text
        assert len(text.splitlines()) == 1
        assert failure.value.exit_code == 1
        assert storage.failure is failure.value
        assert storage.backlog == 3  # kept (lost on exit: still queued in the file)

        # Not written again: the crawl stops; not row by row either (no row is at fault).
        monkeypatch.setattr(crawler.store.sqlite_batches, "write_many", real)
        tried = len(calls)
        with pytest.raises(StoreFailure):
            await storage.flush()
        assert len(calls) == tried
    finally:
        await storage.close()
    assert table_counts(db) == {"pages": 0, "links": 0, "urls": 2}
    assert rows(db, "PRAGMA integrity_check") == [("ok",)]


async def test_robots_reads_cost_no_query_for_hosts_the_file_never_had(db: str) -> None:
    """A crawl opening on many hosts asks the file once which hosts have robots.txt; a
    copy saved goes with the next batch, and only such a host is read again."""
    storage = await Storage.open(db, create=True)
    queries: list[str] = []
    await storage.db.set_trace_callback(queries.append)
    try:
        hosts = [f"http://127.0.0.{i}:80" for i in range(2, 202)]
        assert [await storage.robots_for(h, 0) for h in hosts] == [None] * len(hosts)
        assert [q for q in queries if "FROM robots" in q] == [
            "SELECT host FROM robots WHERE fetched_at >= 0 AND status >= 200 AND status < 500 "
            "AND status <> 429"
        ]
        await storage.save_robots(hosts[0], 200, None, "User-agent: *\nDisallow: /x\n")
        assert rows(db, "SELECT count(*) FROM robots") == [(0,)]  # not before the batch
        assert await storage.flush() == 0  # no outcome, but the robots.txt row
        queries.clear()
        found = await storage.robots_for(hosts[0], 0)
        assert found is not None and found[:2] == (200, "User-agent: *\nDisallow: /x\n")
        assert await storage.robots_for(hosts[1], 0) is None
        assert len([q for q in queries if "FROM robots" in q]) == 1  # hosts[0] only
    finally:
        await storage.close()
    assert rows(db, "SELECT host, status FROM robots") == [("http://127.0.0.2:80", 200)]


def big_outcome(path: str, size: int) -> Outcome:
    o = outcome(path, ("/next" + path,))
    assert o.page is not None
    return dataclasses.replace(o, page=dataclasses.replace(o.page, body=b"x" * size))


async def test_disk_full_is_a_store_failure_and_the_file_resumes(db: str) -> None:
    """A real SQLITE_FULL: the database may not grow past its size when the batch starts."""
    storage = await seeded(db)
    try:
        storage.add(big_outcome("/a", 1000))
        assert await storage.flush() == 1
        async with storage.db.execute("PRAGMA page_count") as cur:
            row = await cur.fetchone()
        assert row is not None
        await storage.db.execute(f"PRAGMA max_page_count = {row[0]}")
        storage.add(big_outcome("/b", 200_000))
        with pytest.raises(StoreFailure, match=r"^store failed: database or disk is full \("):
            await storage.flush()
        assert storage.backlog == 1
        async with storage.deferred_indexes():
            pass  # after a failure: no rebuild attempted, no second error
    finally:
        await storage.close()

    assert rows(db, "PRAGMA integrity_check") == [("ok",)]
    assert rows(db, "SELECT url, length(body) FROM pages") == [(HOST + "/a", 1000)]
    assert dict(rows(db, "SELECT url, state FROM urls WHERE url IN (?, ?)", HOST + "/a",
                     HOST + "/b")) == {HOST + "/a": "done", HOST + "/b": "queued"}  # fmt: skip

    # Reopened without the limit (space freed): the lost batch is simply fetched again.
    storage = await Storage.open(db, create=False)
    try:
        storage.add(big_outcome("/b", 200_000))
        assert await storage.flush() == 1
    finally:
        await storage.close()
    assert rows(db, "SELECT url, length(body) FROM pages ORDER BY id") == [
        (HOST + "/a", 1000),
        (HOST + "/b", 200_000),
    ]


async def test_a_body_left_by_a_deleted_page_is_not_taken_by_the_next_page(db: str) -> None:
    """Bodies go in with INSERT OR IGNORE (no statement journal): a body whose page a
    user deleted without foreign keys (the sqlite3 shell's default) must not stand in
    for the body of the page that next takes its id."""
    storage = await seeded(db)
    a, b, root = (with_page(o, body=f"<p>{o.url}</p>".encode()) for o in batch())
    try:
        storage.add(a)
        storage.add(b)
        assert await storage.flush() == 2
        with sqlite3.connect(db) as conn:  # foreign keys off: b's body stays behind
            conn.execute("DELETE FROM page_rows WHERE url = ?", (HOST + "/b",))
        assert rows(db, "SELECT count(*) FROM bodies") == [(2,)]
        storage.add(root)
        assert await storage.flush() == 1
    finally:
        await storage.close()
    assert rows(db, "SELECT url, body, error FROM pages ORDER BY id") == [
        (HOST + "/a", f"<p>{HOST}/a</p>".encode(), None),
        (HOST + "/", f"<p>{HOST}/</p>".encode(), None),
    ]
    assert rows(db, "SELECT count(*) FROM bodies") == [(2,)]


# ---------------------------------------------------------------------- values the store refuses


def with_page(o: Outcome, **changes: Any) -> Outcome:
    assert o.page is not None
    return dataclasses.replace(o, page=dataclasses.replace(o.page, **changes))


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        pytest.param({"headers": '[["X", "caf\udce9"]]'}, "UnicodeEncodeError", id="surrogate"),
        pytest.param({"size": 2**70}, "OverflowError", id="int-too-big"),
        pytest.param({"depth": None}, "IntegrityError: NOT NULL", id="constraint"),
        pytest.param({"title": ["not", "a", "str"]}, "ProgrammingError", id="unbindable"),
    ],
)
async def test_a_refused_row_becomes_an_error_row_and_its_batch_commits(
    db: str, bad: dict[str, Any], error: str
) -> None:
    storage = await seeded(db)
    committed: list[list[str]] = []
    storage.on_commit = lambda done, new: committed.append([o.url for o in done])
    good_a, good_b, root = batch()
    refused = dataclasses.replace(with_page(good_b, **bad), skipped=(("depth", 5),))
    try:
        for o in (good_a, refused, root):
            storage.add(dataclasses.replace(o, skipped=(*o.skipped, ("nofollow", 1))))
        assert await storage.flush() == 3
        assert storage.backlog == 0  # never retried
        assert await storage.flush() == 0
    finally:
        await storage.close()
    assert committed == [[HOST + "/a", HOST + "/b", HOST + "/"]]
    found = {r[0]: r[1:] for r in rows(db, "SELECT url, status, error, attempts FROM pages")}
    assert found[HOST + "/a"] == (200, None, 1)
    assert found[HOST + "/"] == (200, None, 1)
    status, message, attempts = found[HOST + "/b"]
    assert status is None and attempts == 1
    assert message.startswith(f"internal: {error}")
    assert "\n" not in message
    # The refused outcome's links and new URLs are not stored; the others' are.
    assert rows(db, "SELECT DISTINCT src_url FROM links ORDER BY src_url") == [
        (HOST + "/",),
        (HOST + "/a",),
    ]
    assert rows(db, "SELECT state FROM urls WHERE url = ?", HOST + "/b") == [("done",)]
    assert rows(db, "SELECT reason, count FROM skipped") == [("nofollow", 2)]


async def test_an_outcome_that_cannot_even_be_an_error_row_is_dropped(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The store's log lines carry the URL's lone surrogate, which pytest-xdist cannot send
    # back from its worker process (pytest-dev/pytest-xdist#843): they go nowhere here.
    log = logging.getLogger(crawler.store.sqlite_batches.__name__)
    monkeypatch.setattr(log, "propagate", False)
    monkeypatch.setattr(log, "handlers", [logging.NullHandler()])
    storage = await seeded(db)
    try:
        bad_url = HOST + "/\udcff"
        storage.add(outcome("/a"))
        storage.add(Outcome(url=bad_url, state="done", page=page("/\udcff")))
        storage.add(Outcome(url="", state=None, new_urls=[NewURL(bad_url, HOST, 1)]))
        storage.add(outcome("/b"))
        assert await storage.flush() == 4
    finally:
        await storage.close()
    assert [u for (u,) in rows(db, "SELECT url FROM pages ORDER BY id")] == [
        HOST + "/a",
        HOST + "/b",
    ]


# ---------------------------------------------------------------------- redirect chains, fates


def redirect(path: str, to: str, *, origin: str | None = None, hops: int = 0) -> Outcome:
    row = dataclasses.replace(page(path, status=301), final_url=HOST + to, redirect_to=HOST + to)
    nxt = NewURL(HOST + to, HOST, 0, hops + 1, HOST + (origin or path))
    return Outcome(url=HOST + path, state="done", page=row, new_urls=[nxt])


async def test_final_status_is_the_status_unless_a_redirect(db: str) -> None:
    storage = await seeded(db)
    try:
        storage.add(outcome("/a"))
        storage.add(outcome("/b", status=404))
        storage.add(redirect("/r", "/s"))
        failed = PageRow.failed(HOST + "/x", HOST, 0, "connect: refused", attempts=3)
        storage.add(Outcome(url=HOST + "/x", state="done", page=failed))
        storage.add(with_page(outcome("/given"), status=302, final_status=200))
        await storage.flush()
    finally:
        await storage.close()
    assert dict(rows(db, "SELECT url, final_status FROM pages")) == {
        HOST + "/a": 200,
        HOST + "/b": 404,
        HOST + "/r": None,  # until the chain ends
        HOST + "/x": None,
        HOST + "/given": 200,
    }


@pytest.mark.parametrize(
    ("end", "final_url", "final_status", "error"),
    [
        pytest.param(("/end", 200, None), "/end", 200, None, id="resolved"),
        pytest.param((None, 301, "redirect loop"), None, 301, "redirect loop", id="loop"),
        pytest.param(("/a", None, None), "/a", 404, None, id="ends-at-a-stored-page"),
        pytest.param(("http://out/", 301, "redirect target not followed: out of scope"),
                     "http://out/", 301, "redirect target not followed: out of scope",
                     id="out-of-scope"),
    ],
)  # fmt: skip
async def test_a_chain_end_reaches_every_row_of_the_chain(
    db: str,
    end: tuple[str | None, int | None, str | None],
    final_url: str | None,
    final_status: int | None,
    error: str | None,
) -> None:
    storage = await seeded(db)
    to, status, chain_error = end

    def absolute(u: str | None) -> str | None:
        return HOST + u if u and u.startswith("/") else u

    try:
        storage.add(outcome("/a", status=404))
        storage.add(redirect("/r", "/mid"))
        storage.add(outcome("/other"))
        await storage.flush()
        hop = redirect("/mid", "/end", origin="/r", hops=1)
        storage.add(dataclasses.replace(hop, new_urls=[]))
        storage.add(
            dataclasses.replace(
                outcome("/end"),
                chain_end=ChainEnd(HOST + "/r", absolute(to), status, chain_error),
            )
        )
        await storage.flush()
    finally:
        await storage.close()
    found = {
        u: rest for u, *rest in rows(db, "SELECT url, final_url, final_status, error FROM pages")
    }
    expected = [absolute(final_url), final_status, error]
    assert found[HOST + "/r"] == expected
    assert found[HOST + "/mid"] == expected
    assert found[HOST + "/other"] == [HOST + "/other", 200, None]  # not in the chain
    assert found[HOST + "/a"] == [HOST + "/a", 404, None]


def plan(db: str, sql: str, *args: Any) -> str:
    return "\n".join(r[3] for r in rows(db, f"EXPLAIN QUERY PLAN {sql}", *args))


async def test_a_chain_end_and_the_partition_watcher_are_index_lookups(db: str) -> None:
    await open_and_close(db)
    chain = plan(db, crawler.store.sqlite_batches._END_CHAIN, "u", 200, None, "o")
    assert "USING INDEX urls_origin (origin=?)" in chain
    assert "SCAN" not in chain  # neither urls nor page_rows is read whole
    watcher = plan(
        db, "SELECT host, max(id) FROM urls NOT INDEXED WHERE id > ? AND state = 'queued' "
        "GROUP BY host", 0
    )  # fmt: skip
    assert "SEARCH urls USING INTEGER PRIMARY KEY (rowid>?)" in watcher
    assert "SCAN urls" not in watcher


async def test_skipped_counts_add_up_across_batches(db: str) -> None:
    storage = await seeded(db)
    try:
        storage.add(
            dataclasses.replace(outcome("/a"), skipped=((Reason.DEPTH, 3), (Reason.DENY, 1)))
        )
        storage.add(dataclasses.replace(outcome("/b"), skipped=((Reason.DEPTH, 2),)))
        await storage.flush()
        storage.add(Outcome(HOST + "/c", "disallowed", "robots.txt", skipped=((Reason.ROBOTS, 1),)))
        storage.add(dataclasses.replace(outcome("/"), skipped=((Reason.DEPTH, 1),)))
        await storage.flush()
    finally:
        await storage.close()
    assert dict(rows(db, "SELECT reason, count FROM skipped")) == {
        "depth": 6,
        "deny": 1,
        "robots": 1,
    }


# ---------------------------------------------------------------------- bodies, runs


async def test_bodies_live_in_their_own_table_behind_the_pages_view(db: str) -> None:
    storage = await seeded(db)
    try:
        storage.add(with_page(outcome("/a"), body=b"<html>a</html>"))
        storage.add(with_page(outcome("/a"), body=b"second"))  # ignored, and so is its body
        storage.add(with_page(outcome("/b"), body=b"\x78\x9c", body_codec="zlib",
                              content_hash="abc"))  # fmt: skip
        storage.add(with_page(outcome("/"), body=b""))
        storage.add(outcome("/c"))  # no body
        await storage.flush()
    finally:
        await storage.close()
    assert rows(db, "SELECT url, body, body_codec, content_hash FROM pages ORDER BY id") == [
        (HOST + "/a", b"<html>a</html>", None, hashlib.sha1(b"<html>a</html>").hexdigest()),
        (HOST + "/b", b"\x78\x9c", "zlib", "abc"),
        (HOST + "/", b"", None, None),
        (HOST + "/c", None, None, None),
    ]
    assert rows(db, "SELECT count(*) FROM bodies") == [(3,)]
    assert rows(
        db, "SELECT count(*) FROM bodies WHERE page_id NOT IN (SELECT id FROM page_rows)"
    ) == [(0,)]


async def test_the_pages_view_takes_writes_as_the_table_did(db: str) -> None:
    await open_and_close(db)
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO pages (url, status, depth, fetched_at, host, body) "
            "VALUES (?, 200, 0, 0, ?, ?)",
            (HOST + "/", HOST, b"one"),
        )
        conn.execute("UPDATE pages SET body = ?, status = 404 WHERE url = ?", (b"two", HOST + "/"))
        assert conn.execute(
            "SELECT status, final_status, body, truncated, attempts FROM pages"
        ).fetchall() == [(404, 200, b"two", 0, 1)]
        conn.execute("DELETE FROM pages")
        assert conn.execute("SELECT count(*) FROM bodies").fetchone() == (0,)
    conn.close()


async def test_runs_are_recorded_and_a_resume_sets_resumed_at(db: str) -> None:
    storage = await Storage.open(db, create=True)
    try:
        await storage.save_crawl(Settings(), ["http://a/"])
        first = await storage.start_run("crawl")
        assert rows(db, "SELECT resumed_at FROM crawl") == [(None,)]
        took = await storage.end_run(first, 5, True)
        second = await storage.start_run("resume")
        assert second > first
    finally:
        await storage.close()
    (started, ended, n, interrupted), open_run = rows(
        db, "SELECT started_at, ended_at, pages, interrupted FROM runs ORDER BY id"
    )
    assert took == pytest.approx(ended - started) and took >= 0
    assert (n, interrupted) == (5, 1)
    assert open_run[1:] == (None, None, None)  # killed or still running
    assert rows(db, "SELECT resumed_at FROM crawl") == [(open_run[0],)]


async def test_second_outcome_for_a_url_adds_no_row(db: str) -> None:
    storage = await seeded(db)
    try:
        storage.add(outcome("/a", status=200))
        storage.add(outcome("/a", status=500))  # the same URL twice in one batch
        await storage.flush()
        storage.add(outcome("/a", status=404))  # and again in a later batch
        await storage.flush()
    finally:
        await storage.close()
    assert rows(db, "SELECT url, status FROM pages") == [(HOST + "/a", 200)]
    assert rows(db, "SELECT url, count(*) FROM pages GROUP BY url HAVING count(*) > 1") == []


async def test_deferred_indexes_are_back_however_the_run_ends(db: str) -> None:
    storage = await Storage.open(db, create=True)
    index = "SELECT name FROM sqlite_master WHERE name = 'links_dst'"
    try:
        async with storage.deferred_indexes():
            assert rows(db, index) == []  # not maintained row by row while a run writes
        with pytest.raises(RuntimeError):
            async with storage.deferred_indexes():
                raise RuntimeError("the run failed")
    finally:
        await storage.close()
    assert rows(db, index) == [("links_dst",)]


# ---------------------------------------------------------------------- a full disk, end to end


def _small_files(limit: int) -> Callable[[], None]:
    def apply() -> None:  # in the child: writes past `limit` bytes fail (EFBIG), no signal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_a_full_disk_stops_the_crawl_with_exit_1_and_resume_finishes_it(tmp_path: Path) -> None:
    db = str(tmp_path / "crawl.db")
    with threaded_site() as (site, thread):
        host = thread.call(site.host())
        paths = [f"/p{i}" for i in range(120)]
        host.page("/", paths)
        host.hold = 0.05  # a slow server: pages arrive over several batches
        for p in paths:
            host.page(p, body="<html>" + p * 2000 + "</html>")  # ~8 KB each: ~1 MB in all
        agent = "testbot/1.0 (+https://tests.example/)"  # a contact: no User-Agent warning
        command = [sys.executable, "-m", "crawler", "crawl", host.url("/"), "--db", db, "--quiet"]
        command += ["--user-agent", agent]
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=60, preexec_fn=_small_files(500_000)
        )
        assert done.returncode == 1, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
        assert lines[0].startswith("crawler: error: store failed: ")
        assert "crawler resume" in lines[0]
        stored = rows(db, "SELECT count(*) FROM pages")[0][0]
        assert 0 < stored < 121  # stopped part way
        assert rows(db, "PRAGMA integrity_check") == [("ok",)]
        # Consistent: a page for exactly every URL marked done.
        assert (
            rows(db, "SELECT url FROM pages EXCEPT SELECT url FROM urls WHERE state = 'done'") == []
        )
        assert (
            rows(db, "SELECT url FROM urls WHERE state = 'done' EXCEPT SELECT url FROM pages") == []
        )

        host.hold = 0.0
        resumed = subprocess.run(
            [sys.executable, "-m", "crawler", "resume", "--db", db, "--quiet"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert resumed.returncode == 0, resumed.stderr
    assert rows(db, "SELECT count(*), count(DISTINCT url) FROM pages") == [(121, 121)]


async def test_the_run_lock_outlives_the_connection(db: str) -> None:
    """The run's lock is a second descriptor of the database file, and closing any
    descriptor of a file drops every fcntl lock the process holds on it, SQLite's own
    included. Released before the connection closed, it left the file unlocked: a reader
    closing meanwhile took it for the last connection and deleted the WAL under us."""
    storage = await Storage.open(db, create=True)
    try:
        await storage.save_crawl(Settings(), [HOST + "/"])
        with (
            storage.lock(),
            pytest.raises(UsageError, match="in use by another crawl"),
            storage.lock(),
        ):
            pass
        reader = f"import sqlite3; c = sqlite3.connect({db!r}); c.execute('SELECT 1 FROM crawl')"
        await asyncio.to_thread(
            subprocess.run, [sys.executable, "-c", reader + "; c.close()"], check=True
        )
        assert Path(db + "-wal").exists()  # another connection (ours) is still open
        with pytest.raises(UsageError, match="in use by another crawl"), storage.lock():
            pass  # held until the store closes
        assert Path(db + "-wal").exists()  # a refused lock drops no lock either
    finally:
        await storage.close()
    with lock.exclusive(db):
        pass


@pytest.mark.parametrize("size", [1, 3, 5, 7])
async def test_a_long_read_in_chunks_gives_every_row_once_in_order(db: str, size: int) -> None:
    """`seen_urls` reads the frontier a chunk per job, by its ids: whatever the chunk
    size, every URL comes once (a lost one would be admitted again on resume)."""
    storage = await seeded(db)  # /a and /b
    try:
        await storage.db.executemany(
            "INSERT INTO urls (url, host, depth, discovered_at) VALUES (?, ?, 0, 0)",
            [(f"{HOST}/{n}", HOST) for n in range(8)],
        )
        sql = "SELECT id, url FROM urls WHERE id > ? ORDER BY id LIMIT ?"
        found = [row async for chunk in chunks(storage.db, sql, (), 0, size) for row in chunk]
        assert [url async for url in storage.seen_urls()] == [url for _, url in found]
    finally:
        await storage.close()
    assert [url for _, url in found] == [
        HOST + "/a",
        HOST + "/b",
        *(f"{HOST}/{n}" for n in range(8)),
    ]
