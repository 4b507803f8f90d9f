"""Request options (issue 14): headers, proxies, TLS, --accept-type, --time-limit, private
addresses and the User-Agent, against real servers on loopback.

Names (`site.test`) never reach the machine's DNS: they resolve through `--resolve`
(`RunOptions.resolve`), and the test proxy resolves them from the same table.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import sqlite3
import ssl
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
import yarl
from aiohttp import web
from support import Host, Site, assert_one_line_error, invoke, rows, settings, threaded_site

from crawler.errors import UsageError
from crawler.guard import Guard
from crawler.run import crawl, has_contact, resume
from crawler.runoptions import (
    RunOptions,
    parse_duration,
    parse_header,
    redacted_url,
    run_options,
)

SECRET = "s3cret-token-value"
PASSWORD = "pr0xy-passw0rd"


def page_rows(db: str) -> dict[str, tuple[Any, ...]]:
    return {
        r[0]: r[1:]
        for r in rows(db, "SELECT url, status, error, content_type, size, body FROM pages")
    }


def everything_in(db: str) -> str:
    """The whole database as SQL text: a secret stored anywhere shows up here."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return "\n".join(conn.iterdump())


# ---------------------------------------------------------------------- a forward proxy


@dataclass
class Proxy:
    """A small forwarding HTTP proxy (absolute-form requests), counting what it forwards."""

    ip: str = "127.0.0.9"
    names: dict[str, str] = field(default_factory=dict)  # the test's own name table
    seen: list[str] = field(default_factory=list)  # absolute URLs forwarded
    auth: list[str | None] = field(default_factory=list)  # Proxy-Authorization of each
    port: int = 0
    _runner: web.AppRunner | None = None
    _session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://{self.ip}:{self.port}"

    async def start(self) -> Proxy:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.ip, 0)
        await site.start()
        assert site._server is not None
        self.port = site._server.sockets[0].getsockname()[1]
        self._session = aiohttp.ClientSession(auto_decompress=False)
        return self

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        target = yarl.URL(request.raw_path)
        assert target.is_absolute(), "a proxy gets absolute-form requests"
        self.seen.append(str(target))
        self.auth.append(request.headers.get("Proxy-Authorization"))
        host = target.host or ""
        address = self.names.get(host, host)
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() not in ("proxy-authorization", "host", "connection")
        }
        headers["Host"] = target.raw_authority
        headers["Via"] = "1.1 test-proxy"
        assert self._session is not None
        async with self._session.get(
            target.with_host(address), headers=headers, allow_redirects=False
        ) as resp:
            body = await resp.read()
            kept = {
                k: v
                for k, v in resp.headers.items()
                if k.lower() not in ("transfer-encoding", "content-length", "connection")
            }
            return web.Response(status=resp.status, body=body, headers=kept)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def proxy() -> AsyncIterator[Proxy]:
    p = await Proxy().start()
    try:
        yield p
    finally:
        await p.close()


async def site_host(site: Site) -> Host:
    """A host whose requests are recorded: `/` links to `/a`; robots.txt disallows /no."""
    host = await site.host()
    host.page("/", links=["/a", "/no"])
    host.page("/a")
    host.page("/no")
    host.robots("User-agent: *\nDisallow: /no\n")
    return host


# ---------------------------------------------------------------------- headers


async def test_headers_arrive_with_every_request_robots_included(site: Site, db: str) -> None:
    host = await site_host(site)
    options = run_options(header=(f"X-Token: {SECRET}", "Accept-Language: fr"))
    summary = await crawl(db, settings(), [host.url("/")], options=options)
    assert summary.finished
    assert sorted(host.paths) == ["/", "/a", "/robots.txt"]
    assert all(h.headers["X-Token"] == SECRET for h in host.hits)
    assert all(h.headers["Accept-Language"] == "fr" for h in host.hits)
    assert SECRET not in everything_in(db)


# ---------------------------------------------------------------------- proxies


async def test_crawl_goes_only_through_the_proxy_robots_included(
    site: Site, proxy: Proxy, db: str
) -> None:
    host = await site_host(site)
    url = f"http://user:{PASSWORD}@{proxy.ip}:{proxy.port}"
    summary = await crawl(db, settings(), [host.url("/")], options=run_options(proxy=url))
    assert summary.finished
    assert sorted(proxy.seen) == sorted(host.url(p) for p in ("/", "/a", "/robots.txt"))
    # Everything the site got came from the proxy (which adds Via), credentials stayed there.
    assert len(host.hits) == 3 and all(h.headers.get("Via") == "1.1 test-proxy" for h in host.hits)
    assert all("Proxy-Authorization" not in h.headers for h in host.hits)
    expected = "Basic " + base64.b64encode(f"user:{PASSWORD}".encode()).decode()
    assert proxy.auth == [expected] * 3
    assert host.url("/no") not in page_rows(db)  # robots.txt, read through the proxy, obeyed
    assert PASSWORD not in everything_in(db)


async def test_proxy_env_uses_http_proxy_and_honours_no_proxy(
    site: Site,
    proxy: Proxy,
    db: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    host = await site_host(site)
    other = await site.host()
    other.page("/", links=[host.url("/")])
    for name in ("HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", other.ip)
    summary = await crawl(
        db, settings(scope="any"), [other.url("/")], options=run_options(proxy="env")
    )
    assert summary.finished
    assert sorted(proxy.seen) == sorted(host.url(p) for p in ("/", "/a", "/robots.txt"))
    assert other.requests_for("/") == 1  # NO_PROXY: direct
    # Without --proxy env the environment is not read: nothing goes through the proxy,
    # and the crawl says so rather than ignoring HTTP_PROXY silently.
    proxy.seen.clear()
    db2 = str(tmp_path / "direct.db")
    with caplog.at_level(logging.WARNING, logger="crawler"):
        assert (await crawl(db2, settings(), [host.url("/")])).finished
    assert proxy.seen == []
    assert "HTTP_PROXY/HTTPS_PROXY is set but not used: give --proxy env" in caplog.text


# ---------------------------------------------------------------------- secrets


def test_secrets_are_never_stored_nor_printed(in_tmp: Path) -> None:
    with threaded_site() as (site, thread):
        host = thread.call(site.host())
        stopped = thread.call(_event())
        host.page("/a")
        host.handle("/", _held_until(stopped, links=["/a"]))
        proxy = thread.call(Proxy(names={}).start())
        try:
            watch = _StopWatch(thread.loop, stopped)
            logging.getLogger("crawler").addHandler(watch)
            try:
                proxy_url = f"http://bob:{PASSWORD}@{proxy.ip}:{proxy.port}"
                secret_flags = ["--header", f"X-Token: {SECRET}", "--proxy", proxy_url]
                first = invoke(
                    "crawl", host.url("/"), "--db", "c.db", "-v", "--ignore-robots",
                    "--time-limit", "0.05s", *secret_flags,
                )  # fmt: skip
            finally:
                logging.getLogger("crawler").removeHandler(watch)
            assert first.exit_code == 0, first.stderr
            assert "crawl stopped: time limit of 0.05s reached" in first.stderr
            assert "give --header and --proxy again: they are not stored" in first.stderr
            second = invoke("resume", "--db", "c.db", "-v", *secret_flags)
            assert second.exit_code == 0, second.stderr
            shown = invoke("config", "--db", "c.db", *secret_flags)
            shown_json = invoke("config", "--json", *secret_flags)
        finally:
            thread.call(proxy.close())
    assert sorted(yarl.URL(u).path for u in proxy.seen) == ["/", "/a"]
    assert "X-Token: ***" in shown.stdout and f"bob:{PASSWORD}" not in shown.stdout
    assert '"http://***@127.0.0.9' in shown.stdout
    for text in (first.stdout + first.stderr, second.stdout + second.stderr, shown.stdout,
                 shown_json.stdout, everything_in(str(in_tmp / "c.db"))):  # fmt: skip
        assert SECRET not in text and PASSWORD not in text
    assert rows(str(in_tmp / "c.db"), "SELECT count(*) FROM pages WHERE status = 200") == [(2,)]


async def _event() -> asyncio.Event:
    return asyncio.Event()


class _StopWatch(logging.Handler):
    """Sets `event` (on the servers' loop) when the crawl logs that its time is up."""

    def __init__(self, loop: asyncio.AbstractEventLoop, event: asyncio.Event) -> None:
        super().__init__(logging.WARNING)
        self.loop = loop
        self.event = event

    def emit(self, record: logging.LogRecord) -> None:
        if "time limit" in record.getMessage():
            self.loop.call_soon_threadsafe(self.event.set)


def _held_until(event: asyncio.Event, links: list[str]) -> Any:
    """A page answered only once `event` is set (at most 10 s: then the test fails)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), 10)
        body = "".join(f'<a href="{h}">x</a>' for h in links)
        return web.Response(text=f"<html><body>{body}</body></html>", content_type="text/html")

    return handler


# ---------------------------------------------------------------------- --time-limit


async def test_time_limit_stops_gracefully_and_resume_finishes(site: Site, db: str) -> None:
    host = await site.host()
    stopped = asyncio.Event()
    host.handle("/", _held_until(stopped, links=["/a", "/b"]))
    host.page("/a")
    host.page("/b")
    watch = _StopWatch(asyncio.get_running_loop(), stopped)
    logging.getLogger("crawler").addHandler(watch)
    try:
        options = RunOptions(time_limit=0.05)
        summary = await crawl(db, settings(ignore_robots=True), [host.url("/")], options=options)
    finally:
        logging.getLogger("crawler").removeHandler(watch)
    assert stopped.is_set()
    assert summary.interrupted and not summary.finished
    assert summary.stopped_by == "time limit of 0.05s reached"
    assert host.requests_for("/a") == host.requests_for("/b") == 0  # nothing new started
    assert (await resume(db)).finished
    assert {u for u, r in page_rows(db).items() if r[0] == 200} == {
        host.url(p) for p in ("/", "/a", "/b")
    }


# ---------------------------------------------------------------------- --accept-type


async def test_accept_type_never_downloads_a_refused_body(site: Site, db: str) -> None:
    host = await site.host()
    host.page("/", links=["/big", "/doc.pdf", "/no"])
    host.page("/doc.pdf", body=b"%PDF-1.4", content_type="application/pdf")
    host.page("/no", body=b"never fetched", content_type="application/pdf")
    # robots.txt is text/plain, not accepted, yet read: /no stays unfetched.
    host.robots("User-agent: *\nDisallow: /no\n")
    total = 64 * 1024 * 1024
    sent = {"bytes": 0}
    done = asyncio.Event()

    async def big(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        resp.content_length = total
        await resp.prepare(request)
        chunk = b"x" * 65536
        try:
            while sent["bytes"] < total:
                await resp.write(chunk)
                sent["bytes"] += len(chunk)
        except ConnectionError:
            pass  # the client hung up: what it was sent is counted
        finally:
            done.set()
        return resp

    host.handle("/big", big)
    accept = ("text/html", "application/pdf")
    summary = await crawl(db, settings(accept_type=accept, max_bytes=2 * total), [host.url("/")])
    await asyncio.wait_for(done.wait(), 10)
    assert summary.finished and summary.not_downloaded == 1
    got = page_rows(db)
    status, error, content_type, size, body = got[host.url("/big")]
    assert (status, content_type, size, body) == (200, "application/octet-stream", None, None)
    assert error == (
        "not downloaded: content type application/octet-stream is not an --accept-type"
    )
    print(f"refused body: {sent['bytes']:,} of {total:,} bytes sent before the close")
    assert sent["bytes"] < total // 4  # at most what socket buffers took before the close
    assert got[host.url("/doc.pdf")][:2] == (200, None)
    assert host.url("/no") not in got and host.requests_for("/no") == 0


async def test_accept_type_exempts_sitemaps(site: Site, db: str) -> None:
    host = await site.host()
    host.robots("Sitemap: /sitemap.xml\n")
    host.page("/")
    host.page("/listed")
    sitemap = (
        '<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        f"<url><loc>{host.url('/listed')}</loc></url></urlset>"
    )
    host.page("/sitemap.xml", body=sitemap, content_type="application/xml")
    summary = await crawl(db, settings(accept_type=("text/html",)), [host.url("/")])
    assert summary.finished and summary.not_downloaded == 0
    assert page_rows(db)[host.url("/listed")][:2] == (200, None)  # found in the sitemap


@pytest.mark.parametrize(
    ("content_type", "accept", "ok"),
    [
        pytest.param("text/html; charset=utf-8", ("text/html",), True, id="params-ignored"),
        pytest.param("TEXT/HTML", ("text/html",), True, id="case"),
        pytest.param("image/png", ("image/*",), True, id="wildcard"),
        pytest.param("image/png", ("text/*",), False, id="other-wildcard"),
        pytest.param("", ("text/html",), False, id="none-is-octet-stream"),
        pytest.param("", ("application/octet-stream",), True, id="none-accepted-as-octets"),
        pytest.param("video/mp4", ("*/*",), True, id="everything"),
    ],
)
def test_accepts(content_type: str, accept: tuple[str, ...], ok: bool) -> None:
    from crawler.network import accepts

    class Head:
        headers = {"Content-Type": content_type} if content_type else {}

    assert accepts(accept, Head()) is ok  # type: ignore[arg-type]


# ---------------------------------------------------------------------- TLS


@contextlib.asynccontextmanager
async def tls_host(
    site: Site, ca: trustme.CA, ip: str, seen: list[dict[str, str]] | None = None
) -> AsyncIterator[str]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(ip).configure_cert(context)
    app = web.Application()

    async def page(request: web.Request) -> web.Response:
        if seen is not None:
            seen.append(dict(request.headers))
        return web.Response(text="<html>secure</html>", content_type="text/html")

    app.router.add_get("/", page)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    tcp = web.TCPSite(runner, ip, 0, ssl_context=context)
    await tcp.start()
    assert tcp._server is not None
    try:
        yield f"https://{ip}:{tcp._server.sockets[0].getsockname()[1]}/"
    finally:
        await runner.cleanup()


async def test_insecure_and_ca_bundle_against_a_self_signed_server(
    site: Site, tmp_path: Path
) -> None:
    ca = trustme.CA()
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    async with tls_host(site, ca, "127.0.0.12") as url:
        results = {}
        for name, extra in (
            ("default", {}),
            ("insecure", {"insecure": True}),
            ("ca_bundle", {"ca_bundle": str(bundle)}),
        ):
            db = str(tmp_path / f"{name}.db")
            await crawl(db, settings(ignore_robots=True, **extra), [url])
            results[name] = page_rows(db)[url][:2]
    assert results["default"][0] is None and results["default"][1].startswith("tls: ")
    assert results["insecure"] == (200, None)
    assert results["ca_bundle"] == (200, None)


class Tunnel:
    """A CONNECT proxy (what https goes through): records each CONNECT, then pipes bytes."""

    def __init__(self, ip: str = "127.0.0.10") -> None:
        self.ip = ip
        self.connects: list[tuple[str, str | None]] = []  # (target, Proxy-Authorization)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> Tunnel:
        self._server = await asyncio.start_server(self._handle, self.ip, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        up_writer = None
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            method, target, _ = head[0].split(" ")
            fields = dict(line.split(": ", 1) for line in head[1:] if line)
            self.connects.append((target, fields.get("Proxy-Authorization")))
            assert method == "CONNECT"
            host, port = target.rsplit(":", 1)
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                if w is not None:
                    w.close()
            self._tasks.discard(task)

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(OSError):
        writer.write_eof()


async def test_https_goes_through_a_connect_tunnel_credentials_to_the_proxy_only(
    site: Site, db: str, tmp_path: Path
) -> None:
    ca = trustme.CA()
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    tunnel = await Tunnel().start()
    seen: list[dict[str, str]] = []
    try:
        async with tls_host(site, ca, "127.0.0.13", seen) as url:
            options = run_options(proxy=f"http://u:{PASSWORD}@{tunnel.ip}:{tunnel.port}")
            summary = await crawl(db, settings(ca_bundle=str(bundle)), [url], options=options)
    finally:
        await tunnel.close()
    assert summary.finished
    assert page_rows(db)[url][:2] == (200, None)
    target = yarl.URL(url).raw_authority
    expected = "Basic " + base64.b64encode(f"u:{PASSWORD}".encode()).decode()
    assert tunnel.connects and all(c == (target, expected) for c in tunnel.connects)
    assert len(seen) == 1  # the page (robots.txt got the router's 404 unrecorded)
    assert all("Proxy-Authorization" not in h for h in seen)


def test_insecure_and_ca_bundle_exclude_each_other(in_tmp: Path) -> None:
    (in_tmp / "ca.pem").write_text("not a certificate")
    bad = invoke("crawl", "http://127.0.0.2/", "--ca-bundle", "ca.pem")
    assert_one_line_error(bad, "ca_bundle ca.pem: cannot load certificates")
    both = invoke("crawl", "http://127.0.0.2/", "--ca-bundle", "ca.pem", "--insecure")
    assert_one_line_error(both, "insecure and ca_bundle exclude each other")
    assert not (in_tmp / "crawl.db").exists()


# ---------------------------------------------------------------------- private addresses


async def two_hosts(site: Site) -> tuple[Host, Host]:
    """site.test (127.0.0.2) links to evil.test (127.0.0.3), to 127.0.0.3 itself and to
    169.254.169.254, the cloud metadata address."""
    home = await site.host()
    evil = await site.host()
    evil.page("/")
    home.page(
        "/",
        links=[
            f"http://evil.test:{evil.port}/",
            evil.url("/lit"),
            "http://169.254.169.254/latest/meta-data/",
        ],
    )
    return home, evil


def names(home: Host, evil: Host) -> RunOptions:
    return run_options(resolve=(f"site.test:{home.ip}", f"evil.test:{evil.ip}"))


async def test_private_addresses_are_refused_beyond_the_seeds(site: Site, db: str) -> None:
    home, evil = await two_hosts(site)
    seed = f"http://site.test:{home.port}/"
    summary = await crawl(db, settings(scope="any"), [seed], options=names(home, evil))
    assert summary.finished
    got = page_rows(db)
    assert got[seed][0] == 200  # a seed's own name: the user's choice
    assert evil.hits == []  # nothing was sent, robots.txt included
    assert got[f"http://evil.test:{evil.port}/"][:2] == (
        None,
        "private address: evil.test resolves to 127.0.0.3, a loopback address "
        "(--allow-private allows it)",
    )
    assert got[evil.url("/lit")][:2] == (
        None,
        "private address: 127.0.0.3 is a loopback address (--allow-private allows it)",
    )
    assert got["http://169.254.169.254/latest/meta-data/"][:2] == (
        None,
        "private address: 169.254.169.254 is a link-local address (--allow-private allows it)",
    )
    kinds = dict(rows(db, "SELECT substr(error, 1, 15), count(*) FROM pages GROUP BY 1"))
    assert kinds == {None: 1, "private address": 3}


async def test_a_loopback_seed_opens_loopback_but_never_link_local(site: Site, db: str) -> None:
    home, evil = await two_hosts(site)
    summary = await crawl(db, settings(scope="any"), [home.url("/")], options=names(home, evil))
    assert summary.finished
    got = page_rows(db)
    assert got[f"http://evil.test:{evil.port}/"][0] == 200
    assert got[evil.url("/lit")][0] == 404  # reached: the server answered
    assert got["http://169.254.169.254/latest/meta-data/"][1].startswith("private address: ")


async def test_allow_private_opens_every_address(site: Site, db: str) -> None:
    home, evil = await two_hosts(site)
    home.page("/", links=[f"http://evil.test:{evil.port}/"])  # no link-local: never dialled
    seed = f"http://site.test:{home.port}/"
    options = names(home, evil)
    summary = await crawl(db, settings(scope="any", allow_private=True), [seed], options=options)
    assert summary.finished
    assert page_rows(db)[f"http://evil.test:{evil.port}/"][0] == 200


async def test_link_local_seed_is_refused_even_with_scope_host(db: str) -> None:
    # Refused before any connection: this test sends nothing beyond loopback.
    seed = "http://169.254.169.254/latest/meta-data/"
    assert (await crawl(db, settings(), [seed])).finished
    assert page_rows(db)[seed][1].startswith("private address: 169.254.169.254 is a link-local")


async def test_through_a_proxy_the_target_is_resolved_and_checked_first(
    site: Site, proxy: Proxy, db: str
) -> None:
    home, evil = await two_hosts(site)
    proxy.names.update({"site.test": home.ip, "evil.test": evil.ip})
    seed = f"http://site.test:{home.port}/"
    options = run_options(proxy=proxy.url, resolve=(f"site.test:{home.ip}", f"evil.test:{evil.ip}"))
    summary = await crawl(db, settings(scope="any"), [seed], options=options)
    assert summary.finished
    assert {yarl.URL(u).host for u in proxy.seen} == {"site.test"}
    assert page_rows(db)[f"http://evil.test:{evil.port}/"][1].startswith(
        "private address: evil.test resolves to 127.0.0.3"
    )


@pytest.mark.parametrize(
    ("seeds", "host", "address", "refused"),
    [
        pytest.param([], "a.test", "10.0.0.1", True, id="private"),
        pytest.param([], "a.test", "192.168.1.1", True, id="private-192"),
        pytest.param([], "a.test", "::1", True, id="loopback-v6"),
        pytest.param([], "a.test", "::ffff:127.0.0.1", True, id="v4-mapped"),
        pytest.param([], "a.test", "0.0.0.0", True, id="unspecified"),
        pytest.param([], "a.test", "fe80::1", True, id="link-local-v6"),
        pytest.param([], "a.test", "93.184.216.34", False, id="public"),
        pytest.param(["10.1.2.3"], "a.test", "10.200.0.1", False, id="seed-opens-its-range"),
        pytest.param(["10.1.2.3"], "a.test", "192.168.0.1", True, id="only-its-range"),
        pytest.param(["a.test"], "a.test", "10.0.0.1", False, id="seed-name"),
        pytest.param(["a.test"], "a.test", "169.254.169.254", True, id="seed-name-link-local"),
        pytest.param(["169.254.1.1"], "x", "169.254.169.254", True, id="link-local-seed"),
    ],
)
def test_guard(seeds: list[str], host: str, address: str, refused: bool) -> None:
    guard = Guard.for_crawl(seeds, allow_private=False)
    assert (guard.refusal(host, address) is not None) is refused
    assert Guard.for_crawl(seeds, allow_private=True).refusal(host, address) is None


# ---------------------------------------------------------------------- User-Agent


async def test_a_user_agent_without_contact_logs_one_warning(
    site: Site, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    host = await site.host()
    host.page("/")
    with caplog.at_level(logging.WARNING, logger="crawler"):
        await crawl(str(tmp_path / "a.db"), settings(), [host.url("/")])
    warned = [r for r in caplog.records if "names no contact" in r.getMessage()]
    assert len(warned) == 1
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="crawler"):
        own = settings(user_agent="mybot/1.0 (+https://me.example/bot)")
        await crawl(str(tmp_path / "b.db"), own, [host.url("/")])
    assert not [r for r in caplog.records if "names no contact" in r.getMessage()]


@pytest.mark.parametrize(
    ("agent", "ok"),
    [
        pytest.param("crawler/0.1.0 (+https://github.com/crawler/crawler)", False, id="default"),
        pytest.param("mybot/1.0", False, id="bare"),
        pytest.param("mybot/1.0 (+https://me.example/bot)", True, id="url"),
        pytest.param("mybot/1.0 (ops@me.example)", True, id="email"),
        pytest.param(
            "crawler/0.1.0 (+https://github.com/crawler/crawler; a@b.example)",
            True,
            id="default-plus-email",
        ),
    ],
)
def test_has_contact(agent: str, ok: bool) -> None:
    assert has_contact(agent) is ok


def test_default_user_agent_names_the_version() -> None:
    from crawler import __version__
    from crawler.config import Settings

    assert Settings().user_agent.startswith(f"crawler/{__version__} (+https://")


# ---------------------------------------------------------------------- option parsing


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90.0), ("15m", 900.0), ("2h", 7200.0), ("1d", 86400.0), ("30", 30.0), ("0.5s", 0.5)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        pytest.param(["--time-limit", "5x"], "--time-limit must be a positive duration", id="dur"),
        pytest.param(["--time-limit", "0s"], "--time-limit must be a positive duration", id="0"),
        pytest.param(["--header", "no colon"], "--header must be 'Name: value'", id="header"),
        pytest.param(["--header", "User-Agent: x"], "use --user-agent", id="header-ua"),
        pytest.param(["--proxy", "socks5://127.0.0.9:1"], "--proxy must be an http", id="proxy"),
        pytest.param(["--resolve", "a.test"], "--resolve must be HOST:ADDRESS", id="resolve"),
        pytest.param(["--accept-type", "html"], "accept_type must be a media type", id="accept"),
    ],
)
def test_bad_request_options_are_one_line_and_exit_2(
    in_tmp: Path, args: list[str], fragment: str
) -> None:
    result = invoke("crawl", "http://127.0.0.2/", *args)
    assert_one_line_error(result, fragment)
    assert not (in_tmp / "crawl.db").exists()


def test_a_bad_header_never_echoes_its_value() -> None:
    with pytest.raises(UsageError) as err:
        parse_header(f"Bad Name: {SECRET}")
    assert SECRET not in str(err.value)
    assert parse_header("X-A:  b c ") == ("X-A", "b c")


def test_redacted_url() -> None:
    assert redacted_url(f"http://u:{PASSWORD}@p:1/") == "http://***@p:1/"
    assert redacted_url("http://p:1") == "http://p:1"


def test_stored_settings_never_hold_run_options(tmp_path: Path) -> None:
    # The run's own options are not Settings fields at all: nothing can store them.
    from crawler.config import SETTING_NAMES

    assert not {"header", "proxy", "resolve", "time_limit"} & set(SETTING_NAMES)


# ---------------------------------------------------------------------- PostgreSQL


async def test_postgres_store_keeps_no_secret_and_records_refused_bodies(
    site: Site, proxy: Proxy, pg_dsn: str
) -> None:
    import asyncpg

    host = await site.host()
    host.page("/", links=["/file.bin"])
    host.page("/file.bin", body=b"\0" * 1000, content_type="application/octet-stream")
    options = run_options(
        header=(f"X-Token: {SECRET}",), proxy=f"http://u:{PASSWORD}@{proxy.ip}:{proxy.port}"
    )
    s = settings(accept_type=("text/html",))
    summary = await crawl(pg_dsn, s, [host.url("/")], options=options)
    assert summary.finished and summary.not_downloaded == 1
    assert all(h.headers["X-Token"] == SECRET for h in host.hits) and len(proxy.seen) == 3
    conn = await asyncpg.connect(pg_dsn)
    try:
        row = await conn.fetchrow(
            "SELECT status, error, content_type, size FROM pages WHERE url = $1",
            host.url("/file.bin"),
        )
        stored = await conn.fetchval("SELECT settings FROM crawl")
    finally:
        await conn.close()
    assert tuple(row) == (
        200,
        "not downloaded: content type application/octet-stream is not an --accept-type",
        "application/octet-stream",
        None,
    )
    assert '"accept_type": ["text/html"]' in stored
    assert SECRET not in stored and PASSWORD not in stored


async def test_time_limit_with_processes_stops_every_child(site: Site, tmp_path: Path) -> None:
    """Each child keeps the deadline itself (a signal could kill a child still starting);
    the home pages are held until both children have said their time is up."""
    hosts = [await site.host() for _ in range(2)]
    stopped = asyncio.Event()
    for host in hosts:
        host.handle("/", _held_until(stopped, links=["/a"]))
        host.page("/a")
    db = str(tmp_path / "crawl.db")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "crawler", "crawl", *(h.url("/") for h in hosts), "--db", db,
        "--processes", "2", "--ignore-robots", "--retries", "0", "--time-limit", "0.05s",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert proc.stderr is not None
    lines: list[str] = []

    async def read() -> int:
        assert proc.stderr is not None
        while line := await proc.stderr.readline():
            lines.append(line.decode().rstrip("\n"))
            if sum("time limit of 0.05s reached: stopping" in x for x in lines) == 2:
                stopped.set()
        return await proc.wait()

    try:
        code = await asyncio.wait_for(read(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert code == 0, lines
    assert "crawl stopped: time limit of 0.05s reached" in lines
    assert all(h.requests_for("/a") == 0 for h in hosts)
    assert (await resume(db)).finished
    assert len([r for r in page_rows(db).values() if r[0] == 200]) == 4


# ---------------------------------------------------------------------- Python API


async def test_python_api_takes_the_run_options(site: Site, db: str) -> None:
    from crawler.api import acrawl

    host = await site.host()
    host.page("/")
    summary = await acrawl(
        host.url("/"), db, header=f"X-Token: {SECRET}", time_limit="1h", ignore_robots=True
    )
    assert summary.finished
    assert host.hits[0].headers["X-Token"] == SECRET
    assert SECRET not in everything_in(db)
    with pytest.raises(UsageError, match="--time-limit must be a positive duration"):
        await acrawl(host.url("/"), db, time_limit="soon")
