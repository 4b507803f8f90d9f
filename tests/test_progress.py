"""Progress and the end-of-crawl summary, as a user running `crawler crawl` sees them.

The crawl runs in a real subprocess so that stderr is a pipe (log lines) or a pty (the
live display). A page of the site holds its response until the test has read a progress
line, so a progress line is certain to come before the crawl ends, without sleeping.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import pty
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from click.testing import CliRunner
from support import Host, Site, broken_body, rows

from crawler import progress
from crawler.cli import cli

Seen = Callable[[str], bool]
LIMIT = 30  # seconds: a hung crawler fails the test instead of hanging the suite


def env(**extra: str) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if k != progress.EVERY_ENV}
    return out | {"PYTHONUNBUFFERED": "1", **extra}


async def gated_site(site: Site, gate: asyncio.Event) -> Host:
    """/ links to /a, /b and /held; /held answers once `gate` is set (or after 10 s)."""
    a = await site.host()
    a.page("/", ["/a", "/b", "/held", "/missing"])
    a.page("/a")
    a.page("/b")

    async def held(request: web.Request) -> web.StreamResponse:
        # Server behaviour: a slow page, released by the test instead of a timer.
        await asyncio.wait_for(gate.wait(), 10)
        return web.Response(text="<html><title>held</title></html>", content_type="text/html")

    a.handle("/held", held)
    return a


async def crawl_cli(
    tmp_path: Path, seed: str, *args: str, gate: asyncio.Event | None, seen: Seen, **env_: str
) -> tuple[int, list[str], str]:
    """Run `crawler crawl` with stderr piped; set `gate` at the first line `seen` accepts."""
    db = str(tmp_path / "crawl.db")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "crawler", "crawl", seed, "--db", db, *args,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        cwd=tmp_path,
        env=env(**env_),
    )  # fmt: skip
    stderr = proc.stderr
    assert stderr is not None
    lines = []

    async def read() -> int:
        while line := await stderr.readline():
            text = line.decode().rstrip("\n")
            lines.append(text)
            if gate is not None and seen(text):
                gate.set()
        return await proc.wait()

    return await bounded(proc, read()), lines, db


async def bounded(proc: asyncio.subprocess.Process, work: Awaitable[int]) -> int:
    """`work`, or a failed test (and no stray process) if the crawl hangs."""
    try:
        return await asyncio.wait_for(work, LIMIT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"crawler did not finish within {LIMIT}s") from None


def is_text_progress(line: str) -> bool:
    return " INFO progress: " in line


def is_json_progress(line: str) -> bool:
    return line.startswith("{") and json.loads(line).get("event") == "progress"


async def test_text_progress_lines_and_summary_table(site: Site, tmp_path: Path) -> None:
    gate = asyncio.Event()
    a = await gated_site(site, gate)
    code, lines, db = await crawl_cli(
        tmp_path, a.url("/"), gate=gate, seen=is_text_progress, CRAWLER_PROGRESS_EVERY="0.05"
    )
    assert code == 0, lines
    assert gate.is_set()
    progress_lines = [ln for ln in lines if is_text_progress(ln)]
    assert progress_lines
    # e.g. "12:00:00 INFO progress: 4 pages  40.0/s  1 in flight  0 queued  1 hosts  ..."
    first = progress_lines[0].split("progress: ", 1)[1]
    for part in (" pages ", "/s ", " in flight ", " queued ", " hosts ", " errors ", " MB"):
        assert part in first + " ", part
    text = "\n".join(lines)
    assert "crawl done" in text
    stored = rows(db, "SELECT count(*) FROM pages")[0][0]
    assert stored == 5
    table = {ln.strip("│┃ ").split("│")[0].strip(): ln for ln in lines if "│" in ln}
    assert table["pages this run"].split("│")[-2].strip() == "5"
    assert table["status 2xx"].split("│")[-2].strip() == "4"
    assert table["status 4xx"].split("│")[-2].strip() == "1"
    for label in ("duration", "pages/s", "network errors"):
        assert label in table


async def test_json_log_format_every_line_is_json(site: Site, tmp_path: Path) -> None:
    gate = asyncio.Event()
    a = await gated_site(site, gate)
    code, lines, db = await crawl_cli(
        tmp_path,
        a.url("/"),
        "--log-format",
        "json",
        gate=gate,
        seen=is_json_progress,
        CRAWLER_PROGRESS_EVERY="0.05",
    )
    assert code == 0, lines
    records = [json.loads(line) for line in lines]  # every line parses
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    ticks = [r for r in records if r.get("event") == "progress"]
    assert ticks
    for key in ("pages", "pages_per_s", "in_flight", "queued", "hosts_active", "bytes"):
        assert isinstance(ticks[0][key], int | float), key
    assert isinstance(ticks[0]["errors_by_kind"], dict)
    (summary,) = [r for r in records if r.get("event") == "summary"]
    assert summary["pages"] == rows(db, "SELECT count(*) FROM pages")[0][0] == 5
    assert summary["by_status_class"] == {"2xx": 4, "4xx": 1}
    assert summary["finished"] is True and summary["interrupted"] is False
    assert summary["errors"] == 0 and summary["errors_by_kind"] == {}


async def test_quiet_prints_nothing_but_crawls(site: Site, tmp_path: Path) -> None:
    a = await site.host()
    a.page("/", ["/a", "/missing"])
    a.page("/a")
    code, lines, db = await crawl_cli(
        tmp_path,
        a.url("/"),
        "--quiet",
        "--user-agent=testbot/1.0 (+https://tests.example/)",  # else one warning: no contact
        gate=None,
        seen=bool,
        CRAWLER_PROGRESS_EVERY="0.001",
    )
    assert code == 0
    assert lines == []
    assert rows(db, "SELECT count(*) FROM pages")[0][0] == 3


async def test_verbose_logs_every_fetch(site: Site, tmp_path: Path) -> None:
    a = await site.host()
    a.page("/", ["/a", "/missing"])
    a.page("/a")
    code, lines, _ = await crawl_cli(tmp_path, a.url("/"), "--verbose", gate=None, seen=bool)
    assert code == 0
    debug = [ln for ln in lines if " DEBUG " in ln]
    assert any(f" DEBUG 200 {a.url('/a')} (" in ln for ln in debug)
    assert any(f" DEBUG 404 {a.url('/missing')} (" in ln for ln in debug)


async def test_network_errors_by_kind_in_the_summary(site: Site, tmp_path: Path) -> None:
    a = await site.host()
    a.page("/", ["/broken"])

    a.handle("/broken", broken_body)
    code, lines, _ = await crawl_cli(
        tmp_path, a.url("/"), "--retries", "0", "--log-format", "json", gate=None, seen=bool
    )
    assert code == 0
    (summary,) = [r for r in map(json.loads, lines) if r.get("event") == "summary"]
    assert summary["errors"] == 1
    assert summary["errors_by_kind"] == {"payload": 1}
    assert summary["by_status_class"] == {"2xx": 1, "error": 1}


async def test_live_display_on_a_terminal(site: Site, tmp_path: Path) -> None:
    gate = asyncio.Event()
    a = await gated_site(site, gate)
    leader, follower = pty.openpty()
    db = str(tmp_path / "crawl.db")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "crawler", "crawl", a.url("/"), "--db", db,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=follower,
        cwd=tmp_path,
        env=env(TERM="xterm-256color", COLUMNS="120", LINES="40", CRAWLER_PROGRESS_EVERY="0.05"),
    )  # fmt: skip
    os.close(follower)
    loop = asyncio.get_running_loop()
    chunks: list[bytes] = []
    done = asyncio.Event()

    def readable() -> None:
        try:
            data = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            data = b""
        if not data:
            loop.remove_reader(leader)
            done.set()
            return
        chunks.append(data)
        if b"in flight" in b"".join(chunks):
            gate.set()  # the display is up: let the held page answer

    async def finish() -> int:
        await done.wait()  # EOF: the child closed the terminal
        return await proc.wait()

    loop.add_reader(leader, readable)
    try:
        assert await bounded(proc, finish()) == 0
    finally:
        loop.remove_reader(leader)
        os.close(leader)
    screen = b"".join(chunks).decode(errors="replace")
    assert gate.is_set()
    for label in ("pages", "pages/s", "in flight", "queued", "hosts", "errors", "MB"):
        assert label in screen
    assert "INFO progress:" not in screen  # the display, not log lines
    assert "\x1b[" in screen  # redrawn in place with terminal escapes
    assert "crawl done" in screen and "pages this run" in screen


@pytest.mark.parametrize(
    ("value", "expected", "warns"),
    [
        pytest.param(None, progress.LOG_EVERY, False, id="unset"),
        pytest.param("0.5", 0.5, False, id="seconds"),
        pytest.param("2", 2.0, False, id="integer"),
        pytest.param("0", progress.LOG_EVERY, True, id="zero"),
        pytest.param("-1", progress.LOG_EVERY, True, id="negative"),
        pytest.param("soon", progress.LOG_EVERY, True, id="not-a-number"),
    ],
)
def test_progress_interval_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    value: str | None,
    expected: float,
    warns: bool,
) -> None:
    if value is None:
        monkeypatch.delenv(progress.EVERY_ENV, raising=False)
    else:
        monkeypatch.setenv(progress.EVERY_ENV, value)
    with caplog.at_level(logging.WARNING):
        assert progress.progress_every() == expected
    assert (progress.EVERY_ENV in caplog.text) == warns


def test_status_line_lists_errors_by_kind() -> None:
    data: dict[str, Any] = {
        "pages": 1234,
        "pages_per_s": 56.78,
        "in_flight": 8,
        "queued": 90000,
        "hosts_active": 3,
        "errors": 5,
        "errors_by_kind": {"connect": 2, "timeout": 3},
        "http_errors": 7,
        "bytes": 12_500_000,
    }
    assert progress.status_line(data) == (
        "1,234 pages  56.8/s  8 in flight  90,000 queued  3 hosts  "
        "5 errors (connect 2, timeout 3)  7 HTTP>=400  12.5 MB"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["crawl", "--log-format", "json", "notaurl"], "invalid seed URL", id="usage"),
        pytest.param(["crawl", "--log-format=json", "--bogus"], "No such option", id="click"),
    ],
)
def test_json_log_format_errors_are_json_too(args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    (line,) = result.output.splitlines()
    record = json.loads(line)
    assert record["level"] == "error" and record["exit_code"] == 2
    assert record["message"].startswith(message)
