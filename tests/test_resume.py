"""Crash and resume: real crawler subprocesses killed (-9), stopped (SIGTERM, SIGINT, twice)
and resumed against the deterministic demo site; the end result must be exact.

The demo site (scripts/demo_site.py) runs in a background thread of the test process, with
a middleware that records every page request and can hold requests (a server that stops
answering) so a second Ctrl-C is tested against requests that would otherwise never end.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest
from aiohttp import web
from support import LoopThread, rows, urls

ROOT = Path(__file__).resolve().parents[1]
HOSTS, PAGES, BASE_IP = 3, 50, "127.0.0.60"
DELAY = "0.02"  # per host: about 1 s for the whole site, so signals land mid-crawl
DEADLINE = 15.0  # seconds any one awaited condition may take before the test fails


def load_demo_site() -> ModuleType:
    spec = importlib.util.spec_from_file_location("demo_site", ROOT / "scripts" / "demo_site.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


demo_site = load_demo_site()


def bind_same_port(addrs: list[str]) -> list[socket.socket]:
    """Listening sockets on one free port on every address (the demo's links need one)."""
    for _ in range(20):
        socks: list[socket.socket] = []
        try:
            for addr in addrs:
                sock = socket.socket()
                socks.append(sock)
                sock.bind((addr, socks[0].getsockname()[1] if len(socks) > 1 else 0))
            return socks
        except OSError:
            for sock in socks:
                sock.close()
    raise RuntimeError(f"no common free port on {addrs}")


class DemoSite:
    """The demo site's hosts on one port, with a record of page requests and a gate."""

    def __init__(self, thread: LoopThread) -> None:
        self.thread = thread
        self.addrs = [demo_site.host_addr(BASE_IP, k) for k in range(HOSTS)]
        self.served: list[str] = []  # page URLs answered since the last reset, in order
        self.holding = threading.Event()  # set when a request is being held
        self._generation = 0
        self._started = 0
        self._limit: int | None = None
        self._released = asyncio.Event()
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        socks = bind_same_port(self.addrs)
        self.port = socks[0].getsockname()[1]
        root = web.Application(middlewares=[self._track])
        for k, addr in enumerate(self.addrs):
            app = demo_site.build_app(k, HOSTS, PAGES, self.port, BASE_IP)
            root.add_domain(f"{addr}:{self.port}", app)
        self._runner = web.AppRunner(root, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        for sock in socks:
            await web.SockSite(self._runner, sock).start()

    async def stop(self) -> None:
        self._released.set()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def seeds(self) -> list[str]:
        return [f"http://{addr}:{self.port}/" for addr in self.addrs]

    @property
    def expected(self) -> set[str]:
        return {
            url
            for k in range(HOSTS)
            for url in demo_site.expected_urls(k, HOSTS, PAGES, self.port, BASE_IP)
        }

    @web.middleware
    async def _track(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path == "/robots.txt":
            return await handler(request)
        generation = self._generation
        self._started += 1
        if self._limit is not None and self._started > self._limit:
            self.holding.set()
            await self._released.wait()  # a server that has stopped answering
        try:
            return await handler(request)
        finally:
            if generation == self._generation:
                self.served.append(f"http://{request.host}{request.path_qs}")

    def reset(self) -> None:
        """Forget earlier requests and let held ones go (their crawler is gone)."""

        async def reset() -> None:
            self._generation += 1
            self.served.clear()
            self._started, self._limit = 0, None
            self._released.set()
            self._released = asyncio.Event()
            self.holding.clear()

        self.thread.call(reset())

    def hold_after(self, n: int) -> None:
        """Answer the next `n` page requests, then hold every later one until `reset`."""

        async def hold() -> None:
            self._limit = self._started + n

        self.thread.call(hold())

    def answered(self) -> list[str]:
        async def snapshot() -> list[str]:
            return list(self.served)

        return self.thread.call(snapshot())


@pytest.fixture(scope="module")
def demo() -> Iterator[DemoSite]:
    thread = LoopThread()
    try:
        site = thread.call(_start(thread))
        try:
            yield site
        finally:
            thread.call(site.stop())
    finally:
        thread.close()


async def _start(thread: LoopThread) -> DemoSite:
    site = DemoSite(thread)  # built on the server loop: its asyncio.Event belongs there
    await site.start()
    return site


class Crawls:
    """Crawler subprocesses of one test, each logging to its own file; none outlives it."""

    def __init__(self, tmp_path: Path, demo: DemoSite) -> None:
        self.dir = tmp_path
        self.db = str(tmp_path / "crawl.db")
        self.demo = demo
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: dict[int, Path] = {}  # pid -> the run's stdout and stderr

    def start(self, command: str, *extra: str) -> subprocess.Popen[bytes]:
        if command == "crawl":
            args = ["crawl", *self.demo.seeds, "--per-host", "1", "--delay", DELAY]
            args += ["--timeout", "60", "--retries", "0", *extra]
        else:
            args = ["resume", *extra]
        log = self.dir / f"run{len(self.procs)}-{command}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "crawler", *args, "--db", self.db, "-q"],
                cwd=self.dir,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.logs[proc.pid] = log
        self.procs.append(proc)
        return proc

    def wait(self, proc: subprocess.Popen[bytes]) -> int:
        try:
            return proc.wait(DEADLINE)
        except subprocess.TimeoutExpired:
            pytest.fail(f"crawler still running after {DEADLINE}s: {self.output(proc)}")

    def output(self, proc: subprocess.Popen[bytes]) -> str:
        return self.logs[proc.pid].read_text(errors="replace")

    def run(self, command: str, *extra: str) -> None:
        """Run a crawl or resume to its end."""
        proc = self.start(command, *extra)
        code = self.wait(proc)
        assert code == 0, self.output(proc)

    def wait_for_pages(self, proc: subprocess.Popen[bytes], n: int) -> int:
        """Await `n` committed pages in the file (the crawler's progress), with a deadline."""
        end = time.monotonic() + DEADLINE
        while (count := stored(self.db)) < n:
            if proc.poll() is not None:
                pytest.fail(
                    f"crawler exited ({proc.returncode}) at {count} pages: {self.output(proc)}"
                )
            if time.monotonic() > end:
                pytest.fail(f"{n} pages not stored within {DEADLINE}s (have {count})")
            time.sleep(0.005)
        return count

    def kill(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> int:
        proc.send_signal(sig)
        return self.wait(proc)

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


@pytest.fixture
def crawls(tmp_path: Path, demo: DemoSite) -> Iterator[Crawls]:
    demo.reset()
    runs = Crawls(tmp_path, demo)
    try:
        yield runs
    finally:
        runs.close()
        demo.reset()


def readonly(db: str) -> sqlite3.Connection:
    # Read-only: no checkpoint, no recovery; `resume` must cope with the file as the crash left it.
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True)


def stored(db: str) -> int:
    if not os.path.exists(db):
        return 0
    try:
        conn = readonly(db)
        try:
            return int(conn.execute("SELECT count(*) FROM pages").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.OperationalError:  # not created yet, or still migrating
        return 0


def query(db: str, sql: str) -> list[tuple[object, ...]]:
    conn = readonly(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def snapshot(db: str) -> set[tuple[object, ...]]:
    return set(query(db, "SELECT url, fetched_at, status FROM pages"))


def assert_consistent(db: str) -> None:
    """What any commit leaves: a page row and its URL's state change go together."""
    assert query(db, "PRAGMA integrity_check") == [("ok",)]
    assert query(db, "SELECT url FROM pages EXCEPT SELECT url FROM urls WHERE state = 'done'") == []
    assert query(db, "SELECT url FROM urls WHERE state = 'done' EXCEPT SELECT url FROM pages") == []
    # Every stored page's links are there exactly once (a page stored twice would double them).
    assert (
        query(
            db,
            "SELECT p.url FROM pages p LEFT JOIN (SELECT src_url, count(*) AS n FROM links "
            "GROUP BY src_url) l ON l.src_url = p.url WHERE coalesce(l.n, 0) <> "
            "coalesce(p.links_found, 0)",
        )
        == []
    )


def assert_mid_crawl(db: str, demo: DemoSite) -> int:
    """The stop landed mid-crawl: some pages stored, some still queued."""
    assert_consistent(db)
    count = stored(db)
    assert 0 < count < len(demo.expected)
    assert query(db, "SELECT count(*) FROM urls WHERE state = 'queued'")[0][0] > 0
    assert query(db, "SELECT finished_at FROM crawl") == [(None,)]
    return count


def assert_complete(db: str, demo: DemoSite) -> None:
    assert urls(db) == demo.expected
    assert rows(db, "SELECT url, count(*) FROM pages GROUP BY url HAVING count(*) > 1") == []
    assert rows(db, "SELECT count(*) FROM frontier WHERE state = 'queued'") == [(0,)]
    assert rows(db, "SELECT count(*) FROM pages WHERE error IS NOT NULL") == [(0,)]
    assert rows(db, "SELECT finished_at IS NOT NULL FROM crawl") == [(1,)]
    assert_consistent(db)


# ---------------------------------------------------------------------- kill -9


def test_kill_9_then_resume_is_exact(crawls: Crawls, demo: DemoSite) -> None:
    proc = crawls.start("crawl")
    crawls.wait_for_pages(proc, 40)
    assert crawls.kill(proc) == -signal.SIGKILL
    assert assert_mid_crawl(crawls.db, demo) >= 40
    before = snapshot(crawls.db)
    crawls.run("resume")
    assert_complete(crawls.db, demo)
    assert before <= snapshot(crawls.db)  # committed pages were kept, not fetched again


def test_repeated_kill_9_then_resume_is_exact(crawls: Crawls, demo: DemoSite) -> None:
    total = len(demo.expected)
    kept: set[tuple[object, ...]] = set()
    for i, fraction in enumerate((0.15, 0.35, 0.55, 0.75)):
        proc = crawls.start("crawl" if i == 0 else "resume")
        crawls.wait_for_pages(proc, int(total * fraction))
        assert crawls.kill(proc) == -signal.SIGKILL
        assert_mid_crawl(crawls.db, demo)
        now = snapshot(crawls.db)
        assert kept <= now  # every run kept what the runs before it committed
        kept = now
    crawls.run("resume")
    assert_complete(crawls.db, demo)
    assert kept <= snapshot(crawls.db)


# ---------------------------------------------------------------------- graceful stops


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_gracefully_and_resume_is_exact(
    crawls: Crawls, demo: DemoSite, sig: signal.Signals
) -> None:
    proc = crawls.start("crawl")
    crawls.wait_for_pages(proc, 40)
    assert crawls.kill(proc, sig) == 0, crawls.output(proc)
    assert "Traceback" not in crawls.output(proc)
    count = assert_mid_crawl(crawls.db, demo)
    # Graceful: every response the server sent before the stop was stored, none was lost.
    assert sorted(urls(crawls.db)) == sorted(demo.answered())
    assert count == len(demo.answered())
    crawls.run("resume")
    assert_complete(crawls.db, demo)
    # Nothing was fetched twice across the stop: the saved state was exact.
    assert Counter(demo.answered()) == Counter(demo.expected)


def signal_pending(pid: int, sig: int) -> bool:
    """Whether `sig` sent to `pid` is still waiting to be delivered (Linux /proc)."""
    status = Path(f"/proc/{pid}/status").read_text()
    masks = [
        int(line.split()[1], 16) for line in status.splitlines() if line[:6] in ("ShdPnd", "SigPnd")
    ]
    return any(mask & (1 << (sig - 1)) for mask in masks)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_second_sigint_stops_at_once_consistent_and_resumable(
    crawls: Crawls, demo: DemoSite
) -> None:
    demo.hold_after(30)  # then the server stops answering: open requests never end
    proc = crawls.start("crawl")
    assert demo.holding.wait(DEADLINE), crawls.output(proc)
    crawls.wait_for_pages(proc, 30)  # everything answered is committed, nothing more can be
    proc.send_signal(signal.SIGINT)
    # Two signals sent before the first is delivered merge into one: await its delivery.
    end = time.monotonic() + DEADLINE
    while signal_pending(proc.pid, signal.SIGINT):
        assert time.monotonic() < end, "SIGINT not delivered"
        time.sleep(0.001)
    # The first SIGINT alone would wait for the held requests (up to --timeout 60).
    code = crawls.kill(proc, signal.SIGINT)
    assert code == 0, crawls.output(proc)
    assert "Traceback" not in crawls.output(proc)
    assert demo.holding.is_set()  # the requests it gave up on were still open
    assert_mid_crawl(crawls.db, demo)
    assert stored(crawls.db) == 30 == len(demo.answered())

    demo.reset()  # the server answers again
    crawls.run("resume")
    assert_complete(crawls.db, demo)
