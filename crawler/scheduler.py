"""Host scheduling: which queued URL may start now, under every host's politeness rules.

Each host has a `HostSlot` (per-host limit, delay, robots.txt rules, failures, budget).
A slot whose host may start a request now sits on the ready list; one waiting for its
delay sits on a timer, not on a worker, so a slow or cooling host never holds up the
others (`readiness.py`). `next_job` hands out the first ready job; workers with nothing
to do `wait`.
The scheduler holds no I/O: what it decides to store (a URL given up on) goes out
through `emit`, so it can be tested with no network and no database.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable

from crawler.addresses import origin_host
from crawler.config import Settings
from crawler.hosts import Gates, HostSlot
from crawler.partition import PageBudget
from crawler.readiness import Readiness
from crawler.reasons import Reason
from crawler.records import ChainEnd, Job, Outcome, PageRow, QueuedURL, Sitemap, URLState
from crawler.revisit import error_outcome
from crawler.robots import RobotsCache, Rules
from crawler.urls import server_key

log = logging.getLogger(__name__)

# How much later than `delay` after a request was written the next may start: our clock
# reads the time a little before the server does, and by how much varies (connection
# setup, the server's own scheduling); this keeps the gaps it sees at `delay` or more.
SENT_MARGIN = 0.010


class Scheduler:
    def __init__(
        self,
        settings: Settings,
        budget: PageBudget,
        robots: RobotsCache,
        *,
        emit: Callable[[Outcome], None],
        on_failed_row: Callable[[str, str], None] = lambda reason, change: None,
        on_taken: Callable[[str, int], None] = lambda host, left: None,
        address: Callable[[str], str | None] = lambda host: None,
        resolve: Callable[[str], None] = lambda host: None,
    ) -> None:
        self.settings = settings
        self.budget = budget
        self.robots = robots
        self.needs_robots = not settings.ignore_robots
        self.emit = emit  # an outcome for the store: a URL given up on
        self.on_failed_row = on_failed_row  # an error row written without a fetch
        self.on_taken = on_taken  # a host's RAM queue shrank to `left` URLs
        self.address = address  # --per-ip: a host name's address, None until resolved
        self.resolve = resolve  # --per-ip: look a name up, then call `resolved`
        self._resolving: dict[str, list[HostSlot]] = {}  # name -> slots waiting for it
        self.slots: dict[str, HostSlot] = {}
        self.gates = Gates()  # servers (and IP addresses) of the live slots
        self.in_ram = 0  # URLs in the hosts' queues
        self.open = 0  # jobs handed out and not finished (robots.txt included)
        self.sitemaps = 0  # sitemap fetches queued on the hosts
        self.stored = 0  # pages in the store: at start, plus those stored since
        self.dropped = 0  # URLs given up on: robots.txt, dead host, budget
        self.host_pages: dict[str, int] = {}  # pages stored per host at start (host_budget)
        self._dead: dict[str, str] = {}  # host -> why its URLs are given up
        # The ready list, timers and waiters: bound here, so a call costs no extra lookup.
        self.readiness = Readiness(self.slots, self.needs_robots, self._forget)
        self._ready = self.readiness.ready
        self._consider = self.readiness.consider
        self._release = self.readiness.release
        self.wait = self.readiness.wait
        self.wake_one = self.readiness.wake_one
        self.wake_all = self.readiness.wake_all
        self.close = self.readiness.close

    # ------------------------------------------------------------------ queues

    def enqueue(self, item: QueuedURL) -> None:
        """Queue a URL on its host (the window decided it fits in RAM)."""
        slot = self.slots.get(item.host) or self._slot(item.host)
        self.in_ram += 1
        slot.queue.append(Job(slot.key, item))
        if slot.dead:
            self._drain_dead(slot)
        else:
            self._consider(slot)

    def enqueue_sitemap(self, sitemap: Sitemap) -> None:
        """Queue a sitemap's fetch on its host: polite as a page, outside the page budget."""
        slot = self.slots.get(sitemap.host) or self._slot(sitemap.host)
        self.sitemaps += 1
        slot.sitemaps.append(Job(slot.key, None, sitemap=sitemap))
        if slot.dead:
            self._drain_dead(slot)
        else:
            self._consider(slot)

    def queued_on(self, host: str) -> int:
        slot = self.slots.get(host)
        return len(slot.queue) if slot else 0

    def evict(self, host: str, keep: int, pinned: Callable[[str], bool]) -> list[str]:
        """Take URLs off the end of `host`'s RAM queue until `keep` remain (a `pinned` one,
        and a retry, stays); the URLs taken, whose rows the store still holds queued."""
        slot = self.slots[host]
        kept: list[Job] = []
        taken: list[str] = []
        while len(slot.queue) > keep:
            job = slot.queue.pop()
            assert job.item is not None
            if job.attempt > 1 or pinned(job.item.url):
                kept.append(job)
                keep -= 1
                continue
            taken.append(job.item.url)
        slot.queue.extend(reversed(kept))
        self.in_ram -= len(taken)
        return taken

    def _slot(self, key: str) -> HostSlot:
        server = self.gates.join(server_key(key), self.settings.per_host)
        slot = HostSlot(key=key, server=server, delay=self.settings.delay)
        if self.settings.per_ip:
            name = origin_host(key)
            address = self.address(name)
            if address is not None:
                slot.ip = self.gates.join(f"ip {address}", self.settings.per_ip)
            else:
                slot.resolving = True
                waiting = self._resolving.setdefault(name, [])
                waiting.append(slot)
                if len(waiting) == 1:
                    self.resolve(name)
        slot.dead = self._dead.get(key)
        slot.fetched = self.host_pages.get(key, 0)
        rules = self.robots.get(key) if self.needs_robots else None
        if rules is not None:
            self._apply_rules(slot, rules)
        self.slots[key] = slot
        return slot

    def _forget(self, slot: HostSlot) -> None:
        del self.slots[slot.key]
        for gate in (slot.server, slot.ip):
            if gate is not None:
                self.gates.leave(gate)

    def resolved(self, name: str) -> None:
        """`name` was looked up (or failed to be: its fetches will say why): the slots
        that waited for it join its address's gate and may start."""
        address = self.address(name)
        for slot in self._resolving.pop(name, []):
            slot.resolving = False
            if address is not None:
                slot.ip = self.gates.join(f"ip {address}", self.settings.per_ip)
            if self.slots.get(slot.key) is slot:
                self._consider(slot)
            elif slot.ip is not None:  # forgotten meanwhile: it holds no gate
                self.gates.leave(slot.ip)

    # ------------------------------------------------------------------ handing out work

    def next_job(self) -> Job | None:
        """A job that may start now, or None."""
        # Once open requests hold what is left of max_pages, _take hands out nothing and
        # puts the host straight back on the ready list: stop instead of cycling through
        # it for ever without yielding.
        while self._ready and self.budget.can_take():
            slot = self._ready.popleft()
            slot.in_ready = False
            job = self._take(slot)
            if job is not None:
                return job
        return None

    def _take(self, slot: HostSlot) -> Job | None:
        now = time.monotonic()
        if self.needs_robots and slot.rules is not None and slot.rules.expires < now:
            slot.rules = None  # RFC 9309 2.4: fetch it again
        wait = slot.wait_time(now, self.needs_robots)
        if wait is None or wait > 0:
            self._consider(slot)
            return None
        if self.needs_robots and slot.rules is None:
            cached = self.robots.get(slot.key)
            if cached is None:
                slot.fetching_robots = True
                slot.started(now)
                self.open += 1
                return Job(slot.key, None)
            self._apply_rules(slot, cached)
        while slot.sitemaps:  # outside the page budget: a sitemap is no page
            fetch = slot.sitemaps.popleft()
            self.sitemaps -= 1
            assert fetch.sitemap is not None
            if slot.rules is None or slot.rules.allows(fetch.sitemap.url, self.settings.user_agent):
                slot.started(now)
                self.open += 1
                self._consider(slot)
                return fetch
            self._sitemap_failed(fetch, "sitemap: disallowed by robots.txt")
        job = None
        while slot.queue and job is None:
            if not self.budget.take():
                break
            candidate = slot.queue.popleft()
            self.in_ram -= 1
            self.on_taken(slot.key, len(slot.queue))
            item = candidate.item
            assert item is not None
            budget = self.settings.host_budget
            if slot.rules is not None and not slot.rules.allows(item.url, self.settings.user_agent):
                self.budget.add(-1)
                self._give_up(item, URLState.DISALLOWED, "robots.txt", Reason.ROBOTS)
            elif budget and slot.fetched >= budget:
                self.budget.add(-1)
                reason = f"host budget of {budget} pages reached"
                self._give_up(item, URLState.DROPPED, reason, Reason.HOST_BUDGET)
            else:
                job = candidate
        if job is not None:
            slot.started(now)
            slot.fetched += 1
            self.open += 1
        self._consider(slot)
        return job

    # ------------------------------------------------------------------ results

    def sent(self, host: str, at: float) -> None:
        """A request to `host` was written at loop time `at`: the delay runs from there, as
        the server sees it, not from when a worker took the job (connecting takes time)."""
        slot = self.slots.get(host)
        if slot is not None and slot.delay:
            slot.next_start = max(slot.next_start, at + slot.delay + SENT_MARGIN)

    def finish(
        self, job: Job, *, stored: bool, failed: str | None = None, elapsed: float | None = None
    ) -> None:
        """A job is over: free its slot; `failed` counts towards the host's failure limit;
        `elapsed` (the response time) spaces the next request when --delay-factor asks."""
        slot = self.slots[job.host]
        freed = slot.ended()
        self.open -= 1
        factor = self.settings.delay_factor
        if factor and elapsed is not None:
            wait = min(self.settings.max_delay, factor * elapsed)
            slot.next_start = max(slot.next_start, time.monotonic() + wait)
        if job.robots:
            slot.fetching_robots = False
        elif job.sitemap is not None:
            pass  # no page: nothing to give back to the budget
        elif not stored:
            self.budget.add(-1)  # the page was not fetched after all
        if stored:
            self.stored += 1
        if failed is None:
            slot.failures = 0
        else:
            slot.failures += 1
            if slot.failures >= self.settings.host_failures and not slot.dead:
                reason = f"host dropped after {slot.failures} failures in a row: {failed}"
                self._kill(slot, reason)
        for gate in freed:  # the origins kept waiting go first: fair to http and https
            self._release(gate, slot)
        self._consider(slot)

    def retry(self, job: Job, after: float) -> None:
        """Queue `job` again at the front of its host, keeping the whole host quiet `after` s."""
        slot = self.slots[job.host]
        freed = slot.ended()
        self.open -= 1
        slot.back_off(time.monotonic(), after)
        again = dataclasses.replace(job, attempt=job.attempt + 1)
        if job.sitemap is not None:  # no page: nothing to give back to the budget
            slot.sitemaps.appendleft(again)
            self.sitemaps += 1
        else:
            self.budget.add(-1)
            slot.fetched -= 1
            slot.queue.appendleft(again)
            self.in_ram += 1
        if slot.dead:  # the host died while this request was out: no new attempt
            self._drain_dead(slot)
        for gate in freed:
            self._release(gate, slot)
        self._consider(slot)

    def back_off(self, host: str, seconds: float) -> None:
        """The server asked us to wait (Retry-After): the whole host waits."""
        self.slots[host].back_off(time.monotonic(), seconds)

    def lapsed(self, host: str, since: float) -> None:
        """`host` was leased from a worker whose lease lapsed `since` seconds ago, and which
        may have sent it a request until then: the first one here waits the delay from the
        lapse (a Crawl-delay read later moves it on, as from any start)."""
        slot = self.slots.get(host) or self._slot(host)
        lapse = time.monotonic() - since  # no earlier: `since` was measured before now
        slot.next_start = max(slot.next_start, lapse + slot.delay + SENT_MARGIN)
        self._consider(slot)

    def robots_loaded(self, job: Job, rules: Rules) -> None:
        slot = self.slots[job.host]
        slot.robots_failures = 0
        # The parsed rules stay, not the body (up to 500 KB): the store keeps that.
        self.robots.put(slot.key, dataclasses.replace(rules, body=None))
        self._apply_rules(slot, rules)
        self.finish(job, stored=False)

    def robots_retry(self, job: Job, after: float) -> None:
        """robots.txt found the host unreachable: hold the host, ask again in `after` s."""
        slot = self.slots[job.host]
        slot.robots_failures += 1
        slot.back_off(time.monotonic(), after)
        self.finish(job, stored=False)

    def robots_failures(self, job: Job) -> int:
        return self.slots[job.host].robots_failures

    def robots_failed(self, job: Job, reason: str) -> None:
        """robots.txt stayed unreachable: every URL of the host gets an error row."""
        slot = self.slots[job.host]
        if not slot.dead:
            self._kill(slot, reason)
        self.finish(job, stored=False)

    def _apply_rules(self, slot: HostSlot, rules: Rules) -> None:
        slot.rules = rules
        if rules.crawl_delay is not None:
            delay = max(self.settings.delay, min(rules.crawl_delay, self.settings.max_crawl_delay))
            # next_start was set from the last start (the robots.txt request itself) with
            # the old delay: the next page waits the Crawl-delay from that start.
            slot.next_start += delay - slot.delay
            slot.delay = delay

    def _give_up(self, item: QueuedURL, state: URLState, text: str, reason: Reason) -> None:
        self.dropped += 1
        chain = None
        if item.origin is not None:  # the redirect chain that led here ends unfetched
            chain = ChainEnd(item.origin, item.url, None, f"redirect target not fetched: {text}")
        self.emit(
            Outcome(url=item.url, state=state, reason=text, skipped=((reason, 1),), chain_end=chain)
        )

    def _sitemap_failed(self, job: Job, error: str) -> None:
        """A sitemap given up on before its fetch: its row says why."""
        assert job.sitemap is not None
        done = dataclasses.replace(job.sitemap, state="done", error=error, fetched_at=time.time())
        self.emit(Outcome(url="", state=None, sitemaps=(done,)))

    def _kill(self, slot: HostSlot, reason: str) -> None:
        slot.dead = reason
        self._dead[slot.key] = reason
        log.warning("%s: %s", slot.key, reason)
        self._drain_dead(slot)

    def _drain_dead(self, slot: HostSlot) -> None:
        """One error row per queued URL (and sitemap) of a host we stopped trying."""
        assert slot.dead is not None
        while slot.sitemaps:
            self.sitemaps -= 1
            self._sitemap_failed(slot.sitemaps.popleft(), f"sitemap: {slot.dead}")
        while slot.queue:
            item = slot.queue.popleft().item
            self.in_ram -= 1
            assert item is not None
            self.dropped += 1
            self.stored += 1
            self.budget.add(1)
            row = PageRow.failed(item.url, item.host, item.depth, slot.dead, attempts=0)
            outcome = error_outcome(item, row)
            self.on_failed_row(slot.dead, outcome.change)
            self.emit(outcome)
