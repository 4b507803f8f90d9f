"""The RAM window over the store's queued URLs: bounded, refilled per host as it drains.

The store holds the whole frontier; RAM holds at most `size` queued URLs. Each host's
share is `size` divided among the hosts that have work (between `min_share` and
`host_size`), so ten big hosts found early cannot fill the window while thousands of
small ones wait. A URL admitted while its host's share (or the window) is full stays only
in the store, and its host is "spilled"; when a spilled host's RAM queue runs low, a
refill claims more of its rows. Refills go round the spilled hosts in turn, and when
hosts with nothing in RAM wait for room, hosts holding more than their share give the
excess back to the store (`rebalance`). URLs in RAM, in flight or awaiting their commit
are `pending`: a refill skips them, so none is queued twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from crawler.records import Outcome, QueuedURL
from crawler.scheduler import Scheduler
from crawler.seen import SeenSet
from crawler.store import Store


class Window:
    def __init__(
        self,
        store: Store,
        scheduler: Scheduler,
        seen: SeenSet,
        *,
        size: int,
        host_size: int,
        min_share: int = 16,
        scan_batch: int,
        keep_cursors: bool,
        on_fatal: Callable[[BaseException], None],
    ) -> None:
        self.store = store
        self.scheduler = scheduler
        self.seen = seen
        self.stopping = False
        self.size = size
        self.host_size = min(host_size, size)
        self.min_share = min(min_share, self.host_size)
        self.scan_batch = scan_batch
        # Partitioned: claims of a host are never released, because other processes'
        # rows for it arrive through `Store.new_work`, which compares with them.
        self.keep_cursors = keep_cursors
        self.on_fatal = on_fatal
        self.pending: set[str] = set()  # in RAM, in flight, or awaiting commit
        # Hosts with queued rows only in the store, and per host how many of those rows
        # are not committed yet (invisible to a refill until they are).
        self._spilled: dict[str, None] = {}  # in the order refills visit them
        self._uncommitted: dict[str, int] = {}
        # URLs queued in RAM before their row was committed: the only ones a rebalance
        # may not hand back to the store (a claim could not find them yet).
        self._unconfirmed: set[str] = set()
        self._refill_wanted = False
        self._refilling: asyncio.Task[None] | None = None

    @property
    def share(self) -> int:
        """How many queued URLs one host may hold in RAM now."""
        hosts = len(self.scheduler.slots) + len(self._spilled)  # overlap: a smaller share
        fair = max(self.min_share, min(self.host_size, self.size // max(1, hosts)))
        return min(fair, self.size)

    @property
    def busy(self) -> bool:
        """Work remains in the store for this process, or a refill is bringing it in."""
        return bool(self._spilled) or self._refilling is not None

    def offer(self, item: QueuedURL) -> bool:
        """Queue a URL in RAM; False (it stays in the store) when the window is full."""
        if item.url in self.pending:
            # Already here: a refill of a shared store may claim a row in the moment
            # between its commit and the commit's report (which offers it too).
            return True
        if self.scheduler.in_ram >= self.size or self.scheduler.queued_on(item.host) >= self.share:
            self._spilled[item.host] = None
            if item.id == 0:  # not in the store until its batch commits
                self._uncommitted[item.host] = self._uncommitted.get(item.host, 0) + 1
            return False
        self.pending.add(item.url)
        if item.id == 0:
            self._unconfirmed.add(item.url)
        self.scheduler.enqueue(item)
        return True

    def holds(self, host: str) -> bool:
        """Whether `host` has rows in the store that this window still means to claim."""
        return host in self._spilled or host in self._uncommitted

    def held(self) -> list[str]:
        """The hosts `holds` is true of."""
        return [*self._spilled, *self._uncommitted]

    def spilled(self, host: str) -> None:
        """`host` has queued rows in the store (an earlier run's, another process's)."""
        self._spilled[host] = None
        self._refill_wanted = True

    def taken(self, host: str, left: int) -> None:
        """A job left `host`'s RAM queue, `left` remain."""
        # `<=`, not `==`: rows a refill queues may be taken before it ends, so the queue
        # can run dry without ever being seen at exactly half.
        if left <= self.share // 2 and host in self._spilled:
            self._refill_wanted = True

    def committed(self, batch: list[Outcome]) -> bool:
        """The store committed `batch`: forget its URLs; spilled rows are now visible.
        True when a refill is wanted."""
        pending = self.pending
        if self._unconfirmed:
            for o in batch:
                for n in o.new_urls:
                    self._unconfirmed.discard(n.url)
        if not self._uncommitted:  # every new URL of the batch is in RAM
            for o in batch:
                pending.discard(o.url)
            return self._refill_wanted
        for o in batch:
            for n in o.new_urls:
                if n.url not in pending and n.host in self._uncommitted:
                    left = self._uncommitted[n.host] - 1
                    if left:
                        self._uncommitted[n.host] = left
                    else:
                        del self._uncommitted[n.host]
                    self._refill_wanted = True
            pending.discard(o.url)
        return self._refill_wanted

    def maybe_refill(self) -> None:
        if (
            self._spilled
            and self._refill_wanted
            and self._refilling is None
            and not self.stopping
            and (
                self.size - self.scheduler.in_ram >= self.min_share
                or self.scheduler.in_ram < self.size // 2
            )
        ):
            self._refill_wanted = False
            self._refilling = asyncio.get_running_loop().create_task(self._refill())
            self._refilling.add_done_callback(self._refill_done)

    def _refill_done(self, task: asyncio.Task[None]) -> None:
        """A refill that failed must stop the crawl, not leave it waiting."""
        if not task.cancelled() and (exc := task.exception()) is not None:
            self.on_fatal(exc)

    async def _refill(self) -> None:
        """Claim store-only rows of spilled hosts whose RAM queue has run low."""
        scheduler = self.scheduler
        try:
            self._rebalance()
            share = self.share
            for host in list(self._spilled):
                if self.stopping or scheduler.in_ram >= self.size:
                    self._refill_wanted = True
                    break
                # Round the hosts in turn: this one goes to the back of the line.
                del self._spilled[host]
                self._spilled[host] = None
                have = scheduler.queued_on(host)
                if have > share // 2:
                    continue
                want = min(share - have, self.size - scheduler.in_ram)
                rows, exhausted = await self.store.claim(
                    host, want, self.pending.__contains__, batch=self.scan_batch
                )
                for row in rows:
                    if row.url in self.pending:
                        continue  # offered meanwhile (see `offer`)
                    self.seen.add(row.url)  # another process may have admitted it
                    self.pending.add(row.url)
                    scheduler.enqueue(row)
                if exhausted and host not in self._uncommitted:
                    self._spilled.pop(host, None)
                    if not self.keep_cursors:
                        self.store.release(host)
        finally:
            self._refilling = None
            scheduler.wake_one()

    def _rebalance(self) -> None:
        """Hosts waiting with nothing in RAM while the window is full: hosts over their
        share hand the excess (committed rows only) back to the store."""
        scheduler = self.scheduler
        if self.size - scheduler.in_ram >= min(self.min_share, self.size // 2):
            return  # room enough
        if not any(scheduler.queued_on(h) == 0 for h in self._spilled):
            return
        share = self.share
        for host in [h for h, slot in scheduler.slots.items() if len(slot.queue) > share]:
            back = scheduler.evict(host, share, self._unconfirmed.__contains__)
            if back:
                self.pending.difference_update(back)
                self.store.release(host)  # the claim starts over, skipping what stays
                self._spilled[host] = None

    def close(self) -> None:
        if self._refilling is not None:
            self._refilling.cancel()
