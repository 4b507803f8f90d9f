"""PostgreSQL leases are per server, as politeness is (`server_key`: http://a:80 and
https://a:443 are one server): a worker holds every origin of a server it leases, so two
workers never fetch one server at once. The SQL `server_key` agrees with Python's; old
databases' host leases become server leases; the lease query reads an index."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import ssl
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiohttp import web
from backends import Backend
from pg import Cluster
from support import Host, LoopThread, threaded_site
from test_store_backends import seeds
from test_workers import crawler, finish, pg_rows, started, wait_for

from crawler.records import Outcome
from crawler.store.postgres import PostgresStore
from crawler.store.postgres_batches import QUEUE_SERVERS
from crawler.store.postgres_leases import LEASE
from crawler.store.postgres_schema import migrations
from crawler.urls import server_key

HTTP, HTTPS = "http://127.0.0.2:80", "https://127.0.0.2:443"  # one server: 127.0.0.2
OTHER = "http://127.0.0.3:8000"

TRICKY = [
    "http://a.example:80",
    "https://a.example:443",
    "http://a.example:443",
    "https://a.example:80",
    "http://a.example:8080",
    "http://a.example:080",
    "http://127.0.0.2:80",
    "https://127.0.0.2:8443",
    "http://[::1]:80",
    "https://[::1]:443",
    "http://[::1]:8080",
    "https://[::80]:443",
    "http://[::1]",
    "http://[::1:80]",
    "http://x.test",
    "http://:80",
    "ftp://a.example:21",
]


@pytest.fixture
def postgres(pg_dsn: str) -> Backend:
    return Backend("postgres", pg_dsn)


async def test_sql_server_key_agrees_with_python(postgres: Backend) -> None:
    store = await postgres.open()
    await store.close()
    got = await postgres.rows("SELECT o, server_key(o) FROM unnest(?::text[]) AS o", TRICKY)
    assert dict(got) == {o: server_key(o) for o in TRICKY}
    await postgres.execute("INSERT INTO hosts (host) SELECT unnest(?::text[])", TRICKY)
    assert dict(await postgres.rows("SELECT host, server FROM hosts")) == {
        o: server_key(o) for o in TRICKY
    }


async def test_a_worker_leases_every_origin_of_a_server_and_no_one_else_gets_one(
    postgres: Backend,
) -> None:
    a = await PostgresStore.open(postgres.db, create=True)
    b = await PostgresStore.open(postgres.db, create=False)
    try:
        a.add(seeds("/1", host=HTTP))
        a.add(seeds("/o", host=OTHER))
        await a.flush()
        assert await a.lease_hosts(1) in ({HTTP: None}, {OTHER: None})
        if a.leased != {"127.0.0.2"}:  # a took OTHER: b takes the server, roles swap
            a, b = b, a
            assert await a.lease_hosts(1) == {HTTP: None}
        else:
            assert await b.lease_hosts(5) == {OTHER: None}
        # The server's other origin gets work while a holds it (b found the link): it is
        # a's, never b's, and a sees it as new work of a server it holds.
        b.add(seeds("/2", host=HTTPS))
        await b.flush()
        assert await b.lease_hosts(5) == {}
        assert await a.new_work() == [HTTP, HTTPS]
        assert await a.renew() == ["127.0.0.2"]
        claimed, _ = await a.claim(HTTPS, 10, lambda u: False)
        assert [q.url for q in claimed] == [HTTPS + "/2"]
        # Released with an hour to wait (the server's, whichever origin was fetched).
        await a.release_servers({"127.0.0.2": 3600.0})
        assert await b.lease_hosts(5) == {}
        assert await postgres.rows("SELECT server, queued FROM servers ORDER BY 1") == [
            ("127.0.0.2", True),
            ("127.0.0.3:8000", True),
        ]
        await postgres.execute("UPDATE servers SET next_start = 0")
        assert await b.lease_hosts(5) == {HTTP: None, HTTPS: None}  # both, claims back
        got, _ = await b.claim(HTTPS, 10, lambda u: False)
        assert [q.url for q in got] == [HTTPS + "/2"]
    finally:
        await a.close()
        await b.close()


async def _leasing(postgres: Backend, lease_seconds: float) -> PostgresStore:
    """A worker holding the lease of 127.0.0.2, one URL of its http origin queued."""
    a = await PostgresStore.open(postgres.db, create=True, lease_seconds=lease_seconds)
    a.add(seeds("/1", host=HTTP))
    await a.flush()
    assert await a.lease_hosts(1) == {HTTP: None}
    return a


class _Retries(logging.Handler):
    """Installed until `close`: `event` is set when a transaction of this process gave up
    waiting for a row lock and tries again (`Retries`)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.event = asyncio.Event()
        self.log = logging.getLogger("crawler.store.postgres_batches")
        self.before = self.log.level
        self.log.addHandler(self)
        self.log.setLevel(logging.INFO)

    def emit(self, record: logging.LogRecord) -> None:
        if "rows held by another worker's transaction" in record.getMessage():
            self.event.set()

    def close(self) -> None:
        self.log.removeHandler(self)
        self.log.setLevel(self.before)
        super().close()


@dataclass
class _Contention:
    """A worker holding 127.0.0.2 (`a`), another session with a transaction open to hold
    rows it needs (`peer`, `transaction`), and the lock-wait retry watcher."""

    a: PostgresStore
    peer: Any  # asyncpg.Connection
    transaction: Any  # its open asyncpg Transaction
    retries: _Retries


@contextlib.asynccontextmanager
async def _contention(postgres: Backend, lease_seconds: float) -> AsyncIterator[_Contention]:
    import asyncpg

    a = await _leasing(postgres, lease_seconds)
    peer = await asyncpg.connect(postgres.db)
    retries = _Retries()
    try:
        transaction = peer.transaction()
        await transaction.start()
        yield _Contention(a, peer, transaction, retries)
    finally:
        retries.close()
        await peer.close()
        await a.close()


async def test_a_renewal_waiting_for_a_row_lock_lets_go_and_tries_again(
    postgres: Backend,
) -> None:
    """A worker's transaction waits for a row another transaction holds `lock_wait` (a
    quarter of the lease) at most, then rolls back and tries again until it gets it: a
    renewal held up by a stuck transaction neither hangs nor fails the store. (Lease
    operations once turned the server's "try again" into the store's failure.)"""
    async with _contention(postgres, 0.8) as c:
        await c.peer.execute("SELECT 1 FROM workers WHERE id = $1 FOR UPDATE", c.a.worker)
        renewing = asyncio.create_task(c.a.renew())
        await asyncio.wait_for(c.retries.event.wait(), 30)  # gave up waiting once, tries again
        assert not renewing.done()
        await c.transaction.rollback()
        assert await renewing == ["127.0.0.2"]
        assert c.a.failure is None


async def test_a_commit_waiting_for_another_workers_rows_holds_up_no_renewal(
    postgres: Backend,
) -> None:
    """While a commit of this worker waits for rows another worker's transaction holds
    (here a new origin that transaction is adding too), the worker's own row is not
    locked: its lease renewal goes through at once, not when the commit gives up waiting.
    (Commits locked the worker's row first and kept it while they waited; a renewal
    queued behind, and at a short lease the worker lapsed while the other held on.)"""
    async with _contention(postgres, 4.0) as c:  # a commit waits 1 s, then tries again
        await c.peer.execute(  # what a commit that found the origin first runs
            "INSERT INTO hosts (host) VALUES ($1) ON CONFLICT (host) DO UPDATE "
            "SET queued = true WHERE NOT hosts.queued",
            OTHER,
        )
        a = c.a
        a.add(Outcome(url=HTTP + "/1", state="done", new_urls=seeds("/x", host=OTHER).new_urls))
        flushing = asyncio.create_task(a.flush())
        await asyncio.wait_for(c.retries.event.wait(), 30)  # the commit met the lock: it waits
        c.retries.event.clear()
        renewing = asyncio.create_task(a.renew())
        gave_up = asyncio.create_task(c.retries.event.wait())
        await asyncio.wait({renewing, gave_up}, return_when=asyncio.FIRST_COMPLETED)
        assert renewing.done() and not gave_up.done()  # renewed while the commit waits
        assert await renewing == ["127.0.0.2"]
        assert not flushing.done()
        gave_up.cancel()
        await c.transaction.rollback()
        assert await flushing == 1
        assert await postgres.rows("SELECT url, state FROM urls ORDER BY 1") == [
            (HTTP + "/1", "done"),
            (OTHER + "/x", "queued"),
        ]
        assert await postgres.rows("SELECT server, queued FROM servers ORDER BY 1") == [
            ("127.0.0.2", True),
            ("127.0.0.3:8000", True),
        ]


async def test_a_commit_that_flags_a_leased_server_holds_up_no_renewal(
    postgres: Backend,
) -> None:
    """A commit that found work on another worker's server (`QUEUE_SERVERS`) locks the
    server's row only FOR KEY SHARE: its holder renews the lease while that transaction is
    still open (a worker cut off mid-commit keeps it open up to a lease). A server not
    flagged yet is flagged, a new one added, each once it commits."""
    async with _contention(postgres, 2.0) as c:
        await postgres.execute("INSERT INTO servers (server, queued) VALUES ('idle.test', false)")
        await c.peer.execute(
            f"WITH flipped (server) AS (SELECT unnest($1::text[])) {QUEUE_SERVERS}",
            ["new.test", "127.0.0.2", "idle.test", "127.0.0.2"],
        )
        # An upsert here locked 127.0.0.2 until the commit: the renewal waited for it.
        assert await asyncio.wait_for(c.a.renew(), 30) == ["127.0.0.2"]
        await c.transaction.commit()
        assert await postgres.rows("SELECT server, queued FROM servers ORDER BY 1") == [
            ("127.0.0.2", True),
            ("idle.test", True),
            ("new.test", True),
        ]


async def test_a_release_waits_for_a_commit_that_flags_its_server_and_keeps_it_queued(
    postgres: Backend,
) -> None:
    """The KEY SHARE lock still orders a release after the commit: a worker releasing a
    server it finished waits for a transaction that queued URLs on a new origin of it
    (an origin row the release cannot lock yet), then sees them, and the server stays
    queued for the next holder."""
    async with _contention(postgres, 0.8) as c:
        b = await PostgresStore.open(postgres.db, create=False, lease_seconds=30.0)
        try:
            await postgres.execute("UPDATE urls SET state = 'done'")  # fetched, nothing queued
            await c.peer.execute(
                "INSERT INTO urls (url, host, depth, discovered_at) VALUES ($1, $2, 1, 0)",
                HTTPS + "/2",
                HTTPS,
            )
            await c.peer.execute(  # the statement a commit runs
                "WITH flipped AS (INSERT INTO hosts (host) VALUES ($1) ON CONFLICT (host) "
                "DO UPDATE SET queued = true WHERE NOT hosts.queued RETURNING server) "
                f"{QUEUE_SERVERS}",
                HTTPS,
            )
            releasing = asyncio.create_task(c.a.release_servers({"127.0.0.2": 0.0}))
            await asyncio.wait_for(c.retries.event.wait(), 30)  # the release met the lock
            assert not releasing.done()
            await c.transaction.commit()
            await releasing
            assert await postgres.rows("SELECT server, queued FROM servers") == [
                ("127.0.0.2", True)
            ]
            assert await b.lease_hosts(5) == {HTTPS: None}
        finally:
            await b.close()


async def test_a_server_with_an_outcome_not_committed_is_pending(postgres: Backend) -> None:
    """A server whose fetch outcome waits in the buffer, or in the batch being written, is
    pending: the watch loop does not give it back yet (URLs queued during one commit can
    be fetched before it ends; released then, the next holder fetched them again)."""
    async with _contention(postgres, 0.8) as c:
        a = c.a
        assert a.servers_pending() == set()
        a.add(Outcome(url=HTTPS + "/1", state=None))
        assert a.servers_pending() == {"127.0.0.2"}  # in the buffer
        await c.peer.execute("SELECT 1 FROM workers WHERE id = $1 FOR UPDATE", a.worker)
        flushing = asyncio.create_task(a.flush())
        await asyncio.wait_for(c.retries.event.wait(), 30)  # the batch taken, its commit waits
        assert a.backlog == 0
        assert a.servers_pending() == {"127.0.0.2"}  # in the batch being written
        await c.transaction.rollback()
        assert await flushing == 1
        assert a.servers_pending() == set()


async def test_a_lapsed_server_hands_over_every_origin_with_the_lapse(postgres: Backend) -> None:
    a = await PostgresStore.open(postgres.db, create=True)
    b = await PostgresStore.open(postgres.db, create=False)
    try:
        a.add(seeds("/1", host=HTTP))
        a.add(seeds("/1", host=HTTPS))
        await a.flush()
        assert await a.lease_hosts(5) == {HTTP: None, HTTPS: None}
        await postgres.execute(f"UPDATE workers SET lease_until = 0 WHERE id = '{a.worker}'")
        await postgres.execute(
            "UPDATE servers SET lease_until = extract(epoch FROM clock_timestamp()) - 5"
        )
        taken = await b.lease_hosts(5)
        assert list(taken) == [HTTP, HTTPS]
        assert all(5 <= (since or 0) < 60 for since in taken.values())
    finally:
        a.failure = a.failure or RuntimeError("cut off")  # its row is gone
        await a.close()
        await b.close()


async def test_migration_0008_turns_host_leases_into_server_leases(postgres: Backend) -> None:
    import asyncpg

    conn = await asyncpg.connect(postgres.db)
    try:
        await conn.execute(
            "CREATE TABLE schema_migrations (version integer PRIMARY KEY, "
            "name text NOT NULL, applied_at double precision NOT NULL)"
        )
        for version, name, sql in migrations():
            if version < 8:
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO schema_migrations VALUES ($1, $2, 0)", version, name
                )
        await conn.execute(
            "INSERT INTO hosts (host, queued, lease_owner, lease_until, next_start) VALUES "
            "('http://a.example:80', false, '00000000-0000-0000-0000-00000000000a', 50, 7), "
            "('https://a.example:443', true, '00000000-0000-0000-0000-00000000000b', 90, 3), "
            "('https://a.example:8443', true, NULL, 0, 0), "
            "('http://[::1]:80', false, NULL, 0, 11)"
        )
    finally:
        await conn.close()
    store = await postgres.open(create=False)
    await store.close()
    assert await postgres.rows(
        "SELECT server, queued, lease_owner::text, lease_until, next_start FROM servers ORDER BY 1"
    ) == [
        ("[::1]", False, None, 0.0, 11.0),
        ("a.example", True, "00000000-0000-0000-0000-00000000000b", 90.0, 7.0),
        ("a.example:8443", True, None, 0.0, 0.0),
    ]
    columns = await postgres.rows(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'hosts' "
        "ORDER BY ordinal_position"
    )
    assert columns == [("host",), ("queued",), ("server",)]


async def test_the_lease_query_reads_an_index_at_many_servers(postgres: Backend) -> None:
    import asyncpg

    store = await postgres.open()
    await store.close()
    conn = await asyncpg.connect(postgres.db)
    try:
        # 100,000 servers, one in a hundred with work: the rest are done.
        await conn.execute(
            "INSERT INTO hosts (host, queued) SELECT 'http://h' || i || '.test:80', i % 100 = 0 "
            "FROM generate_series(1, 100000) AS i"
        )
        await conn.execute(
            "INSERT INTO servers (server, queued, next_start) SELECT server, queued, "
            "random() * 1000 FROM hosts"
        )
        await conn.execute("ANALYZE hosts; ANALYZE servers")
        plan = "\n".join(
            r[0]
            for r in await conn.fetch(
                f"EXPLAIN {LEASE}", "00000000-0000-0000-0000-000000000001", 8, 30.0
            )
        )
    finally:
        await conn.close()
    assert "servers_free on servers" in plan, plan
    assert "hosts_server on hosts" in plan, plan
    assert "Seq Scan" not in plan, plan


# ---------------------------------------------------------------------- two workers

IP = "127.0.9.1"  # http on port 80 and https on 443: one server (`server_key`: 127.0.9.1)
DELAY = 0.3
PAGES = 5
SLOW = 1.5  # the other hosts' Crawl-delay: busy for PAGES * SLOW s, without a request open


async def _event() -> asyncio.Event:
    return asyncio.Event()


Server = tuple[LoopThread, Host, Host, list[Host], asyncio.Event, str]


@pytest.fixture
def one_server_two_origins(tmp_path: Path) -> Iterator[Server]:
    """http://127.0.9.1 and https://127.0.9.1 (default ports: one server) and three slow
    hosts. The home page of http://127.0.9.1 waits for a gate and links to
    https://127.0.9.1: its https origin gets work only once a worker holds its http one."""
    ca = trustme.CA()
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(IP).configure_cert(context)
    with threaded_site() as (site, thread):
        gate = thread.call(_event())
        try:
            plain = thread.call(site.host(IP, port=80))
            tls = thread.call(site.host(IP, port=443, tls=context))
        except OSError as exc:  # not root, or the ports are taken
            pytest.skip(f"cannot serve {IP} on ports 80 and 443: {exc}")
        others = [thread.call(site.host(f"127.0.9.{i}")) for i in (2, 3, 4)]
        for host in (plain, tls, *others):
            host.robots("User-agent: *\nAllow: /\n")
            for i in range(PAGES):
                host.page(f"/p{i}")
            host.page("/", [f"/p{i}" for i in range(PAGES)])
        for host in others:
            host.robots(f"User-agent: *\nCrawl-delay: {SLOW}\nAllow: /\n")
        plain.page("/", [f"/p{i}" for i in range(PAGES)] + [f"https://{IP}/"])
        inner = plain.routes["/"]

        async def held(request: web.Request) -> web.StreamResponse:
            await gate.wait()
            return await inner(request)

        plain.handle("/", held)
        try:
            yield thread, plain, tls, others, gate, str(bundle)
        finally:
            thread.loop.call_soon_threadsafe(gate.set)


def test_two_workers_never_fetch_one_server_at_once_through_its_two_origins(
    one_server_two_origins: Server, pg_cluster: Cluster, pg_dsn: str
) -> None:
    """The crawl holds http://127.0.9.1 when its https origin gets work, and has no room
    for another lease; the worker has. With a lease per origin the worker took the https
    one and both fetched the server at once (requests 0.28 s apart at --delay 0.3)."""
    thread, plain, tls, others, gate, bundle = one_server_two_origins
    seeds_ = [plain.url("/")] + [h.url("/") for h in others]
    crawl = subprocess.Popen(
        crawler("crawl", *seeds_, "--db", pg_dsn, "-q", "--per-host", "1", "--delay",
                str(DELAY), "--concurrency", "1", "--lease", "5", "--ca-bundle", bundle),
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    worker = None
    try:
        wait_for(lambda: started(pg_cluster, pg_dsn), "the crawl to start")
        # The crawl holds four servers, all it wants at --concurrency 1; the slow hosts
        # keep it from wanting another until long after the server is done...
        held = "SELECT count(*) FROM servers WHERE lease_owner IS NOT NULL"
        wait_for(lambda: pg_rows(pg_cluster, pg_dsn, held) == [("4",)], "four leases")
        worker = subprocess.Popen(
            crawler("work", "--db", pg_dsn, "-q", "--concurrency", "1"),
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        # ...and the worker looks for work before the server's https origin has any: its
        # row has the crawl's 5 s lease (not the 30 s it joined with), then each round
        # of its lease loop extends it.
        row = (
            "SELECT lease_until FROM workers WHERE started_at = (SELECT max(started_at) "
            "FROM workers) AND lease_until < extract(epoch FROM clock_timestamp()) + 10 "
            "AND (SELECT count(*) FROM workers) = 2"
        )
        wait_for(lambda: pg_rows(pg_cluster, pg_dsn, row) != [], "the worker to join")
        joined = pg_rows(pg_cluster, pg_dsn, row)
        wait_for(lambda: pg_rows(pg_cluster, pg_dsn, row) != joined, "a lease round")
        thread.loop.call_soon_threadsafe(gate.set)
        assert finish(crawl) == 0
        assert finish(worker) == 0
    finally:
        thread.loop.call_soon_threadsafe(gate.set)
        for proc in (crawl, worker):
            if proc is not None and proc.poll() is None:
                proc.kill()
            if proc is not None:
                proc.communicate()
    assert sorted(tls.paths) == sorted(["/robots.txt", "/"] + [f"/p{i}" for i in range(PAGES)])
    hits = sorted(plain.hits + tls.hits, key=lambda hit: hit.arrived)
    assert len(hits) == 2 * (PAGES + 2)  # robots.txt, home, pages: each once
    for a, b in itertools.pairwise(hits):
        assert b.arrived - a.arrived >= DELAY - 0.010, (a.path, b.path)
        assert a.end is not None and b.start >= a.end  # never two at once
