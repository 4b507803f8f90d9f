"""The benchmark's own HTTP/1.1 server, for machines without nginx, and the frontier site.

    python scripts/bench_server.py static SITE_DIR --port 18090 [--log FILE] [--ready FILE]
    python scripts/bench_server.py frontier --hosts 4 --links 1000 --port 18091 [...]

`static` serves a site written by bench_site.py: one listener per `SITE_DIR/127.*` folder,
a request arriving on address A gets `SITE_DIR/A/<path>`. `frontier` generates pages: on
each of `--hosts` addresses, page `/n` links to `/n*L+1 .. /n*L+L` (L = `--links`), so
every page fetched adds L URLs nobody has seen: a frontier that grows without end.

This is a bare asyncio protocol (uvloop when installed), not aiohttp.web, because the
server must not be what limits the crawl: aiohttp.web and http.server top out far below
what a crawler on the other core can take. It knows GET and HEAD, keep-alive and
pipelining, and nothing else. The access log, flushed every 0.1 s, has nginx's format in
bench.py: `msec server_addr status bytes "request_uri"`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

Handler = Callable[[str, str], tuple[int, bytes, bytes]]  # (address, target) -> status, type, body

REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 405: b"Method Not Allowed"}
TYPES = {".html": b"text/html", ".txt": b"text/plain"}
ROBOTS = b"User-agent: *\nDisallow: /private/\n"
MAX_HEAD = 65536


class AccessLog:
    """Buffered access-log lines, appended to the file in one write every 0.1 s."""

    def __init__(self, path: str | None) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) if path else None
        self.lines: list[str] = []

    def add(self, addr: str, status: int, size: int, target: str) -> None:
        if self.fd is not None:
            self.lines.append(f'{time.time():.3f} {addr} {status} {size} "{target}"\n')

    def flush(self) -> None:
        if self.fd is not None and self.lines:
            data, self.lines = "".join(self.lines).encode(), []
            os.write(self.fd, data)

    async def flush_every(self, seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            self.flush()


class HTTP(asyncio.Protocol):
    def __init__(self, handler: Handler, log: AccessLog) -> None:
        self.handler = handler
        self.log = log
        self.buf = b""
        self.addr = ""
        self.transport: asyncio.WriteTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport
        self.addr = transport.get_extra_info("sockname")[0]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while self.transport is not None:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > MAX_HEAD:
                    self.respond(
                        400, b"text/plain", b"head too long\n", "-", head=False, close=True
                    )
                return
            head, self.buf = self.buf[:end], self.buf[end + 4 :]
            line, _, headers = head.partition(b"\r\n")
            parts = line.split(b" ")
            if len(parts) != 3:
                self.respond(400, b"text/plain", b"bad request line\n", "-", head=False, close=True)
                return
            method, raw_target, version = parts
            target = raw_target.decode("latin-1")
            lowered = headers.lower()
            close = version == b"HTTP/1.0" or b"connection: close" in lowered
            if method not in (b"GET", b"HEAD") or b"content-length:" in lowered:
                self.respond(405, b"text/plain", b"GET only\n", target, head=False, close=True)
                return
            status, kind, body = self.handler(self.addr, target)
            self.respond(status, kind, body, target, head=method == b"HEAD", close=close)

    def respond(
        self, status: int, kind: bytes, body: bytes, target: str, *, head: bool, close: bool
    ) -> None:
        assert self.transport is not None
        start = b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n" % (
            status,
            REASONS[status],
            kind,
            len(body),
        )
        tail = b"Connection: close\r\n\r\n" if close else b"\r\n"
        self.transport.write(start + tail if head else start + tail + body)
        self.log.add(self.addr, status, 0 if head else len(body), target)
        if close:
            self.transport.close()
            self.transport = None

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


def static_handler(root: Path) -> Handler:
    base = str(root)

    def handle(addr: str, target: str) -> tuple[int, bytes, bytes]:
        path = target.split("?", 1)[0].split("#", 1)[0]
        if not path.startswith("/") or "/.." in path or "\\" in path:
            return 400, b"text/plain", b"bad path\n"
        if path.endswith("/"):
            path += "index.html"
        try:
            with open(f"{base}/{addr}{path}", "rb") as f:
                body = f.read()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return 404, b"text/plain", b"not found\n"
        kind = TYPES.get(path[path.rfind(".") :], b"application/octet-stream")
        return 200, kind, body

    return handle


def frontier_handler(links: int) -> Handler:
    def handle(addr: str, target: str) -> tuple[int, bytes, bytes]:
        path = target.split("?", 1)[0]
        if path == "/robots.txt":
            return 200, b"text/plain", ROBOTS
        n = 0 if path == "/" else int(path[1:]) if path[1:].isdigit() else -1
        if n < 0:
            return 404, b"text/plain", b"not found\n"
        first = n * links + 1
        anchors = "".join(
            f'<li><a href="/{i}">page {i}</a></li>\n' for i in range(first, first + links)
        )
        html = (
            f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>page {n} of {addr}'
            f"</title></head>\n<body><h1>page {n}</h1>\n<ul>\n{anchors}</ul>\n</body></html>\n"
        )
        return 200, b"text/html", html.encode()

    return handle


def listening_socket(addr: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((addr, port))
    sock.listen(4096)
    sock.setblocking(False)
    return sock


async def serve(handler: Handler, socks: list[socket.socket], log: AccessLog) -> None:
    loop = asyncio.get_running_loop()
    stop = loop.create_future()

    def done() -> None:
        if not stop.done():
            stop.set_result(None)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, done)
    servers = [
        await loop.create_server(lambda: HTTP(handler, log), sock=sock, backlog=4096)
        for sock in socks
    ]
    flusher = asyncio.create_task(log.flush_every(0.1))
    try:
        await stop
    finally:
        flusher.cancel()
        for server in servers:
            server.close()
        log.flush()


def run(handler: Handler, socks: list[socket.socket], log_path: str | None) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(handler, socks, AccessLog(log_path)))
    else:
        uvloop.run(serve(handler, socks, AccessLog(log_path)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("kind", choices=["static", "frontier"])
    ap.add_argument("site", nargs="?", type=Path, help="static: the generated site's folder")
    ap.add_argument("--port", type=int, default=18090)
    ap.add_argument("--hosts", type=int, default=4, help="frontier: hosts on 127.0.0.2 ..")
    ap.add_argument("--links", type=int, default=1000, help="frontier: links per page")
    ap.add_argument("--workers", type=int, default=1, help="processes sharing the listeners")
    ap.add_argument("--log", help="append the access log here")
    ap.add_argument("--ready", type=Path, help="create this file once every address listens")
    a = ap.parse_args()

    if a.kind == "static":
        if a.site is None or not a.site.is_dir():
            ap.error("static needs the site folder written by bench_site.py")
        addrs = sorted(
            (p.name for p in a.site.glob("127.*") if p.is_dir()),
            key=lambda s: tuple(map(int, s.split("."))),
        )
        handler = static_handler(a.site.resolve())
    else:
        addrs = [f"127.0.0.{k + 2}" for k in range(a.hosts)]
        handler = frontier_handler(a.links)
    if not addrs:
        ap.error("no 127.* host folders to serve")
    socks = [listening_socket(addr, a.port) for addr in addrs]
    children = []  # forked workers accept on the same sockets
    for _ in range(a.workers - 1):
        pid = os.fork()
        if pid == 0:
            run(handler, socks, a.log)
            os._exit(0)
        children.append(pid)
    if a.ready:
        a.ready.write_text(f"{os.getpid()}\n")
    try:
        run(handler, socks, a.log)
    finally:
        for pid in children:
            os.kill(pid, signal.SIGTERM)
            os.waitpid(pid, 0)


if __name__ == "__main__":
    main()
