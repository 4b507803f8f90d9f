"""End-to-end crawls of small sites: dedup, scope and limits, stored rows, the bounded frontier."""

from __future__ import annotations

import asyncio
import functools
import json
import socket
from collections import Counter
from typing import Any

import pytest
from aiohttp import web
from support import Host, Site, rows, run, run_resume, settings, urls

import crawler.engine
from crawler.frontier import Frontier
from crawler.store.sqlite import SQLiteStore as Storage

# ---------------------------------------------------------------------- dedup and canonical form


async def test_spellings_of_one_url_are_fetched_once(site: Site, db: str) -> None:
    host = await site.host()
    hostport = f"{host.ip}:{host.port}"
    spellings = {
        "/x": [
            "/x",
            "/x#frag",
            "./x",
            "a/../x",
            "/./x",
            "/a/b/../../x",
            f"HTTP://{hostport}/x",
            f"//{hostport}/x#top",
            f"http://user:pw@{hostport}/x",
        ],
        "/~user": ["/~user", "/%7Euser", "/%7euser"],
        "/sp%20ace": ["/sp ace", "/sp%20ace"],
        "/q?a=~": ["/q?a=~", "/q?a=%7E", "/q?a=%7e#f"],
        "/q?a=1&b=2": ["/q?a=1&b=2"],
        "/q?b=2&a=1": ["/q?b=2&a=1"],  # query order is kept: a different URL
    }
    host.page("/", [href for hrefs in spellings.values() for href in hrefs])
    for path in ("/x", "/~user", "/sp ace", "/q"):
        host.page(path)

    await run(db, [host.url("/")])

    served = Counter(host.paths)
    assert served == Counter(
        ["/robots.txt", "/", "/x", "/~user", "/sp ace", "/q?a=~", "/q?a=1&b=2", "/q?b=2&a=1"]
    )
    expected = {host.url("/"), *(host.url(p) for p in spellings)}
    assert urls(db) == expected
    assert rows(db, "SELECT count(*) FROM pages") == [(len(expected),)]
    links = rows(db, "SELECT dst_url, count(*) FROM links GROUP BY dst_url")
    assert sorted(links) == sorted((host.url(p), 1) for p in spellings)


async def test_seed_variants_are_one_seed(site: Site, db: str) -> None:
    host = await site.host()
    host.page("/", ["/"])
    seed = host.url("/")
    variants = [seed, seed, seed + "#top", f"HTTP://{host.ip}:{host.port}", seed + "./"]

    await run(db, variants)

    assert host.requests_for("/") == 1
    assert rows(db, "SELECT url, depth FROM pages") == [(seed, 0)]
    assert json.loads(rows(db, "SELECT seeds FROM crawl")[0][0]) == [seed]


async def listen(site: Site, ip: str, port: int) -> Host:
    """A host on a fixed port (Site.host picks a free one); skips when it cannot listen."""
    host = Host(site=site, ip=ip, port=port)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", host._dispatch)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site.runners.append(runner)  # the fixture cleans it up
    try:
        await web.TCPSite(runner, ip, port).start()
    except OSError as exc:  # not root, or the address is taken
        pytest.skip(f"cannot listen on {ip}:{port}: {exc}")
    return host


async def test_default_port_spellings(site: Site, db: str) -> None:
    host = await listen(site, "127.0.80.2", 80)
    ip = host.ip
    host.page("/", [f"http://{ip}:80/x", f"http://{ip}/x", f"HTTP://{ip}:/x", "/x"])
    host.page("/x")

    await run(db, [f"http://{ip}:80/", f"http://{ip}"])

    assert Counter(host.paths) == Counter(["/robots.txt", "/", "/x"])
    assert urls(db) == {f"http://{ip}/", f"http://{ip}/x"}
    assert rows(db, "SELECT DISTINCT host FROM pages") == [(f"http://{ip}:80",)]


# ---------------------------------------------------------------------- scope and limits


@pytest.fixture
async def two_hosts(site: Site) -> tuple[Host, Host]:
    one, two = await site.host(), await site.host()
    one.page("/", ["/keep/a", "/drop/b", "/file.pdf", two.url("/x")])
    for path in ("/keep/a", "/drop/b", "/file.pdf"):
        one.page(path)
    two.page("/x")
    return one, two


@pytest.mark.parametrize(
    ("overrides", "from_one", "from_two"),
    [
        pytest.param({}, {"/", "/keep/a", "/drop/b", "/file.pdf"}, set(), id="scope-host"),
        pytest.param(
            {"scope": "any"}, {"/", "/keep/a", "/drop/b", "/file.pdf"}, {"/x"}, id="scope-any"
        ),
        pytest.param({"allow": (r"/$", "/keep/")}, {"/", "/keep/a"}, set(), id="allow"),
        pytest.param(
            {"scope": "any", "allow": (r"/$", "/keep/", "/x$")},
            {"/", "/keep/a"},
            {"/x"},
            id="allow-any",
        ),
        pytest.param({"deny": (r"\.pdf$",)}, {"/", "/keep/a", "/drop/b"}, set(), id="deny"),
        pytest.param(
            {"allow": (r"/$", "/keep/", "/drop/"), "deny": ("/drop/",)},
            {"/", "/keep/a"},
            set(),
            id="deny-beats-allow",
        ),
    ],
)
async def test_scope(
    two_hosts: tuple[Host, Host],
    db: str,
    overrides: dict[str, Any],
    from_one: set[str],
    from_two: set[str],
) -> None:
    one, two = two_hosts

    await run(db, [one.url("/")], ignore_robots=True, **overrides)

    assert Counter(one.paths) == Counter(from_one)
    assert Counter(two.paths) == Counter(from_two)
    assert urls(db) == {one.url(p) for p in from_one} | {two.url(p) for p in from_two}
    # Every link of the seed is in the links table, followed or not.
    assert set(rows(db, "SELECT dst_url, nofollow FROM links")) == {
        (one.url("/keep/a"), 0),
        (one.url("/drop/b"), 0),
        (one.url("/file.pdf"), 0),
        (two.url("/x"), 0),
    }
    # Out-of-scope URLs are not frontier entries.
    assert rows(db, "SELECT count(*) FROM frontier") == [(0,)]


@pytest.mark.parametrize(
    ("max_depth", "fetched"),
    [
        pytest.param(0, ["/"], id="seeds-only"),
        pytest.param(1, ["/", "/d1"], id="depth-1"),
        pytest.param(2, ["/", "/d1", "/d2"], id="depth-2"),
        pytest.param(-1, ["/", "/d1", "/d2", "/d3"], id="no-limit"),
    ],
)
async def test_max_depth(site: Site, db: str, max_depth: int, fetched: list[str]) -> None:
    host = await site.host()
    chain = ["/", "/d1", "/d2", "/d3"]
    for here, there in zip(chain, [*chain[1:], None], strict=True):
        host.page(here, [there] if there else [])

    await run(db, [host.url("/")], max_depth=max_depth, ignore_robots=True)

    assert host.paths == fetched
    assert rows(db, "SELECT url, depth FROM pages ORDER BY depth") == [
        (host.url(p), d) for d, p in enumerate(fetched)
    ]
    # The last page's links are recorded but not queued.
    assert rows(db, "SELECT dst_url FROM links WHERE src_url = ?", host.url(fetched[-1])) == (
        [(host.url(chain[len(fetched)]),)] if len(fetched) < len(chain) else []
    )
    assert rows(db, "SELECT count(*) FROM frontier") == [(0,)]


async def test_max_pages_and_resume(site: Site, db: str) -> None:
    host = await site.host()
    host.hold = 0.01
    pages = [f"/p{k}" for k in range(10)]
    host.page("/", pages)
    for path in pages:
        host.page(path)

    def page_hits() -> Counter[str]:
        return Counter(p for p in host.paths if p != "/robots.txt")

    first = await run(db, [host.url("/")], max_pages=3, per_host=4, concurrency=8)
    assert rows(db, "SELECT count(*) FROM pages") == [(3,)]
    assert first.pages == 3
    assert sum(page_hits().values()) == 3  # nothing fetched and thrown away
    assert rows(db, "SELECT count(*) FROM frontier WHERE state = 'queued'") == [(8,)]

    again = await run_resume(db)  # the stored max_pages is already reached
    assert again.pages == 0
    assert rows(db, "SELECT count(*) FROM pages") == [(3,)]
    assert sum(page_hits().values()) == 3

    more = await run_resume(db, max_pages=6)
    assert more.pages == 3
    assert rows(db, "SELECT count(*) FROM pages") == [(6,)]
    assert json.loads(rows(db, "SELECT settings FROM crawl")[0][0])["max_pages"] == 6

    rest = await run_resume(db, max_pages=0)
    assert rest.pages == 5
    assert urls(db) == {host.url(p) for p in ["/", *pages]}
    assert page_hits() == Counter(["/", *pages])  # each page fetched once over four runs
    assert rows(db, "SELECT count(*) FROM frontier") == [(0,)]


async def test_links_table_and_nofollow(site: Site, db: str) -> None:
    host = await site.host()
    other = "http://127.0.0.250:1/elsewhere"  # out of scope: recorded, never requested
    host.page(
        "/",
        body=(
            '<a href="/a">a</a> <a href="/a#again">a</a> <a rel="nofollow" href="/nf">nf</a>'
            '<a rel="external NoFollow" href="/nf2">nf2</a>'
            '<a rel="nofollow" href="/both">x</a> <a href="/both">x</a>'
            f'<a href="{other}">o</a> <a href="mailto:x@example.com">m</a>'
            '<a href="/meta">meta</a>'
        ),
    )
    host.page(
        "/meta",
        body='<meta name="robots" content="noindex, nofollow"><a href="/m1">m1</a>',
    )
    for path in ("/a", "/nf", "/nf2", "/both", "/m1"):
        host.page(path)

    await run(db, [host.url("/")], ignore_robots=True)

    assert Counter(host.paths) == Counter(["/", "/a", "/both", "/meta"])
    assert sorted(rows(db, "SELECT src_url, dst_url, nofollow FROM links")) == sorted(
        [
            (host.url("/"), host.url("/a"), 0),
            (host.url("/"), host.url("/nf"), 1),
            (host.url("/"), host.url("/nf2"), 1),
            (host.url("/"), host.url("/both"), 0),
            (host.url("/"), other, 0),
            (host.url("/"), host.url("/meta"), 0),
            (host.url("/meta"), host.url("/m1"), 1),
        ]
    )
    assert rows(db, "SELECT links_found FROM pages WHERE url = ?", host.url("/")) == [(6,)]
    assert rows(db, "SELECT count(*) FROM urls WHERE url LIKE '%nf%' OR url LIKE '%m1'") == [(0,)]


@pytest.mark.parametrize(
    "content_type",
    [
        pytest.param("text/plain", id="text-plain"),
        pytest.param("application/json", id="json"),
        pytest.param("application/octet-stream", id="binary"),
    ],
)
async def test_non_html_is_stored_not_parsed(site: Site, db: str, content_type: str) -> None:
    host = await site.host()
    body = f'see {host.url("/a")} and <a href="/b">b</a> <a href="{host.url("/c")}">c</a>\n'
    host.page("/", ["/file"])
    host.page("/file", body=body, content_type=content_type)
    for path in ("/a", "/b", "/c"):
        host.page(path)

    await run(db, [host.url("/")], ignore_robots=True)

    assert host.paths == ["/", "/file"]
    assert rows(db, "SELECT body, links_found FROM pages WHERE url = ?", host.url("/file")) == [
        (body.encode(), None)
    ]
    assert rows(db, "SELECT count(*) FROM links WHERE src_url = ?", host.url("/file")) == [(0,)]


# ---------------------------------------------------------------------- stored rows


BINARY = bytes(range(256)) * 4 + b"\x00\xff\xfe"


async def test_stored_rows(site: Site, db: str) -> None:
    host = await site.host()
    host.page("/", ["/bin", "/missing", "/boom", "/gone"], headers={"X-Test": "yes"})
    host.page("/bin", body=BINARY, content_type="application/octet-stream")
    host.page("/boom", status=500, body="kaboom", content_type="text/plain")
    host.page("/gone", status=410, body="<p>gone</p>")

    await run(db, [host.url("/")])

    stored = {
        r[0]: r[1:]
        for r in rows(db, "SELECT url, status, error, content_type, depth, final_url FROM pages")
    }
    assert stored == {
        host.url("/"): (200, None, "text/html; charset=utf-8", 0, host.url("/")),
        host.url("/bin"): (200, None, "application/octet-stream", 1, host.url("/bin")),
        host.url("/missing"): (404, None, "text/plain; charset=utf-8", 1, host.url("/missing")),
        host.url("/boom"): (500, None, "text/plain", 1, host.url("/boom")),
        host.url("/gone"): (410, None, "text/html; charset=utf-8", 1, host.url("/gone")),
    }
    ((headers, body, host_key, size, fetched_at),) = rows(
        db, "SELECT headers, body, host, size, fetched_at FROM pages WHERE url = ?", host.url("/")
    )
    assert ["X-Test", "yes"] in json.loads(headers)
    assert b'<a href="/bin">' in body
    assert host_key == host.origin
    assert size == len(body)
    assert fetched_at > 0
    assert rows(db, "SELECT body, size FROM pages WHERE url = ?", host.url("/bin")) == [
        (BINARY, len(BINARY))
    ]
    assert rows(db, "SELECT body FROM pages WHERE url = ?", host.url("/boom")) == [(b"kaboom",)]


async def test_crawl_table_holds_settings_and_seeds(site: Site, db: str) -> None:
    host = await site.host()
    host.page("/")
    chosen = {"per_host": 3, "delay": 0.01, "deny": (r"\.zip$",), "max_depth": 4}

    summary = await run(db, [host.url("/")], **chosen)

    ((stored, seeds, finished_at),) = rows(db, "SELECT settings, seeds, finished_at FROM crawl")
    assert json.loads(stored) == json.loads(settings(**chosen).to_json())
    assert json.loads(seeds) == [host.url("/")]
    assert summary.finished
    assert finished_at is not None


def closed_port(ip: str) -> int:
    """A port on `ip` that nothing listens on (bound, then closed again)."""
    with socket.socket() as sock:
        sock.bind((ip, 0))
        return int(sock.getsockname()[1])


async def test_connection_refused_is_an_error_row(db: str) -> None:
    seed = f"http://127.0.0.9:{closed_port('127.0.0.9')}/"

    summary = await run(db, [seed], ignore_robots=True)

    ((status, error, final_url, body),) = rows(
        db, "SELECT status, error, final_url, body FROM pages"
    )
    assert status is None
    assert error.startswith("connect: ")
    assert (final_url, body) == (None, None)
    assert summary.errors == 1
    assert summary.finished


async def test_unreachable_robots_costs_the_seed_an_error_row(db: str) -> None:
    # RFC 9309 2.3.1.4: robots.txt unreachable means complete disallow; once its retries
    # are spent, the host's URLs are given up, each with a row that says why.
    seed = f"http://127.0.0.9:{closed_port('127.0.0.9')}/"

    summary = await run(db, [seed])

    ((url, status, error),) = rows(db, "SELECT url, status, error FROM pages")
    assert (url, status) == (seed, None)
    assert error.startswith("robots.txt unreachable: connect: ")
    assert summary.errors == 1
    ((status, error),) = rows(db, "SELECT status, error FROM robots")
    assert status is None
    assert error.startswith("robots.txt unreachable: connect: ")


# ---------------------------------------------------------------------- bounded frontier


class SmallFrontier(Frontier):
    """A frontier with a tiny RAM window that remembers the most URLs it ever held."""

    peak = 0

    async def get(self) -> Any:
        job = await super().get()
        SmallFrontier.peak = max(SmallFrontier.peak, self.queued)
        return job

    def discover(self, job: Any, links: Any, skipped: Any) -> Any:
        new = super().discover(job, links, skipped)
        SmallFrontier.peak = max(SmallFrontier.peak, self.queued)
        return new


@pytest.mark.parametrize(
    ("n_hosts", "window", "host_window", "scan_batch"),
    [
        pytest.param(3, 20, 5, 4, id="3-hosts"),
        # Refills of several reads each, with workers taking rows in between.
        pytest.param(1, 10, 4, 1, id="1-host-many-reads"),
    ],
)
async def test_frontier_overflows_to_the_database(
    site: Site,
    db: str,
    monkeypatch: pytest.MonkeyPatch,
    n_hosts: int,
    window: int,
    host_window: int,
    scan_batch: int,
) -> None:
    small = functools.partial(
        SmallFrontier, window=window, host_window=host_window, scan_batch=scan_batch
    )
    monkeypatch.setattr(crawler.engine, "Frontier", small)
    monkeypatch.setattr(SmallFrontier, "peak", 0)
    # Small commit batches, so refills see spilled rows while the crawl is still running.
    monkeypatch.setattr(
        Storage, "__init__", functools.partialmethod(Storage.__init__, batch_size=8)
    )
    hosts = [await site.host() for _ in range(n_hosts)]
    for host in hosts:
        pages = [f"/p{k}" for k in range(60)]
        host.page("/", pages)
        for k, path in enumerate(pages):
            host.page(path, ["/", f"/p{(k + 7) % 60}", f"/deep{k}"] if k % 10 == 0 else ["/"])
        for k in range(0, 60, 10):
            host.page(f"/deep{k}")

    async with asyncio.timeout(10):  # a frontier that loses track of spilled rows waits for ever
        await run(db, [h.url("/") for h in hosts], concurrency=8, per_host=2)

    assert 0 < SmallFrontier.peak <= window
    for host in hosts:
        expected = ["/robots.txt", "/", *(f"/p{k}" for k in range(60))]
        expected += [f"/deep{k}" for k in range(0, 60, 10)]
        assert Counter(host.paths) == Counter(expected), host.ip
    total = n_hosts * 67
    assert rows(db, "SELECT count(*), count(DISTINCT url) FROM pages") == [(total, total)]
    assert rows(db, "SELECT state, count(*) FROM urls GROUP BY state") == [("done", total)]
