"""A worker whose event loop is blocked past its lease (a slow synchronous hook): its
lapse timer fires late, but its clock does not, so once the loop wakes it hands out no
job and writes no request of a host another worker may hold by then. It exits 1 with
the store-failure line; what it did not send stays queued (no error row), and the worker
that takes its host over fetches it, the delay apart from the blocked worker's last."""

from __future__ import annotations

import itertools
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest
from aiohttp import web
from pg import Cluster
from support import Handler, Host, Site, settings, threaded_site
from test_workers import DEADLINE, crawler, pg_rows

from crawler.coordination import Leased
from crawler.errors import LeaseLost
from crawler.fetcher import fetch, make_session
from crawler.store.postgres import PostgresStore

LEASE = 1.0
STALL = 2.5  # seconds the hook blocks the loop: well past the lease
DELAY = 0.3
PAGES = 8
AGENT = "testbot/1 (+mailto:ops@example.com)"
TESTS = str(Path(__file__).parent)  # where the workers import `hookfns` from


def _signalling(done: threading.Event, inner: Handler) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        done.set()
        return await inner(request)

    return handler


def _worker(args: list[str], **env: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": TESTS, **env}
    return subprocess.Popen(crawler(*args), stderr=subprocess.PIPE, text=True, env=env)


def test_a_worker_whose_loop_is_blocked_past_its_lease_sends_nothing_after_it(
    pg_cluster: Cluster, pg_dsn: str
) -> None:
    home = threading.Event()
    with threaded_site() as (site, thread):
        host: Host = thread.call(site.host())
        host.page("/", [f"/p{i}" for i in range(PAGES)])
        for i in range(PAGES):
            host.page(f"/p{i}")
        host.handle("/", _signalling(home, host.routes["/"]))
        # The first worker blocks its loop in the hook on its first page past the seed,
        # with the other pages of the host in RAM; it sends its requests marked.
        blocked = _worker(
            ["crawl", host.url("/"), "--db", pg_dsn, "-q", "--per-host", "1",
             "--delay", str(DELAY), "--concurrency", "1", "--lease", f"{LEASE:g}",
             "--user-agent", AGENT, "--hook", "hookfns:stall", "--header", "X-Worker: blocked"],
            STALL_SECONDS=str(STALL),
        )  # fmt: skip
        other = None
        try:
            assert home.wait(DEADLINE), "the crawl never fetched its seed"
            # The crawl exists and the first worker holds the host: this one waits for it.
            other = _worker(["work", "--db", pg_dsn, "-q", "--concurrency", "1"])
            _, err = blocked.communicate(timeout=DEADLINE)
            _, other_err = other.communicate(timeout=DEADLINE)
        finally:
            for proc in (blocked, other):
                if proc is not None and proc.poll() is None:
                    proc.kill()
                    proc.communicate()
        hits = list(host.hits)

    assert blocked.returncode == 1 and "Traceback" not in err, err
    (line,) = err.strip().splitlines()
    assert line.startswith("crawler: error: store failed: this worker could not renew its leases")
    assert other.returncode == 0, other_err

    # Nothing from the blocked worker after the page whose hook blocked it: what it did
    # next would have been written past its lease.
    mine = [h.path for h in hits if h.headers.get("X-Worker") == "blocked"]
    assert mine[:2] == ["/robots.txt", "/"] and len(mine) == 3, mine
    # The server saw the two workers one request at a time, DELAY apart.
    assert host.max_open <= 1
    starts = sorted(h.arrived for h in hits)
    assert all(b - a >= DELAY - 0.010 for a, b in itertools.pairwise(starts)), starts

    # The URLs it did not send stayed queued, no error rows: the other worker stored them.
    pages = pg_rows(pg_cluster, pg_dsn, "SELECT url, status, error FROM pages ORDER BY url")
    want = sorted([host.url("/"), *(host.url(f"/p{i}") for i in range(PAGES))])
    assert pages == [(url, "200", "") for url in want]
    assert pg_rows(pg_cluster, pg_dsn, "SELECT state, count(*) FROM urls GROUP BY 1") == [
        ("done", str(PAGES + 1))
    ]


async def test_a_request_about_to_be_written_past_the_lease_is_not_sent(
    site: Site, pg_dsn: str
) -> None:
    """The check is made as the request is written, not when its job was handed out: a
    request under way (here on a kept-alive connection) when the loop woke past the
    lease is not sent, and the lapse is handled once, at once."""
    host = await site.host()
    host.page("/a")
    host.page("/b")
    store = await PostgresStore.open(pg_dsn, create=True)
    try:
        lease = Leased(store, hosts_wanted=1)
        fatal: list[BaseException] = []
        lease.on_fatal = fatal.append
        lease.deadline = time.monotonic() + 60
        async with make_session(settings(), before_send=lease.check) as session:
            first = await fetch(session, host.url("/a"), timeout=5, max_bytes=1000)
            assert first.status == 200
            lease.deadline = time.monotonic()  # the loop woke here; the timer has not fired
            with pytest.raises(LeaseLost, match="could not renew its leases"):
                await fetch(session, host.url("/b"), timeout=5, max_bytes=1000)
            assert not lease.live()
    finally:
        await store.close()
    assert host.paths == ["/a"]
    assert fatal == [store.failure] and isinstance(store.failure, LeaseLost)
