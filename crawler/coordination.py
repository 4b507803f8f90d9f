"""Coordination between processes that crawl one store: whose hosts, and who has work.

`Solo`: one process crawls every host; the crawl ends when this process has nothing
queued. `Partitioned` (`--processes N`): each process owns the hosts its `Partition`
names, writes URLs of other hosts as queued rows for their owners, and polls the store
for rows the others wrote for it; the crawl ends when no URL anywhere is still queued (a
URL stays queued until the commit of its fetch, which also commits the links it found).
`Leased`: one of many workers on any machines sharing a PostgreSQL store, each crawling
the hosts it holds a lease on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

from crawler.partition import Partition
from crawler.store import Store


class Solo:
    """Every host is ours; no one else adds work."""

    keep_cursors = False

    def owns(self, host: str) -> bool:
        return True

    @property
    def others_busy(self) -> bool:
        return False

    async def start(self, store: Store) -> None:
        """Before the seen-set is read: from here on, others' rows are new work."""

    async def committed_seeds(self, store: Store) -> None:
        """The seeds are in the store before any process may look for work."""

    def watch(
        self, store: Store, on_hosts: Callable[[list[str]], None], done: Callable[[], bool]
    ) -> None:
        """Start noticing others' work, if there can be any."""

    def close(self) -> None:
        pass


class _Watched(Solo):
    """A kind whose background task watches the store: its failure stops the crawl."""

    _watching: asyncio.Task[None] | None = None
    on_fatal: Callable[[BaseException], None] | None = None

    def _start(self, watch: Coroutine[Any, Any, None]) -> None:
        self._watching = asyncio.get_running_loop().create_task(watch)
        self._watching.add_done_callback(self._watch_done)

    def _watch_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None:
            assert self.on_fatal is not None
            self.on_fatal(exc)

    def close(self) -> None:
        if self._watching is not None:
            self._watching.cancel()


class Partitioned(_Watched):
    """One of N processes on one SQLite file, each owning a share of the hosts."""

    keep_cursors = True

    def __init__(self, partition: Partition, poll_interval: float = 0.05) -> None:
        self.partition = partition
        self.poll_interval = poll_interval
        self._others_busy = True  # until the store says no URL is queued anywhere
        self._watching: asyncio.Task[None] | None = None
        self.on_fatal: Callable[[BaseException], None] | None = None

    def owns(self, host: str) -> bool:
        return self.partition.owns(host)

    @property
    def others_busy(self) -> bool:
        return self._others_busy

    async def start(self, store: Store) -> None:
        await store.watch()

    async def committed_seeds(self, store: Store) -> None:
        # Committed before any process looks for work: until then, another process could
        # find nothing queued anywhere and end the crawl before it began.
        await store.flush()

    def watch(
        self, store: Store, on_hosts: Callable[[list[str]], None], done: Callable[[], bool]
    ) -> None:
        if self._watching is None:
            self._start(self._watch(store, on_hosts, done))

    async def _watch(
        self, store: Store, on_hosts: Callable[[list[str]], None], done: Callable[[], bool]
    ) -> None:
        """Poll the store for queued rows of our hosts written by other processes.

        Polling, because SQLite tells one process nothing about another's commits. It
        also notices the end of the crawl: no URL queued anywhere, so no process holds
        work and none can find more.
        """
        try:
            while True:
                on_hosts([h for h in await store.new_work() if self.owns(h)])
                self._others_busy = await store.any_queued()
                if done():
                    return
                await asyncio.sleep(self.poll_interval)
        finally:
            self._watching = None


class Leased(_Watched):
    """One of many workers, on any machines, sharing a store that leases hosts
    (PostgreSQL): a worker crawls only the hosts it holds a lease on, so per-host limits,
    delays, Crawl-delay and Retry-After hold across all of them.

    A background task renews the leases, leases more hosts while this worker has room
    for them, gives back hosts it has finished (with the wait before their next request),
    and notices the end of the crawl: nothing queued anywhere and no lease live.
    """

    keep_cursors = True  # claims are marks in the store, kept until released

    def __init__(self, store: Any, *, hosts_wanted: int, poll_interval: float = 0.2) -> None:
        self.store = store
        self.hosts_wanted = hosts_wanted
        self.poll_interval = poll_interval
        self._others_busy = True
        self._watching: asyncio.Task[None] | None = None
        self.on_fatal: Callable[[BaseException], None] | None = None
        # Set by the frontier: this worker's leased hosts with nothing queued, in flight
        # or spilled, and the seconds until each may be fetched again.
        self.idle: Callable[[], dict[str, float]] = dict

    def owns(self, host: str) -> bool:
        return host in self.store.leased

    @property
    def others_busy(self) -> bool:
        return self._others_busy

    async def committed_seeds(self, store: Store) -> None:
        await store.flush()  # in the store before any worker can find it empty

    def watch(
        self, store: Store, on_hosts: Callable[[list[str]], None], done: Callable[[], bool]
    ) -> None:
        if self._watching is None:
            self._start(self._watch(on_hosts, done))

    async def _watch(self, on_hosts: Callable[[list[str]], None], done: Callable[[], bool]) -> None:
        store = self.store
        renew_every = store.lease_seconds / 3
        renewed = time.monotonic()
        try:
            while True:
                if time.monotonic() - renewed >= renew_every:
                    await store.renew()
                    renewed = time.monotonic()
                if self.idle():
                    # What was fetched there is committed first; the commit may queue new
                    # URLs of those hosts here, so which are idle is asked again after it.
                    await store.flush()
                    if idle := self.idle():
                        store.leased.difference_update(idle)  # no URL of theirs queued here now
                        await store.release_hosts(idle)
                room = self.hosts_wanted - len(store.leased)
                if room > 0 and (new := await store.lease_hosts(room)):
                    on_hosts(new)
                if more := await store.new_work():
                    on_hosts(more)
                self._others_busy = bool(store.leased) or await store.any_queued()
                if done():
                    return
                await asyncio.sleep(self.poll_interval)
        finally:
            self._watching = None
