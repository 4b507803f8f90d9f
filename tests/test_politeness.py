"""Politeness measured at the servers: requests open per host, gaps between starts, no global brake.

Every assertion reads the servers' own hit logs (`Host.hits`, `Host.max_open`), so what is
checked is what a site operator would see, whatever the crawler believes it did.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from support import Host, Site, rows, run

import crawler.engine
from crawler.config import Settings
from crawler.fetcher import make_session


class Gate:
    """Holds requests until `n` are open across the whole site, then lets everything through.

    Overlap is proven by the count, not by timing luck. If the crawler never gets `n`
    requests open, the gate gives up after `timeout` and opens anyway, so a broken crawler
    fails the assertion on `opened_by_count` instead of hanging.
    """

    def __init__(self, site: Site, n: int, timeout: float = 2.0) -> None:
        self.site = site
        self.n = n
        self.timeout = timeout
        self.opened = asyncio.Event()
        self.opened_by_count = False

    async def wait(self) -> None:
        if self.site.open >= self.n and not self.opened.is_set():
            self.opened_by_count = True
            self.opened.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.timeout):
                await self.opened.wait()
        self.opened.set()

    def page(self, host: Host, path: str, links: Sequence[str] = ()) -> None:
        """A page on `host` served only once the gate is open."""
        body = "".join(f'<a href="{href}">x</a>' for href in links).encode()

        async def handler(request: web.Request) -> web.StreamResponse:
            await self.wait()
            return web.Response(body=body, content_type="text/html")

        host.handle(path, handler)


def without_connector_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lift aiohttp's per-host socket cap, so the frontier alone must keep per_host."""

    def session(settings: Settings, **kwargs: Any) -> aiohttp.ClientSession:
        return make_session(dataclasses.replace(settings, per_host=10_000), **kwargs)

    monkeypatch.setattr(crawler.engine, "make_session", session)


@pytest.mark.parametrize("per_host", [1, 2])
@pytest.mark.parametrize("connector_limit", [True, False], ids=["connector-cap", "frontier-only"])
async def test_per_host_limit_holds_while_many_hosts_overlap(
    site: Site, db: str, monkeypatch: pytest.MonkeyPatch, per_host: int, connector_limit: bool
) -> None:
    if not connector_limit:
        without_connector_limit(monkeypatch)
    gate = Gate(site, n=8)
    hosts = [await site.host() for _ in range(10)]
    for i, host in enumerate(hosts):
        host.hold = 0.05 + 0.005 * i  # slow responses: a host with 10 pages queued wants more
        pages = [f"/p{k}" for k in range(10)]
        gate.page(host, "/", pages)
        for path in pages:
            gate.page(host, path)

    await run(db, [h.url("/") for h in hosts], concurrency=32, per_host=per_host)

    assert gate.opened_by_count, f"never 8 requests open at once (max {site.max_open})"
    assert site.max_open > per_host
    assert {h.ip: h.max_open for h in hosts} == {h.ip: per_host for h in hosts}
    assert rows(db, "SELECT count(*), count(DISTINCT url) FROM pages") == [(110, 110)]
    for host in hosts:
        assert sorted(host.paths) == sorted(["/robots.txt", "/", *(f"/p{k}" for k in range(10))])


async def test_cooling_host_never_holds_up_the_others(site: Site, db: str) -> None:
    # One worker only: if it ever sat out the slow host's Crawl-delay, nothing else would move.
    slow = await site.host()
    slow.robots("User-agent: *\nCrawl-delay: 0.25\n")
    slow.page("/", [f"/s{k}" for k in range(5)])
    for k in range(5):
        slow.page(f"/s{k}")
    fast = [await site.host() for _ in range(4)]
    for host in fast:
        host.page("/", [f"/f{k}" for k in range(10)])
        for k in range(10):
            host.page(f"/f{k}")

    await run(db, [slow.url("/"), *(h.url("/") for h in fast)], concurrency=1)

    assert rows(db, "SELECT count(*) FROM pages") == [(6 + 4 * 11,)]
    slow_starts = sorted(h.start for h in slow.hits)
    fast_hits = [hit for host in fast for hit in host.hits]
    assert len(fast_hits) == 4 * 12
    # Every fast page is done before the slow host's last page even starts...
    assert max(h.end or 0 for h in fast_hits) < slow_starts[-1]
    # ...and fast requests keep flowing while the slow host cools between two of its requests.
    cooling = [h for h in fast_hits if slow_starts[0] < h.start < slow_starts[1]]
    assert len(cooling) >= 10


def gaps(host: Host) -> list[float]:
    """Seconds between consecutive request arrivals on `host`, robots.txt included."""
    starts = sorted(h.arrived for h in host.hits)
    return [b - a for a, b in itertools.pairwise(starts)]


TOLERANCE = 0.01  # server-side clocks see a request a little after the client started it


@pytest.mark.parametrize(
    ("robots", "settings", "gap"),
    [
        pytest.param(None, {"delay": 0.2}, 0.2, id="delay"),
        pytest.param("Crawl-delay: 0.3", {"delay": 0.05}, 0.3, id="crawl-delay-raises"),
        pytest.param("Crawl-delay: 0.01", {"delay": 0.2}, 0.2, id="crawl-delay-below-delay"),
        pytest.param(
            "Crawl-delay: 30", {"delay": 0.05, "max_crawl_delay": 0.15}, 0.15, id="crawl-delay-cap"
        ),
    ],
)
async def test_gap_between_starts_on_one_host(
    site: Site, db: str, robots: str | None, settings: dict[str, Any], gap: float
) -> None:
    host = await site.host()
    host.hold = gap + 0.1  # longer than the gap: only the delay can keep starts apart
    if robots is not None:
        host.robots(f"User-agent: *\n{robots}\n")
    host.page("/", ["/a", "/b", "/c"])
    for path in ("/a", "/b", "/c"):
        host.page(path)

    async with asyncio.timeout(10):  # an uncapped Crawl-delay of 30 s would trip this
        await run(db, [host.url("/")], per_host=2, **settings)

    assert rows(db, "SELECT count(*) FROM pages WHERE status = 200") == [(4,)]
    measured = gaps(host)
    assert len(measured) == 4
    assert min(measured) >= gap - TOLERANCE, measured
    assert max(measured) < gap + 1.0, measured  # the cap holds: nowhere near 30 s
    assert host.max_open == 2  # per_host=2 still lets the held requests overlap


async def test_small_hosts_are_crawled_while_big_hosts_still_have_work(
    site: Site, db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A RAM window a fifth of one big host's queue, the small hosts found through links
    after the big hosts' queues are full: each small host is done before the big ones."""
    import functools

    import crawler.engine
    from crawler.frontier import Frontier

    monkeypatch.setattr(
        crawler.engine, "Frontier", functools.partial(Frontier, window=40, host_window=40)
    )
    big = [await site.host() for _ in range(3)]
    small = [await site.host() for _ in range(12)]
    for host in small:
        host.page("/", ["/a", "/b", "/c"])
        for path in ("/a", "/b", "/c"):
            host.page(path)
    for host in big:
        pages = [f"/p{i}" for i in range(200)]
        host.page("/", pages)
        for i, path in enumerate(pages):
            # The small hosts are linked from pages the crawl reaches after the big
            # hosts' queues have filled the window.
            links = [h.url("/") for h in small] if i == 5 else []
            host.page(path, links)
    await run(db, [h.url("/") for h in big], per_host=1, delay=0.01, scope="any")
    # Every small host is done before any big host is: none waited for a big host's queue.
    first_big_done = min(max(hit.start for hit in host.hits) for host in big)
    for host in small:
        assert len(host.hits) == 5  # robots.txt, /, /a, /b, /c
        assert max(hit.start for hit in host.hits) < first_big_done, host.ip
    assert rows(db, "SELECT count(*) FROM pages") == [(3 * 201 + 12 * 4,)]


async def test_delay_holds_server_side_when_hundreds_of_hosts_connect_at_once(
    db: str, tmp_path: Path
) -> None:
    """The delay clock starts when a request is written, robots.txt included: the gaps
    each server sees between request starts never fall below --delay minus 10 ms. The
    200 servers run in their own process, as real servers would."""
    delay, count = 0.2, 200
    log = tmp_path / "hits.json"
    server = subprocess.Popen(  # noqa: ASYNC220 (the server starts once, before the crawl)
        [sys.executable, str(Path(__file__).with_name("gap_server.py")), "127.0.3.", str(count),
         str(log)],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        seeds = [f"http://127.0.3.{i}:{port}/" for i in range(1, count + 1)]
        await run(db, seeds, per_host=1, delay=delay, concurrency=100)
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=30)
    starts: dict[str, list[float]] = {}
    for host, _, start, _ in json.loads(log.read_text()):
        starts.setdefault(host, []).append(start)
    assert len(starts) == count and all(len(s) == 4 for s in starts.values())
    gaps = [b - a for s in starts.values() for a, b in itertools.pairwise(sorted(s))]
    assert min(gaps) >= delay - 0.010
    assert rows(db, "SELECT count(*) FROM pages WHERE status = 200") == [(3 * count,)]


def test_gap_server_stamps_a_request_when_it_arrived_not_when_it_ran(tmp_path: Path) -> None:
    """The server process is stopped while a request reaches it (as a busy core would
    hold it up): the logged time is the request's arrival, not its handler's late run."""
    log = tmp_path / "hits.json"
    server = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("gap_server.py")), "127.0.4.", "1",
         str(log)],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        with socket.create_connection(("127.0.4.1", port)) as conn:
            server.send_signal(signal.SIGSTOP)
            sent = time.monotonic()
            conn.sendall(b"GET /a HTTP/1.1\r\nHost: 127.0.4.1\r\n\r\n")
            time.sleep(0.2)  # the stall being measured, not a wait for an event
            server.send_signal(signal.SIGCONT)
            assert conn.recv(4096).startswith(b"HTTP/1.1 200")
    finally:
        server.send_signal(signal.SIGCONT)
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=30)
    ((_, path, arrived, _),) = json.loads(log.read_text())
    assert path == "/a" and sent <= arrived < sent + 0.1


async def test_delay_factor_spaces_requests_by_the_response_time(site: Site, db: str) -> None:
    host = await site.host()
    host.hold = 0.05  # every response takes 50 ms
    host.page("/", [f"/{i}" for i in range(4)])
    for i in range(4):
        host.page(f"/{i}")
    await run(db, [host.url("/")], per_host=1, delay=0.0, delay_factor=3.0, ignore_robots=True)
    hits = sorted(host.hits, key=lambda h: h.start)
    assert len(hits) == 5
    # After a response that took >= 50 ms, the next request waits 3 times that.
    waits = [b.start - a.end for a, b in itertools.pairwise(hits) if a.end is not None]
    assert min(waits) >= 3 * 0.05 - 0.01
