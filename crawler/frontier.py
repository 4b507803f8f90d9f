"""The frontier: seen-set, per-host queues, and the decision of what a worker fetches next.

The database holds the whole frontier; RAM holds a bounded window of it (`window` URLs,
at most `host_window` per host). URLs found while the window is full stay only in the
database ("overflow") and a refill scan brings them in as the window drains. The
seen-set is a set of 64-bit string hashes, far smaller than the URLs themselves.

`get()` hands a worker a job only from a host that is ready: fewer than `per_host`
requests open and its delay since the last start elapsed. Hosts waiting on a delay sit
on a timer, not on a worker, so one slow host never holds up the others.

With a `Partition` (one crawl split across processes), only the partition's own hosts
are queued in RAM; URLs of other hosts are written as queued rows for their owners. A
watcher polls the database for rows the other processes wrote for our hosts, and the
crawl ends when no URL anywhere is still queued (a URL stays queued until the commit
of its fetch, which also commits the links it found).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence

from crawler import robots
from crawler.config import Settings
from crawler.hosts import HostSlot, Job
from crawler.partition import PageBudget, Partition
from crawler.reasons import Reason
from crawler.robots import RobotsCache, Rules
from crawler.scope import Scope
from crawler.storage import ChainEnd, NewURL, Outcome, PageRow, QueuedURL, Storage
from crawler.urls import has_repeated_segments, host_key

log = logging.getLogger(__name__)


class Frontier:
    def __init__(
        self,
        settings: Settings,
        scope: Scope,
        storage: Storage,
        robots: RobotsCache,
        *,
        window: int = 50_000,
        host_window: int = 5_000,
        scan_batch: int = 2_000,
        partition: Partition | None = None,
        budget: PageBudget | None = None,
        poll_interval: float = 0.05,
    ) -> None:
        self.settings = settings
        self.scope = scope
        self.storage = storage
        self.robots = robots
        self.window = window
        self.host_window = min(host_window, window)
        self.scan_batch = scan_batch
        self.stored = 0  # pages in the file when the run began, plus those this process stored
        self.partition = partition
        self.budget = budget or PageBudget(settings.max_pages)
        self.poll_interval = poll_interval
        self.dropped = 0  # URLs given up on: robots, dead host, budget
        self._needs_robots = not settings.ignore_robots
        self._seen: set[int] = set()
        self._slots: dict[str, HostSlot] = {}
        self._ready: deque[HostSlot] = deque()
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._pending: set[str] = set()  # in RAM, in flight, or awaiting commit
        self._in_ram = 0
        self._open = 0  # jobs handed out and not finished (robots included)
        self._dead: dict[str, str] = {}
        self._host_pages: dict[str, int] = {}
        self._stopping = False
        # Overflow: hosts with queued rows that are only in the database (see _refill), and
        # per host how many of those rows are not committed yet (invisible to a refill).
        self._spilled: dict[str, None] = {}
        self._uncommitted: dict[str, int] = {}
        self._refill_wanted = False
        self._refilling: asyncio.Task[None] | None = None
        # Partitioned: the newest row id the watcher has looked at, and whether some URL of
        # any process was still queued when it last looked.
        self._watermark = 0
        # Per host, the newest row id a refill has looked at: rows at or below it are in
        # RAM, being fetched or done, so a refill starts past it. Kept while the host is
        # spilled; for good when partitioned, since our own new rows wake the watcher too.
        self._cursor: dict[str, int] = {}
        self._others_busy = partition is not None
        self._watching: asyncio.Task[None] | None = None
        # Set by the engine: a background task failed (the crawl must stop), and an error
        # row was written without a fetch (a dropped host's URLs: counted as errors).
        self.on_fatal: Callable[[BaseException], None] = _unhandled
        self.on_failed_row: Callable[[str], None] = lambda reason: None
        storage.on_commit = self._committed

    # ------------------------------------------------------------------ setup

    async def load(self, seeds: Sequence[str]) -> None:
        """Rebuild the seen-set from the database and queue `seeds` that are new."""
        # The watermark first: a row another process adds after it is the watcher's.
        self._watermark = await self.storage.last_url_id() if self.partition else 0
        async for url in self.storage.seen_urls():
            self._seen.add(hash(url))
        if self._needs_robots:
            # RFC 9309 2.4: a robots.txt an earlier run fetched is good for 24 hours.
            agent = self.settings.user_agent
            async for host, status, body, fetched in self.storage.stored_robots(
                time.time() - robots.TTL
            ):
                if self._owns(host):
                    self.robots.put(host, robots.restored(status, body, agent, fetched))
        self.stored = await self.storage.page_count()
        self.budget.start(self.stored)
        if self.settings.host_budget:
            self._host_pages = await self.storage.host_page_counts()
        for host in await self.storage.queued_hosts():
            if self._owns(host):
                self._spilled[host] = None  # queued rows from an earlier run
        self._refill_wanted = bool(self._spilled)
        new = []
        for url in seeds:
            n = self._admit(url, depth=0)
            if isinstance(n, NewURL):
                new.append(n)
            elif n is not None:
                log.warning("seed %s is not crawled: %s", url, n.value)
        if new:
            self.storage.add(Outcome(url="", state=None, new_urls=new))
        if self.partition is not None:
            # Committed before any process looks for work: until then, another process
            # could find nothing queued anywhere and end the crawl before it began.
            await self.storage.flush()

    def _owns(self, host: str) -> bool:
        return self.partition is None or self.partition.owns(host)

    @property
    def queued(self) -> int:
        return self._in_ram

    @property
    def in_flight(self) -> int:
        return self._open

    @property
    def active_hosts(self) -> int:
        return len(self._slots)

    # ------------------------------------------------------------------ discovery

    def discover(self, job: Job, links: Iterable[str], skipped: dict[str, int]) -> list[NewURL]:
        """Admit the new, in-scope links of a fetched page; returns the rows to persist.

        Links not followed are counted into `skipped` by reason (each occurrence: a link
        already seen is not counted, one out of scope is, every time).
        """
        assert job.item is not None
        depth = job.item.depth + 1
        seen = self._seen
        if 0 <= self.settings.max_depth < depth:
            if deep := sum(1 for url in links if hash(url) not in seen):
                skipped[Reason.DEPTH] = skipped.get(Reason.DEPTH, 0) + deep
            return []
        new: list[NewURL] = []
        for url in links:
            if hash(url) in seen:
                continue
            n = self._admit(url, depth)
            if isinstance(n, NewURL):
                new.append(n)
            elif n is not None:
                skipped[n] = skipped.get(n, 0) + 1
        return new

    def redirect(self, job: Job, target: str) -> NewURL | Reason | None:
        """Admit a redirect target as the next hop of `job`'s chain (same depth);
        None when the target is already known, a Reason when it is not followed."""
        item = job.item
        assert item is not None
        origin = item.origin or item.url
        return self._admit(target, item.depth, hops=item.hops + 1, origin=origin)

    def _admit(
        self, url: str, depth: int, *, hops: int = 0, origin: str | None = None
    ) -> NewURL | Reason | None:
        if hash(url) in self._seen:
            return None
        verdict = self.scope.verdict(url)
        if verdict is not None:
            return verdict
        if has_repeated_segments(url, self.settings.repeat_segments):
            return Reason.TRAP
        self._seen.add(hash(url))
        new = NewURL(url, host_key(url), depth, hops, origin)
        if self._owns(new.host):  # else a queued row, for the process that owns the host
            self._enqueue(QueuedURL(0, url, new.host, depth, hops, origin))
        return new

    def _enqueue(self, item: QueuedURL) -> bool:
        """Put a URL in its host's RAM queue; False (overflow) when the window is full."""
        slot = self._slots.get(item.host)
        if self._in_ram >= self.window or (slot and len(slot.queue) >= self.host_window):
            self._spilled[item.host] = None
            if item.id == 0:  # not in the database until its batch commits
                self._uncommitted[item.host] = self._uncommitted.get(item.host, 0) + 1
            return False
        if slot is None:
            slot = self._slot(item.host)
        self._pending.add(item.url)
        self._in_ram += 1
        slot.queue.append(Job(slot, item))
        if slot.dead:
            self._drain_dead(slot)
        else:
            self._consider(slot)
        return True

    def _slot(self, key: str) -> HostSlot:
        slot = HostSlot(key=key, per_host=self.settings.per_host, delay=self.settings.delay)
        slot.dead = self._dead.get(key)
        slot.fetched = self._host_pages.get(key, 0)
        rules = self.robots.get(key) if self._needs_robots else None
        if rules is not None:
            self._apply_rules(slot, rules)
        self._slots[key] = slot
        return slot

    # ------------------------------------------------------------------ handing out work

    async def get(self) -> Job | None:
        """The next job a worker may start now; None when the crawl is over or stopping."""
        while not self._stopping:
            self._maybe_refill()
            self._maybe_watch()
            # Once open requests hold what is left of max_pages, _take hands out nothing
            # and puts the host straight back on the ready list: wait for them instead of
            # cycling through it for ever without yielding.
            while self._ready and self.budget.left() > 0:
                slot = self._ready.popleft()
                slot.in_ready = False
                job = self._take(slot)
                if job is not None:
                    return job
            if self._finished():
                self._wake_all()
                return None
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if not waiter.done():
                    waiter.cancel()
        return None

    def _take(self, slot: HostSlot) -> Job | None:
        now = time.monotonic()
        if self._needs_robots and slot.rules is not None and slot.rules.expires < now:
            slot.rules = None  # RFC 9309 2.4: fetch it again
        wait = slot.wait_time(now, self._needs_robots)
        if wait is None or wait > 0:
            self._consider(slot)
            return None
        if self._needs_robots and slot.rules is None:
            cached = self.robots.get(slot.key)
            if cached is None:
                slot.fetching_robots = True
                slot.started(now)
                self._open += 1
                return Job(slot, None)
            self._apply_rules(slot, cached)
        job = None
        while slot.queue and job is None:
            if not self.budget.take():
                break
            candidate = slot.queue.popleft()
            self._in_ram -= 1
            # `<=`, not `==`: rows a refill queues may be taken before it ends, so the
            # queue can run dry without ever being seen at exactly half.
            if len(slot.queue) <= self.host_window // 2 and slot.key in self._spilled:
                self._refill_wanted = True
            item = candidate.item
            assert item is not None
            budget = self.settings.host_budget
            if slot.rules is not None and not slot.rules.allows(item.url, self.settings.user_agent):
                self.budget.add(-1)
                self._give_up(item, "disallowed", "robots.txt", Reason.ROBOTS)
            elif budget and slot.fetched >= budget:
                self.budget.add(-1)
                reason = f"host budget of {budget} pages reached"
                self._give_up(item, "dropped", reason, Reason.HOST_BUDGET)
            else:
                job = candidate
        if job is not None:
            slot.started(now)
            slot.fetched += 1
            self._open += 1
        self._consider(slot)
        return job

    def _finished(self) -> bool:
        if self._open:
            return False
        if self.budget.left() <= 0:
            return True
        if self._in_ram or self._spilled or self._refilling is not None:
            return False
        return not self._others_busy

    # ------------------------------------------------------------------ results

    def finish(self, job: Job, *, stored: bool, failed: str | None = None) -> None:
        """A job is over: free its slot; `failed` counts towards the host's failure limit."""
        slot = job.host
        slot.open -= 1
        self._open -= 1
        if job.robots:
            slot.fetching_robots = False
        elif not stored:
            self.budget.add(-1)  # the page was not fetched after all
        if stored:
            self.stored += 1
        if failed is None:
            slot.failures = 0
        else:
            slot.failures += 1
            if slot.failures >= self.settings.host_failures and not slot.dead:
                slot.dead = f"host dropped after {slot.failures} failures in a row: {failed}"
                self._dead[slot.key] = slot.dead
                log.warning("%s: %s", slot.key, slot.dead)
                self._drain_dead(slot)
        self._consider(slot)
        if self._finished():
            self._wake_all()

    def retry(self, job: Job, after: float) -> None:
        """Queue `job` again at the front of its host, keeping the whole host quiet `after` s."""
        slot = job.host
        slot.open -= 1
        self._open -= 1
        self.budget.add(-1)
        slot.fetched -= 1
        slot.back_off(time.monotonic(), after)
        job.attempt += 1
        slot.queue.appendleft(job)
        self._in_ram += 1
        if slot.dead:  # the host died while this request was out: no new attempt
            self._drain_dead(slot)
        self._consider(slot)
        if self._finished():
            self._wake_all()

    def robots_loaded(self, job: Job, rules: Rules) -> None:
        job.host.robots_failures = 0
        self.robots.put(job.host.key, rules)
        self._apply_rules(job.host, rules)
        self.finish(job, stored=False)

    def robots_retry(self, job: Job, after: float) -> None:
        """robots.txt found the host unreachable: hold the host, ask again in `after` s."""
        slot = job.host
        slot.robots_failures += 1
        slot.back_off(time.monotonic(), after)
        self.finish(job, stored=False)

    def robots_failed(self, job: Job, reason: str) -> None:
        """robots.txt stayed unreachable: every URL of the host gets an error row."""
        slot = job.host
        if not slot.dead:
            slot.dead = reason
            self._dead[slot.key] = reason
            log.warning("%s: %s", slot.key, reason)
        self._drain_dead(slot)
        self.finish(job, stored=False)  # last: it wakes the workers if the crawl is over

    def _apply_rules(self, slot: HostSlot, rules: Rules) -> None:
        slot.rules = rules
        if rules.crawl_delay is not None:
            delay = max(self.settings.delay, min(rules.crawl_delay, self.settings.max_crawl_delay))
            # next_start was set from the last start (the robots.txt request itself) with
            # the old delay: the next page waits the Crawl-delay from that start.
            slot.next_start += delay - slot.delay
            slot.delay = delay

    def _give_up(self, item: QueuedURL, state: str, text: str, reason: Reason) -> None:
        self.dropped += 1
        chain = None
        if item.origin is not None:  # the redirect chain that led here ends unfetched
            chain = ChainEnd(item.origin, item.url, None, f"redirect target not fetched: {text}")
        self.storage.add(
            Outcome(url=item.url, state=state, reason=text, skipped=((reason, 1),), chain_end=chain)
        )

    def _drain_dead(self, slot: HostSlot) -> None:
        """One error row per queued URL of a host we stopped trying."""
        assert slot.dead is not None
        while slot.queue:
            item = slot.queue.popleft().item
            self._in_ram -= 1
            assert item is not None
            self.dropped += 1
            self.stored += 1
            self.budget.add(1)
            self.on_failed_row(slot.dead)
            self.storage.add(
                Outcome(
                    url=item.url,
                    state="done",
                    page=PageRow.failed(item.url, item.host, item.depth, slot.dead, attempts=0),
                )
            )

    # ------------------------------------------------------------------ readiness

    def _consider(self, slot: HostSlot) -> None:
        """Put `slot` on the ready list, on a timer, or forget it when idle."""
        if slot.in_ready:
            return
        now = time.monotonic()
        wait = slot.wait_time(now, self._needs_robots)
        if wait is None:
            if slot.idle(now) and slot.timer is None:
                del self._slots[slot.key]
            elif not slot.queue and slot.open == 0 and slot.timer is None:
                self._set_timer(slot, slot.next_start - now)  # forget it once its delay passed
            return
        if wait > 0:
            if slot.timer is None:
                self._set_timer(slot, wait)
            return
        slot.in_ready = True
        self._ready.append(slot)
        self._wake_one()

    def _set_timer(self, slot: HostSlot, delay: float) -> None:
        loop = asyncio.get_running_loop()
        slot.timer = loop.call_later(max(0.0, delay), self._timer_fired, slot)

    def _timer_fired(self, slot: HostSlot) -> None:
        slot.timer = None
        if self._slots.get(slot.key) is slot:
            self._consider(slot)

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _wake_all(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def stop(self) -> None:
        """Hand out nothing more; workers finish what they hold and return."""
        self._stopping = True
        self._wake_all()

    def close(self) -> None:
        for slot in self._slots.values():
            if slot.timer is not None:
                slot.timer.cancel()
                slot.timer = None
        if self._refilling is not None:
            self._refilling.cancel()
        if self._watching is not None:
            self._watching.cancel()

    # ------------------------------------------------------------------ overflow and refill

    def _committed(self, batch: list[Outcome]) -> None:
        """Storage committed `batch`: forget its URLs; spilled rows are now visible."""
        overflowed = bool(self._uncommitted)  # else every new URL of the batch is in RAM
        for o in batch:
            if not overflowed:
                self._pending.discard(o.url)
                continue
            for n in o.new_urls:
                if n.url not in self._pending and n.host in self._uncommitted:
                    left = self._uncommitted[n.host] - 1
                    if left:
                        self._uncommitted[n.host] = left
                    else:
                        del self._uncommitted[n.host]
                    self._refill_wanted = True
            self._pending.discard(o.url)
        if self._refill_wanted:
            self._wake_one()

    def _maybe_refill(self) -> None:
        if (
            self._spilled
            and self._refill_wanted
            and self._refilling is None
            and not self._stopping
            and self._in_ram < self.window // 2
        ):
            self._refill_wanted = False
            self._refilling = asyncio.get_running_loop().create_task(self._refill())
            self._refilling.add_done_callback(self._background_done)

    async def _refill(self) -> None:
        """Load database-only rows of spilled hosts whose RAM queue has run low.

        Each host is read through the (host, id) partial index in discovery order, so
        a host with a million queued URLs costs one short indexed read per refill and
        never delays the rows of other hosts.
        """
        try:
            for host in list(self._spilled):
                if self._stopping or self._in_ram >= self.window:
                    self._refill_wanted = True
                    break
                slot = self._slots.get(host)
                have = len(slot.queue) if slot else 0
                if have > self.host_window // 2:
                    continue
                want = min(self.host_window - have, self.window - self._in_ram)
                after, exhausted = self._cursor.get(host, 0), False
                while not exhausted:
                    rows = await self.storage.queued_for_host(host, after, self.scan_batch)
                    exhausted = len(rows) < self.scan_batch
                    for row in rows:
                        if row.url in self._pending:
                            after = row.id
                            continue
                        if want == 0:
                            exhausted = False  # rows remain for the next refill
                            break
                        after = row.id
                        self._seen.add(hash(row.url))
                        self._enqueue(row)
                        want -= 1
                    if want == 0:
                        break
                self._cursor[host] = after
                if exhausted and host not in self._uncommitted:
                    self._spilled.pop(host, None)
                    if self.partition is None:
                        del self._cursor[host]
        finally:
            self._refilling = None
            self._wake_one()
            if self._finished():
                self._wake_all()

    # ------------------------------------------------------------------ other processes

    def _maybe_watch(self) -> None:
        if self.partition is not None and self._watching is None and not self._stopping:
            self._watching = asyncio.get_running_loop().create_task(self._watch())
            self._watching.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task[None]) -> None:
        """A refill or watcher task ended: one that failed must stop the crawl, not hang it."""
        if not task.cancelled() and (exc := task.exception()) is not None:
            self.on_fatal(exc)

    async def _watch(self) -> None:
        """Poll the database for queued rows of our hosts written by other processes.

        Polling, because SQLite tells one process nothing about another's commits. It also
        notices the end of the crawl: no URL queued anywhere, so no process holds work
        and none can find more.
        """
        try:
            while not self._stopping:
                for host, newest in await self.storage.queued_since(self._watermark):
                    self._watermark = max(self._watermark, newest)
                    if self._owns(host) and newest > self._cursor.get(host, 0):
                        self._spilled[host] = None
                        self._refill_wanted = True
                if self._refill_wanted:
                    self._wake_one()
                self._others_busy = await self.storage.any_queued()
                if self._finished():
                    self._wake_all()
                    return
                await asyncio.sleep(self.poll_interval)
        finally:
            self._watching = None


def _unhandled(exc: BaseException) -> None:
    raise exc
