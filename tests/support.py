"""Test support: tiny websites served by real aiohttp servers on several 127.0.0.x hosts.

A test describes a site (`host.page("/a", links=["/b"])`, `host.redirect(...)`,
`host.robots(...)`), crawls it for real over loopback and asserts on the SQLite rows.
Each `Host` records every request (path, arrival, start, end) and how many were open at
once, per host and across the whole `Site`, so politeness is measured, not assumed.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web
from click.testing import CliRunner, Result
from stamps import StampingListener, arrival, listener

from crawler.cli import cli
from crawler.config import Settings
from crawler.records import Summary
from crawler.run import crawl, resume

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Hit:
    path: str
    start: float  # when the handler ran
    end: float | None = None
    headers: dict[str, str] = field(default_factory=dict)  # the request's, as received
    arrived: float = 0.0  # when its bytes reached the server's socket (stamps.arrival)


@dataclass
class Host:
    """One site on one loopback address; add pages before crawling."""

    site: Site
    ip: str
    routes: dict[str, Handler] = field(default_factory=dict)
    hits: list[Hit] = field(default_factory=list)
    open: int = 0
    max_open: int = 0
    port: int = 0
    hold: float = 0.0  # seconds every response is held (to make requests overlap)
    listener: StampingListener | None = None
    scheme: str = "http"

    @property
    def origin(self) -> str:
        return f"{self.scheme}://{self.ip}:{self.port}"

    def url(self, path: str = "/") -> str:
        return self.origin + path

    def page(
        self,
        path: str,
        links: Iterable[str] = (),
        *,
        status: int = 200,
        body: str | bytes | None = None,
        content_type: str = "text/html; charset=utf-8",
        headers: dict[str, str] | None = None,
    ) -> None:
        """A page whose body links to `links` (relative or absolute hrefs)."""
        if body is None:
            anchors = "".join(f'<a href="{href}">{href}</a>\n' for href in links)
            body = f"<html><head><title>{path}</title></head><body>{anchors}</body></html>"
        payload = body.encode() if isinstance(body, str) else body

        async def handler(request: web.Request) -> web.StreamResponse:
            return web.Response(
                status=status,
                body=payload,
                headers={"Content-Type": content_type, **(headers or {})},
            )

        self.routes[path] = handler

    def redirect(self, path: str, to: str, status: int = 301) -> None:
        async def handler(request: web.Request) -> web.StreamResponse:
            return web.Response(status=status, headers={"Location": to})

        self.routes[path] = handler

    def robots(self, text: str, status: int = 200) -> None:
        self.page("/robots.txt", body=text, status=status, content_type="text/plain")

    def handle(self, path: str, handler: Handler) -> None:
        """A custom handler (hostile servers, slow bodies...)."""
        self.routes[path] = handler

    def requests_for(self, path: str) -> int:
        return sum(1 for h in self.hits if h.path == path)

    @property
    def paths(self) -> list[str]:
        return [h.path for h in self.hits]

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path_qs if request.query_string else request.path
        hit = Hit(path, time.monotonic(), headers=dict(request.headers))
        hit.arrived = hit.start
        if self.listener is not None:
            hit.arrived = min(hit.start, arrival(request, self.listener.conns))
        self.hits.append(hit)
        self.open += 1
        self.site.open += 1
        self.max_open = max(self.max_open, self.open)
        self.site.max_open = max(self.site.max_open, self.site.open)
        try:
            if self.hold:
                await asyncio.sleep(self.hold)  # server behaviour: a slow response
            handler = self.routes.get(path) or self.routes.get(request.path)
            if handler is None:
                return web.Response(status=404, text="not found")
            return await handler(request)
        finally:
            self.open -= 1
            self.site.open -= 1
            hit.end = time.monotonic()


@dataclass
class Site:
    """Several hosts on distinct loopback addresses, with shared counters."""

    hosts: list[Host] = field(default_factory=list)
    runners: list[web.AppRunner] = field(default_factory=list)
    open: int = 0
    max_open: int = 0

    async def host(
        self, ip: str | None = None, *, port: int = 0, tls: ssl.SSLContext | None = None
    ) -> Host:
        """Start a server on a fresh 127.0.0.x address (x = 2, 3, ...), on a free port
        unless one is given; https with `tls`."""
        ip = ip or f"127.0.0.{len(self.hosts) + 2}"
        host = Host(site=self, ip=ip, scheme="https" if tls else "http")
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", host._dispatch)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            sock = host.listener = listener(ip, port)
        except OSError:  # a port taken, or one below 1024 without the right
            await runner.cleanup()
            raise
        await web.SockSite(runner, sock, ssl_context=tls).start()
        host.port = sock.getsockname()[1]
        self.runners.append(runner)
        self.hosts.append(host)
        return host

    async def close(self) -> None:
        for runner in self.runners:
            await runner.cleanup()


def settings(**overrides: Any) -> Settings:
    """Test defaults: fast, small, everything else as shipped."""
    base: dict[str, Any] = {"concurrency": 8, "per_host": 2, "timeout": 5.0, "retries": 0}
    return Settings(**(base | overrides))


async def run(db: str, seeds: list[str], **overrides: Any) -> Summary:
    return await crawl(db, settings(**overrides), seeds)


async def run_resume(db: str, **overrides: Any) -> Summary:
    return await resume(db, overrides or None)


def rows(db: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, args).fetchall()


def urls(db: str, where: str = "1") -> set[str]:
    return {r[0] for r in rows(db, f"SELECT url FROM pages WHERE {where}")}


T = TypeVar("T")


class LoopThread:
    """An event loop in a background thread, for servers that must keep serving while the
    test's own thread is busy: click's CliRunner (whose crawl runs its own loop with
    `asyncio.Runner`) or a crawler subprocess the test is waiting on."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="servers", daemon=True)
        self._thread.start()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        """Run `coro` on the thread's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10.0)
        self.loop.close()


@contextlib.contextmanager
def threaded_site() -> Iterator[tuple[Site, LoopThread]]:
    """A `Site` served from a `LoopThread`: `host = thread.call(site.host())`, then
    `host.page(...)` as usual, then run the CLI in the test's thread."""
    thread = LoopThread()
    site = Site()
    try:
        yield site, thread
    finally:
        try:
            thread.call(site.close())
        finally:
            thread.close()


async def broken_body(request: web.Request) -> web.StreamResponse:
    """Promises 1000 bytes, sends 11, hangs up: a network error row (status NULL)."""
    resp = web.StreamResponse(headers={"Content-Type": "text/html"})
    resp.content_length = 1000
    await resp.prepare(request)
    await resp.write(b"<html>short")
    assert request.transport is not None
    request.transport.close()
    return resp


def assert_one_line_error(result: Any, *fragments: str, code: int = 2) -> str:
    """A CLI failure as the contract says: exit code, one `crawler: error:` line, no traceback."""
    assert result.exit_code == code, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("crawler: error: ")
    for fragment in fragments:
        assert fragment in lines[0]
    assert "Traceback" not in result.stdout + result.stderr
    return str(lines[0])


def invoke(*args: str, input: str | None = None) -> Result:
    """The CLI run in-process by click's CliRunner, as `crawler ARGS...`."""
    return CliRunner().invoke(
        cli, list(args), input=input, catch_exceptions=False, prog_name="crawler"
    )
