"""robots.txt against real servers: what is requested, what lands in the frontier as disallowed."""

from __future__ import annotations

import pytest
from support import Host, Site, rows, run, urls

from crawler.config import Settings

DEFAULT_UA = Settings().user_agent  # its product token "crawler" names a group below
ROBOTS_PRIVATE = "User-agent: *\nDisallow: /private\nAllow: /private/open\n"


def disallowed(db: str) -> set[str]:
    return {r[0] for r in rows(db, "SELECT url FROM frontier WHERE state = 'disallowed'")}


def tree(host: Host, paths: list[str]) -> None:
    """`/` links to every path; each path is a plain page."""
    host.page("/", paths)
    for path in paths:
        host.page(path)


async def test_disallow_and_the_more_specific_allow(site: Site, db: str) -> None:
    host = await site.host()
    host.robots(ROBOTS_PRIVATE)
    tree(host, ["/private/x", "/private/open/y", "/public", "/privately"])

    await run(db, [host.url("/")])

    assert sorted(host.paths) == ["/", "/private/open/y", "/public", "/robots.txt"]
    assert urls(db) == {host.url(p) for p in ("/", "/private/open/y", "/public")}
    assert disallowed(db) == {host.url("/private/x"), host.url("/privately")}
    assert rows(db, "SELECT reason FROM frontier") == [("robots.txt",), ("robots.txt",)]
    assert rows(db, "SELECT host, status, body FROM robots") == [(host.origin, 200, ROBOTS_PRIVATE)]


ROBOTS_BY_AGENT = "User-agent: crawler\nDisallow: /a\n\nUser-agent: *\nDisallow: /b\n"


@pytest.mark.parametrize(
    ("user_agent", "fetched", "blocked"),
    [
        pytest.param(DEFAULT_UA, "/b", "/a", id="our-group-replaces-star"),
        pytest.param("OtherBot/2.0", "/a", "/b", id="unknown-agent-gets-star"),
    ],
)
async def test_group_for_our_user_agent(
    site: Site, db: str, user_agent: str, fetched: str, blocked: str
) -> None:
    host = await site.host()
    host.robots(ROBOTS_BY_AGENT)
    tree(host, ["/a", "/b"])

    await run(db, [host.url("/")], user_agent=user_agent)

    assert host.requests_for(fetched) == 1
    assert host.requests_for(blocked) == 0
    assert disallowed(db) == {host.url(blocked)}


async def test_robots_fetched_once_per_host(site: Site, db: str) -> None:
    hosts = [await site.host() for _ in range(3)]
    for host in hosts:
        host.robots("User-agent: *\nDisallow: /no\n")
        tree(host, [f"/p{k}" for k in range(20)] + ["/no"])

    await run(db, [h.url("/") for h in hosts], concurrency=16, per_host=4)

    assert [h.requests_for("/robots.txt") for h in hosts] == [1, 1, 1]
    assert all(h.requests_for("/no") == 0 for h in hosts)
    assert rows(db, "SELECT count(*) FROM robots") == [(3,)]
    assert rows(db, "SELECT count(*) FROM pages") == [(3 * 21,)]


async def test_robots_before_any_page(site: Site, db: str) -> None:
    host = await site.host()
    host.hold = 0.05
    host.robots("User-agent: *\nAllow: /\n")
    tree(host, ["/a", "/b"])

    await run(db, [host.url("/"), host.url("/a"), host.url("/b")], per_host=4)

    robots = next(h for h in host.hits if h.path == "/robots.txt")
    assert host.hits[0] is robots
    assert robots.end is not None
    assert all(h.start >= robots.end for h in host.hits[1:])


async def test_ignore_robots(site: Site, db: str) -> None:
    host = await site.host()
    host.robots("User-agent: *\nDisallow: /\n")
    tree(host, ["/a"])

    await run(db, [host.url("/")], ignore_robots=True)

    assert sorted(host.paths) == ["/", "/a"]
    assert urls(db) == {host.url("/"), host.url("/a")}
    assert rows(db, "SELECT count(*) FROM robots") == [(0,)]


@pytest.mark.parametrize(
    ("status", "allowed"),
    [
        pytest.param(404, True, id="404-allows-all"),
        pytest.param(410, True, id="410-allows-all"),
        pytest.param(403, True, id="403-allows-all"),
        pytest.param(500, False, id="500-disallows-all"),
        pytest.param(503, False, id="503-disallows-all"),
    ],
)
async def test_robots_status(site: Site, db: str, status: int, allowed: bool) -> None:
    # RFC 9309 2.3.1: 4xx means no rules; 5xx means assume complete disallow.
    host = await site.host()
    host.robots("User-agent: *\nDisallow: /\n", status=status)  # a body that must be ignored
    tree(host, ["/a"])

    await run(db, [host.url("/")])

    assert host.requests_for("/robots.txt") == 1
    assert rows(db, "SELECT status FROM robots") == [(status,)]
    if allowed:
        assert urls(db) == {host.url("/"), host.url("/a")}
    else:
        assert host.paths == ["/robots.txt"]
        assert urls(db) == set()
        assert disallowed(db) == {host.url("/")}


async def test_missing_robots_allows_everything(site: Site, db: str) -> None:
    host = await site.host()  # no /robots.txt route: the server answers 404
    tree(host, ["/a", "/b"])

    await run(db, [host.url("/")])

    assert sorted(host.paths) == ["/", "/a", "/b", "/robots.txt"]
    assert disallowed(db) == set()


async def test_robots_redirect_is_followed(site: Site, db: str) -> None:
    host = await site.host()
    host.redirect("/robots.txt", "/real-robots.txt")
    host.page("/real-robots.txt", body="User-agent: *\nDisallow: /a\n", content_type="text/plain")
    tree(host, ["/a", "/b"])

    await run(db, [host.url("/")])

    assert host.requests_for("/a") == 0
    assert host.requests_for("/b") == 1
    assert disallowed(db) == {host.url("/a")}


async def test_disallowed_seed(site: Site, db: str) -> None:
    host = await site.host()
    host.robots("User-agent: *\nDisallow: /secret\n")
    tree(host, ["/a"])
    host.page("/secret/start", ["/a"])

    await run(db, [host.url("/secret/start")])

    assert host.paths == ["/robots.txt"]
    assert urls(db) == set()
    assert rows(db, "SELECT url, depth, state FROM frontier") == [
        (host.url("/secret/start"), 0, "disallowed")
    ]


async def test_robots_per_host_not_shared(site: Site, db: str) -> None:
    strict, open_ = await site.host(), await site.host()
    strict.robots("User-agent: *\nDisallow: /a\n")
    for host in (strict, open_):
        tree(host, ["/a"])

    await run(db, [strict.url("/"), open_.url("/")])

    assert strict.requests_for("/a") == 0
    assert open_.requests_for("/a") == 1
    assert disallowed(db) == {strict.url("/a")}
