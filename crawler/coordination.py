"""Coordination between processes that crawl one store: whose hosts, and who has work.

`Solo`: one process crawls every host; the crawl ends when this process has nothing
queued. `Partitioned` (`--processes N`): each process owns the hosts its `Partition`
names, writes URLs of other hosts as queued rows for their owners, and polls the store
for rows the others wrote for it; the crawl ends when no URL anywhere is still queued (a
URL stays queued until the commit of its fetch, which also commits the links it found).
`Leased`: one of many workers on any machines sharing a PostgreSQL store, each crawling
the hosts it holds a lease on, with `StoreBudget`, `--max-pages` counted in the store.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Coroutine
from typing import Any

from crawler.errors import LeaseLost
from crawler.partition import PageBudget, Partition
from crawler.records import Sitemap
from crawler.store import Store
from crawler.urls import server_key


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
    """One of many workers, on any machines, sharing a store that leases servers
    (PostgreSQL): a worker crawls only the origins of the servers it holds a lease on, so
    per-host limits, delays, Crawl-delay and Retry-After hold across all of them.

    A background task renews the leases, leases more servers while this worker has room
    for them, gives back servers it has finished (with the wait before their next request),
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
        # Set by the frontier: this worker's leased servers with nothing queued, in flight
        # or spilled on any origin, and the seconds until each may be fetched again.
        self.idle: Callable[[], dict[str, float]] = dict
        self.budget: StoreBudget | None = None  # with --max-pages
        # Set by the frontier: the sitemaps still to read of hosts just leased.
        self.on_sitemaps: Callable[[list[Sitemap]], None] | None = None
        # Set by the frontier: a host just leased from a worker whose lease lapsed this
        # many seconds ago (it may have fetched the host until then).
        self.on_lapsed: Callable[[str, float], None] = lambda host, since: None
        self._lapse: asyncio.TimerHandle | None = None  # when the leases lapse unrenewed
        self.deadline = math.inf  # the same by this worker's monotonic clock (-inf: lapsed)
        self.lost: LeaseLost | None = None  # set once the leases lapsed

    def owns(self, host: str) -> bool:
        return server_key(host) in self.store.leased  # every origin of a leased server

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

    async def _renew(self) -> None:
        """Renew the leases every third of a lease, on a task of its own: the watch loop's
        work (a flush, a release) may wait a lease or longer on rows another worker's
        open transaction holds, and a renewal waiting behind it let the leases lapse."""
        store = self.store
        while True:
            await asyncio.sleep(store.lease_seconds / 3)
            sent = time.monotonic()
            await store.renew()
            # The server extended the leases when it got the request, after `sent`: by
            # this worker's clock they lapse no sooner than this.
            self._lapse_at(sent + store.lease_seconds)

    async def _watch(self, on_hosts: Callable[[list[str]], None], done: Callable[[], bool]) -> None:
        store = self.store
        self._lapse_at(time.monotonic() + store.lease_seconds)
        renewing = asyncio.get_running_loop().create_task(self._renew())
        renewing.add_done_callback(self._watch_done)  # its failure stops the crawl too
        try:
            while True:
                if self.idle():
                    # What was fetched there is committed first; the commit may queue new
                    # URLs of those hosts here, so which are idle is asked again after it.
                    # URLs queued so may also be fetched during that commit, and their
                    # outcomes wait for the next: those servers go back on a later round.
                    await store.flush()
                    if idle := self.idle():
                        pending = store.servers_pending()
                        idle = {s: w for s, w in idle.items() if s not in pending}
                    if idle:
                        store.leased.difference_update(idle)  # no URL of theirs queued here now
                        await store.release_servers(idle)
                room = self.hosts_wanted - len(store.leased)
                if room > 0 and (new := await store.lease_hosts(room)):
                    for host, since in new.items():  # before its URLs can be queued here
                        if since is not None:
                            self.on_lapsed(host, since)
                    on_hosts(list(new))
                    if self.on_sitemaps is not None:
                        self.on_sitemaps(await store.queued_sitemaps(list(new)))
                if more := await store.new_work():
                    on_hosts(more)
                self._others_busy = bool(store.leased) or await store.any_queued()
                if self.budget is not None:
                    await self.budget.poll()
                if done():
                    return
                await asyncio.sleep(self.poll_interval)
        finally:
            renewing.cancel()
            self._watching = None

    def _lapse_at(self, when: float) -> None:
        """Stop the crawl once this worker's leases lapse unrenewed (a cut network, a
        server that stopped answering): from then on its hosts are others' to fetch, so
        it must not fetch them, even with URLs of theirs in RAM."""
        if not self.live():
            return  # a renewal answered past the lapse: the hosts may be others' already
        self.deadline = when
        if self._lapse is not None:
            self._lapse.cancel()
        loop = asyncio.get_running_loop()
        self._lapse = loop.call_at(loop.time() + when - time.monotonic(), self._lapsed)

    def live(self) -> bool:
        """Whether the leases are live by this worker's clock; past the deadline, the
        lapse is handled now. The timer fires late when the loop was blocked (a slow
        synchronous hook): asked before every job and every request, the clock keeps a
        worker whose loop wakes past the lapse from fetching hosts others may hold."""
        if time.monotonic() < self.deadline:
            return True
        self._lapsed()
        return False

    def check(self) -> None:
        """Raise LeaseLost past the deadline: called as each request is about to be
        written, so one already under way when the leases lapse is not sent."""
        if not self.live():
            assert self.lost is not None
            raise LeaseLost(str(self.lost))

    def _lapsed(self) -> None:
        if self.lost is not None:
            return  # handled already (by the timer, or by `live` before it fired)
        if self._lapse is not None:
            self._lapse.cancel()
        self.deadline = -math.inf  # for good: a timer may fire a hair before the deadline
        store = self.store
        exc = self.lost = LeaseLost(
            f"store failed: this worker could not renew its leases in {store.name} for "
            f"{store.lease_seconds:g} s (--lease), so its hosts went to other workers; "
            "what it committed is intact"
        )
        store.failure = store.failure or exc  # nothing more is written (nor waited for)
        if self.on_fatal is not None:
            self.on_fatal(exc)

    def close(self) -> None:
        super().close()
        if self._lapse is not None:
            self._lapse.cancel()


class StoreBudget(PageBudget):
    """`max_pages` across every worker of a shared store: units come from the store's
    atomic counter (`page_budget`: pages stored plus units held never pass the limit),
    a few at a time, so that N workers store exactly `max_pages` pages.

    `take` is synchronous (the scheduler's), so it spends units granted before
    (`spare`); when none is left it asks the store for as many as this worker has URLs
    in RAM (`wanted`), in the background, and `on_granted` wakes the workers. Spare units
    beyond what this worker holds in RAM go back, so none sits idle while another
    worker has URLs and no units. `left` is the crawl's: the limit minus the pages the
    store holds, so a worker stops once they are all stored, not while others' fetches
    could still give units back.
    """

    def __init__(self, store: Any, limit: int, wanted: Callable[[], int]) -> None:
        super().__init__(limit)
        self.store = store
        self.wanted = wanted  # URLs this worker holds in RAM
        self.spare = 0  # units granted by the store, not yet spent on a fetch
        self.stored = 0  # pages stored by every worker, as last read
        self.room = limit  # units the store could still grant, as last read
        self.on_granted: Callable[[], None] = lambda: None
        self.on_fatal: Callable[[BaseException], None] | None = None
        self._asking: asyncio.Task[None] | None = None
        self._starved = False

    def start(self, stored: int) -> None:
        self.stored = stored

    @property
    def used(self) -> int:
        return self.limit - self.room

    def left(self) -> int:
        return self.limit - self.stored

    def can_take(self) -> bool:
        if self.spare > 0:
            return True
        self._ask()
        return False

    def take(self) -> bool:
        if self.spare > 0:
            self.spare -= 1
            return True
        self._ask()
        return False

    def add(self, n: int) -> None:
        if n < 0:
            self.spare -= n  # a fetch stored nothing: its unit is spare again
        else:
            # A row stored without a fetch (a dead host's URL) counts as a page, as in the
            # SQLite crawl; its commit spends a unit this worker holds, if any.
            self.spare -= min(self.spare, n)

    def _ask(self) -> None:
        self._starved = True
        if self._asking is None and self.room > 0:
            self._asking = asyncio.get_running_loop().create_task(self._grant())
            self._asking.add_done_callback(self._asked)

    async def _grant(self) -> None:
        granted = await self.store.take_pages(self.limit, max(1, self.wanted() - self.spare))
        self.spare += granted
        if granted:
            self._starved = False
            self.on_granted()
        else:
            self.room = 0  # until the next poll reads the store again

    def _asked(self, task: asyncio.Task[None]) -> None:
        self._asking = None
        exc = None if task.cancelled() else task.exception()
        if exc is not None and self.on_fatal is not None:
            self.on_fatal(exc)

    async def poll(self) -> None:
        """Read the crawl's count again; give back spare units this worker has no URLs
        for; ask again if it waits for units and some came free (a fetch elsewhere stored
        nothing, a dead worker's units came back)."""
        excess = self.spare - self.wanted()
        if excess > 0:
            self.spare -= excess  # before the await: `take` must not spend them meanwhile
            await self.store.give_pages(excess)
        self.stored, in_flight = await self.store.page_budget()
        self.room = self.limit - self.stored - in_flight
        if self._starved and self.room > 0:
            self._ask()

    def close(self) -> None:
        if self._asking is not None:
            self._asking.cancel()
