"""When a request reached a test server's socket: the kernel's receive stamp
(SO_TIMESTAMPNS), for the servers of support.py and for gap_server.py alike.

Politeness is about when requests arrive, not when a handler gets to run: on a busy
machine the servers' thread ran up to 54 ms late (2 cores, crawler processes starting),
so requests written 0.51 s apart looked 0.47 s apart. `listener()` makes a listening
socket whose connections keep the stamp of the bytes last read; `arrival(request, ...)`
reads it for a request's handler.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import time
import weakref
from typing import Any

from aiohttp import web

# Linux's SO_TIMESTAMPNS (also the control message's type): the kernel stamps each segment
# as it is queued on the socket (Python 3.11's socket module does not name it).
_SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)

Conns = weakref.WeakValueDictionary[int, "StampedSocket"]


class StampedSocket(socket.socket):
    """A connection that keeps the kernel's receive time of the bytes last read from it."""

    __slots__ = ("arrived",)
    arrived: float | None

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        data, ancillary, _, _ = self.recvmsg(bufsize, 64, flags)
        self._stamp(ancillary)
        return data

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        """What asyncio reads a TLS connection with (its SSL protocol is buffered)."""
        view = memoryview(buffer)[:nbytes] if nbytes else buffer
        n, ancillary, _, _ = self.recvmsg_into([view], 64, flags)
        self._stamp(ancillary)
        return n

    def _stamp(self, ancillary: list[tuple[int, int, bytes]]) -> None:
        for level, kind, raw in ancillary:
            if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS:
                sec, nsec = struct.unpack("qq", raw[:16])
                # The stamp is the wall clock's; hits compare on the monotonic one.
                self.arrived = sec + nsec / 1e9 - time.time() + time.monotonic()


class StampingListener(socket.socket):
    """A listening socket whose connections are `StampedSocket`s, kept in `conns` by file
    descriptor (asyncio's transports read them with `recv` / `recv_into`)."""

    __slots__ = ("conns",)
    conns: Conns

    def accept(self) -> tuple[socket.socket, Any]:
        fd, address = self._accept()  # type: ignore[attr-defined]
        conn = StampedSocket(self.family, self.type, self.proto, fileno=fd)
        conn.arrived = None
        self.conns[fd] = conn
        return conn, address


def listener(ip: str, port: int = 0, conns: Conns | None = None) -> StampingListener:
    """A bound listening socket on `ip`; its connections go into `conns` (one map may
    serve many listeners: descriptors are the process's). OSError if it cannot bind."""
    sock = StampingListener(socket.AF_INET, socket.SOCK_STREAM)
    sock.conns = weakref.WeakValueDictionary() if conns is None else conns
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # On the listener, so that a request sent before its connection is accepted is
    # stamped too (connections inherit it). Not Linux: hits keep the handler's time.
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
    try:
        sock.bind((ip, port))
    except OSError:
        sock.close()
        raise
    return sock


def arrival(request: web.Request, conns: Conns) -> float:
    """When `request` reached the socket, by the monotonic clock (now, if unstamped): a
    client sends its next request on a connection only once the last is answered, so the
    bytes read last are its own. Never later than now."""
    now = time.monotonic()
    sock = request.transport.get_extra_info("socket") if request.transport else None
    conn = conns.get(sock.fileno()) if sock is not None else None
    arrived = conn.arrived if conn is not None else None
    if conn is not None:
        conn.arrived = None  # read once: never a stale stamp for a later request
    return now if arrived is None else min(now, arrived)
