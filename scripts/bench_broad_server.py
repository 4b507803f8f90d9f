"""The broad-crawl benchmark's server: every host of bench_broad_site.py in one process.

    python scripts/bench_broad_server.py --hosts 2000 --big 20 --hidden 150 --port 18100 \\
        --log FILE [--ready FILE]

One listening socket per host address (127.1.X.Y, never 0.0.0.0), one asyncio event loop,
HTTP/1.1 keep-alive written by hand: GET only, requests on one connection answered in
order. Each response waits its URL's latency (Site.latency) before its head is written,
on a timer, so thousands of slow responses cost no thread.

The log has one line per request, `start end addr status bytes "target"`: `start` is when
the request head arrived (or, for a pipelined request, when the one before it was
answered), `end` when the response was written; times are time.time(), buffered in
memory and appended every 0.25 s and on exit.

`start` is the kernel's receive stamp (SO_TIMESTAMPNS, tests/stamps.py), not the time the
handler ran: the gaps between a host's requests are the benchmark's politeness measure, and
a server starved of CPU by other processes ran its handler for one request late and not for
the next, so their gap looked short (63 false "slips" in one run of 2026-11-30). Reading the
stamp needs asyncio's own loop, which reads sockets through Python's `recv`; uvloop reads
them in C.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import resource
import signal
import socket
import sys
import time
import weakref
from pathlib import Path

from bench_broad_site import PORT, Site

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import stamps  # tests/stamps.py: the kernel's receive stamp of a connection

REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 405: b"Method Not Allowed"}
MAX_HEAD = 65536


class Log:
    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.lines: list[str] = []

    def add(self, start: float, addr: str, status: int, size: int, target: str) -> None:
        self.lines.append(f'{start:.4f} {time.time():.4f} {addr} {status} {size} "{target}"\n')

    def flush(self) -> None:
        if self.lines:
            data, self.lines = "".join(self.lines).encode(), []
            os.write(self.fd, data)


class HTTP(asyncio.Protocol):
    def __init__(self, site: Site, log: Log, conns: stamps.Conns) -> None:
        self.site = site
        self.log = log
        self.conns = conns
        self.fd = -1
        self.loop = asyncio.get_running_loop()
        self.buf = b""
        self.addr = ""
        self.waiting: collections.deque[tuple[float, bytes, str, bool]] = collections.deque()
        self.timer: asyncio.TimerHandle | None = None
        self.transport: asyncio.WriteTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.addr = transport.get_extra_info("sockname")[0]
        self.fd = transport.get_extra_info("socket").fileno()

    def data_received(self, data: bytes) -> None:
        now = time.time()
        conn = self.conns.get(self.fd)
        if conn is not None and conn.arrived is not None:
            # The kernel's stamp (monotonic, as stamps.py keeps it) on the wall clock.
            now = min(now, now - (time.monotonic() - conn.arrived))
            conn.arrived = None
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > MAX_HEAD:
                    self.waiting.append((now, b"BAD", "-", True))
                    self.buf = b""
                break
            head, self.buf = self.buf[:end], self.buf[end + 4 :]
            line, _, headers = head.partition(b"\r\n")
            parts = line.split(b" ")
            if len(parts) != 3:
                self.waiting.append((now, b"BAD", "-", True))
                break
            method, target, version = parts
            lowered = headers.lower()
            close = version == b"HTTP/1.0" or b"connection: close" in lowered
            if b"content-length:" in lowered:
                method = b"BAD"  # a body we would have to skip: not from a crawler's GET
            self.waiting.append((now, method, target.decode("latin-1"), close))
        self.next()

    def next(self) -> None:
        if self.timer is not None or not self.waiting or self.transport is None:
            return
        _, method, target, _ = self.waiting[0]
        wait = self.site.latency(self.addr, target.split("?", 1)[0]) if method == b"GET" else 0
        self.timer = self.loop.call_later(wait, self.respond)

    def respond(self) -> None:
        self.timer = None
        start, method, target, close = self.waiting.popleft()
        if self.transport is None:
            return
        if method == b"GET":
            status, kind, body = self.site.response(self.addr, target)
        elif method == b"BAD":
            status, kind, body, close = 400, b"text/plain", b"bad request\n", True
        else:
            status, kind, body, close = 405, b"text/plain", b"GET only\n", True
        head = b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s\r\n" % (
            status,
            REASONS[status],
            kind,
            len(body),
            b"Connection: close\r\n" if close else b"",
        )
        self.transport.write(head + body)
        self.log.add(start, self.addr, status, len(body), target)
        if close:
            self.transport.close()
            self.transport = None
            return
        if self.waiting:
            # Pipelined: the next request starts now, after this one was answered.
            self.waiting[0] = (time.time(), *self.waiting[0][1:])
            self.next()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


def listening_socket(addr: str, port: int, conns: stamps.Conns) -> socket.socket:
    """A listening socket whose connections keep the kernel's receive stamp, in `conns`."""
    sock = stamps.listener(addr, port, conns)
    sock.listen(1024)
    sock.setblocking(False)
    return sock


async def serve(
    site: Site, socks: list[socket.socket], conns: stamps.Conns, log: Log, ready: Path | None
) -> None:
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[None] = loop.create_future()

    def done() -> None:
        if not stop.done():
            stop.set_result(None)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, done)
    servers = [
        await loop.create_server(lambda: HTTP(site, log, conns), sock=sock, backlog=1024)
        for sock in socks
    ]
    if ready is not None:
        ready.write_text(f"{os.getpid()}\n")
    try:
        while not stop.done():
            await asyncio.wait([stop], timeout=0.25)
            log.flush()
    finally:
        for server in servers:
            server.close()
        log.flush()


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--hosts", type=int, default=2000)
    ap.add_argument("--big", type=int, default=20)
    ap.add_argument("--hidden", type=int, default=150)
    ap.add_argument("--port", type=int, default=PORT)
    ap.add_argument("--log", type=Path, required=True, help="append the request log here")
    ap.add_argument("--ready", type=Path, help="written once every address listens")
    a = ap.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    site = Site(a.hosts, a.big, a.hidden, a.port)
    conns: stamps.Conns = weakref.WeakValueDictionary()
    socks = [listening_socket(addr, a.port, conns) for addr in site.addrs]
    asyncio.run(serve(site, socks, conns, Log(a.log), a.ready))  # not uvloop: see above


if __name__ == "__main__":
    main()
