"""Coordination between processes that crawl one store: whose hosts, and who has work.

`Solo`: one process crawls every host; the crawl ends when this process has nothing
queued. `Partitioned` (`--processes N`): each process owns the hosts its `Partition`
names, writes URLs of other hosts as queued rows for their owners, and polls the store
for rows the others wrote for it; the crawl ends when no URL anywhere is still queued (a
URL stays queued until the commit of its fetch, which also commits the links it found).
A shared store with host leases (many machines) is a third kind that fits here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

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


class Partitioned(Solo):
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
            self._watching = asyncio.get_running_loop().create_task(
                self._watch(store, on_hosts, done)
            )
            self._watching.add_done_callback(self._watch_done)

    def _watch_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None:
            assert self.on_fatal is not None
            self.on_fatal(exc)

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

    def close(self) -> None:
        if self._watching is not None:
            self._watching.cancel()
