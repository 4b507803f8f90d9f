"""robots.txt against real servers: what is requested, what lands in the frontier as disallowed."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from support import Host, Site, broken_body, rows, run, settings, urls

from crawler.config import Settings
from crawler.fetcher import fetch, make_session
from crawler.robots import MAX_BYTES, TTL, RobotsCache, Rules, fetch_rules, parse, restored

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


async def test_utf8_bom_before_the_first_group(site: Site, db: str) -> None:
    # A UTF-8 BOM is not part of the first line: read with it, that line would be
    # "\ufeffUser-agent: *", no group at all, and nothing would be disallowed.
    host = await site.host()
    host.page(
        "/robots.txt", body=b"\xef\xbb\xbf" + ROBOTS_PRIVATE.encode(), content_type="text/plain"
    )
    tree(host, ["/private/x", "/private/open/y", "/public"])

    await run(db, [host.url("/")])

    assert disallowed(db) == {host.url("/private/x")}
    assert rows(db, "SELECT body FROM robots") == [(ROBOTS_PRIVATE,)]


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


@pytest.mark.parametrize("status", [403, 404, 410])
async def test_robots_4xx_allows_everything(site: Site, db: str, status: int) -> None:
    # RFC 9309 2.3.1.3: 4xx means no rules. (5xx and unreachable: see the fetch_rules
    # tests below; what the crawl does with them is the frontier's retry schedule.)
    host = await site.host()
    host.robots("User-agent: *\nDisallow: /\n", status=status)  # a body that must be ignored
    tree(host, ["/a"])

    await run(db, [host.url("/")])

    assert host.requests_for("/robots.txt") == 1
    assert rows(db, "SELECT status FROM robots") == [(status,)]
    assert urls(db) == {host.url("/"), host.url("/a")}


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


# ---------------------------------------------------------------------- fetch_rules, one host


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with make_session(settings()) as s:
        yield s


async def rules_for(session: aiohttp.ClientSession, host: Host, timeout: float = 5.0) -> Rules:
    return await fetch_rules(session, host.origin, DEFAULT_UA, timeout=timeout)


def plain(host: Host, path: str, body: str | bytes, status: int = 200) -> None:
    host.page(path, body=body, status=status, content_type="text/plain")


async def test_invalid_utf8_is_replaced_not_fatal(
    site: Site, session: aiohttp.ClientSession
) -> None:
    host = await site.host()
    plain(host, "/robots.txt", b"User-agent: *\n# caf\xe9\nDisallow: /a\n")

    rules = await rules_for(session, host)

    assert (rules.status, rules.error) == (200, None)
    assert rules.body == "User-agent: *\n# caf\ufffd\nDisallow: /a\n"
    assert not rules.allows(host.url("/a"), DEFAULT_UA)
    assert rules.allows(host.url("/b"), DEFAULT_UA)


async def test_any_2xx_is_rules_and_keeps_its_status(
    site: Site, session: aiohttp.ClientSession
) -> None:
    host = await site.host()
    plain(host, "/robots.txt", "User-agent: *\nDisallow: /a", status=203)

    rules = await rules_for(session, host)

    assert (rules.status, rules.error) == (203, None)
    assert rules.body == "User-agent: *\nDisallow: /a"  # a last line without newline counts
    assert not rules.allows(host.url("/a"), DEFAULT_UA)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 451, 499])
async def test_4xx_is_no_rules(site: Site, session: aiohttp.ClientSession, status: int) -> None:
    host = await site.host()
    plain(host, "/robots.txt", "User-agent: *\nDisallow: /\n", status=status)

    before = time.monotonic()
    rules = await rules_for(session, host)

    assert (rules.status, rules.error, rules.body, rules.crawl_delay) == (status, None, None, None)
    assert rules.allows(host.url("/a"), DEFAULT_UA) is True
    assert before + TTL <= rules.expires <= time.monotonic() + TTL


# 5xx and unreachable: only the status and error fields are pinned here; how the crawl holds
# and retries such a host (RFC 9309 2.3.1.4) belongs to the frontier and its tests.


@pytest.mark.parametrize(
    "status",
    [
        pytest.param(500, id="500"),
        pytest.param(502, id="502"),
        pytest.param(503, id="503"),
        pytest.param(599, id="599"),
        pytest.param(429, id="429-too-many-requests"),
        pytest.param(101, id="101-switching-protocols"),
    ],
)
async def test_5xx_429_and_1xx_are_errors_not_rules(
    site: Site, session: aiohttp.ClientSession, status: int
) -> None:
    # RFC 9309 2.3.1.4: a server error means robots.txt is unreachable and no rule is known,
    # so nothing is allowed meanwhile; 429 too (as Google does): "come back later".
    host = await site.host()
    host.page(
        "/robots.txt",
        body="User-agent: *\nAllow: /\n",  # must be ignored
        status=status,
        content_type="text/plain",
        headers={"Connection": "close"},  # after a 101 the connection is not HTTP any more
    )

    rules = await rules_for(session, host)

    assert rules.status == status
    assert rules.error is not None and rules.error.startswith("robots.txt ")
    assert str(status) in rules.error
    assert (rules.body, rules.retry_after) == (None, None)
    assert rules.allows(host.url("/"), DEFAULT_UA) is False


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_retry_after_of_an_unavailable_robots_txt_is_kept(
    site: Site, session: aiohttp.ClientSession, status: int
) -> None:
    host = await site.host()
    host.page("/robots.txt", status=status, headers={"Retry-After": "7"})

    rules = await rules_for(session, host)

    assert (rules.status, rules.retry_after) == (status, 7.0)


async def test_broken_response_is_an_error_naming_the_cause(
    site: Site, session: aiohttp.ClientSession
) -> None:
    host = await site.host()
    host.handle("/robots.txt", broken_body)

    rules = await rules_for(session, host)
    direct = await fetch(session, host.url("/robots.txt"), timeout=5.0, max_bytes=MAX_BYTES)

    assert direct.status is None and direct.error
    assert (rules.status, rules.error) == (None, f"robots.txt unreachable: {direct.error}")
    assert rules.body is None


async def test_robots_timeout_is_an_error(site: Site, session: aiohttp.ClientSession) -> None:
    host = await site.host()
    release = asyncio.Event()

    async def never_answers(request: web.Request) -> web.StreamResponse:
        await release.wait()
        return web.Response(text="User-agent: *\nAllow: /\n")

    host.handle("/robots.txt", never_answers)
    try:
        rules = await rules_for(session, host, timeout=0.2)
    finally:
        release.set()

    assert rules.status is None
    assert rules.error is not None and rules.error.startswith("robots.txt unreachable: timeout")


def redirect_chain(host: Host, hops: int) -> list[str]:
    """/robots.txt -> /r1 -> ... -> /r{hops}, which serves rules; the paths in order."""
    paths = ["/robots.txt", *(f"/r{k}" for k in range(1, hops + 1))]
    for src, dst in itertools.pairwise(paths):
        host.redirect(src, dst)
    plain(host, paths[-1], "User-agent: *\nDisallow: /a\n")
    return paths


@pytest.mark.parametrize("hops", [1, 5])
async def test_redirects_are_followed_up_to_five_hops(
    site: Site, session: aiohttp.ClientSession, hops: int
) -> None:
    # RFC 9309 2.3.1.2: follow at least five consecutive redirects.
    host = await site.host()
    paths = redirect_chain(host, hops)

    rules = await rules_for(session, host)

    assert host.paths == paths
    assert (rules.status, rules.error) == (200, None)
    assert not rules.allows(host.url("/a"), DEFAULT_UA)


async def test_sixth_redirect_is_not_followed(site: Site, session: aiohttp.ClientSession) -> None:
    # RFC 9309 2.3.1.2: past five hops robots.txt counts as unavailable, that is, a 4xx.
    host = await site.host()
    paths = redirect_chain(host, 6)

    rules = await rules_for(session, host)

    assert host.paths == paths[:-1]  # /r6 (which holds rules) never asked for
    assert (rules.status, rules.error) == (None, "robots.txt redirected too often")
    assert rules.allows(host.url("/a"), DEFAULT_UA) is True


@pytest.mark.parametrize("status", [300, 301, 302, 303, 307, 308])
async def test_every_3xx_is_a_redirect(
    site: Site, session: aiohttp.ClientSession, status: int
) -> None:
    host, other = await site.host(), await site.host()
    host.redirect("/robots.txt", other.url("/robots.txt"), status=status)
    plain(other, "/robots.txt", "User-agent: *\nDisallow: /a\n")

    rules = await rules_for(session, host)

    assert (host.paths, other.paths) == (["/robots.txt"], ["/robots.txt"])
    assert (rules.status, rules.error) == (200, None)
    assert not rules.allows(host.url("/a"), DEFAULT_UA)


@pytest.mark.parametrize(
    "location",
    [
        pytest.param(None, id="no-location"),
        pytest.param("mailto:robots@example.com", id="mailto"),
        pytest.param("ftp://127.0.0.2/robots.txt", id="ftp"),
    ],
)
async def test_redirect_to_an_unusable_url_allows_everything(
    site: Site, session: aiohttp.ClientSession, location: str | None
) -> None:
    host = await site.host()
    if location is None:
        plain(host, "/robots.txt", "", status=302)
    else:
        host.redirect("/robots.txt", location, status=302)

    rules = await rules_for(session, host)

    assert host.paths == ["/robots.txt"]
    assert (rules.status, rules.error) == (302, "robots.txt redirect to an unusable URL")
    assert rules.allows(host.url("/a"), DEFAULT_UA) is True


HEAD = "User-agent: *\nDisallow: /a\n"
LAST = "Disallow: /private"  # no newline: whole only when the body is not cut


def padded(size: int) -> str:
    """HEAD, comment lines, then LAST: `size` bytes in all."""
    filler = size - len(HEAD) - len(LAST)
    count, extra = divmod(filler, 100)
    first = "#" * (99 + extra) + "\n"  # one longer line takes up the remainder
    return HEAD + first + ("# " + "x" * 97 + "\n") * (count - 1) + LAST


@pytest.mark.parametrize(
    ("over", "private_allowed"),
    [
        pytest.param(0, False, id="exactly-max-bytes-is-whole"),
        pytest.param(1, True, id="one-byte-over-drops-the-partial-line"),
        pytest.param(len("private"), True, id="cut-to-disallow-slash-is-not-disallow-all"),
    ],
)
async def test_body_over_max_bytes_loses_its_partial_last_line(
    site: Site, session: aiohttp.ClientSession, over: int, private_allowed: bool
) -> None:
    # RFC 9309 2.5: parse at least 500 KiB; a rule cut in half must not count.
    host = await site.host()
    text = padded(MAX_BYTES + over)
    plain(host, "/robots.txt", text)

    rules = await rules_for(session, host)

    kept = text if over == 0 else text[: text.rindex("\n") + 1]
    assert rules.body == kept
    assert not rules.allows(host.url("/a"), DEFAULT_UA)
    assert rules.allows(host.url("/private/x"), DEFAULT_UA) is private_allowed
    assert rules.allows(host.url("/other"), DEFAULT_UA)


# ---------------------------------------------------------------------- parse


ROBOTS_DELAY_BY_AGENT = "User-agent: crawler\nCrawl-delay: 4\n\nUser-agent: *\nCrawl-delay: 1.5\n"


@pytest.mark.parametrize(
    ("text", "user_agent", "delay"),
    [
        pytest.param("User-agent: *\nCrawl-delay: 2.5\n", DEFAULT_UA, 2.5, id="fraction"),
        pytest.param("User-agent: *\nCrawl-delay: 3\n", DEFAULT_UA, 3.0, id="integer"),
        pytest.param("User-agent: *\nCrawl-delay: 0\n", DEFAULT_UA, 0.0, id="zero-is-a-delay"),
        pytest.param("User-agent: *\nDisallow: /a\n", DEFAULT_UA, None, id="absent"),
        pytest.param("User-agent: *\nCrawl-delay: soon\n", DEFAULT_UA, None, id="not-a-number"),
        pytest.param(ROBOTS_DELAY_BY_AGENT, DEFAULT_UA, 4.0, id="our-group"),
        pytest.param(ROBOTS_DELAY_BY_AGENT, "OtherBot/1.0", 1.5, id="star-group"),
    ],
)
def test_crawl_delay(text: str, user_agent: str, delay: float | None) -> None:
    rules = parse(text, user_agent)
    assert rules.crawl_delay == delay
    assert delay is None or type(rules.crawl_delay) is float


def test_parse_keeps_the_text_and_lasts_a_day() -> None:
    before = time.monotonic()
    rules = parse(ROBOTS_PRIVATE, DEFAULT_UA)

    assert (rules.status, rules.error, rules.body) == (200, None, ROBOTS_PRIVATE)
    assert before + TTL <= rules.expires <= time.monotonic() + TTL
    assert not rules.allows("http://127.0.0.2/private/x", DEFAULT_UA)
    assert rules.allows("http://127.0.0.2/private/open/y", DEFAULT_UA)


# ---------------------------------------------------------------------- restored (resume)


@pytest.mark.parametrize(
    ("status", "body", "allowed", "kept"),
    [
        pytest.param(200, "User-agent: *\nDisallow: /\n", False, True, id="200-rules"),
        pytest.param(299, "User-agent: *\nDisallow: /\n", False, True, id="299-rules"),
        pytest.param(200, "", True, True, id="empty-robots-txt"),
        pytest.param(300, "User-agent: *\nDisallow: /\n", True, False, id="3xx-no-rules"),
        pytest.param(404, None, True, False, id="404-no-rules"),
    ],
)
def test_restored_rules_are_the_stored_answer(
    status: int, body: str | None, allowed: bool, kept: bool
) -> None:
    rules = restored(status, body, DEFAULT_UA, time.time())
    assert (rules.status, rules.error) == (status, None)
    assert rules.body == (body if kept else None)
    assert rules.allows("http://127.0.0.2/a", DEFAULT_UA) is allowed


def test_restored_rules_use_our_group() -> None:
    rules = restored(200, ROBOTS_DELAY_BY_AGENT, DEFAULT_UA, time.time())
    assert rules.crawl_delay == 4.0


def test_restored_rules_expire_a_day_after_their_fetch() -> None:
    # RFC 9309 2.4: the day counts from the earlier run's fetch, not from the resume.
    wall, mono = time.time(), time.monotonic()
    fetched = wall - 3600.0
    rules = restored(200, "", DEFAULT_UA, fetched)
    wall_after, mono_after = time.time(), time.monotonic()
    assert mono + (fetched + TTL - wall_after) <= rules.expires
    assert rules.expires <= mono_after + (fetched + TTL - wall)


# ---------------------------------------------------------------------- RobotsCache


def live() -> Rules:
    return parse("User-agent: *\nDisallow: /\n", DEFAULT_UA)


def expired() -> Rules:
    return dataclasses.replace(live(), expires=time.monotonic() - 1.0)


def test_cache_returns_what_was_put() -> None:
    cache, rules = RobotsCache(), live()
    cache.put("http://a", rules)
    assert cache.get("http://a") is rules
    assert cache.get("http://a") is rules  # a hit does not consume it
    assert cache.get("http://b") is None


def test_cache_forgets_expired_rules() -> None:
    cache, fresh = RobotsCache(max_hosts=2), live()
    cache.put("http://b", fresh)
    cache.put("http://a", expired())
    assert cache.get("http://a") is None
    cache.put("http://c", live())
    assert cache.get("http://b") is fresh  # the expired entry did not keep its place


def test_cache_drops_the_least_recently_used() -> None:
    cache = RobotsCache(max_hosts=3)
    for origin in ("http://a", "http://b", "http://c"):
        cache.put(origin, live())
    assert cache.get("http://a") is not None  # a used: b is now the oldest
    cache.put("http://c", live())  # a second put is a use too
    cache.put("http://d", live())
    assert [o for o in ("http://a", "http://b", "http://c", "http://d") if cache.get(o)] == [
        "http://a",
        "http://c",
        "http://d",
    ]


def test_cache_default_bound_is_ten_thousand_hosts() -> None:
    cache, rules = RobotsCache(), live()
    for k in range(10_001):
        cache.put(f"http://h{k}", rules)
    assert cache.get("http://h0") is None
    assert cache.get("http://h1") is rules
    assert cache.get("http://h10000") is rules
