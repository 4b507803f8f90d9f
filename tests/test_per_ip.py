"""--per-ip: hosts that resolve to one address share one cap, measured at the servers.

Several servers on one loopback address (distinct ports) stand in for a shared host or a
CDN; names go through a resolver the test controls, never the machine's DNS.
"""

from __future__ import annotations

from typing import Any

from hostile import Resolver
from support import Host, Site, rows, run, settings
from test_politeness import Gate

from crawler.engine import Engine
from crawler.run import canonical_seeds
from crawler.store.sqlite import SQLiteStore


def most_open(hosts: list[Host]) -> int:
    """The most requests open at once across `hosts`, from the servers' own hit logs."""
    events = []
    for host in hosts:
        for hit in host.hits:
            assert hit.end is not None
            events += [(hit.start, 1), (hit.end, -1)]
    most = now = 0
    for _, step in sorted(events, key=lambda e: (e[0], e[1])):  # an end before a start
        now += step
        most = max(most, now)
    return most


async def small_site(site: Site, ip: str, gate: Gate) -> Host:
    host = await site.host(ip)
    pages = [f"/p{k}" for k in range(4)]
    gate.page(host, "/", pages)
    for path in pages:
        gate.page(host, path)
    return host


async def test_per_ip_caps_the_servers_on_one_address(site: Site, db: str) -> None:
    gate = Gate(site, n=2)  # two addresses: two requests may be open at once, not more
    shared = [await small_site(site, "127.0.0.2", gate) for _ in range(3)]
    alone = [await small_site(site, "127.0.0.3", gate) for _ in range(2)]

    await run(db, [h.url("/") for h in shared + alone], per_ip=1, per_host=2, concurrency=16)

    assert gate.opened_by_count  # the two addresses were fetched side by side
    assert most_open(shared) == 1
    assert most_open(alone) == 1
    assert rows(db, "SELECT count(*) FROM pages WHERE status = 200") == [(25,)]


async def test_without_per_ip_the_servers_on_one_address_overlap(site: Site, db: str) -> None:
    gate = Gate(site, n=3)
    shared = [await small_site(site, "127.0.0.2", gate) for _ in range(3)]

    await run(db, [h.url("/") for h in shared], per_host=1, concurrency=16)

    assert gate.opened_by_count
    assert most_open(shared) == 3  # what --per-ip 1 prevents: one request per server


async def crawl_resolving(db: str, seeds: list[str], resolver: Resolver, **overrides: Any) -> None:
    s = settings(**overrides)
    canonical = canonical_seeds(seeds, s.max_url_length)
    store = await SQLiteStore.open(db, create=True)
    try:
        await store.save_crawl(s, canonical)
        await Engine(store, s, canonical, resolver=resolver).run()
    finally:
        await store.close()


async def test_per_ip_groups_names_by_the_address_they_resolve_to(site: Site, db: str) -> None:
    gate = Gate(site, n=2, timeout=0.5)  # never reached: the names share one address
    hosts = [await small_site(site, "127.0.0.2", gate) for _ in range(3)]
    names = {f"h{i}.test": h for i, h in enumerate(hosts)}
    resolver = Resolver({name: "127.0.0.2" for name in names})
    seeds = [f"http://{name}:{h.port}/" for name, h in names.items()]

    await crawl_resolving(db, seeds, resolver, per_ip=1, per_host=2)

    assert most_open(hosts) == 1
    assert not gate.opened_by_count
    assert sorted(resolver.asked) == sorted(names)  # each name once for the whole crawl
    assert rows(db, "SELECT count(*) FROM pages WHERE status = 200") == [(15,)]
