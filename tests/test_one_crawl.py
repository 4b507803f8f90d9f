"""One crawl per file: a lock that dies with its process, no silent continuation of an old
crawl, `resume` that keeps the stored settings (flags on top, stored and printed) and
adds seeds, and messages that name the real --db."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiohttp import web
from support import assert_one_line_error, invoke, rows, threaded_site

DEADLINE = 15.0


pytestmark = pytest.mark.usefixtures("in_tmp")  # tests/conftest.py


def crawler(*args: str) -> list[str]:
    return [sys.executable, "-m", "crawler", *args]


def test_second_run_on_a_busy_file_exits_2_and_the_first_is_unharmed(in_tmp: Path) -> None:
    with threaded_site() as (site, thread):
        host = thread.call(site.host("127.0.0.71"))
        started = thread.call(_event())
        release = thread.call(_event())

        async def held(request: web.Request) -> web.StreamResponse:
            started.set()
            await release.wait()
            return web.Response(text="<a href='/b'>b</a>", content_type="text/html")

        host.handle("/", held)
        host.page("/b")
        first = subprocess.Popen(
            crawler("crawl", host.url("/"), "--db", "busy.db", "-q", "--ignore-robots"),
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            thread.call(asyncio.wait_for(started.wait(), DEADLINE), timeout=DEADLINE + 1)
            for args in (
                ["crawl", host.url("/b"), "--db", "busy.db"],
                ["resume", "--db", "busy.db"],
            ):
                result = invoke(*args)
                assert_one_line_error(result, "busy.db is in use by another crawl", code=2)
            # Readers still work while the crawl runs.
            assert invoke("stats", "--db", "busy.db").exit_code == 0
            assert invoke("why", host.url("/"), "--db", "busy.db").exit_code == 0
            assert invoke("export", "--db", "busy.db", "--format", "jsonl").exit_code == 0
        finally:
            thread.loop.call_soon_threadsafe(release.set)
            _, err = first.communicate(timeout=DEADLINE)
        assert first.returncode == 0, err
        assert rows("busy.db", "SELECT url, status FROM pages ORDER BY url") == [
            (host.url("/"), 200),
            (host.url("/b"), 200),
        ]


async def _event() -> asyncio.Event:
    return asyncio.Event()


def test_the_lock_dies_with_its_process(in_tmp: Path) -> None:
    """kill -9 of the holder leaves no stale lock: the next run goes ahead."""
    with threaded_site() as (site, thread):
        host = thread.call(site.host("127.0.0.76"))
        host.page("/")
        assert invoke("crawl", host.url("/"), "--db", "x.db", "-q").exit_code == 0
        holder = subprocess.Popen(
            [sys.executable, "-c",
             "import time; from crawler.store.lock import exclusive\n"
             "with exclusive('x.db'):\n    print('held', flush=True); time.sleep(60)"],
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline().strip() == "held"
            assert_one_line_error(invoke("resume", "--db", "x.db"), "x.db is in use")
        finally:
            holder.kill()
            holder.communicate()
        result = invoke("resume", "--db", "x.db", "-q")
        assert result.exit_code == 0, result.stderr


def test_crawl_into_a_file_with_a_crawl_exits_2_and_says_how_to_continue(
    in_tmp: Path,
) -> None:
    with threaded_site() as (site, thread):
        host = thread.call(site.host("127.0.0.72"))
        host.page("/", ["/a"])
        host.page("/a")
        other = thread.call(site.host("127.0.0.73"))
        other.page("/")
        assert (
            invoke("crawl", host.url("/"), "--db", "c.db", "-q", "--max-pages", "1").exit_code == 0
        )
        before = Path("c.db").read_bytes()
        result = invoke("crawl", other.url("/"), "--db", "c.db", "-q")
        assert_one_line_error(result, "c.db already holds a crawl", "crawler resume --db c.db")
        assert other.hits == []
        assert rows("c.db", "SELECT count(*) FROM pages") == [(1,)]
        assert len(Path("c.db").read_bytes()) == len(before)

        # resume: stored settings kept, a flag overrides (stored and printed), --seed adds.
        result = invoke(
            "resume", "--db", "c.db", "--max-pages", "3", "--seed", other.url("/"), "-q"
        )
        assert result.exit_code == 0, result.stderr
        assert "max_pages is now 3 (was 1)" in result.stderr
        assert rows("c.db", "SELECT count(*) FROM pages") == [(3,)]
        stored = json.loads(rows("c.db", "SELECT settings, seeds FROM crawl")[0][0])
        assert stored["max_pages"] == 3
        seeds = json.loads(rows("c.db", "SELECT seeds FROM crawl")[0][0])
        assert seeds == [host.url("/"), other.url("/")]
        assert len(other.hits) >= 1

        # config --db shows what resume will use.
        shown = json.loads(invoke("config", "--db", "c.db", "--json").stdout)
        assert shown["max_pages"] == {"value": 3, "source": "stored in c.db"}
        shown = json.loads(invoke("config", "--db", "c.db", "--json", "--max-pages", "9").stdout)
        assert shown["max_pages"] == {"value": 9, "source": "command line"}
        assert shown["retries"]["source"] == "stored in c.db"


def test_resumed_at_is_set_on_every_resume(in_tmp: Path) -> None:
    with threaded_site() as (site, thread):
        host = thread.call(site.host("127.0.0.74"))
        host.page("/")
        assert invoke("crawl", host.url("/"), "--db", "r.db", "-q").exit_code == 0
        assert rows("r.db", "SELECT resumed_at FROM crawl") == [(None,)]
        before = time.time()
        assert invoke("resume", "--db", "r.db", "-q").exit_code == 0
        (resumed,) = rows("r.db", "SELECT resumed_at FROM crawl")[0]
        assert resumed is not None and resumed >= before
        stats = json.loads(invoke("stats", "--db", "r.db", "--json").stdout)
        assert stats["resumed_at"] == resumed
        assert stats["runs"] == 2


def test_stop_hint_names_the_real_db(in_tmp: Path) -> None:
    with threaded_site() as (site, thread):
        host = thread.call(site.host("127.0.0.75"))
        started = thread.call(_event())
        release = thread.call(_event())

        async def held(request: web.Request) -> web.StreamResponse:
            started.set()
            await release.wait()
            return web.Response(text="ok", content_type="text/html")

        host.handle("/", held)
        db = "my crawl.db"
        proc = subprocess.Popen(
            crawler("crawl", host.url("/"), "--db", db, "--ignore-robots"),
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "COLUMNS": "200"},
        )
        try:
            thread.call(asyncio.wait_for(started.wait(), DEADLINE), timeout=DEADLINE + 1)
            proc.send_signal(2)
        finally:
            thread.loop.call_soon_threadsafe(release.set)
            _, err = proc.communicate(timeout=DEADLINE)
        assert proc.returncode == 0, err
        assert "crawler resume --db 'my crawl.db'" in err, err


def test_summary_and_stats_agree_on_duration_and_rate(in_tmp: Path) -> None:
    with threaded_site() as (site, thread):
        host = thread.call(site.host("127.0.0.77"))
        host.page("/", [f"/{i}" for i in range(20)])
        for i in range(20):
            host.page(f"/{i}")
        proc = subprocess.run(
            crawler("crawl", host.url("/"), "--db", "s.db", "--log-format", "json"),
            capture_output=True,
            text=True,
            timeout=DEADLINE,
        )
        assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stderr.splitlines()]
    (summary,) = [line for line in lines if line.get("event") == "summary"]
    stats = json.loads(invoke("stats", "--db", "s.db", "--json").stdout)
    assert stats["pages"] == summary["pages"] == 21
    assert stats["duration_s"] == pytest.approx(summary["elapsed"], abs=0.002)
    assert stats["pages_per_s"] == pytest.approx(summary["pages_per_s"], rel=0.01)
