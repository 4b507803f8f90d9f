"""Storage: migrations, refusing files that are not ours, batched and crash-safe writes."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from support import rows

import crawler.storage
from crawler.errors import StorageError
from crawler.storage import NewURL, Outcome, PageRow, Storage, migrations

HOST = "http://127.0.0.2:8000"
CRAWL_TABLES = {"crawl", "urls", "pages", "links", "robots", "schema_migrations"}


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
    assert CRAWL_TABLES | {"frontier"} <= schema_objects(db)
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
    extra = len(real) + 1
    name = f"{extra:04d}_extra.sql"
    monkeypatch.setattr(crawler.storage, "migrations", lambda: [*real, (extra, name, broken)])
    with pytest.raises(StorageError, match=f"migration {name} failed: {message}"):
        await Storage.open(db, create=True)
    assert not {"extra_a", "extra_a_x", "extra_b"} & schema_objects(db)
    assert [v for v, _, _ in applied(db)] == [v for v, _, _ in real]  # no row for the failure
    assert rows(db, "PRAGMA integrity_check") == [("ok",)]

    # The file is still a good crawl database: the corrected migration applies on the next open.
    monkeypatch.setattr(crawler.storage, "migrations", lambda: [*real, (extra, name, FIXED)])
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
        links=[(src, HOST + dst, 0) for dst in links],
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
    storage.on_commit = lambda done: committed.append(len(done))
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


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(sqlite3.OperationalError("disk I/O error"), id="write-error"),
        pytest.param(asyncio.CancelledError(), id="cancelled"),
    ],
)
async def test_failed_flush_leaves_no_partial_rows_and_keeps_the_batch(
    db: str, error: BaseException, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = await seeded(db)
    real = storage.db.executemany
    calls: list[str] = []

    async def failing(sql: str, params: Any) -> Any:
        calls.append(sql.split("(")[0].strip())
        if sql.startswith("INSERT INTO links"):  # after urls and pages were written
            raise error
        return await real(sql, params)

    try:
        for o in batch():
            storage.add(o)
        monkeypatch.setattr(storage.db, "executemany", failing)
        with pytest.raises(type(error)):
            await storage.flush()
        assert calls == [
            "INSERT OR IGNORE INTO urls",
            "INSERT OR IGNORE INTO pages",
            "INSERT INTO links",
        ]
        assert table_counts(db) == {"pages": 0, "links": 0, "urls": 2}
        assert rows(db, "SELECT DISTINCT state FROM urls") == [("queued",)]
        assert storage.backlog == 3

        monkeypatch.setattr(storage.db, "executemany", real)
        storage.add(outcome("/c"))  # added after the failure: committed after the kept batch
        assert await storage.flush() == 4
    finally:
        await storage.close()
    assert table_counts(db) == {"pages": 4, "links": 4, "urls": 5}
    assert [u for (u,) in rows(db, "SELECT url FROM pages ORDER BY id")] == [
        HOST + p for p in ("/a", "/b", "/", "/c")
    ]


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
