"""One crawl, many workers: `crawler crawl` and `crawler work` processes on one PostgreSQL
store, against real local sites and a real server (tests/pg.py)."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from aiohttp import web
from pg import PASSWORD, Cluster
from support import Handler, Host, LoopThread, Site, rows, threaded_site

DEADLINE = 60.0
DELAY = 0.02
PER_HOST = 1


def crawler(*args: str) -> list[str]:
    return [sys.executable, "-m", "crawler", *args]


def build(
    site: Site,
    thread: LoopThread,
    n_hosts: int = 3,
    pages: int = 12,
    gate: asyncio.Event | None = None,
) -> list[Host]:
    """`n_hosts` hosts linking to each other; with a `gate`, every home page is held until
    the gate opens (so a test can see workers hold leases before any host is done)."""
    hosts = [thread.call(site.host(f"127.0.5.{i + 1}")) for i in range(n_hosts)]
    for k, host in enumerate(hosts):
        host.robots("User-agent: *\nDisallow: /private\n")
        other = hosts[(k + 1) % n_hosts]
        host.page("/", [f"/p{i}" for i in range(pages)] + ["/private/x", other.url("/p0")])
        for i in range(pages):
            host.page(f"/p{i}", [f"/p{(i + 1) % pages}", f"/p{(i + 5) % pages}"])
        if gate is not None:
            host.handle("/", _held(gate, host.routes["/"]))
    return hosts


def _held(gate: asyncio.Event, inner: Handler) -> Handler:
    async def held(request: web.Request) -> web.StreamResponse:
        await gate.wait()
        return await inner(request)

    return held


async def _event() -> asyncio.Event:
    return asyncio.Event()


@pytest.fixture
def sites() -> Iterator[tuple[LoopThread, asyncio.Event, list[Host]]]:
    with threaded_site() as (site, thread):
        gate = thread.call(_event())
        yield thread, gate, build(site, thread, n_hosts=8, gate=gate)


def two_lease_holders(cluster: Cluster, dsn: str) -> bool:
    found = pg_rows(cluster, dsn, "SELECT count(DISTINCT lease_owner) FROM servers")
    return found == [("2",)]


def reset(hosts: list[Host]) -> None:
    for host in hosts:
        host.hits.clear()
        host.max_open = 0


def pg_rows(cluster: Cluster, dsn: str, sql: str) -> list[tuple[str, ...]]:
    out = cluster.psql(sql, dsn.rsplit("/", 1)[1])
    return [tuple(line.split("|")) for line in out.splitlines() if line]


def wait_for(condition: object, what: str) -> None:
    end = time.monotonic() + DEADLINE
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.02)


def start_crawl(dsn: str, seeds: list[str], *extra: str) -> subprocess.Popen[str]:
    args = ["crawl", *seeds, "--db", dsn, "-q", "--per-host", str(PER_HOST)]
    args += ["--delay", str(DELAY), "--concurrency", "4", "--lease", "3", *extra]
    return subprocess.Popen(crawler(*args), stderr=subprocess.PIPE, text=True)


def start_worker(dsn: str) -> subprocess.Popen[str]:
    args = crawler("work", "--db", dsn, "-q", "--concurrency", "1")
    return subprocess.Popen(args, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen[str]) -> int:
    _, err = proc.communicate(timeout=DEADLINE)
    assert "Traceback" not in err, err
    if proc.returncode:
        print(f"exit {proc.returncode}: {err}")  # shown when the test fails
    return proc.returncode


def test_three_workers_store_what_one_sqlite_crawl_stores(
    sites: tuple[LoopThread, asyncio.Event, list[Host]],
    pg_cluster: Cluster,
    pg_dsn: str,
    tmp_path: object,
) -> None:
    thread, gate, hosts = sites
    seeds = [h.url("/") for h in hosts]
    db = str(tmp_path) + "/one.db"  # type: ignore[operator]
    thread.loop.call_soon_threadsafe(gate.set)
    args = ["crawl", *seeds, "--db", db, "-q", "--per-host", str(PER_HOST), "--delay", str(DELAY)]
    assert subprocess.run(crawler(*args), timeout=DEADLINE).returncode == 0
    want_pages = sorted(rows(db, "SELECT url, status FROM pages"))
    want_links = sorted(rows(db, "SELECT src_url, dst_url FROM links"))
    want_urls = sorted(rows(db, "SELECT url, state FROM urls"))
    reset(hosts)
    thread.loop.call_soon_threadsafe(gate.clear)

    procs = [start_crawl(pg_dsn, seeds, "--concurrency", "1")]  # 4 hosts leased at a time
    try:
        wait_for(lambda: _has_schema(pg_cluster, pg_dsn)
                 and pg_rows(pg_cluster, pg_dsn, "SELECT count(*) FROM crawl") == [("1",)],
                 "the crawl to start")  # fmt: skip
        procs += [start_worker(pg_dsn) for _ in range(2)]
        # Home pages are held until a worker too holds leases: the work is shared.
        wait_for(lambda: two_lease_holders(pg_cluster, pg_dsn), "two workers holding leases")
        thread.loop.call_soon_threadsafe(gate.set)
        assert [finish(p) for p in procs] == [0, 0, 0]
    finally:
        thread.loop.call_soon_threadsafe(gate.set)
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()

    got_pages = sorted((u, int(s)) for u, s in pg_rows(pg_cluster, pg_dsn,
                       "SELECT url, status FROM pages"))  # fmt: skip
    assert got_pages == want_pages
    twice = [(h.ip, p) for h in hosts for p, n in Counter(h.paths).items() if n > 1]
    assert twice == []  # no URL fetched by two workers
    assert sorted(pg_rows(pg_cluster, pg_dsn, "SELECT src_url, dst_url FROM links")) == want_links
    assert sorted(pg_rows(pg_cluster, pg_dsn, "SELECT url, state FROM urls")) == want_urls
    working = pg_rows(pg_cluster, pg_dsn, "SELECT count(*) FROM runs WHERE pages > 0")
    assert int(working[0][0]) >= 2  # the work was shared
    # Politeness held across all workers, as each server saw it.
    for host in hosts:
        assert host.max_open <= PER_HOST, host.ip
        starts = sorted(hit.arrived for hit in host.hits)
        assert all(b - a >= DELAY - 0.010 for a, b in itertools.pairwise(starts)), host.ip
        assert host.requests_for("/robots.txt") == 1  # once per host across workers


def _has_schema(cluster: Cluster, dsn: str) -> bool:
    found = pg_rows(cluster, dsn, "SELECT to_regclass('crawl') IS NOT NULL")
    return found == [("t",)]


def test_a_killed_worker_gives_its_hosts_back_when_its_leases_expire(
    sites: tuple[LoopThread, asyncio.Event, list[Host]], pg_cluster: Cluster, pg_dsn: str
) -> None:
    thread, gate, hosts = sites
    seeds = [h.url("/") for h in hosts]
    # One connection each: each process leases 4 of the 8 hosts.
    procs = [start_crawl(pg_dsn, seeds, "--concurrency", "1")]
    try:
        wait_for(lambda: _has_schema(pg_cluster, pg_dsn)
                 and pg_rows(pg_cluster, pg_dsn, "SELECT count(*) FROM crawl") == [("1",)],
                 "the crawl to start")  # fmt: skip
        procs.append(start_worker(pg_dsn))
        # Kill the worker once it holds leases: its hosts wait for them to expire.
        wait_for(lambda: two_lease_holders(pg_cluster, pg_dsn), "two workers holding leases")
        os.kill(procs[1].pid, signal.SIGKILL)
        procs[1].communicate(timeout=DEADLINE)
        thread.loop.call_soon_threadsafe(gate.set)
        assert finish(procs[0]) == 0
    finally:
        thread.loop.call_soon_threadsafe(gate.set)
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
    expected = {h.url(f"/p{i}") for h in hosts for i in range(12)} | set(seeds)
    got = pg_rows(pg_cluster, pg_dsn, "SELECT url, status FROM pages")
    assert sorted(u for u, _ in got) == sorted(expected)  # nothing lost, nothing twice
    assert {s for _, s in got} == {"200"}
    assert pg_rows(pg_cluster, pg_dsn, "SELECT count(*) FROM urls WHERE state = 'queued'") == [
        ("0",)
    ]


def test_work_needs_a_shared_store(tmp_path: object) -> None:
    db = str(tmp_path) + "/x.db"  # type: ignore[operator]
    done = subprocess.run(crawler("work", "--db", db), capture_output=True, text=True)
    assert done.returncode == 2
    assert "crawler: error:" in done.stderr and "Traceback" not in done.stderr


def test_every_worker_killed_then_resume_is_exact(pg_cluster: Cluster, pg_dsn: str) -> None:
    with threaded_site() as (site, thread):
        hosts = build(site, thread, n_hosts=8)
        seeds = [h.url("/") for h in hosts]
        crawl = start_crawl(pg_dsn, seeds, "--concurrency", "1")
        worker = None
        try:
            wait_for(lambda: _has_schema(pg_cluster, pg_dsn)
                     and pg_rows(pg_cluster, pg_dsn, "SELECT count(*) FROM crawl") == [("1",)],
                     "the crawl to start")  # fmt: skip
            worker = start_worker(pg_dsn)
            wait_for(lambda: int(pg_rows(pg_cluster, pg_dsn, "SELECT count(*) FROM pages")[0][0])
                     >= 20, "some pages")  # fmt: skip
        finally:
            for proc in (crawl, worker):
                if proc is not None:
                    proc.kill()
                    proc.communicate()
        before = int(pg_rows(pg_cluster, pg_dsn, "SELECT count(*) FROM pages")[0][0])
        assert before < 8 * 13  # killed mid-crawl
        done = subprocess.run(
            crawler("resume", "--db", pg_dsn, "-q"),
            capture_output=True,
            text=True,
            timeout=DEADLINE,
        )
        assert done.returncode == 0, done.stderr
    expected = {h.url(f"/p{i}") for h in hosts for i in range(12)} | set(seeds)
    got = [u for (u,) in pg_rows(pg_cluster, pg_dsn, "SELECT url FROM pages")]
    assert sorted(got) == sorted(expected)  # nothing lost, nothing stored twice
    assert pg_rows(pg_cluster, pg_dsn, "SELECT count(*) FROM urls WHERE state = 'queued'") == [
        ("0",)
    ]


def started(cluster: Cluster, dsn: str) -> bool:
    return _has_schema(cluster, dsn) and pg_rows(cluster, dsn, "SELECT count(*) FROM crawl") == [
        ("1",)
    ]


def test_max_pages_is_exact_across_three_workers(
    sites: tuple[LoopThread, asyncio.Event, list[Host]], pg_cluster: Cluster, pg_dsn: str
) -> None:
    thread, gate, hosts = sites
    seeds = [h.url("/") for h in hosts]
    limit = 30  # of 104 pages
    procs = [start_crawl(pg_dsn, seeds, "--concurrency", "1", "--max-pages", str(limit))]
    try:
        wait_for(lambda: started(pg_cluster, pg_dsn), "the crawl to start")
        procs += [start_worker(pg_dsn) for _ in range(2)]
        wait_for(lambda: two_lease_holders(pg_cluster, pg_dsn), "two workers holding leases")
        thread.loop.call_soon_threadsafe(gate.set)
        assert [finish(p) for p in procs] == [0, 0, 0]
    finally:
        thread.loop.call_soon_threadsafe(gate.set)
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
    assert pg_rows(pg_cluster, pg_dsn, "SELECT count(*), count(DISTINCT url) FROM pages") == [
        (str(limit), str(limit))
    ]
    # Exactly as many pages requested as stored: no worker fetched past the budget.
    fetched = [(h.ip, p) for h in hosts for p in h.paths if p != "/robots.txt"]
    assert len(fetched) == limit and len(set(fetched)) == limit
    working = pg_rows(pg_cluster, pg_dsn, "SELECT count(*) FROM runs WHERE pages > 0")
    assert int(working[0][0]) >= 2  # the budget was shared
    assert pg_rows(pg_cluster, pg_dsn, "SELECT stored, in_flight FROM page_budget") == [
        (str(limit), "0")
    ]
    assert pg_rows(pg_cluster, pg_dsn, "SELECT count(*) FROM workers") == [("0",)]


def test_work_with_processes_adds_that_many_workers(
    pg_cluster: Cluster, pg_dsn: str, tmp_path: object
) -> None:
    with threaded_site() as (site, thread):
        gate = thread.call(_event())
        # 12 hosts, 4 leased by each of the crawl and the two worker processes.
        hosts = build(site, thread, n_hosts=12, pages=6, gate=gate)
        seeds = [h.url("/") for h in hosts]
        db = str(tmp_path) + "/one.db"  # type: ignore[operator]
        thread.loop.call_soon_threadsafe(gate.set)
        args = ["crawl", *seeds, "--db", db, "-q", "--per-host", str(PER_HOST)]
        assert subprocess.run(crawler(*args), timeout=DEADLINE).returncode == 0
        want = sorted(rows(db, "SELECT url, status FROM pages"))
        want_urls = sorted(rows(db, "SELECT url, state FROM urls"))
        reset(hosts)
        thread.loop.call_soon_threadsafe(gate.clear)

        procs = [start_crawl(pg_dsn, seeds, "--concurrency", "1")]
        try:
            wait_for(lambda: started(pg_cluster, pg_dsn), "the crawl to start")
            work = crawler("work", "--db", pg_dsn, "-q", "--processes", "2", "--concurrency", "2")
            procs.append(subprocess.Popen(work, stderr=subprocess.PIPE, text=True))
            holders = "SELECT count(DISTINCT lease_owner) FROM servers"
            wait_for(
                lambda: pg_rows(pg_cluster, pg_dsn, holders) == [("3",)], "three lease holders"
            )
            thread.loop.call_soon_threadsafe(gate.set)
            assert [finish(p) for p in procs] == [0, 0]
        finally:
            thread.loop.call_soon_threadsafe(gate.set)
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                proc.communicate()
    got = pg_rows(pg_cluster, pg_dsn, "SELECT url, status FROM pages")
    assert sorted((u, int(s)) for u, s in got) == want
    assert sorted(pg_rows(pg_cluster, pg_dsn, "SELECT url, state FROM urls")) == want_urls
    twice = [(h.ip, p) for h in hosts for p, n in Counter(h.paths).items() if n > 1]
    assert twice == []
    for host in hosts:
        assert host.max_open <= PER_HOST, host.ip
    ran = pg_rows(pg_cluster, pg_dsn, "SELECT kind, pages > 0 FROM runs ORDER BY id")
    assert ran == [("crawl", "t"), ("work", "t")]


BLOCK_ASYNCPG = (
    "import runpy, sys; sys.modules['asyncpg'] = None; "  # as if the extra were not installed
    "runpy.run_module('crawler', run_name='__main__')"
)


@pytest.mark.parametrize("command", ["crawl http://127.0.5.1:9/", "work", "resume", "stats"])
def test_without_the_postgres_extra_a_postgres_url_is_one_line_exit_2(command: str) -> None:
    dsn = "postgresql://crawler:s3cret-pw@127.0.0.1:9/crawl"
    args = [sys.executable, "-c", BLOCK_ASYNCPG, *command.split(), "--db", dsn]
    done = subprocess.run(args, capture_output=True, text=True, timeout=DEADLINE)
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line == (
        "crawler: error: the PostgreSQL store needs asyncpg: pip install 'crawler[postgres]'"
    )


def test_sigterm_gives_leases_back_and_the_password_is_never_stored_nor_printed(
    sites: tuple[LoopThread, asyncio.Event, list[Host]], pg_cluster: Cluster, pg_dsn: str
) -> None:
    thread, gate, hosts = sites
    seeds = [h.url("/") for h in hosts]
    bare = pg_dsn.replace(f":{PASSWORD}@", "@")
    assert bare != pg_dsn
    args = crawler("crawl", *seeds, "--db", pg_dsn, "--lease", "3")
    crawl = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: started(pg_cluster, pg_dsn), "the crawl to start")
        wait_for(lambda: pg_rows(pg_cluster, pg_dsn, "SELECT count(*) FROM servers WHERE "
                                 "lease_owner IS NOT NULL") != [("0",)], "leases")  # fmt: skip
        crawl.send_signal(signal.SIGTERM)  # stopped with work left: the resume hint
        thread.loop.call_soon_threadsafe(gate.set)
        out, err = crawl.communicate(timeout=DEADLINE)
    finally:
        thread.loop.call_soon_threadsafe(gate.set)
        if crawl.poll() is None:
            crawl.kill()
            crawl.communicate()
    assert crawl.returncode == 0, err
    assert f"crawler resume --db {bare}" in " ".join((out + err).split())
    # SIGTERM gave the leases back at once (an expired lease keeps its owner's id).
    held = "SELECT count(*) FROM servers WHERE lease_owner IS NOT NULL"
    assert pg_rows(pg_cluster, pg_dsn, held) == [("0",)]
    assert pg_rows(pg_cluster, pg_dsn, "SELECT count(*) FROM workers") == [("0",)]
    printed = out + err
    for command in (["stats"], ["config"], ["why", seeds[0]], ["export", "--format", "jsonl"]):
        done = subprocess.run(
            crawler(*command, "--db", pg_dsn), capture_output=True, text=True, timeout=DEADLINE
        )
        assert done.returncode == 0, done.stderr
        printed += done.stdout + done.stderr
    assert bare in printed and PASSWORD not in printed
    dump = subprocess.run(
        [*pg_cluster._as_owner(), str(pg_cluster.bindir / "pg_dump"), "-h", str(pg_cluster.sockets),
         "-p", str(pg_cluster.port), "-U", "postgres", "-d", pg_dsn.rsplit("/", 1)[1]],
        capture_output=True, text=True, timeout=DEADLINE, check=True,
    ).stdout  # fmt: skip
    assert "crawl" in dump and seeds[0] in dump and PASSWORD not in dump


def test_a_recrawl_with_max_pages_is_exact_across_three_workers(
    sites: tuple[LoopThread, asyncio.Event, list[Host]], pg_cluster: Cluster, pg_dsn: str
) -> None:
    # A recrawl takes the stored pages it queues off `page_budget.stored`; each one stored
    # again counts back at its commit, under the units the workers share.
    thread, gate, hosts = sites
    seeds = [h.url("/") for h in hosts]
    thread.loop.call_soon_threadsafe(gate.set)
    assert finish(start_crawl(pg_dsn, seeds, "--concurrency", "1")) == 0  # all 104 pages
    stored = pg_rows(pg_cluster, pg_dsn, "SELECT count(*) FROM pages")
    thread.loop.call_soon_threadsafe(gate.clear)  # home pages held again
    reset(hosts)
    limit = 20
    args = ["recrawl", "--db", pg_dsn, "-q", "--concurrency", "1", "--max-pages", str(limit)]
    procs = [subprocess.Popen(crawler(*args), stderr=subprocess.PIPE, text=True)]
    recrawl_runs = "SELECT count(*) FROM runs WHERE kind = 'recrawl'"
    try:
        wait_for(lambda: pg_rows(pg_cluster, pg_dsn, recrawl_runs) == [("1",)], "the recrawl")
        procs += [start_worker(pg_dsn) for _ in range(2)]
        wait_for(
            lambda: int(pg_rows(pg_cluster, pg_dsn, HOLDERS)[0][0]) >= 2,
            "two workers holding leases",
        )
        thread.loop.call_soon_threadsafe(gate.set)
        assert [finish(p) for p in procs] == [0, 0, 0]
    finally:
        thread.loop.call_soon_threadsafe(gate.set)
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
    fetched = [(h.ip, p) for h in hosts for p in h.paths if p != "/robots.txt"]
    assert len(fetched) == limit and len(set(fetched)) == limit
    assert pg_rows(
        pg_cluster,
        pg_dsn,
        "SELECT f.change, count(*), count(DISTINCT f.url) FROM fetches AS f JOIN runs AS r "
        "ON r.id = f.run_id WHERE r.kind <> 'crawl' GROUP BY f.change",
    ) == [("unchanged", str(limit), str(limit))]
    working = pg_rows(pg_cluster, pg_dsn, "SELECT count(*) FROM runs WHERE id > 1 AND pages > 0")
    assert int(working[0][0]) >= 2  # the budget was shared
    assert pg_rows(pg_cluster, pg_dsn, "SELECT count(*) FROM pages") == stored
    # The pages still queued for their revisit are not counted as stored.
    assert pg_rows(pg_cluster, pg_dsn, "SELECT stored, in_flight FROM page_budget") == [
        (str(limit), "0")
    ]
    assert pg_rows(pg_cluster, pg_dsn, "SELECT recrawling FROM crawl") == [("1",)]
    assert pg_rows(pg_cluster, pg_dsn, "SELECT count(*) FROM workers") == [("0",)]


HOLDERS = "SELECT count(DISTINCT lease_owner) FROM servers"
