"""The command line: real crawls through click's CliRunner, exit codes, one-line errors."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result
from support import Host, assert_one_line_error, rows, threaded_site, urls

from crawler.cli import cli


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Run in an empty directory (no ./config.toml) and undo the CLI's logging setup."""
    monkeypatch.chdir(tmp_path)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield tmp_path
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(scope="module")
def host() -> Iterator[Host]:
    """A three-page site on loopback, served from its own thread while the CLI runs."""
    with threaded_site() as (site, thread):
        h = thread.call(site.host("127.0.0.40"))
        h.page("/", ["/a", "/b", "mailto:x@example.invalid"])
        h.page("/a", ["/b", "/missing"])
        h.page("/b", ["/"], body=None)
        yield h


def invoke(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(
        cli, list(args), input=input, catch_exceptions=False, prog_name="crawler"
    )


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def expected(host: Host) -> set[str]:
    return {host.url(p) for p in ("/", "/a", "/b", "/missing")}


@pytest.fixture
def crawled(host: Host, in_tmp: Path) -> str:
    result = invoke("crawl", host.url("/"), "--db", "site.db", "--retries", "0", "-q")
    assert result.exit_code == 0, result.stderr
    return str(in_tmp / "site.db")


# ---------------------------------------------------------------------- crawl and resume


def test_crawl_stores_the_site_and_exits_0(host: Host, in_tmp: Path) -> None:
    result = invoke("crawl", host.url("/"), "--db", "site.db", "--per-host", "1")
    assert result.exit_code == 0, result.stderr
    assert "Traceback" not in result.stderr
    db = str(in_tmp / "site.db")
    assert urls(db) == expected(host)
    assert dict(rows(db, "SELECT url, status FROM pages"))[host.url("/missing")] == 404
    assert rows(db, "SELECT count(*) FROM frontier WHERE state = 'queued'") == [(0,)]
    assert rows(db, "SELECT finished_at IS NOT NULL FROM crawl") == [(1,)]
    settings = json.loads(rows(db, "SELECT settings FROM crawl")[0][0])
    assert settings["per_host"] == 1  # stored for resume


def test_crawl_reads_seeds_file_from_stdin(host: Host, in_tmp: Path) -> None:
    seeds = f"# a comment\n\n{host.url('/a')}\n"
    result = invoke("crawl", "--seeds-file", "-", "--db", "s.db", "-q", input=seeds)
    assert result.exit_code == 0, result.stderr
    assert host.url("/a") in urls(str(in_tmp / "s.db"))


def test_resume_of_a_finished_crawl_fetches_nothing_new(host: Host, crawled: str) -> None:
    before = rows(crawled, "SELECT url, fetched_at FROM pages ORDER BY url")
    hits = len(host.hits)
    result = invoke("resume", "--db", crawled, "-q")
    assert result.exit_code == 0, result.stderr
    assert rows(crawled, "SELECT url, fetched_at FROM pages ORDER BY url") == before
    assert [h.path for h in host.hits[hits:]] in ([], ["/robots.txt"])


@pytest.mark.parametrize(
    "seeds",
    [
        pytest.param(["not a url"], id="not-a-url"),
        pytest.param(["ftp://x"], id="ftp"),
        pytest.param([""], id="empty"),
        pytest.param(["http://"], id="no-host"),
        pytest.param(["127.0.0.2/"], id="no-scheme"),
        pytest.param(["http://127.0.0.40:1/", "javascript:alert(1)"], id="one-bad-among-good"),
        pytest.param([], id="none"),
    ],
)
def test_bad_seeds_exit_2_and_create_nothing(in_tmp: Path, seeds: list[str]) -> None:
    result = invoke("crawl", *seeds, "--db", "crawl.db")
    assert_one_line_error(result, "seed")
    assert list(in_tmp.iterdir()) == []


def write_text_file(path: Path) -> None:
    path.write_text("these are my notes, not a database\n" * 50)


def write_other_sqlite(path: Path) -> None:
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("CREATE TABLE notes (text TEXT)")
        conn.execute("INSERT INTO notes VALUES ('keep me')")
    conn.close()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        pytest.param(write_text_file, "is not a SQLite database", id="text-file"),
        pytest.param(write_other_sqlite, "not a crawl database", id="other-sqlite"),
    ],
)
@pytest.mark.parametrize(
    "command",
    [
        pytest.param(["crawl", "http://127.0.0.40:1/"], id="crawl"),
        pytest.param(["resume"], id="resume"),
        pytest.param(["stats"], id="stats"),
        pytest.param(["export", "--format", "jsonl"], id="export"),
    ],
)
def test_db_that_is_not_a_crawl_is_refused_untouched(
    in_tmp: Path, make: object, message: str, command: list[str]
) -> None:
    path = in_tmp / "mine.db"
    make(path)  # type: ignore[operator]
    before = sha256(path)
    assert_one_line_error(invoke(*command, "--db", "mine.db"), "mine.db", message)
    assert sha256(path) == before
    assert [p.name for p in in_tmp.iterdir()] == ["mine.db"]


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(["resume"], id="resume"),
        pytest.param(["stats"], id="stats"),
        pytest.param(["export", "--format", "csv"], id="export"),
    ],
)
def test_missing_db_exits_2_and_creates_nothing(in_tmp: Path, command: list[str]) -> None:
    assert_one_line_error(invoke(*command, "--db", "gone.db"), "no crawl database at gone.db")
    assert list(in_tmp.iterdir()) == []


def test_crawl_into_a_missing_directory_exits_2(in_tmp: Path) -> None:
    result = invoke("crawl", "http://127.0.0.40:1/", "--db", "no/such/dir/crawl.db")
    assert_one_line_error(result, "does not exist")
    assert list(in_tmp.iterdir()) == []


# ---------------------------------------------------------------------- stats and export


def test_stats_text_and_json(crawled: str) -> None:
    text = invoke("stats", "--db", crawled)
    assert text.exit_code == 0, text.stderr
    assert "pages" in text.stdout and "127.0.0.40" in text.stdout
    result = invoke("stats", "--db", crawled, "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["pages"], data["ok"], data["http_errors"], data["hosts"]) == (4, 3, 1, 1)
    assert data["queued"] == 0


def test_export_jsonl_to_stdout(host: Host, crawled: str) -> None:
    result = invoke("export", "--db", crawled, "--format", "jsonl")
    assert result.exit_code == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert {r["url"] for r in records} == expected(host)
    by_url = {r["url"]: r for r in records}
    assert by_url[host.url("/missing")]["status"] == 404
    assert by_url[host.url("/a")]["title"] == "/a"
    assert "body" not in by_url[host.url("/a")]


def test_export_csv_to_a_file(host: Host, crawled: str, in_tmp: Path) -> None:
    result = invoke("export", "--db", crawled, "--format", "csv", "-o", "pages.csv")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert "4 pages written to pages.csv" in result.stderr
    with (in_tmp / "pages.csv").open(newline="") as fh:
        table = list(csv.DictReader(fh))
    assert {r["url"] for r in table} == expected(host)
    assert {r["url"]: r["status"] for r in table}[host.url("/missing")] == "404"


def test_export_where_filters_rows(host: Host, crawled: str) -> None:
    result = invoke("export", "--db", crawled, "--format", "jsonl", "--where", "status >= 400")
    assert result.exit_code == 0, result.stderr
    assert [json.loads(line)["url"] for line in io.StringIO(result.stdout)] == [
        host.url("/missing")
    ]


# ---------------------------------------------------------------------- help and usage errors


def test_python_dash_m_crawler_help() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "crawler", "--help"], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Usage: crawler ")
    for command in ("crawl", "resume", "stats", "export", "config"):
        assert f"  {command} " in proc.stdout


COMMANDS = sorted(cli.commands)  # type: ignore[attr-defined]


def test_the_commands_are_the_documented_ones() -> None:
    assert COMMANDS == [
        "config", "crawl", "export", "recrawl", "report", "resume", "search", "stats", "why",
        "work",
    ]  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_and_option_has_help(command: str) -> None:
    result = invoke(command, "--help")
    assert result.exit_code == 0
    assert result.stdout.startswith(f"Usage: crawler {command} ")
    cmd: click.Command = cli.commands[command]  # type: ignore[attr-defined]
    assert cmd.help and cmd.help.strip()
    assert cmd.help.strip().splitlines()[0] in " ".join(result.stdout.split())  # rewrapped
    for param in cmd.params:
        if isinstance(param, click.Option):
            assert param.help, f"{command} {param.opts} has no help"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        pytest.param(["crawl", "--bogus", "http://127.0.0.40:1/"], "--bogus", id="crawl-option"),
        pytest.param(["stats", "--nope"], "--nope", id="stats-option"),
        pytest.param(["export", "--format", "xml"], "xml", id="bad-choice"),
        pytest.param(["export"], "--format", id="missing-required"),
        pytest.param(["--nope"], "--nope", id="group-option"),
        pytest.param(["crawlx"], "crawlx", id="unknown-command"),
        pytest.param(["crawl", "--max-pages"], "--max-pages", id="missing-value"),
    ],
)
def test_usage_error_is_one_line_exit_2(in_tmp: Path, args: list[str], fragment: str) -> None:
    assert_one_line_error(invoke(*args), fragment)
    assert list(in_tmp.iterdir()) == []


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout.startswith("crawler, version ")
