"""`crawler export`: jsonl, csv and WARC from a real crawl, filters, and streaming memory."""

from __future__ import annotations

import asyncio
import base64
import csv
import datetime as dt
import gzip
import io
import json
import os
import pty
import sqlite3
import subprocess
import sys
import time
import tracemalloc
import zlib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hostile import Exchange, RawHost, page, respond
from support import Host, Site, assert_one_line_error, rows, run
from warcio.archiveiterator import ArchiveIterator

from crawler import exporter
from crawler.cli import cli
from crawler.store import PAGE_FIELDS
from crawler.store.sqlite_read import SQLiteReader

PDF = b"%PDF-1.4\n\x00\x01\x02\xff binary \xfe\n%%EOF\n"
WARCIO = Path(sys.executable).with_name("warcio")


async def crawl_site(site: Site, db: str, **settings: Any) -> Host:
    """HTML pages, a binary PDF, a redirect, a 404 and a page with a non-ASCII body."""
    a = await site.host()
    a.page("/", ["/one", "/doc.pdf", "/old", "/missing", "/café"])
    a.page("/one", ["/"], headers={"X-Custom": "kept"})
    a.page("/doc.pdf", body=PDF, content_type="application/pdf")
    a.redirect("/old", "/one")
    a.page("/café", body="<html><title>Café</title>naïve ☃</html>")
    await run(db, [a.url("/")], **settings)
    return a


def export(db: str, *args: str) -> Any:
    return CliRunner().invoke(cli, ["export", "--db", db, *args])


def stored_bodies(db: str) -> dict[str, bytes]:
    out = {}
    for url, body, codec in rows(db, "SELECT url, body, body_codec FROM pages"):
        out[url] = zlib.decompress(body) if codec == "zlib" else (body or b"")
    return out


async def test_jsonl_one_object_per_page(site: Site, db: str) -> None:
    a = await crawl_site(site, db)
    result = export(db, "--format", "jsonl")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.output.splitlines()]
    assert [r["url"] for r in records] == [
        r[0] for r in rows(db, "SELECT url FROM pages ORDER BY id")
    ]
    assert set(records[0]) == {*PAGE_FIELDS, "data"}  # data: what hooks stored, or null
    by_url = {r["url"]: r for r in records}
    assert by_url[a.url("/missing")]["status"] == 404
    assert by_url[a.url("/old")]["final_url"] == a.url("/one")
    assert "body" not in by_url[a.url("/")]


@pytest.mark.parametrize(
    "compress", [pytest.param(False, id="plain"), pytest.param(True, id="zlib")]
)
async def test_jsonl_bodies_round_trip(site: Site, db: str, tmp_path: Path, compress: bool) -> None:
    a = await crawl_site(site, db, compress=compress)
    out = tmp_path / "pages.jsonl"
    result = export(db, "--format", "jsonl", "--body", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert f"6 pages written to {out}" in result.output
    records = {}
    for line in out.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        records[rec["url"]] = rec
    stored = stored_bodies(db)
    assert len(records) == len(stored) == 6
    for url, body in stored.items():
        rec = records[url]
        got = base64.b64decode(rec["body_base64"]) if "body_base64" in rec else rec["body"].encode()
        assert got == body, url
    assert base64.b64decode(records[a.url("/doc.pdf")]["body_base64"]) == PDF
    assert "naïve ☃" in records[a.url("/caf%C3%A9")]["body"]


async def test_csv_header_and_rows(site: Site, db: str, tmp_path: Path) -> None:
    a = await crawl_site(site, db)
    out = tmp_path / "pages.csv"
    result = export(db, "--format", "csv", "-o", str(out))
    assert result.exit_code == 0, result.output
    with out.open(newline="", encoding="utf-8") as fh:
        table = list(csv.DictReader(fh))
    assert list(table[0]) == list(PAGE_FIELDS)
    assert len(table) == 6
    by_url = {r["url"]: r for r in table}
    assert by_url[a.url("/missing")]["status"] == "404"
    assert by_url[a.url("/caf%C3%A9")]["title"] == "Café"
    assert by_url[a.url("/doc.pdf")]["content_type"] == "application/pdf"


async def run_tool(*args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        str(WARCIO), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode()


@pytest.mark.parametrize(
    "compress", [pytest.param(False, id="plain"), pytest.param(True, id="zlib")]
)
async def test_warc_replays_in_warcio(site: Site, db: str, tmp_path: Path, compress: bool) -> None:
    a = await crawl_site(site, db, compress=compress)
    # A page that never got an HTTP response is stored but has nothing to archive.
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO pages (url, status, error, depth, fetched_at, host) "
            "VALUES (?, NULL, 'connect: refused', 1, ?, ?)",
            (a.url("/gone"), time.time(), a.origin),
        )
    out = tmp_path / "site.warc.gz"
    result = export(db, "--format", "warc", "-o", str(out))
    assert result.exit_code == 0, result.output

    index = [
        json.loads(line)
        for line in (
            await run_tool("index", "-f", "warc-type,warc-target-uri,http:status", str(out))
        ).splitlines()
    ]
    with_status = dict(rows(db, "SELECT url, status FROM pages WHERE status IS NOT NULL"))
    responses = [r for r in index if r["warc-type"] == "response"]
    assert sorted(r["warc-target-uri"] for r in responses) == sorted(with_status)
    assert {r["warc-target-uri"]: int(r["http:status"]) for r in responses} == with_status
    requests = [r["warc-target-uri"] for r in index if r["warc-type"] == "request"]
    assert sorted(requests) == sorted(with_status)
    assert index[0]["warc-type"] == "warcinfo"
    await run_tool("check", str(out))  # every block and payload digest verifies

    stored = stored_bodies(db)
    seen = 0
    with out.open("rb") as fh:
        for record in ArchiveIterator(fh):
            if record.rec_type != "response":
                continue
            url = record.rec_headers.get_header("WARC-Target-URI")
            assert record.content_stream().read() == stored[url], url
            assert record.http_headers.get_header("Content-Encoding") is None
            if url == a.url("/one"):
                assert record.http_headers.get_header("X-Custom") == "kept"
            if url == a.url("/old"):
                assert record.http_headers.get_header("Location") == "/one"
            seen += 1
    assert seen == 6


async def test_where_filters_pages(site: Site, db: str) -> None:
    a = await crawl_site(site, db)
    result = export(db, "--format", "jsonl", "--where", "status = 200 AND url LIKE '%.pdf'")
    assert result.exit_code == 0, result.output
    assert [json.loads(x)["url"] for x in result.output.splitlines()] == [a.url("/doc.pdf")]
    # A trailing SQL comment cannot swallow the rest of the query.
    result = export(db, "--format", "csv", "--where", "status >= 400 -- broken ones")
    assert result.exit_code == 0, result.output
    assert len(result.output.strip().splitlines()) == 2


@pytest.mark.parametrize(
    "where",
    [
        pytest.param("1); DROP TABLE pages; --", id="drop-table"),
        pytest.param("1; DELETE FROM pages", id="second-statement"),
        pytest.param("1) UNION SELECT 1; UPDATE pages SET status = 0; --", id="update"),
        pytest.param("no_such_column = 1", id="unknown-column"),
        pytest.param("status = ", id="syntax"),
    ],
)
@pytest.mark.parametrize("fmt", ["jsonl", "csv", "warc"])
async def test_bad_where_is_a_usage_error_and_changes_nothing(
    site: Site, db: str, tmp_path: Path, where: str, fmt: str
) -> None:
    await crawl_site(site, db)
    before = rows(db, "SELECT * FROM pages ORDER BY id")
    out = tmp_path / f"out.{fmt}"
    result = export(db, "--format", fmt, "--where", where, "-o", str(out))
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("crawler: error: invalid --where filter:")
    assert not out.exists()  # the query runs before the output is opened
    assert rows(db, "SELECT * FROM pages ORDER BY id") == before


def test_the_export_connection_is_read_only(tmp_path: Path) -> None:
    """Even SQL that reached the connection directly could not write."""
    db = str(tmp_path / "crawl.db")
    make_db(db, 0, 0)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        conn = SQLiteReader(db).db
        try:
            conn.execute("DELETE FROM pages")
        finally:
            conn.close()


@pytest.mark.parametrize(
    ("since", "expected"),
    [
        pytest.param("1700000150", ["/b", "/c"], id="unix"),
        pytest.param("1700000150.5", ["/c"], id="fraction"),
        pytest.param(dt.datetime.fromtimestamp(1700000200).isoformat(), ["/c"], id="iso-local"),
        pytest.param("2023-11-14T22:15:50+00:00", ["/b", "/c"], id="iso-utc"),  # 1700000150
        pytest.param("1800000000", [], id="future"),
    ],
)
def test_since(tmp_path: Path, since: str, expected: list[str]) -> None:
    db = str(tmp_path / "crawl.db")
    make_db(db, 0, 0)
    with sqlite3.connect(db) as conn:
        for path, ts in (("/a", 1700000100.0), ("/b", 1700000150.0), ("/c", 1700000200.0)):
            conn.execute(
                "INSERT INTO pages (url, status, depth, fetched_at, host) "
                "VALUES (?, 200, 0, ?, 'h')",
                (f"http://h{path}", ts),
            )
    result = export(db, "--format", "jsonl", "--since", since)
    assert result.exit_code == 0, result.output
    assert [json.loads(x)["url"] for x in result.output.splitlines()] == [
        f"http://h{p}" for p in expected
    ]


def test_bad_since_is_a_usage_error(tmp_path: Path) -> None:
    db = str(tmp_path / "crawl.db")
    make_db(db, 0, 0)
    result = export(db, "--format", "jsonl", "--since", "yesterday")
    assert result.exit_code == 2
    assert result.output.startswith("crawler: error: invalid time 'yesterday'")


def make_db(db: str, pages: int, body_size: int) -> None:
    """A crawl database with `pages` rows inserted directly (schema from the migrations)."""
    from crawler.store.sqlite import SQLiteStore as Storage

    async def create() -> None:
        storage = await Storage.open(db, create=True)
        await storage.close()

    asyncio.run(create())
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO crawl (id, settings, seeds, started_at) VALUES (1, '{}', '[]', 0)"
        )
        body = os.urandom(body_size)
        conn.executemany(
            "INSERT INTO pages (url, status, content_type, depth, fetched_at, host, body, size, "
            "headers) VALUES (?, 200, 'text/html', 1, ?, 'http://h', ?, ?, '[]')",
            ((f"http://h/p{i}", 1700000000 + i, body, body_size) for i in range(pages)),
        )


@pytest.mark.parametrize(
    ("fmt", "body"),
    [
        pytest.param("jsonl", True, id="jsonl-body"),
        pytest.param("csv", False, id="csv"),
        pytest.param("warc", True, id="warc"),
    ],
)
def test_export_memory_stays_flat(tmp_path: Path, fmt: str, body: bool) -> None:
    """Exporting 500 pages of 32 KB (16 MB of bodies) peaks at a few MB of Python memory."""
    db = str(tmp_path / "big.db")
    n, size = 500, 32 * 1024
    make_db(db, n, size)
    out = tmp_path / f"out.{fmt}"
    conn = SQLiteReader(db)
    tracemalloc.start()
    try:
        written = exporter.export(conn, fmt, str(out), body=body)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        conn.close()
    assert written == n
    assert out.stat().st_size > (n * size if body else n * 50)
    assert peak < 8 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB for {n * size / 1e6:.0f} MB"


def test_export_to_stdout_of_a_missing_database(tmp_path: Path) -> None:
    result = export(str(tmp_path / "none.db"), "--format", "csv")
    assert result.exit_code == 2
    assert result.output.strip() == f"crawler: error: no crawl database at {tmp_path / 'none.db'}"


def test_warc_to_stdout_is_binary(tmp_path: Path) -> None:
    db = str(tmp_path / "crawl.db")
    make_db(db, 3, 100)
    result = CliRunner().invoke(cli, ["export", "--db", db, "--format", "warc"])
    assert result.exit_code == 0
    records = list(ArchiveIterator(io.BytesIO(result.stdout_bytes)))
    assert [r.rec_type for r in records] == ["warcinfo"] + ["response", "request"] * 3


# ---------------------------------------------------------------------- bytes from the network

LATIN1_HEADERS = (
    b"Content-Type: text/html; charset=\xe9\r\n"
    b"X-Raw: caf\xe9 \\ \xe2\x98\x83\r\n"  # a latin-1 byte, a backslash, UTF-8 (a snowman)
)


async def test_non_utf8_header_bytes_are_stored_and_exported(db: str, tmp_path: Path) -> None:
    """One header byte that is not UTF-8 used to make SQLite refuse the write batch."""
    host = RawHost("127.0.0.71")
    await host.start()
    try:
        body = b"<html><title>Latin</title><body>x</body></html>"
        host.route("/", respond(page("/latin")))

        async def latin(ex: Exchange) -> None:
            await ex.send(
                b"HTTP/1.1 200 OK\r\n" + LATIN1_HEADERS + b"Connection: close\r\n"
                b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
            )

        host.route("/latin", latin)
        summary = await run(db, [host.url("/")])
    finally:
        await host.close()
    url = host.url("/latin")
    assert summary.finished
    [(status, content_type, headers, title)] = rows(
        db, "SELECT status, content_type, headers, title FROM pages WHERE url = ?", url
    )
    assert (status, title) == (200, "Latin")
    assert content_type == r"text/html; charset=\xe9"
    stored = dict(json.loads(headers))
    assert stored["Content-Type"] == r"text/html; charset=\xe9"
    assert stored["X-Raw"] == r"caf\xe9 \\ ☃"

    result = export(db, "--format", "jsonl")
    assert result.exit_code == 0, result.output
    by_url = {r["url"]: r for r in map(json.loads, result.stdout_bytes.decode().splitlines())}
    assert by_url[url]["content_type"] == r"text/html; charset=\xe9"

    result = export(db, "--format", "csv")
    assert result.exit_code == 0, result.output
    table = {r["url"]: r for r in csv.DictReader(io.StringIO(result.stdout_bytes.decode()))}
    assert table[url]["content_type"] == r"text/html; charset=\xe9"

    out = tmp_path / "latin.warc.gz"
    result = export(db, "--format", "warc", "-o", str(out))
    assert result.exit_code == 0, result.output
    await run_tool("check", str(out))  # the digests cover the bytes as written
    raw = gzip.decompress(out.read_bytes())
    for line in LATIN1_HEADERS.split(b"\r\n")[:-1]:
        assert line + b"\r\n" in raw, line  # the server's bytes, not an escape or %-encoding
    with out.open("rb") as fh:
        found = [
            (r.http_headers.get_header("Content-Type"), r.content_stream().read())
            for r in ArchiveIterator(fh)
            if r.rec_type == "response" and r.rec_headers.get_header("WARC-Target-URI") == url
        ]
    # warcio reads a header that is not UTF-8 as latin-1.
    assert found == [("text/html; charset=é", body)]


# ---------------------------------------------------------------------- Unix manners

CRAWLER = [sys.executable, "-m", "crawler"]


@pytest.fixture(scope="module")
def big_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    """3,000 pages of 2 KB: every format's output is far larger than a pipe's buffer."""
    db = str(tmp_path_factory.mktemp("big") / "crawl.db")
    make_db(db, 3_000, 2_048)
    return db


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["--format", "jsonl", "--body"], id="jsonl"),
        pytest.param(["--format", "csv"], id="csv"),
        pytest.param(["--format", "warc"], id="warc"),
    ],
)
def test_a_reader_that_stops_early_ends_the_export_quietly(big_db: str, args: list[str]) -> None:
    """`crawler export ... | head`: no traceback, no 'Exception ignored', exit 0."""
    with subprocess.Popen(
        [*CRAWLER, "export", "--db", big_db, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        assert len(proc.stdout.read(100)) == 100
        proc.stdout.close()  # as head does after its lines
        err = proc.stderr.read()
        assert proc.wait(60) == 0, err.decode()
    assert err == b""


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "warc"])
def test_output_into_a_missing_directory_is_a_usage_error(tmp_path: Path, fmt: str) -> None:
    db = str(tmp_path / "crawl.db")
    make_db(db, 3, 100)
    target = tmp_path / "missing" / "dir" / "f"
    result = export(db, "--format", fmt, "-o", str(target))
    assert_one_line_error(result, f"cannot write {target}", "No such file or directory")
    assert not (tmp_path / "missing").exists()


def test_warc_to_a_terminal_is_refused(tmp_path: Path) -> None:
    db = str(tmp_path / "crawl.db")
    make_db(db, 3, 100)
    master, slave = pty.openpty()
    try:
        proc = subprocess.run(
            [*CRAWLER, "export", "--db", db, "--format", "warc"],
            stdout=slave,
            stderr=subprocess.PIPE,
            timeout=60,
        )
        os.set_blocking(master, False)
        try:
            on_terminal = os.read(master, 65_536)
        except (BlockingIOError, OSError):  # nothing written (EIO once the writer is gone)
            on_terminal = b""
    finally:
        os.close(master)
        os.close(slave)
    assert proc.returncode == 2
    lines = proc.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("crawler: error: refusing"), lines
    assert "-o FILE" in lines[0]
    assert on_terminal == b""


def test_export_without_a_format_lists_the_choices(tmp_path: Path) -> None:
    db = str(tmp_path / "crawl.db")
    make_db(db, 3, 100)
    result = CliRunner().invoke(cli, ["export", "--db", db])
    assert_one_line_error(result, "--format", "jsonl", "csv", "warc")
