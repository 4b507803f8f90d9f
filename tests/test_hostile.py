"""Issue 3: hostile servers and bad input cost one error row or one clear message, not the crawl.

Every crawl here also carries a well-behaved host, and every test checks that host's pages
were all stored and the crawl finished: surviving means the rest of the crawl goes on.
Misbehaving servers are raw TCP servers from `hostile.py`; name resolution, where a test
needs names, goes through a resolver the test controls (never the machine's DNS).
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import itertools
import os
import random
import signal
import socket
import sqlite3
import ssl
import sys
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import trustme
from click.testing import CliRunner
from hostile import (
    Behaviour,
    Exchange,
    RawHost,
    Resolver,
    TreeSite,
    bad_chunked,
    bad_status_line,
    bomb,
    drips,
    huge,
    never_answers,
    not_found,
    page,
    resets_mid_body,
    respond,
    sequence,
    slams,
    wrong_length,
)
from support import Host, Site, rows, run, settings, urls

import crawler.engine
from crawler import robots
from crawler.cli import cli
from crawler.engine import Engine
from crawler.records import Summary
from crawler.run import canonical_seeds
from crawler.store.sqlite import SQLiteStore as Storage

MakeRaw = Callable[..., Awaitable[RawHost]]


@pytest.fixture
async def raw() -> AsyncIterator[MakeRaw]:
    """Start raw hostile servers on 127.0.0.40, .41, ... (TLS when given a context)."""
    hosts: list[RawHost] = []

    async def make(tls: ssl.SSLContext | None = None) -> RawHost:
        host = RawHost(f"127.0.0.{40 + len(hosts)}", scheme="https" if tls else "http")
        await host.start(tls)
        hosts.append(host)
        return host

    try:
        yield make
    finally:
        for host in hosts:
            await host.close()


async def good_host(site: Site, n: int = 4) -> tuple[Host, set[str]]:
    """A polite host with `n + 1` linked pages, all of which every crawl must store."""
    host = await site.host()
    paths = [f"/g{i}" for i in range(n)]
    host.page("/", links=paths)
    for path in paths:
        host.page(path)
    return host, {host.url("/"), *(host.url(p) for p in paths)}


def completed(db: str, summary: Summary, expected: set[str]) -> bool:
    return summary.finished and expected <= urls(db, "status = 200 AND error IS NULL")


def page_row(db: str, url: str, columns: str = "status, error, attempts") -> tuple[Any, ...]:
    found = rows(db, f"SELECT {columns} FROM pages WHERE url = ?", url)
    assert len(found) == 1, f"{url}: {found}"
    return found[0]


async def crawl_resolving(
    db: str, seeds: list[str], resolver: Resolver, **overrides: Any
) -> Summary:
    """A crawl whose session resolves names with `resolver` (the engine, as run.crawl builds it)."""
    s = settings(**overrides)
    canonical = canonical_seeds(seeds, s.max_url_length)
    storage = await Storage.open(db, create=True)
    try:
        await storage.save_crawl(s, canonical)
        return await Engine(storage, s, canonical, resolver=resolver).run()
    finally:
        await storage.close()


# ---------------------------------------------------------------------- retries


async def test_503_then_200_is_one_row_with_its_attempts(raw: MakeRaw, site: Site, db: str) -> None:
    host = await raw()
    host.route("/", sequence(respond(status="503 Service Unavailable"), respond(page())))
    good, pages = await good_host(site)
    summary = await run(db, [host.url("/"), good.url("/")], retries=2)
    assert page_row(db, host.url("/")) == (200, None, 2)
    assert len(host.requests_for("/")) == 2
    assert completed(db, summary, pages)


def http_date(seconds_from_now: float) -> str:
    return email.utils.formatdate(time.time() + seconds_from_now, usegmt=True)


@pytest.mark.parametrize(
    ("retries", "retry_after", "least"),
    [
        pytest.param(1, lambda: "1", 1.0, id="seconds"),
        # An HTTP-date has whole seconds: "now + 2 s" is between 1 and 2 s away.
        pytest.param(1, lambda: http_date(2), 0.95, id="http-date"),
        pytest.param(0, lambda: "1", 1.0, id="seconds-on-the-last-attempt"),
    ],
)
async def test_retry_after_holds_the_whole_host(
    raw: MakeRaw,
    site: Site,
    db: str,
    retries: int,
    retry_after: Callable[[], str],
    least: float,
) -> None:
    host = await raw()

    async def too_many(ex: Exchange) -> None:
        headers = {"Retry-After": retry_after()}  # built when asked: the date is "from now"
        await respond("slow down", status="429 Too Many Requests", headers=headers)(ex)

    host.route("/a", sequence(too_many, respond(page())))
    host.route("/b", respond(page()))
    host.route("/c", respond(page()))
    good, pages = await good_host(site)
    seeds = [host.url("/a"), host.url("/b"), host.url("/c")]
    summary = await run(db, [*seeds, good.url("/")], retries=retries, per_host=1)

    told = host.requests_for("/a")[0]
    later = [h for h in host.hits if h.start > told.start]
    assert len(later) == 2 + retries  # /b, /c and the retry of /a
    assert min(h.start for h in later) - told.end >= least - 0.005
    assert page_row(db, host.url("/a")) == ((200, None, 2) if retries else (429, None, 1))
    assert completed(db, summary, pages | set(seeds[1:]))


async def test_a_retry_after_past_the_cap_fails_the_url_and_holds_the_host_for_the_cap(
    raw: MakeRaw, site: Site, db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(crawler.engine, "MAX_RETRY_AFTER", 0.5)
    host = await raw()
    host.route("/a", respond(status="503 Busy", headers={"Retry-After": "86400"}))
    host.route("/b", respond(page()))
    good, pages = await good_host(site)
    summary = await run(db, [host.url("/a"), host.url("/b"), good.url("/")], retries=3, per_host=1)
    told = host.requests_for("/a")
    assert len(told) == 1  # a day is longer than we wait: no retry
    assert host.requests_for("/b")[0].start - told[0].end >= 0.5 - 0.005
    assert page_row(db, host.url("/a")) == (503, None, 1)
    assert completed(db, summary, pages | {host.url("/b")})


async def test_only_network_errors_429_and_5xx_are_retried(
    raw: MakeRaw, site: Site, db: str
) -> None:
    host = await raw()
    host.route("/gone", respond("gone", status="404 Not Found"))
    host.route("/forbidden", respond("no", status="403 Forbidden"))
    host.route("/flaky", sequence(slams, slams, respond(page())))
    host.route("/down", slams)
    good, pages = await good_host(site)
    paths = ["/gone", "/forbidden", "/flaky", "/down"]
    summary = await run(db, [*map(host.url, paths), good.url("/")], retries=2)

    assert [len(host.requests_for(p)) for p in paths] == [1, 1, 3, 3]
    assert page_row(db, host.url("/gone")) == (404, None, 1)
    assert page_row(db, host.url("/forbidden")) == (403, None, 1)
    assert page_row(db, host.url("/flaky")) == (200, None, 3)
    status, error, attempts = page_row(db, host.url("/down"))
    assert status is None and attempts == 3
    assert error.startswith("disconnected:")
    assert completed(db, summary, pages)


async def test_a_host_that_keeps_failing_is_dropped_not_hammered(
    raw: MakeRaw, site: Site, db: str
) -> None:
    host = await raw()
    host.route("/robots.txt", not_found)
    host.fallback = respond("oops", status="500 Internal Server Error")
    seeds = [host.url(f"/p{i}") for i in range(12)]
    good, pages = await good_host(site)
    summary = await run(
        db, [*seeds, good.url("/")], retries=1, host_failures=3, per_host=2, delay=0.0
    )

    got = dict(rows(db, "SELECT url, error FROM pages WHERE host = ?", host.origin))
    assert sorted(got) == sorted(seeds)  # one row per URL, fetched or not
    dropped = [e for e in got.values() if e and e.startswith("host dropped after 3 failures")]
    # At most host_failures + per_host - 1 URLs were ever sent, each at most retries + 1 times.
    assert len(dropped) >= len(seeds) - 4
    assert len([h for h in host.hits if h.path != "/robots.txt"]) <= 4 * 2
    assert completed(db, summary, pages)


# ---------------------------------------------------------------------- robots.txt


@pytest.mark.parametrize(
    "status", ["401 Unauthorized", "403 Forbidden", "404 Not Found", "410 Gone"]
)  # 429 is not among them: it holds the host like a 5xx (test_fates)
async def test_robots_txt_4xx_allows_everything(raw: MakeRaw, db: str, status: str) -> None:
    host = await raw()
    # RFC 9309 2.3.1.3: the body of a 4xx is not a robots.txt, whatever it says.
    body = "User-agent: *\nDisallow: /\n"
    host.route("/robots.txt", respond(body, status=status, content_type="text/plain"))
    host.route("/", respond(page("/a")))
    host.route("/a", respond(page()))
    summary = await run(db, [host.url("/")])
    assert completed(db, summary, {host.url("/"), host.url("/a")})
    assert len(host.requests_for("/robots.txt")) == 1


async def test_robots_txt_5xx_holds_the_host_until_it_recovers(raw: MakeRaw, db: str) -> None:
    # RFC 9309 2.3.1.4: a 5xx means complete disallow; the host is held, not given up.
    host = await raw()
    rules = "User-agent: *\nDisallow: /private\n"
    host.route(
        "/robots.txt",
        sequence(
            respond("down", status="503 Service Unavailable", content_type="text/plain"),
            respond(rules, content_type="text/plain"),
        ),
    )
    host.route("/one", respond(page(host.url("/two"), host.url("/private"))))
    for path in ("/two", "/private"):
        host.route(path, respond(page()))
    summary = await run(db, [host.url("/one")], retries=1)

    assert len(host.requests_for("/robots.txt")) == 2  # asked again on the retry schedule
    assert host.requests_for("/private") == []
    assert rows(db, "SELECT url, state FROM frontier ORDER BY url") == [
        (host.url("/private"), "disallowed"),
    ]
    assert completed(db, summary, {host.url("/one"), host.url("/two")})


async def test_robots_txt_unreachable_costs_each_url_an_error_row(
    raw: MakeRaw, site: Site, db: str
) -> None:
    host = await raw()
    host.route("/robots.txt", slams)  # RFC 9309 2.3.1.4: unreachable means complete disallow
    host.route("/x", respond(page()))
    good, pages = await good_host(site)
    summary = await run(db, [host.url("/x"), good.url("/")])
    assert host.requests_for("/x") == []
    ((status, error),) = rows(db, "SELECT status, error FROM pages WHERE url = ?", host.url("/x"))
    assert status is None and error.startswith("robots.txt unreachable: disconnected:")
    ((status, error),) = rows(db, "SELECT status, error FROM robots WHERE host = ?", host.origin)
    assert status is None and error.startswith("robots.txt unreachable: disconnected:")
    assert summary.errors == 1
    assert completed(db, summary, pages)


@pytest.mark.parametrize(
    ("hops", "obeyed"),
    [
        pytest.param(1, True, id="1-hop"),
        pytest.param(5, True, id="5-hops"),
        pytest.param(6, False, id="6-hops-is-unavailable"),  # RFC 9309 2.3.1.2
    ],
)
async def test_robots_txt_redirects_are_followed_up_to_5_hops(
    raw: MakeRaw, db: str, hops: int, obeyed: bool
) -> None:
    host = await raw()
    chain = ["/robots.txt", *(f"/r{i}" for i in range(1, hops + 1))]
    for src, dst in itertools.pairwise(chain):
        host.route(src, respond(status="301 Moved Permanently", headers={"Location": dst}))
    host.route(chain[-1], respond("User-agent: *\nDisallow: /private\n", content_type="text/plain"))
    host.route("/private", respond(page()))
    host.route("/public", respond(page()))
    summary = await run(db, [host.url("/private"), host.url("/public")])

    assert [len(host.requests_for(p)) for p in chain[:6]] == [1] * min(len(chain), 6)
    fetched = {host.url("/public")} | (set() if obeyed else {host.url("/private")})
    assert urls(db) == fetched
    assert completed(db, summary, fetched)


async def test_robots_txt_is_fetched_once_per_host(raw: MakeRaw, db: str) -> None:
    host = await raw()
    paths = [f"/p{i}" for i in range(30)]
    host.route("/", respond(page(*paths)))
    for path in paths:
        host.route(path, respond(page(*paths)))
    summary = await run(db, [host.url("/")], per_host=4)
    assert len(host.requests_for("/robots.txt")) == 1
    assert completed(db, summary, {host.url("/"), *map(host.url, paths)})


async def test_an_oversized_robots_txt_is_cut_at_500_kib(raw: MakeRaw, db: str) -> None:
    start = b"User-agent: *\nDisallow: /early\n"
    filler = b"#" + b"x" * 98 + b"\n"
    cut_at = robots.MAX_BYTES
    straddle = b"Disallow: /"  # the cut falls right after this, inside "Disallow: /sss..."
    room = cut_at - len(straddle) - len(start)
    body = start + filler * (room // 100) + b"#" * (room % 100 - 1) + b"\n"
    body += straddle + b"s" * 50 + b"\nDisallow: /late\n" + filler * 1000
    assert len(body) > 512 * 1024 and body.index(b"Disallow: /s") == cut_at - len(straddle)
    host = await raw()
    host.route("/robots.txt", respond(body, content_type="text/plain"))
    for path in ("/early", "/late", "/public"):
        host.route(path, respond(page()))
    summary = await run(db, [host.url(p) for p in ("/early", "/late", "/public")])

    # A rule past 500 KiB is not seen; the rule cut in half is not read as "Disallow: /".
    assert completed(db, summary, {host.url("/late"), host.url("/public")})
    assert host.requests_for("/early") == []
    ((kept,),) = rows(db, "SELECT length(body) FROM robots")
    assert kept <= 500 * 1024


# ---------------------------------------------------------------------- timeouts


async def test_silent_and_dripping_servers_time_out_while_others_finish(
    raw: MakeRaw, site: Site, db: str
) -> None:
    silent = await raw()
    silent.route("/", never_answers)
    dripping = await raw()
    dripping.route("/", drips)
    good, pages = await good_host(site)
    summary = await run(db, [silent.url("/"), dripping.url("/"), good.url("/")], timeout=1.0)

    for host in (silent, dripping):
        status, error, elapsed = page_row(db, host.url("/"), "status, error, elapsed")
        assert status is None and error.startswith("timeout:")
        assert 0.9 <= elapsed < 3.0
    assert dripping.requests_for("/")[0].sent > 0  # it did start answering
    # The good host was not held up by the two that hang: all sent before they timed out.
    assert max(h.start for h in good.hits) < (silent.requests_for("/")[0].end or 0)
    assert completed(db, summary, pages)


# ---------------------------------------------------------------------- sizes


async def test_a_50_mb_body_is_cut_and_its_connection_dropped(
    raw: MakeRaw, site: Site, db: str
) -> None:
    host = await raw()
    host.route("/", huge(50_000_000))
    good, pages = await good_host(site)
    tracemalloc.start()
    try:
        summary = await run(db, [host.url("/"), good.url("/")], max_bytes=1_000_000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    hit = host.requests_for("/")[0]
    await asyncio.wait_for(hit.done.wait(), 5)
    assert hit.dropped and hit.sent < 25_000_000  # the crawler hung up early
    row = page_row(db, host.url("/"), "status, error, truncated, size, length(body)")
    assert row == (200, None, 1, 1_000_000, 1_000_000)
    assert peak < 40_000_000
    assert completed(db, summary, pages)


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br"])
async def test_a_decompression_bomb_is_cut_after_decompression(
    raw: MakeRaw, site: Site, db: str, encoding: str
) -> None:
    host = await raw()
    host.route("/", bomb(encoding, 64))  # 64 MiB of zeros in a few hundred KB at most
    good, pages = await good_host(site)
    tracemalloc.start()
    try:
        summary = await run(db, [host.url("/"), good.url("/")], max_bytes=1_000_000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    row = page_row(db, host.url("/"), "status, error, truncated, size, length(body)")
    assert row == (200, None, 1, 1_000_000, 1_000_000)
    assert peak < 40_000_000  # nowhere near the 64 MiB the body decodes to
    assert completed(db, summary, pages)


# ---------------------------------------------------------------------- broken transports


def free_port(ip: str) -> int:
    with socket.socket() as sock:
        sock.bind((ip, 0))
        return int(sock.getsockname()[1])


async def untrusted_certificate(raw: MakeRaw) -> str:
    ca = trustme.CA()  # a CA the crawler has never heard of
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.40").configure_cert(context)
    host = await raw(context)
    host.route("/", respond(page()))
    return host.url("/")


async def served(raw: MakeRaw, behaviour: Behaviour) -> str:
    host = await raw()
    host.route("/", behaviour)
    return host.url("/")


async def plain_server_over_https(raw: MakeRaw) -> str:
    host = await raw()
    return host.url("/").replace("http://", "https://")


BROKEN: list[Any] = [
    pytest.param(lambda raw: served(raw, resets_mid_body), "payload:", id="reset-mid-body"),
    pytest.param(
        lambda raw: served(raw, wrong_length(10_000, b"<html>short")),
        "payload:",
        id="content-length-too-long",
    ),
    pytest.param(
        lambda raw: served(raw, wrong_length(3, b"<html>much longer than 3 bytes")),
        "http:",
        id="content-length-too-short",
    ),
    pytest.param(lambda raw: served(raw, bad_chunked), "payload:", id="bad-chunked-encoding"),
    pytest.param(lambda raw: served(raw, bad_status_line), "http:", id="invalid-status-line"),
    pytest.param(lambda raw: served(raw, slams), "disconnected:", id="reset-before-response"),
    pytest.param(plain_server_over_https, "tls:", id="tls-to-a-plain-server"),
    pytest.param(untrusted_certificate, "tls:", id="untrusted-certificate"),
]


@pytest.mark.parametrize(("make", "kind"), BROKEN)
async def test_a_broken_transport_is_one_readable_error_row(
    raw: MakeRaw,
    site: Site,
    db: str,
    make: Callable[[MakeRaw], Awaitable[str]],
    kind: str,
) -> None:
    url = await make(raw)
    good, pages = await good_host(site)
    # robots.txt off: with it on, a host we cannot reach is disallowed, never requested.
    summary = await run(db, [url, good.url("/")], retries=0, ignore_robots=True)
    status, error, _ = page_row(db, url)
    assert status is None and error.startswith(kind), error
    assert "\n" not in error and len(error) <= 300
    assert completed(db, summary, pages)


async def test_refused_and_unresolvable_hosts_are_error_rows(site: Site, db: str) -> None:
    good, pages = await good_host(site)
    resolver = Resolver({"good.test": good.ip})
    port = free_port("127.0.0.50")
    refused = f"http://127.0.0.50:{port}/"
    unknown = f"http://nowhere.test:{good.port}/"
    named = f"http://good.test:{good.port}/"
    seeds = [refused, unknown, named]
    summary = await crawl_resolving(db, seeds, resolver, scope="any", ignore_robots=True)

    assert "nowhere.test" in resolver.asked
    assert page_row(db, refused)[0] is None and page_row(db, refused)[1].startswith("connect:")
    assert page_row(db, unknown)[0] is None and page_row(db, unknown)[1].startswith("dns:")
    # The named host is the good one: its pages are stored under the name.
    named_pages = {u.replace(f"http://{good.ip}:", "http://good.test:") for u in pages}
    assert completed(db, summary, named_pages)


# ---------------------------------------------------------------------- content


def encoded(path: str) -> str:
    return quote(path, safe="/")


CHARSETS = [
    pytest.param(
        "text/html; charset=Shift_JIS",
        '<a href="/日本語/ページ">x</a>'.encode("cp932"),
        "/日本語/ページ",
        id="shift_jis-from-header",
    ),
    pytest.param(
        "text/html",
        '<meta charset="windows-1251"><a href="/ключ">x</a>'.encode("cp1251"),
        "/ключ",
        id="windows-1251-from-meta",
    ),
    pytest.param(
        "text/html; charset=windows-1251",
        '<meta charset="utf-8"><a href="/дом">x</a>'.encode("cp1251"),
        "/дом",
        id="header-beats-meta",
    ),
    pytest.param(
        "text/html; charset=windows-1251",
        b"\xef\xbb\xbf" + '<meta charset="shift_jis"><a href="/ü/中">x</a>'.encode(),
        "/ü/中",
        id="bom-beats-header-and-meta",
    ),
]


@pytest.mark.parametrize(("content_type", "body", "target"), CHARSETS)
async def test_charset_decides_where_non_ascii_links_go(
    raw: MakeRaw, db: str, content_type: str, body: bytes, target: str
) -> None:
    host = await raw()
    host.route("/", respond(body, content_type=content_type))
    host.route(encoded(target), respond(page()))
    summary = await run(db, [host.url("/")])
    assert completed(db, summary, {host.url("/"), host.url(encoded(target))})
    assert len(host.hits) == 3  # robots.txt, the page, its one link: nothing misdecoded


async def test_malformed_html_still_yields_its_links(raw: MakeRaw, db: str) -> None:
    host = await raw()
    soup = (
        b"<html><body\x00><div><a href=/m1>one<a href='/m2'>two</div></p></span>"
        b'<table><tr><td><a href="/m3"</td><a\nhref\n=\n/m4>x</a><!-- <a href=/hidden> -->'
        b"<a href=\"/m5\" <a href=/m6><script>document.write('<a href=/js>')"
    )
    host.route("/", respond(soup))
    targets = ["/m1", "/m2", "/m3", "/m4", "/m5"]
    for path in targets:
        host.route(path, respond(page()))
    summary = await run(db, [host.url("/")])
    assert completed(db, summary, {host.url("/"), *map(host.url, targets)})
    assert host.requests_for("/hidden") == [] and host.requests_for("/js") == []


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/json", "image/svg+xml", "application/octet-stream", ""],
)
async def test_non_html_is_stored_but_not_parsed(raw: MakeRaw, db: str, content_type: str) -> None:
    host = await raw()
    body = b'<html><a href="/secret">looks like html</a></html>'

    async def typed(ex: Exchange) -> None:
        fields = f"Content-Length: {len(body)}\r\nConnection: close\r\n"
        if content_type:
            fields += f"Content-Type: {content_type}\r\n"
        await ex.send(f"HTTP/1.1 200 OK\r\n{fields}\r\n".encode() + body)

    host.route("/", typed)
    host.route("/secret", respond(page()))
    summary = await run(db, [host.url("/")])
    assert page_row(db, host.url("/"), "status, links_found, length(body)") == (
        200,
        None,
        len(body),
    )
    assert host.requests_for("/secret") == []
    assert rows(db, "SELECT count(*) FROM links") == [(0,)]
    assert completed(db, summary, {host.url("/")})


async def test_a_page_with_100000_links_is_capped_by_max_links(raw: MakeRaw, db: str) -> None:
    host = await raw()
    anchors = "".join(f'<a href="/l/{i}">{i}</a>' for i in range(100_000))
    host.route("/", respond(f"<html><body>{anchors}</body></html>"))
    host.route("/other", respond(page()))
    summary = await run(db, [host.url("/"), host.url("/other")], max_links=500, max_depth=0)
    assert page_row(db, host.url("/"), "status, links_found, links_truncated") == (200, 500, 1)
    assert rows(db, "SELECT count(*) FROM links WHERE src_url = ?", host.url("/")) == [(500,)]
    assert completed(db, summary, {host.url("/"), host.url("/other")})


# ---------------------------------------------------------------------- traps


def generated(make_links: Callable[[str], list[str]]) -> Behaviour:
    """Every path answers with a page linking to `make_links(path)`: an infinite site."""

    async def behaviour(ex: Exchange) -> None:
        await respond(page(*make_links(ex.path)))(ex)

    return behaviour


def next_month(path: str) -> list[str]:
    month = int(path.partition("month=")[2] or 0)
    return [f"/cal?month={month + 1}"]


def new_session(path: str) -> list[str]:
    return [f"/shop?sid={random.getrandbits(64):016x}"]


def longer(path: str) -> list[str]:
    return [path.partition("?")[0] + "x" * 50]


@pytest.mark.parametrize(
    ("start", "links", "limits", "expected"),
    [
        pytest.param("/cal", next_month, {"max_depth": 5}, 6, id="calendar-by-depth"),
        pytest.param("/cal", next_month, {"host_budget": 7}, 7, id="calendar-by-budget"),
        pytest.param("/shop", new_session, {"max_depth": 3}, 4, id="session-ids-by-depth"),
        pytest.param("/shop", new_session, {"host_budget": 5}, 5, id="session-ids-by-budget"),
        # http://127.0.0.40:PORT/p is 25 characters, and each page adds 50: 4 fit in 180.
        pytest.param("/p", longer, {"max_url_length": 180}, 4, id="url-length"),
        # /a/b/, /a/b/a/b/, /a/b/a/b/a/b/: a fourth "a" is a trap.
        pytest.param("/a/b/", lambda p: ["a/b/"], {"repeat_segments": 3}, 3, id="repeats"),
    ],
)
async def test_traps_are_bounded(
    raw: MakeRaw,
    site: Site,
    db: str,
    start: str,
    links: Callable[[str], list[str]],
    limits: dict[str, int],
    expected: int,
) -> None:
    host = await raw()
    host.route("/robots.txt", not_found)
    host.fallback = generated(links)
    good, pages = await good_host(site)
    summary = await run(db, [host.url(start), good.url("/")], **limits)
    assert len(urls(db, f"host = '{host.origin}'")) == expected
    assert len([h for h in host.hits if h.path != "/robots.txt"]) == expected
    assert completed(db, summary, pages)


# ---------------------------------------------------------------------- bad input (CLI)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def crawl_db(path: Path, schema_version: int | None = None) -> Path:
    """A real crawl database (created by the crawler), optionally claiming a newer schema."""
    result = CliRunner().invoke(cli, ["crawl", "http://127.0.0.9:1/", "--db", str(path), "-q"])
    assert result.exit_code == 0, result.output
    if schema_version is not None:
        with sqlite3.connect(path) as conn:
            conn.execute(
                "INSERT INTO schema_migrations VALUES (?, '9999_future.sql', 0)",
                (schema_version,),
            )
        sqlite3.connect(path).close()
    return path


def some_sqlite(path: Path) -> Path:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes (x)")
    return path


BAD_INPUT: list[Any] = [
    pytest.param(["crawl", "not a url"], None, "invalid seed URL 'not a url'", id="seed-not-a-url"),
    pytest.param(["crawl", "ftp://x/"], None, "invalid seed URL 'ftp://x/'", id="seed-ftp"),
    pytest.param(
        ["crawl", "http://127.0.0.9:1/", "--config", "{tmp}"],
        None,
        "is a directory",
        id="config-is-a-directory",
    ),
    pytest.param(
        ["crawl", "http://127.0.0.9:1/", "--config", "{file}"],
        lambda p: p.write_text("per_host = [\n"),
        "invalid TOML in",
        id="config-invalid-toml",
    ),
    pytest.param(
        ["crawl", "http://127.0.0.9:1/", "--config", "{file}"],
        lambda p: p.write_text("colour = 'blue'\n"),
        "unknown setting 'colour'",
        id="config-unknown-key",
    ),
    pytest.param(
        ["crawl", "http://127.0.0.9:1/", "--db", "{file}"],
        lambda p: p.write_bytes(random.Random(3).randbytes(8192)),
        "is not a SQLite database",
        id="db-random-bytes",
    ),
    pytest.param(
        ["crawl", "http://127.0.0.9:1/", "--db", "{file}"],
        some_sqlite,
        "not a crawl database",
        id="db-other-sqlite",
    ),
    pytest.param(
        ["crawl", "http://127.0.0.9:1/", "--db", "{file}"],
        lambda p: crawl_db(p, schema_version=9999),
        "newer than this crawler understands",
        id="db-newer-schema",
    ),
    pytest.param(
        ["resume", "--db", "{file}"],
        lambda p: crawl_db(p, schema_version=9999),
        "newer than this crawler understands",
        id="resume-newer-schema",
    ),
    pytest.param(
        ["resume", "--db", "{file}"],
        lambda p: p.write_text("not a database\n"),
        "is not a SQLite database",
        id="resume-text-file",
    ),
    pytest.param(
        # A path under a regular file fails even for root, where a read-only mode would not.
        ["crawl", "http://127.0.0.9:1/", "--db", "{file}/crawl.db"],
        lambda p: p.write_text("i am a file\n"),
        "cannot open",
        id="db-directory-unusable",
    ),
]


@pytest.mark.parametrize(("args", "prepare", "message"), BAD_INPUT)
def test_bad_input_is_one_line_exit_2_and_the_file_untouched(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    prepare: Callable[[Path], Any] | None,
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)  # no ./config.toml from the repository
    target = tmp_path / "target"
    if prepare is not None:
        prepare(target)
    before = sorted(os.listdir(tmp_path))
    digest = sha256(target) if target.is_file() else None
    argv = [a.format(tmp=tmp_path, file=target) for a in args]
    result = CliRunner().invoke(cli, argv)

    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("crawler: error: "), result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.output
    assert sorted(os.listdir(tmp_path)) == before  # no database, journal or WAL appeared
    if digest is not None:
        assert sha256(target) == digest


def test_an_unreadable_config_is_one_line_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if os.geteuid() == 0:
        pytest.skip("running as root: permission bits do not stop root from reading the file")
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "config.toml"
    config.write_text("per_host = 1\n")
    config.chmod(0)
    result = CliRunner().invoke(cli, ["crawl", "http://127.0.0.9:1/", "--config", str(config)])
    assert result.exit_code == 2
    assert result.stderr.startswith("crawler: error: cannot read config file")
    assert len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "crawl.db").exists()


def test_a_read_only_directory_is_one_line_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if os.geteuid() == 0:
        pytest.skip(
            "running as root: a read-only directory does not stop root (see db-under-a-file)"
        )
    monkeypatch.chdir(tmp_path)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        result = CliRunner().invoke(cli, ["crawl", "http://127.0.0.9:1/", "--db", "locked/c.db"])
    finally:
        locked.chmod(0o755)
    assert result.exit_code == 2
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.output
    assert os.listdir(locked) == []


# ---------------------------------------------------------------------- signals and crashes


async def start_crawler(cwd: Path, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "crawler",
        *args,
        "--quiet",
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


def assert_stored_exactly_once(db: str, tree: TreeSite) -> None:
    assert rows(db, "SELECT count(*), count(DISTINCT url) FROM pages") == [(tree.n, tree.n)]
    assert urls(db, "status = 200 AND error IS NULL") == tree.reachable
    assert rows(db, "SELECT count(*) FROM urls WHERE state = 'queued'") == [(0,)]
    assert rows(db, "SELECT finished_at IS NOT NULL FROM crawl") == [(1,)]
    assert rows(db, "PRAGMA integrity_check") == [("ok",)]


async def test_sigterm_during_heavy_writing_then_resume(tmp_path: Path, db: str) -> None:
    tree = TreeSite(n=1500, pad=8_000, hold_after=400)
    await tree.start()
    try:
        proc = await start_crawler(
            tmp_path, "crawl", tree.url(0), "--db", db, "--per-host", "16", "--concurrency", "16"
        )
        await asyncio.wait_for(tree.reached(401), 30)  # 400 answered, the rest held
        proc.send_signal(signal.SIGTERM)
        tree.gate.set()  # let the open requests finish: a graceful stop waits for them
        _, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, err.decode()
        stored = rows(db, "SELECT count(*) FROM pages")[0][0]
        assert 400 <= stored < tree.n, err.decode()
        assert rows(db, "SELECT count(*) FROM urls WHERE state = 'queued'")[0][0] > 0

        proc = await start_crawler(tmp_path, "resume", "--db", db)
        _, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
        assert_stored_exactly_once(db, tree)
    finally:
        await tree.close()


async def test_kill_9_at_random_moments_then_resume(tmp_path: Path, db: str) -> None:
    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    tree = TreeSite(n=2000, pad=4_000)
    await tree.start()
    kills = 0
    try:
        args = ["crawl", tree.url(0), "--db", db, "--per-host", "8", "--concurrency", "8"]
        while kills < 3:
            proc = await start_crawler(tmp_path, *args)
            moment = asyncio.ensure_future(tree.reached(tree.hits + rng.randint(40, 300)))
            exited = asyncio.ensure_future(proc.wait())
            await asyncio.wait({moment, exited}, return_when=asyncio.FIRST_COMPLETED)
            if not moment.done():
                moment.cancel()
                break  # the crawl finished before the kill: counted below
            proc.kill()
            await exited
            kills += 1
            args = ["resume", "--db", db]
        assert kills == 3, f"the crawl ended after {kills} kills (random seed {seed})"
        proc = await start_crawler(tmp_path, "resume", "--db", db)
        _, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
        assert_stored_exactly_once(db, tree)
    finally:
        await tree.close()


# ---------------------------------------------------------------------- pooled connections


async def test_a_server_that_drops_idle_connections_costs_no_row(
    raw: MakeRaw, site: Site, db: str
) -> None:
    """Each connection is closed after its first response, without `Connection: close`:
    the next request on it dies unanswered and goes out once more on a new connection."""
    host = await raw()
    served: set[asyncio.StreamWriter] = set()

    async def drops_reused(ex: Exchange) -> None:
        if ex.writer in served:
            return  # the host closes the connection without a byte of answer
        served.add(ex.writer)
        await ex.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 0\r\n\r\n")
        ex.keep_alive = True

    host.fallback = drops_reused
    seeds = [host.url(f"/p{i}") for i in range(8)]
    good, pages = await good_host(site)
    summary = await run(db, [*seeds, good.url("/")], per_host=1, retries=2, ignore_robots=True)

    for url in seeds:
        assert page_row(db, url) == (200, None, 1)
    answered = sorted(hit.path for hit in host.hits if hit.sent)
    assert answered == sorted(f"/p{i}" for i in range(8))  # each path exactly once
    assert len(host.hits) > len(answered)  # and connections were dropped under requests
    assert completed(db, summary, pages)


async def test_a_server_that_resets_every_request_gets_each_retries_plus_one(
    raw: MakeRaw, site: Site, db: str
) -> None:
    host = await raw()
    host.fallback = slams
    seeds = [host.url(f"/p{i}") for i in range(4)]
    good, pages = await good_host(site)
    summary = await run(
        db, [*seeds, good.url("/")], per_host=1, retries=1, delay=0.0, ignore_robots=True
    )

    for i, url in enumerate(seeds):
        assert len(host.requests_for(f"/p{i}")) == 1 + 1  # not twice per attempt
        status, error, attempts = page_row(db, url)
        assert status is None and error.startswith("disconnected:") and attempts == 2
    assert completed(db, summary, pages)
