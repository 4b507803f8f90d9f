"""A loopback TCP proxy a test controls: a worker's `--db` points at it, and the test cuts
the worker off from the database and restores it, as a network would.

While cut, bytes from either side are held (neither delivered nor refused: a cut network
sends no reset) and counted in `held`, so a test can wait until the worker has tried to
reach the server; `restore` delivers them in order. New connections are accepted and held
the same way.

`cut_after_renewal` cuts just after a lease renewal has reached the worker (its commit's
answer passed the proxy), so a test's cut starts with a whole lease left: the proxy reads
the PostgreSQL protocol that far (asyncpg names the renewal's prepared statement once, in
its Parse message, and binds it by that name after).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from dataclasses import dataclass

# The renewal (crawler/store/postgres_leases.py `renew`) as asyncpg prepares it, and the
# ReadyForQuery message that follows a COMMIT (status I: idle, out of any transaction).
_RENEWAL = re.compile(rb"(__asyncpg_stmt_[0-9a-f]+__)\x00UPDATE servers SET lease_until ")
_IDLE = b"Z\x00\x00\x00\x05I"


@dataclass
class _Session:
    """One proxied connection's renewal: the statement's name, and whether one is under way."""

    renewal: bytes | None = None
    renewing: bool = False


class Proxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.held = 0  # chunks that arrived while cut
        self.cut_renewal = False  # cut once a renewal is through (`cut_after_renewal`)
        self._open = asyncio.Event()
        self._open.set()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def cut(self) -> None:
        """Call on the proxy's loop."""
        self._open.clear()

    def restore(self) -> None:
        self._open.set()

    @property
    def is_cut(self) -> bool:
        return not self._open.is_set()

    def cut_after_renewal(self) -> None:
        """Call on the proxy's loop: cut as soon as a renewal's commit has been answered."""
        self.cut_renewal = True

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await task

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers.add(up_writer)
        session = _Session()
        for src, dst, up in ((reader, up_writer, True), (up_reader, writer, False)):
            task = asyncio.get_running_loop().create_task(self._pipe(src, dst, session, up))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, session: _Session, up: bool
    ) -> None:
        try:
            while data := await src.read(65536):
                if not self._open.is_set():
                    self.held += 1
                    await self._open.wait()
                dst.write(data)
                await dst.drain()
                self._watch(data, session, up)
        except OSError:
            pass
        finally:
            if self._open.is_set():  # a cut network does not pass on a close either
                dst.close()

    def _watch(self, data: bytes, session: _Session, up: bool) -> None:
        """Follow renewals: a statement named upstream, then the commit's answer down."""
        if up:
            if session.renewal is None and (found := _RENEWAL.search(data)):
                session.renewal = found.group(1)
            if session.renewal is not None and session.renewal in data:
                session.renewing = True
        elif session.renewing and _IDLE in data:
            session.renewing = False
            if self.cut_renewal:
                self.cut_renewal = False
                self.cut()
