"""`crawler stats` against a real crawl: every number equals the SQL count it stands for."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from support import Host, Site, broken_body, rows, run

from crawler.cli import cli
from crawler.config import Settings
from crawler.reasons import Reason
from crawler.store.sqlite import SQLiteStore as Storage
from crawler.store.sqlite_read import SQLiteReader


async def crawl_mixed(site: Site, db: str) -> tuple[Host, Host]:
    """Two hosts: 2xx HTML and JSON, a redirect, a 404, a 500, a network error, robots."""
    a = await site.host()
    b = await site.host()
    a.robots("User-agent: *\nDisallow: /private/\n")
    a.page("/", ["/one", "/two", "/old", "/missing", "/private/x", "/data.json", b.url("/")])
    a.page("/one", ["/deep"])
    a.page("/deep")
    a.page("/two")
    a.redirect("/old", "/two")
    a.page("/data.json", body='{"a": 1}', content_type="application/json")
    b.page("/", ["/fail", "/broken"])
    b.page("/fail", status=500)
    b.handle("/broken", broken_body)
    await run(db, [a.url("/"), b.url("/")])
    return a, b


def stats_json(db: str, *extra: str) -> dict[str, Any]:
    result = CliRunner().invoke(cli, ["stats", "--db", db, "--json", *extra])
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.output)
    return data


def one(db: str, sql: str) -> Any:
    return rows(db, sql)[0][0]


async def test_stats_json_numbers_equal_sql_counts(site: Site, db: str) -> None:
    a, b = await crawl_mixed(site, db)
    data = stats_json(db)

    assert data["pages"] == one(db, "SELECT count(*) FROM pages") == 10
    assert data["ok"] == one(db, "SELECT count(*) FROM pages WHERE status BETWEEN 200 AND 299")
    assert data["redirects"] == one(db, "SELECT count(*) FROM pages WHERE status / 100 = 3") == 1
    assert data["http_errors"] == one(db, "SELECT count(*) FROM pages WHERE status >= 400") == 2
    assert data["network_errors"] == one(db, "SELECT count(*) FROM pages WHERE status IS NULL")
    assert data["network_errors"] == 1
    assert data["failed"] == 3
    assert data["hosts"] == 2
    assert data["links"] == one(db, "SELECT count(*) FROM links")
    assert data["bytes"] == one(db, "SELECT sum(size) FROM pages")
    assert data["disallowed"] == one(db, "SELECT count(*) FROM frontier WHERE state = 'disallowed'")
    assert data["disallowed"] == 1
    assert data["queued"] == 0

    classes = {r["class"]: r["pages"] for r in data["by_status_class"]}
    assert classes == {"2xx": 6, "3xx": 1, "4xx": 1, "5xx": 1, "error": 1}
    assert {r["status"]: r["pages"] for r in data["by_status"]} == dict(
        rows(db, "SELECT status, count(*) FROM pages WHERE status IS NOT NULL GROUP BY status")
    )
    types = {r["content_type"]: r["pages"] for r in data["by_content_type"]}
    assert types["application/json"] == 1
    assert types["text/html"] == one(
        db, "SELECT count(*) FROM pages WHERE content_type LIKE 'text/html%'"
    )
    assert sum(types.values()) == data["pages"]

    hosts = {r["host"]: (r["pages"], r["failed"]) for r in data["top_hosts"]}
    assert hosts == {a.origin: (7, 1), b.origin: (3, 2)}
    assert data["top_hosts"][0]["host"] == a.origin  # most pages first

    reasons = {r["reason"]: r["pages"] for r in data["error_reasons"]}
    assert reasons == {"HTTP 404": 1, "HTTP 500": 1, "payload": 1}

    depths = {r["depth"]: r["pages"] for r in data["depths"]}
    assert depths == dict(rows(db, "SELECT depth, count(*) FROM pages GROUP BY depth"))
    assert depths[0] == 2 and depths[2] == 1  # the seeds; /deep

    # One run: its own start and end, the numbers the end-of-crawl summary shows too.
    ((started, ended),) = rows(db, "SELECT started_at, ended_at FROM runs")
    assert data["runs"] == 1
    assert data["duration_s"] == pytest.approx(ended - started, abs=1e-3)
    assert data["pages_per_s"] == pytest.approx(10 / (ended - started), rel=1e-2)
    assert data["resumed_at"] is None
    assert data["seeds"] == [a.url("/"), b.url("/")]
    assert data["finished_at"] is not None


async def test_stats_top_limits_the_tables(site: Site, db: str) -> None:
    await crawl_mixed(site, db)
    data = stats_json(db, "--top", "1")
    assert len(data["top_hosts"]) == 1
    assert len(data["by_content_type"]) == 1
    assert data["by_content_type"][0]["content_type"] == "text/html"
    assert len(data["error_reasons"]) == 1


async def test_stats_tables_show_the_numbers(site: Site, db: str) -> None:
    a, _ = await crawl_mixed(site, db)
    result = CliRunner().invoke(cli, ["stats", "--db", db])
    assert result.exit_code == 0, result.output
    out = result.output
    for title in ("By status class", "By content type", "Top hosts", "Error reasons", "Depths"):
        assert title in out
    assert a.origin in out
    assert "HTTP 404" in out and "payload" in out
    assert "application/json" in out
    lines = {ln.split()[0]: ln.split()[-1] for ln in out.splitlines() if ln.strip()}
    assert lines["pages"] == "10"


async def test_stats_never_writes_to_the_database(site: Site, db: str) -> None:
    await crawl_mixed(site, db)
    before = hashlib.sha256(Path(db).read_bytes()).hexdigest()
    stats_json(db)
    assert hashlib.sha256(Path(db).read_bytes()).hexdigest() == before


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(None, "no crawl database at", id="missing"),
        pytest.param(
            b"not a database at all, just text" * 100, "is not a SQLite database", id="text"
        ),
    ],
)
def test_stats_on_a_file_that_is_not_a_crawl(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    path = tmp_path / "x.db"
    if content is not None:
        path.write_bytes(content)
    result = CliRunner().invoke(cli, ["stats", "--db", str(path)])
    assert result.exit_code == 2
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_stats_on_an_sqlite_file_without_a_crawl(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (x)")
    result = CliRunner().invoke(cli, ["stats", "--db", str(path)])
    assert result.exit_code == 2
    assert result.output.strip() == f"crawler: error: {path} is not a crawl database"


def test_stats_duration_is_the_sum_of_the_runs(tmp_path: Path) -> None:
    """A crawl killed (no end), resumed and finished: pauses between runs do not count, a
    killed run lasts until its last stored page, and `resumed` is shown."""
    db = str(tmp_path / "crawl.db")

    async def make() -> None:
        storage = await Storage.open(db, create=True)
        try:
            await storage.save_crawl(Settings(), ["http://h/"])
            await storage.start_run("crawl")
            await storage.start_run("resume")
        finally:
            await storage.close()

    asyncio.run(make())
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "UPDATE runs SET started_at = ?, ended_at = ? WHERE id = ?",
            [(1000.0, None, 1), (5000.0, 5030.0, 2)],
        )
        conn.executemany(
            "INSERT INTO pages (url, status, depth, fetched_at, host) VALUES (?, 200, 0, ?, 'h')",
            [(f"http://h/{t}", t) for t in (1001.0, 1010.0, 5001.0, 5020.0)],
        )
        conn.executemany(
            "INSERT INTO skipped (reason, count) VALUES (?, ?)",
            [(Reason.OUT_OF_SCOPE.value, 7), (Reason.DEPTH.value, 2)],
        )
    conn.close()
    data = stats_json(db)
    assert data["runs"] == 2
    assert data["duration_s"] == pytest.approx(10 + 30)  # 1000..1010 (killed), 5000..5030
    assert data["pages_per_s"] == pytest.approx(4 / 40)
    assert data["resumed_at"] is not None
    assert data["skipped"] == [
        {"reason": "out of scope", "links": 7},
        {"reason": "depth", "links": 2},
    ]

    out = CliRunner().invoke(cli, ["stats", "--db", db]).output
    lines = {ln.split()[0]: ln.split()[-1] for ln in out.splitlines() if ln.strip()}
    assert lines["duration"] == "40.0s"
    assert lines["resumed"] != "-"
    assert "Links not followed" in out and "out of scope" in out


def read_tables(db: sqlite3.Connection, sql: str) -> set[str]:
    plan = db.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall()
    return {word for row in plan for word in row[3].split() if word in {"bodies", "page_rows"}}


@pytest.mark.parametrize(
    "with_body", [pytest.param(False, id="no-body"), pytest.param(True, id="body")]
)
async def test_stats_and_exports_without_body_never_read_bodies(
    site: Site, db: str, with_body: bool
) -> None:
    await crawl_mixed(site, db)
    reader = SQLiteReader(db)
    conn = reader.db
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    try:
        if with_body:
            next(reader.pages(with_body=True))
        else:
            reader.stats()
            next(reader.pages(with_headers=True))
            next(reader.pages(where="status = 200"))
        conn.set_trace_callback(None)
        read = [read_tables(conn, sql) for sql in statements if "pages" in sql]
    finally:
        conn.close()
    assert len(read) >= (1 if with_body else 12)
    if with_body:  # the check can fail: bodies are read exactly when asked for
        assert read == [{"page_rows", "bodies"}]
    else:
        assert all("bodies" not in tables for tables in read), statements
