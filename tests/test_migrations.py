"""Migration 0002 upgrades a crawl file written by the 0001 schema in place, in one
transaction, with every row and body unchanged, and the upgraded crawl resumes to its end."""

from __future__ import annotations

import importlib.util
import shutil
import sqlite3
import zlib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from support import invoke, rows

import crawler.store.sqlite_batches
import crawler.store.sqlite_schema
from crawler.errors import StorageError
from crawler.run import resume
from crawler.store.sqlite import SQLiteStore as Storage
from crawler.store.sqlite_schema import migrations

DATA = Path(__file__).resolve().parent / "data"
OLD_FILE = DATA / "crawl_0001.db"


def load_site() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_crawl_0001", DATA / "make_crawl_0001.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SITE = load_site()
# Every column of the 0001 `pages` table, in its order.
OLD_COLUMNS = (
    "id, url, final_url, status, error, content_type, depth, fetched_at, body, host, headers, "
    "elapsed, size, truncated, links_found, links_truncated, redirect_to, attempts, "
    "body_codec, content_hash, title"
)


def snapshot(db: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every 0001 table, as the 0001 columns."""
    return {
        "pages": rows(db, f"SELECT {OLD_COLUMNS} FROM pages ORDER BY id"),
        "urls": rows(db, "SELECT * FROM urls ORDER BY id"),
        "links": rows(db, "SELECT rowid, src_url, dst_url, nofollow FROM links ORDER BY rowid"),
        "robots": rows(db, "SELECT * FROM robots ORDER BY host"),
        "crawl": rows(
            db, "SELECT id, settings, seeds, started_at, resumed_at, finished_at FROM crawl"
        ),
        "frontier": rows(db, "SELECT * FROM frontier ORDER BY url"),
    }


def objects(db: str) -> dict[str, str]:
    return dict(rows(db, "SELECT name, type FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"))


@pytest.fixture
def old_db(tmp_path: Path) -> str:
    path = tmp_path / "crawl.db"
    shutil.copyfile(OLD_FILE, path)
    return str(path)


async def test_the_kept_file_is_a_real_0001_crawl(old_db: str) -> None:
    assert rows(old_db, "SELECT version FROM schema_migrations") == [(1,)]
    assert objects(old_db)["pages"] == "table"
    assert rows(old_db, "SELECT count(*) FROM pages WHERE length(body) > 0")[0][0] >= 10
    assert rows(old_db, "SELECT count(*) FROM links")[0][0] > 0
    assert rows(old_db, "SELECT count(*) FROM urls WHERE state = 'queued'")[0][0] > 0
    assert OLD_FILE.stat().st_size < 200_000


def test_the_read_commands_read_a_0001_file_without_upgrading_it(old_db: str) -> None:
    (url,) = rows(old_db, "SELECT url FROM pages WHERE status = 200 ORDER BY url LIMIT 1")[0]
    for args in (["why", url], ["stats"], ["export", "--format", "jsonl", "-o", old_db + ".jl"]):
        result = invoke(*args, "--db", old_db)
        assert result.exit_code == 0, (args, result.stderr)
        assert "Traceback" not in result.stdout + result.stderr
    assert "stored: status 200" in invoke("why", url, "--db", old_db).stdout
    assert rows(old_db, "SELECT version FROM schema_migrations") == [(1,)]  # left as it was


async def test_0001_file_is_upgraded_with_every_row_and_body_unchanged(old_db: str) -> None:
    before = snapshot(old_db)
    storage = await Storage.open(old_db, create=False)
    await storage.close()

    applied = [v for (v,) in rows(old_db, "SELECT version FROM schema_migrations ORDER BY 1")]
    assert applied == [v for v, _, _ in migrations()]
    kinds = objects(old_db)
    assert kinds["pages"] == "view" and kinds["page_rows"] == "table"
    assert {"bodies", "skipped", "runs", "urls_origin", "pages_host"} <= set(kinds)
    assert snapshot(old_db) == before
    # 0005: every old link was an <a>; the signals were not recorded then.
    assert rows(old_db, "SELECT DISTINCT kind FROM links") == [("a",)]
    assert rows(old_db, "SELECT count(*) FROM pages WHERE canonical_url IS NOT NULL") == [(0,)]
    assert rows(old_db, "SELECT count(*) FROM pages WHERE noindex IS NOT NULL") == [(0,)]
    assert rows(old_db, "PRAGMA integrity_check") == [("ok",)]
    assert rows(old_db, "PRAGMA foreign_key_check") == []
    assert rows(old_db, "SELECT count(*) FROM bodies") == rows(
        old_db, "SELECT count(*) FROM pages WHERE body IS NOT NULL"
    )

    final = dict(rows(old_db, "SELECT url, final_status FROM pages"))
    for _, url, _, status, *_ in before["pages"]:
        if status is not None and 300 <= status < 400:
            continue
        assert final[url] == status
    origin = SITE.ORIGIN
    assert final[origin + "/old"] is None  # its chain had not ended: /end was still queued
    assert final[origin + "/loop"] is None  # a loop has no final status

    # The 0001 crawl becomes one run: its pages' time span.
    ((kind, started, ended, pages, interrupted),) = rows(
        old_db, "SELECT kind, started_at, ended_at, pages, interrupted FROM runs"
    )
    first, last = rows(old_db, "SELECT min(fetched_at), max(fetched_at) FROM pages")[0]
    # Not interrupted: max_pages ends a crawl as finished (0001 set finished_at).
    assert (kind, started, ended, pages, interrupted) == ("crawl", first, last, 14, 0)


async def test_0004_backfills_one_fetch_per_stored_page(old_db: str) -> None:
    pages = rows(old_db, "SELECT url, fetched_at, status, content_hash FROM pages ORDER BY id")
    storage = await Storage.open(old_db, create=False)
    await storage.close()
    ((run,),) = rows(old_db, "SELECT id FROM runs")
    assert (
        rows(
            old_db,
            "SELECT url, fetched_at, status, content_hash FROM fetches WHERE change = 'new' "
            "AND run_id = ? ORDER BY id",
            run,
        )
        == pages
    )
    assert rows(old_db, "SELECT count(*) FROM fetches") == [(len(pages),)]


async def test_the_upgraded_crawl_resumes_to_the_end(old_db: str) -> None:
    before = snapshot(old_db)["pages"]
    runner = await SITE.serve()
    try:
        summary = await resume(old_db, {"max_pages": 0})  # it was stopped by max_pages
    finally:
        await runner.cleanup()
    assert summary.finished and not summary.interrupted

    site = SITE.site()
    origin = SITE.ORIGIN
    reachable = {origin + p for p in [*site, "/missing"] if p not in ("/robots.txt", "/private/x")}
    stored = rows(old_db, "SELECT url, count(*) FROM pages GROUP BY url")
    assert {url for url, _ in stored} == reachable
    assert all(n == 1 for _, n in stored)
    assert rows(old_db, "SELECT count(*) FROM urls WHERE state = 'queued'") == [(0,)]
    assert rows(old_db, "SELECT url FROM frontier") == [(origin + "/private/x",)]

    # Rows stored before the upgrade are as they were, except where the chain through
    # /old (301 -> /mid 302 -> /end) ended: now it is known.
    after = {r[1]: r for r in rows(old_db, f"SELECT {OLD_COLUMNS} FROM pages")}
    chain = {origin + "/old", origin + "/mid"}
    for row in before:
        if row[1] not in chain:
            assert after[row[1]] == row
    found = rows(
        old_db,
        "SELECT url, final_url, final_status FROM pages WHERE url IN (?, ?) ORDER BY url",
        *sorted(chain),
    )
    assert found == [
        (origin + "/mid", origin + "/end", 200),
        (origin + "/old", origin + "/end", 200),
    ]
    for path, (_, _, body) in site.items():
        if origin + path in reachable and body:
            assert rows(old_db, "SELECT body FROM pages WHERE url = ?", origin + path) == [(body,)]
    assert rows(old_db, "SELECT kind FROM runs ORDER BY id") == [("crawl",), ("resume",)]
    assert rows(old_db, "SELECT resumed_at IS NOT NULL, finished_at IS NOT NULL FROM crawl") == [
        (1, 1)
    ]


def write_0001(path: Path) -> None:
    """A 0001-schema file with rows a crawl rarely makes: zlib bodies, a resolved chain."""
    (version, name, sql) = migrations()[0]
    with sqlite3.connect(path) as conn:
        conn.executescript(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
            f"applied_at REAL NOT NULL);\n{sql}"
        )
        conn.execute("INSERT INTO schema_migrations VALUES (?, ?, 0)", (version, name))
        conn.executemany(
            "INSERT INTO pages (url, final_url, status, error, depth, fetched_at, host, body, "
            "body_codec, redirect_to) VALUES (?, ?, ?, ?, 0, 1.0, 'h', ?, ?, ?)",
            [
                ("h/r", "h/end", 301, None, b"", None, "h/mid"),
                ("h/mid", "h/end", 302, None, None, None, "h/end"),
                ("h/end", "h/end", 404, None, zlib.compress(b"gone"), "zlib", None),
                ("h/net", None, None, "connect: refused", None, None, None),
                ("h/to-net", "h/net", 301, None, None, None, "h/net"),
            ],
        )
    conn.close()


async def test_final_status_and_zlib_bodies_survive_the_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "crawl.db"
    write_0001(path)
    db = str(path)
    before = rows(db, f"SELECT {OLD_COLUMNS} FROM pages ORDER BY id")
    storage = await Storage.open(db, create=False)
    await storage.close()
    assert rows(db, f"SELECT {OLD_COLUMNS} FROM pages ORDER BY id") == before
    assert dict(rows(db, "SELECT url, final_status FROM pages")) == {
        "h/r": 404,
        "h/mid": 404,
        "h/end": 404,
        "h/net": None,
        "h/to-net": None,  # the chain ended in a network error: no status
    }
    assert rows(db, "SELECT body_codec, body FROM bodies WHERE page_id = 3") == [
        ("zlib", zlib.compress(b"gone"))
    ]
    assert rows(db, "SELECT count(*) FROM runs") == [(1,)]


async def test_a_failed_0002_leaves_the_0001_file_as_it_was(
    old_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = snapshot(old_db)
    real = migrations()
    (version, name, sql) = real[1]  # 0002; later files are left out
    broken = sql + "\nINSERT INTO no_such_table VALUES (1);\n"
    monkeypatch.setattr(
        crawler.store.sqlite_schema, "migrations", lambda: [real[0], (version, name, broken)]
    )
    with pytest.raises(StorageError, match=f"migration {name} failed: no such table"):
        await Storage.open(old_db, create=False)
    assert rows(old_db, "SELECT version FROM schema_migrations") == [(1,)]
    assert objects(old_db)["pages"] == "table"
    assert not {"page_rows", "bodies", "runs", "skipped"} & set(objects(old_db))
    assert snapshot(old_db) == before
