"""A worker cut off from PostgreSQL (through a loopback proxy the test controls): a cut
shorter than `--lease` is ridden out; a longer one makes the worker stop fetching the
hosts whose leases lapsed and exit 1 with one line, while another worker finishes them.
Either way the crawl stores what one SQLite crawl of the site stores, each page once. A
host taken over from a lapsed lease waits its delay from the lapse."""

from __future__ import annotations

import asyncio
import itertools
import subprocess
from collections.abc import Iterator

import aiohttp
import pytest
from pg import Cluster
from proxy import Proxy
from support import Host, LoopThread, Site, rows, settings, threaded_site
from test_workers import (
    DEADLINE,
    build,
    crawler,
    finish,
    pg_rows,
    reset,
    start_crawl,
    start_worker,
    started,
    two_lease_holders,
    wait_for,
)

from crawler.records import NewURL, Outcome
from crawler.run import work
from crawler.urls import server_key

LEASE = "2"
AGENT = "testbot/1 (+mailto:ops@example.com)"
DELAY = 0.5  # a worker still has URLs of its hosts in RAM when its leases lapse
PAGES = 5


async def _event() -> asyncio.Event:
    return asyncio.Event()


Crawled = dict[str, list[tuple[object, ...]]]
World = tuple[LoopThread, asyncio.Event, list[Host], Crawled]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """The site, and what one SQLite crawl of it stores (shared by the tests)."""
    with threaded_site() as (site, thread):
        gate = thread.call(_event())
        hosts = build(site, thread, n_hosts=8, pages=PAGES, gate=gate)
        db = str(tmp_path_factory.mktemp("cuts") / "one.db")
        seeds = [h.url("/") for h in hosts]
        args = ["crawl", *seeds, "--db", db, "-q", "--per-host", "1", "--delay", str(DELAY)]
        thread.loop.call_soon_threadsafe(gate.set)
        assert subprocess.run(crawler(*args), timeout=DEADLINE).returncode == 0
        want = {
            "pages": sorted(rows(db, "SELECT url, status FROM pages")),
            "links": sorted(rows(db, "SELECT src_url, dst_url FROM links")),
            "urls": sorted(rows(db, "SELECT url, state FROM urls")),
        }
        yield thread, gate, hosts, want


@pytest.fixture
def proxied(
    world: World, pg_cluster: Cluster, pg_dsn: str
) -> Iterator[tuple[LoopThread, asyncio.Event, list[Host], Proxy, str]]:
    thread, gate, hosts, _ = world
    thread.loop.call_soon_threadsafe(gate.clear)
    for host in hosts:
        host.hits.clear()
        host.max_open = 0
    proxy = Proxy(pg_cluster.port)
    thread.call(proxy.start())
    try:
        via = pg_dsn.replace(f":{pg_cluster.port}/", f":{proxy.port}/")
        yield thread, gate, hosts, proxy, via
    finally:
        thread.loop.call_soon_threadsafe(gate.set)
        thread.call(proxy.close())


def postgres_crawl(cluster: Cluster, dsn: str) -> Crawled:
    got = pg_rows(cluster, dsn, "SELECT url, status FROM pages")
    return {
        "pages": sorted((u, int(s)) for u, s in got),
        "links": sorted(pg_rows(cluster, dsn, "SELECT src_url, dst_url FROM links")),
        "urls": sorted(pg_rows(cluster, dsn, "SELECT url, state FROM urls")),
    }


def second_worker_stored_pages(cluster: Cluster, dsn: str) -> bool:
    """The worker that joined has committed pages of its hosts, so it holds their
    links in RAM: cut now, it could fetch them without the database."""
    found = pg_rows(
        cluster,
        dsn,
        "SELECT count(*) FROM page_rows AS p JOIN hosts AS h USING (host) JOIN servers AS s "
        "USING (server) "
        "WHERE s.lease_owner = (SELECT id FROM workers ORDER BY started_at DESC LIMIT 1)",
    )
    return int(found[0][0]) > 0


def polite(hosts: list[Host]) -> None:
    """What each server saw, across both workers: one request at a time, DELAY apart."""
    for host in hosts:
        assert host.max_open <= 1, host.ip
        starts = sorted(hit.arrived for hit in host.hits)
        assert all(b - a >= DELAY - 0.010 for a, b in itertools.pairwise(starts)), host.ip


def run_two_workers(
    proxied: tuple[LoopThread, asyncio.Event, list[Host], Proxy, str],
    cluster: Cluster,
    dsn: str,
    during: object,
) -> tuple[int, int, str]:
    """`crawl` straight to the server and `work` through the proxy; `during(worker)` cuts
    and restores; (crawl's exit code, worker's exit code, worker's stderr)."""
    thread, gate, hosts, proxy, via = proxied
    seeds = [h.url("/") for h in hosts]
    crawl = start_crawl(
        dsn, seeds, "--concurrency", "1", "--lease", LEASE, "--delay", str(DELAY),
        "--user-agent", AGENT,
    )  # fmt: skip
    worker = None
    try:
        wait_for(lambda: started(cluster, dsn), "the crawl to start")
        worker = start_worker(via)
        wait_for(lambda: two_lease_holders(cluster, dsn), "two workers holding leases")
        thread.loop.call_soon_threadsafe(gate.set)
        wait_for(lambda: second_worker_stored_pages(cluster, dsn), "the worker to store pages")
        during(worker)  # type: ignore[operator]
        _, err = worker.communicate(timeout=DEADLINE)
        thread.loop.call_soon_threadsafe(proxy.restore)
        return finish(crawl), worker.returncode, err
    finally:
        thread.loop.call_soon_threadsafe(gate.set)
        thread.loop.call_soon_threadsafe(proxy.restore)
        for proc in (crawl, worker):
            if proc is not None and proc.poll() is None:
                proc.kill()
            if proc is not None:
                proc.communicate()


def test_a_worker_cut_off_for_less_than_its_lease_carries_on(
    world: World,
    proxied: tuple[LoopThread, asyncio.Event, list[Host], Proxy, str],
    pg_cluster: Cluster,
    pg_dsn: str,
) -> None:
    thread, _, hosts, proxy, _ = proxied
    want = world[3]

    def short_cut(worker: subprocess.Popen[str]) -> None:
        # Cut just after a renewal reached the worker, so the whole lease is left (cut
        # at any moment, as little as 1.26 s was, and the wait below once took 1.3 s).
        thread.loop.call_soon_threadsafe(proxy.cut_after_renewal)
        wait_for(lambda: proxy.is_cut, "a renewal to cut after")
        # Held until the worker has tried the server twice (its writer and its lease
        # keeper both wait): a fraction of the 2 s lease.
        wait_for(lambda: proxy.held >= 2, "the worker to try the server")
        thread.loop.call_soon_threadsafe(proxy.restore)

    crawl_code, worker_code, err = run_two_workers(proxied, pg_cluster, pg_dsn, short_cut)
    assert (crawl_code, worker_code) == (0, 0), err
    assert postgres_crawl(pg_cluster, pg_dsn) == want
    polite(hosts)
    ran = pg_rows(pg_cluster, pg_dsn, "SELECT kind, pages > 0 FROM runs ORDER BY id")
    assert ran == [("crawl", "t"), ("work", "t")]  # the cut worker went on storing


def test_a_worker_cut_off_past_its_lease_stops_and_another_finishes_its_hosts(
    world: World,
    proxied: tuple[LoopThread, asyncio.Event, list[Host], Proxy, str],
    pg_cluster: Cluster,
    pg_dsn: str,
) -> None:
    thread, _, hosts, proxy, _ = proxied
    want = world[3]

    def long_cut(worker: subprocess.Popen[str]) -> None:
        thread.loop.call_soon_threadsafe(proxy.cut)  # until the worker has exited

    crawl_code, worker_code, err = run_two_workers(proxied, pg_cluster, pg_dsn, long_cut)
    assert crawl_code == 0
    assert worker_code == 1 and "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert line.startswith("crawler: error: store failed: this worker could not renew its leases")
    assert "s3cret" not in line
    # The other worker fetched the cut worker's hosts once their leases lapsed; nothing
    # was lost, nothing stored twice (and the server never saw two workers on one host).
    assert postgres_crawl(pg_cluster, pg_dsn) == want
    polite(hosts)
    assert pg_rows(pg_cluster, pg_dsn, "SELECT count(*) FROM workers") == [("0",)]


async def test_a_host_taken_over_from_a_lapsed_lease_waits_its_delay_from_the_lapse(
    site: Site, pg_dsn: str
) -> None:
    """A worker whose renewal came late may have sent a request just before its lease
    lapsed (it stops only then), and that request is not in the host's `next_start`:
    the worker that takes the host over waits the delay from the lapse."""
    from crawler.store.postgres import PostgresStore

    host = await site.host()
    host.page("/")
    delay = 1.0
    holder = await PostgresStore.open(pg_dsn, create=True)
    try:
        await holder.save_crawl(
            settings(delay=delay, per_host=1, lease=2.0, user_agent=AGENT), [host.url("/")]
        )
        holder.add(Outcome(url="", state=None, new_urls=[NewURL(host.url("/"), host.origin, 0)]))
        await holder.flush()
        assert await holder.lease_hosts(1) == {host.origin: None}
        async with aiohttp.ClientSession() as session, session.get(host.url("/")) as resp:
            await resp.read()  # the holder's last request...
        async with holder.pool.acquire() as conn:  # ...and its lease lapses right after
            await conn.execute(
                "UPDATE servers SET lease_until = extract(epoch FROM clock_timestamp()) "
                "WHERE server = $1",
                server_key(host.origin),
            )
        await work(pg_dsn)
    finally:
        await holder.close()
    assert host.paths == ["/", "/robots.txt", "/"]
    last, first = (hit.arrived for hit in host.hits[:2])
    assert first - last >= delay - 0.010


async def _long_transaction(dsn: str, hosts: list[str], hold: float, held: asyncio.Event) -> None:
    """Another worker's commit that found links to `hosts` and takes `hold` seconds: it
    locks their rows as every commit does (the statement is the writer's), and speaks
    now and then, so the server does not end it as idle."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        transaction = conn.transaction()
        await transaction.start()
        await conn.execute(
            "INSERT INTO hosts (host) SELECT unnest($1::text[]) ORDER BY 1 "
            "ON CONFLICT (host) DO UPDATE SET queued = true WHERE NOT hosts.queued",
            hosts,
        )
        held.set()
        loop = asyncio.get_running_loop()
        end = loop.time() + hold
        while loop.time() < end:
            await asyncio.sleep(0.2)  # the other worker's work, not a wait for an event
            await conn.execute("SELECT 1")
        await transaction.rollback()  # the rows go back as they were
    finally:
        await conn.close()


def test_another_workers_long_transaction_on_its_hosts_rows_does_not_make_it_lapse(
    world: World, pg_cluster: Cluster, pg_dsn: str
) -> None:
    """While another worker's transaction holds rows this worker's commits need (its hosts'
    rows, which any commit that found links to them locks) for twice the lease, this
    worker's commits wait, but its leases are renewed all along: it carries on, then
    stores what one SQLite crawl stores. (Renewals waited behind the commits once, and the
    worker lapsed with the others' transaction still open.)"""
    thread, gate, hosts, want = world
    thread.loop.call_soon_threadsafe(gate.clear)
    reset(hosts)
    seeds = [h.url("/") for h in hosts]
    crawl = start_crawl(
        pg_dsn, seeds, "--lease", LEASE, "--delay", str(DELAY), "--user-agent", AGENT
    )
    holding = None
    try:
        wait_for(lambda: started(pg_cluster, pg_dsn), "the crawl to start")
        wait_for(
            lambda: (
                pg_rows(pg_cluster, pg_dsn, "SELECT count(*) FROM hosts") == [(str(len(hosts)),)]
            ),
            "the seeds' hosts",
        )
        held = thread.call(_event())
        origins = [h.origin for h in hosts]
        holding = asyncio.run_coroutine_threadsafe(
            _long_transaction(pg_dsn, origins, 2 * float(LEASE), held), thread.loop
        )
        thread.call(held.wait())
        thread.loop.call_soon_threadsafe(gate.set)  # the home pages' links: commits wait
        _, err = crawl.communicate(timeout=DEADLINE)
        holding.result(DEADLINE)
    finally:
        thread.loop.call_soon_threadsafe(gate.set)
        if crawl.poll() is None:
            crawl.kill()
            crawl.communicate()
        if holding is not None:
            holding.cancel()
    assert crawl.returncode == 0, err
    assert "Traceback" not in err
    # The stall is told: the commit waited past a lease for the other transaction's rows.
    assert "for rows another worker's transaction holds" in err
    assert postgres_crawl(pg_cluster, pg_dsn) == want
    polite(hosts)
