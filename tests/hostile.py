"""Hostile servers: raw asyncio TCP servers that misbehave on purpose, where aiohttp cannot.

A `RawHost` listens on its own 127.0.0.x address and answers each request with a
`Behaviour`: a coroutine that gets the parsed request and the raw socket and may do
anything a broken or malicious server does (never answer, drip bytes, lie about
lengths, break chunked framing, reset mid-body, send bombs). Unknown paths get a 404,
so /robots.txt means "no rules" unless a test says otherwise. Every request is recorded
server-side (`RawHit`: start, end, bytes sent, whether the client dropped us), and a test
awaits `host.reached(n)` instead of sleeping.

`TreeSite` is the opposite: a well-behaved aiohttp server generating a large site of
numbered pages (for signal and crash tests run against a crawler subprocess).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import ssl
import struct
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import brotli
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult


@dataclass
class RawHit:
    path: str
    start: float
    end: float | None = None
    sent: int = 0  # response bytes the kernel accepted from us
    dropped: bool = False  # the client closed or reset the connection while we were writing
    done: asyncio.Event = field(default_factory=asyncio.Event)  # the behaviour has returned


@dataclass
class Exchange:
    """One request on a raw connection, and the means to answer it badly."""

    method: str
    path: str
    headers: dict[str, str]
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    hit: RawHit
    host_closing: asyncio.Event
    keep_alive: bool = False  # set by a behaviour to read another request afterwards

    async def send(self, data: bytes) -> None:
        """Write and wait until the kernel took it; a client that left raises ConnectionError."""
        self.writer.write(data)
        await self.writer.drain()
        self.hit.sent += len(data)

    async def client_gone(self) -> None:
        """Return once the client closes its side (the crawler gave up on us)."""
        with contextlib.suppress(ConnectionError):
            while await self.reader.read(65_536):
                pass

    def reset(self) -> None:
        """Close with a TCP RST instead of a FIN (SO_LINGER 0)."""
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()


Behaviour = Callable[[Exchange], Awaitable[None]]


@dataclass
class RawHost:
    """A raw TCP server on one loopback address; add behaviours per path before crawling."""

    ip: str
    port: int = 0
    scheme: str = "http"
    routes: dict[str, Behaviour] = field(default_factory=dict)
    fallback: Behaviour | None = None  # for paths without a route (None: 404)
    hits: list[RawHit] = field(default_factory=list)
    server: asyncio.Server | None = None
    closing: asyncio.Event = field(default_factory=asyncio.Event)
    _waiters: list[tuple[int, asyncio.Future[None]]] = field(default_factory=list)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    @property
    def origin(self) -> str:
        return f"{self.scheme}://{self.ip}:{self.port}"

    def url(self, path: str = "/") -> str:
        return self.origin + path

    def route(self, path: str, behaviour: Behaviour) -> None:
        self.routes[path] = behaviour

    def requests_for(self, path: str) -> list[RawHit]:
        return [h for h in self.hits if h.path == path]

    async def reached(self, n: int) -> None:
        """Wait until this host has received `n` requests."""
        if len(self.hits) >= n:
            return
        future = asyncio.get_running_loop().create_future()
        self._waiters.append((n, future))
        await future

    async def start(self, tls: ssl.SSLContext | None = None) -> None:
        self.server = await asyncio.start_server(self._serve, self.ip, 0, ssl=tls)
        self.port = self.server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        # Aborting the sockets ends every behaviour (reads see EOF, writes fail); cancelling
        # the handler tasks instead trips a Python 3.11 bug in asyncio's stream callbacks.
        self.closing.set()
        if self.server is not None:
            self.server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        if self.server is not None:
            await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while await self._one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except ssl.SSLError:
            pass  # a client that rejects our certificate
        finally:
            self._writers.discard(writer)
            writer.transport.abort()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        first = await reader.readexactly(1)
        if first == b"\x16" and writer.get_extra_info("sslcontext") is None:
            # A TLS ClientHello sent to plain HTTP: answer as nginx does, in plain text.
            writer.write(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")
            await writer.drain()
            return False
        head = first + await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        hit = RawHit(path, time.monotonic())
        self.hits.append(hit)
        for n, future in list(self._waiters):
            if len(self.hits) >= n and not future.done():
                future.set_result(None)
                self._waiters.remove((n, future))
        exchange = Exchange(method, path, headers, reader, writer, hit, self.closing)
        behaviour = (
            self.routes.get(path)
            or self.routes.get(path.partition("?")[0])
            or self.fallback
            or not_found
        )
        try:
            await behaviour(exchange)
        except ConnectionError:
            hit.dropped = True
        finally:
            hit.end = time.monotonic()
            hit.done.set()
        return exchange.keep_alive


# ---------------------------------------------------------------------- behaviours


def head(status: str, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def respond(
    body: bytes | str = b"",
    *,
    status: str = "200 OK",
    content_type: str = "text/html; charset=utf-8",
    headers: dict[str, str] | None = None,
    keep_alive: bool = False,
) -> Behaviour:
    """A correct response (to mix well-behaved pages into a hostile host)."""
    payload = body.encode() if isinstance(body, str) else body

    async def behaviour(ex: Exchange) -> None:
        fields = {"Content-Type": content_type, "Content-Length": str(len(payload))}
        fields["Connection"] = "keep-alive" if keep_alive else "close"
        await ex.send(head(status, fields | (headers or {})) + payload)
        ex.keep_alive = keep_alive

    return behaviour


not_found = respond(b"not found", status="404 Not Found", content_type="text/plain")


def page(*links: str) -> bytes:
    anchors = "".join(f'<a href="{href}">{href}</a>\n' for href in links)
    return f"<html><body>{anchors}</body></html>".encode()


def sequence(*behaviours: Behaviour) -> Behaviour:
    """The n-th request gets the n-th behaviour; the last one answers every later request."""
    calls = 0

    async def behaviour(ex: Exchange) -> None:
        nonlocal calls
        calls += 1
        await behaviours[min(calls, len(behaviours)) - 1](ex)

    return behaviour


async def slams(ex: Exchange) -> None:
    """Reset the connection without a byte of response."""
    ex.reset()


async def never_answers(ex: Exchange) -> None:
    """Accept, read the request, then say nothing until the client hangs up."""
    await ex.client_gone()


async def drips(ex: Exchange) -> None:
    """A valid start, then one byte a second for ever (the sleep *is* the server's behaviour)."""
    await ex.send(head("200 OK", {"Content-Type": "text/html", "Content-Length": "1000000"}))
    while True:
        await ex.send(b"x")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ex.host_closing.wait(), 1.0)


def wrong_length(claimed: int, actual: bytes, *, keep_alive: bool = False) -> Behaviour:
    """Content-Length says `claimed`, the body is `actual`; then close (or keep the socket)."""

    async def behaviour(ex: Exchange) -> None:
        fields = {"Content-Type": "text/html", "Content-Length": str(claimed)}
        await ex.send(head("200 OK", fields) + actual)
        if keep_alive:
            ex.keep_alive = True

    return behaviour


async def bad_chunked(ex: Exchange) -> None:
    fields = {"Content-Type": "text/html", "Transfer-Encoding": "chunked"}
    await ex.send(head("200 OK", fields) + b"5\r\nhello\r\nzz-not-hex\r\nboom\r\n")


async def bad_status_line(ex: Exchange) -> None:
    await ex.send(b"HTTP/1.1 OK-ish whatever\r\nContent-Length: 2\r\n\r\nhi")


async def resets_mid_body(ex: Exchange) -> None:
    fields = {"Content-Type": "text/html", "Content-Length": "100000"}
    await ex.send(head("200 OK", fields) + b"<html>" + b"a" * 5_000)
    ex.reset()


def huge(size: int, chunk: int = 65_536) -> Behaviour:
    """`size` bytes of body with a correct Content-Length, written as fast as the client reads."""
    block = b"<p>" + b"x" * (chunk - 3)

    async def behaviour(ex: Exchange) -> None:
        fields = {"Content-Type": "text/html", "Content-Length": str(size)}
        await ex.send(head("200 OK", fields))
        left = size
        while left > 0:
            await ex.send(block[: min(chunk, left)])
            left -= chunk

    return behaviour


@functools.lru_cache
def bomb_payload(encoding: str, megabytes: int) -> bytes:
    """`megabytes` MiB of zeros compressed as gzip, deflate (zlib) or br, built chunk by chunk."""
    zeros = b"\0" * (1 << 20)
    if encoding == "br":
        compressor = brotli.Compressor(quality=5)
        parts = [compressor.process(zeros) for _ in range(megabytes)]
        return b"".join(parts) + compressor.finish()
    wbits = 31 if encoding == "gzip" else 15  # 31: gzip wrapper, 15: zlib (HTTP "deflate")
    deflater = zlib.compressobj(6, zlib.DEFLATED, wbits)
    parts = [deflater.compress(zeros) for _ in range(megabytes)]
    return b"".join(parts) + deflater.flush()


def bomb(encoding: str, megabytes: int) -> Behaviour:
    """A small body that decodes to `megabytes` MiB: a decompression bomb."""
    payload = bomb_payload(encoding, megabytes)

    async def behaviour(ex: Exchange) -> None:
        fields = {
            "Content-Type": "application/octet-stream",
            "Content-Encoding": encoding,
            "Content-Length": str(len(payload)),
        }
        await ex.send(head("200 OK", fields) + payload)

    return behaviour


async def raw_hosts(n: int, first: int = 40) -> list[RawHost]:
    hosts = []
    for i in range(n):
        host = RawHost(f"127.0.0.{first + i}")
        await host.start()
        hosts.append(host)
    return hosts


# ---------------------------------------------------------------------- name resolution


class Resolver(AbstractResolver):
    """Names the test chose -> loopback addresses; any other name fails like NXDOMAIN."""

    def __init__(self, names: dict[str, str]) -> None:
        self.names = names
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        ip = self.names.get(host)
        if ip is None:
            raise OSError(socket.EAI_NONAME, f"Name or service not known: {host}")
        return [
            ResolveResult(
                hostname=host, host=ip, port=port, family=socket.AF_INET, proto=0, flags=0
            )
        ]

    async def close(self) -> None:
        pass


# ---------------------------------------------------------------------- a big, polite site


@dataclass
class TreeSite:
    """Pages /p/0 .. /p/{n-1}; /p/i links to /p/(2i+1) and /p/(2i+2): all reachable from /p/0.

    Each page carries `pad` bytes of text so the crawler has real writing to do. `gate`,
    when set, holds every response after the `hold_after`-th request until it is opened.
    """

    n: int
    pad: int = 2_000
    ip: str = "127.0.0.60"
    port: int = 0
    hits: int = 0
    hold_after: int | None = None
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    runner: web.AppRunner | None = None
    _waiters: list[tuple[int, asyncio.Future[None]]] = field(default_factory=list)

    @property
    def reachable(self) -> set[str]:
        return {self.url(i) for i in range(self.n)}

    def url(self, i: int) -> str:
        return f"http://{self.ip}:{self.port}/p/{i}"

    async def reached(self, n: int) -> None:
        if self.hits >= n:
            return
        future = asyncio.get_running_loop().create_future()
        self._waiters.append((n, future))
        await future

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.hits += 1
        for n, future in list(self._waiters):
            if self.hits >= n and not future.done():
                future.set_result(None)
                self._waiters.remove((n, future))
        if self.hold_after is not None and self.hits > self.hold_after:
            await self.gate.wait()
        tail = request.match_info["tail"]
        if not tail.isdigit() or int(tail) >= self.n:
            return web.Response(status=404, text="not found")
        i = int(tail)
        kids = [k for k in (2 * i + 1, 2 * i + 2) if k < self.n]
        links = "".join(f'<a href="/p/{k}">{k}</a>' for k in kids)
        body = f"<html><body><h1>{i}</h1>{links}<p>{'lorem ipsum ' * (self.pad // 12)}</p>"
        return web.Response(text=body + "</body></html>", content_type="text/html")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/p/{tail}", self._handle)
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self.runner.setup()
        tcp = web.TCPSite(self.runner, self.ip, 0)
        await tcp.start()
        server = tcp._server
        assert server is not None and server.sockets
        self.port = server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        self.gate.set()
        if self.runner is not None:
            await self.runner.cleanup()
