"""The frontier: what a worker fetches next, assembled from parts with one job each.

`Admission` decides which discovered URLs enter (seen-set, scope, traps, depth);
`Window` keeps a bounded share of the store's queued URLs in RAM and refills it per
host; `Scheduler` hands out a job only from a host whose politeness allows one now;
`Solo`/`Partitioned` say which hosts are this process's and whether others still have
work. The frontier wires them to the store and answers the engine's questions: `get`,
`discover`, `finish`, `retry`, and the robots.txt outcomes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence

from crawler.addresses import Addresses
from crawler.admission import Admission
from crawler.config import Settings
from crawler.coordination import Leased, Partitioned, Solo, StoreBudget
from crawler.partition import PageBudget, Partition
from crawler.reasons import Reason
from crawler.records import Job, NewURL, Outcome, QueuedURL
from crawler.robots import RobotsCache, Rules
from crawler.scheduler import Scheduler
from crawler.scope import Scope
from crawler.seen import RecentSeen, SeenSet
from crawler.sitemap_queue import SitemapQueue
from crawler.sitemaps import Entry
from crawler.store import Store
from crawler.urls import server_key
from crawler.window import Window

log = logging.getLogger(__name__)


class Frontier:
    def __init__(
        self,
        settings: Settings,
        scope: Scope,
        store: Store,
        robots_cache: RobotsCache,
        *,
        window: int = 50_000,
        host_window: int = 5_000,
        scan_batch: int = 2_000,
        partition: Partition | None = None,
        budget: PageBudget | None = None,
        poll_interval: float = 0.05,
        on_fatal: Callable[[BaseException], None] | None = None,
        on_failed_row: Callable[[str, str], None] = lambda reason, change: None,
        addresses: Addresses | None = None,
    ) -> None:
        self.settings = settings
        self.addresses = addresses  # --per-ip: the crawl's resolved names
        self._lookups: set[asyncio.Task[None]] = set()
        self.store = store
        self.budget = budget or PageBudget(settings.max_pages)
        # A store that deduplicates itself needs only a cache of recent URLs in front.
        self.seen = RecentSeen() if store.dedups else SeenSet()
        self.admission = Admission(settings, scope, self.seen)
        self.coordination: Solo
        if hasattr(store, "lease_hosts"):  # a store shared by workers on many machines
            wanted = max(4, 2 * settings.concurrency // settings.per_host)
            self.coordination = Leased(store, hosts_wanted=wanted)
            if settings.max_pages:  # counted in the store, whatever `budget` was given
                self.budget = self.coordination.budget = StoreBudget(
                    store,
                    settings.max_pages,
                    lambda: min(self.scheduler.in_ram, settings.concurrency),
                )
        elif partition is not None:
            self.coordination = Partitioned(partition, poll_interval)
        else:
            self.coordination = Solo()
        self.on_fatal = on_fatal or _unhandled
        if isinstance(self.coordination, Partitioned | Leased):
            self.coordination.on_fatal = self._fatal
        self._lease: Leased | None = None  # a shared store's leases: asked before each job
        if isinstance(self.coordination, Leased):
            self.coordination.idle = self._idle_servers
            self._lease = self.coordination
        # Called as each request is about to be written (`make_session`): past the
        # leases' lapse it raises, and the request is not sent. None: no leases, no cost.
        self.before_send = self._lease.check if self._lease is not None else None
        if isinstance(self.budget, StoreBudget):
            self.budget.on_fatal = self._fatal
        self.scheduler = Scheduler(
            settings,
            self.budget,
            robots_cache,
            emit=store.add,
            on_failed_row=on_failed_row,
            on_taken=self._taken,
            address=addresses.address if addresses else lambda host: None,
            resolve=self._resolve,
        )
        if isinstance(self.budget, StoreBudget):
            self.budget.on_granted = self.scheduler.wake_all
        self.window = Window(
            store,
            self.scheduler,
            self.seen,
            size=window,
            host_size=host_window,
            min_share=max(16, 4 * settings.per_host),
            scan_batch=scan_batch,
            keep_cursors=self.coordination.keep_cursors,
            on_fatal=self._fatal,
        )
        self.sitemaps = SitemapQueue(settings, store, self.scheduler, self.admission, self._queue)
        if isinstance(self.coordination, Leased):
            self.coordination.on_sitemaps = self.sitemaps.leased
            self.coordination.on_lapsed = self.scheduler.lapsed
        self._stopping = False
        store.on_commit = self._committed

    # ------------------------------------------------------------------ setup

    async def load(self, seeds: Sequence[str]) -> None:
        """Rebuild the seen-set from the store and queue `seeds` that are new."""
        own = self.coordination.owns
        await self.coordination.start(self.store)  # before the seen-set: see Partitioned
        async for url in self.store.seen_urls():
            self.seen.add(url)
        self.scheduler.stored = await self.store.page_count()
        if isinstance(self.budget, StoreBudget):
            await self.budget.poll()  # every worker's pages, from the crawl's own count
        else:
            self.budget.start(self.scheduler.stored)
        if self.settings.host_budget:
            self.scheduler.host_pages = await self.store.host_page_counts()
        for host in await self.store.queued_hosts():
            if own(host):
                self.window.spilled(host)  # queued rows from an earlier run
        await self.sitemaps.load(own)
        new = []
        refused: dict[str, int] = {}
        for url in seeds:
            n = self.admission.admit(url, depth=0)
            if isinstance(n, NewURL):
                new.append(self._queue(n))
            elif n is not None:  # counted in `skipped`, so `stats` shows it too
                log.warning("seed %s is not crawled: %s", url, n.value)
                refused[n.value] = refused.get(n.value, 0) + 1
        if new or refused:
            self.store.add(
                Outcome(url="", state=None, new_urls=new, skipped=tuple(refused.items()))
            )
        await self.coordination.committed_seeds(self.store)

    # ------------------------------------------------------------------ numbers

    @property
    def queued(self) -> int:
        return self.scheduler.in_ram

    @property
    def in_flight(self) -> int:
        return self.scheduler.open

    @property
    def active_hosts(self) -> int:
        return len(self.scheduler.slots)

    @property
    def stored(self) -> int:
        return self.scheduler.stored

    @property
    def dropped(self) -> int:
        return self.scheduler.dropped

    # ------------------------------------------------------------------ discovery

    def discover(self, job: Job, links: Iterable[str], skipped: dict[str, int]) -> list[NewURL]:
        """Admit the new links of a fetched page; the rows to persist. Links not followed
        are counted into `skipped` by reason."""
        assert job.item is not None
        new = self.admission.links(links, job.item.depth + 1, skipped)
        for n in new:
            self._queue(n)
        return new

    def redirect(self, job: Job, target: str) -> NewURL | Reason | None:
        """Admit a redirect target as the next hop of `job`'s chain (same depth);
        None when the target is already known, a Reason when it is not followed."""
        assert job.item is not None
        n = self.admission.redirect(job.item, target)
        if isinstance(n, NewURL):
            self._queue(n)
        return n

    def _queue(self, n: NewURL) -> NewURL:
        # A store that deduplicates itself says after the commit which URLs were new.
        if not self.store.dedups and self.coordination.owns(n.host):
            self.window.offer(QueuedURL(0, n.url, n.host, n.depth, n.hops, n.origin))
        return n  # else a queued row, for whoever holds the host

    # ------------------------------------------------------------------ handing out work

    async def get(self) -> Job | None:
        """The next job a worker may start now; None when the crawl is over or stopping."""
        lease = self._lease
        while not self._stopping:
            if lease is not None and not lease.live():
                return None  # lapsed while the loop was blocked: the crawl stops now
            self.window.maybe_refill()
            self.coordination.watch(self.store, self._others_found, self._done)
            job = self.scheduler.next_job()
            if job is not None:
                return job
            if self._finished():
                self.scheduler.wake_all()
                return None
            await self.scheduler.wait()
        return None

    def _finished(self) -> bool:
        if self.scheduler.open:
            return False
        if self.budget.left() <= 0:
            return True
        if self.scheduler.in_ram or self.scheduler.sitemaps or self.window.busy:
            return False
        return not self.coordination.others_busy

    def _done(self) -> bool:
        """For the process watcher: stop watching (and wake every worker) when over."""
        if self._stopping:
            return True
        if self._finished():
            self.scheduler.wake_all()
            return True
        return False

    def _others_found(self, hosts: list[str]) -> None:
        for host in hosts:
            self.window.spilled(host)
        if hosts:
            self.scheduler.wake_one()

    def _taken(self, host: str, left: int) -> None:
        self.window.taken(host, left)

    # ------------------------------------------------------------------ results

    def finish(
        self, job: Job, *, stored: bool, failed: str | None = None, elapsed: float | None = None
    ) -> None:
        """A job is over: free its slot; `failed` counts towards the host's failure limit."""
        self.scheduler.finish(job, stored=stored, failed=failed, elapsed=elapsed)
        self._wake_if_finished()

    def sent(self, job: Job) -> Callable[[float], None]:
        """What the fetcher calls when `job`'s request is written (the politeness clock)."""
        host, scheduler = job.host, self.scheduler
        return lambda at: scheduler.sent(host, at)

    def retry(self, job: Job, after: float) -> None:
        """Queue `job` again at the front of its host, keeping the whole host quiet `after` s."""
        self.scheduler.retry(job, after)
        self._wake_if_finished()

    def back_off(self, job: Job, seconds: float) -> None:
        """The server asked us to wait (Retry-After): the whole host waits."""
        self.scheduler.back_off(job.host, seconds)

    def sitemap_read(
        self,
        job: Job,
        *,
        status: int | None,
        error: str | None,
        kind: str | None = None,
        entries: Sequence[Entry] = (),
        redirect: str | None = None,
    ) -> None:
        """A sitemap's fetch is over: its row, and what it lists (`SitemapQueue.read`)."""
        assert job.sitemap is not None
        self.sitemaps.read(
            job.sitemap, status=status, error=error, kind=kind, entries=entries, redirect=redirect
        )
        self.finish(job, stored=False)

    def robots_loaded(self, job: Job, rules: Rules) -> None:
        # The sitemaps it names are queued first: the crawl must not end in between.
        self.sitemaps.named(job.host, rules)
        self.scheduler.robots_loaded(job, rules)
        self._wake_if_finished()

    def robots_retry(self, job: Job, after: float) -> None:
        self.scheduler.robots_retry(job, after)
        self._wake_if_finished()

    def robots_failures(self, job: Job) -> int:
        """How often robots.txt of `job`'s host found it unreachable in a row."""
        return self.scheduler.robots_failures(job)

    def robots_failed(self, job: Job, reason: str) -> None:
        self.scheduler.robots_failed(job, reason)
        self._wake_if_finished()

    def _wake_if_finished(self) -> None:
        if self._finished():
            self.scheduler.wake_all()

    def _committed(self, batch: list[Outcome], inserted: Sequence[str]) -> None:
        if self.store.dedups and inserted:
            new = set(inserted)
            own = self.coordination.owns
            for o in batch:
                for n in o.new_urls:
                    if n.url in new and own(n.host):
                        # -1: committed, but not claimed (a claim skips it: pending).
                        self.window.offer(QueuedURL(-1, n.url, n.host, n.depth, n.hops, n.origin))
        if self.window.committed(batch):
            self.scheduler.wake_one()

    def _idle_servers(self) -> dict[str, float]:
        """Leased servers none of whose origins has anything queued, in flight or left in
        the store for this worker, and the seconds until each may be fetched again."""
        now = time.monotonic()
        out = dict.fromkeys(self.store.leased, 0.0)  # type: ignore[attr-defined]
        for host in self.window.held():
            out.pop(server_key(host), None)
        for host, slot in self.scheduler.slots.items():
            server = server_key(host)
            if server not in out:
                continue
            if slot.queue or slot.sitemaps or slot.open or slot.fetching_robots:
                del out[server]
            else:  # the origins of a server share its gate, and so its next start
                out[server] = max(out[server], slot.next_start - now)
        return out

    def _fatal(self, exc: BaseException) -> None:
        self.on_fatal(exc)

    # ------------------------------------------------------------------ stopping

    def stop(self) -> None:
        """Hand out nothing more; workers finish what they hold and return."""
        self._stopping = True
        self.window.stopping = True
        self.scheduler.wake_all()

    def _resolve(self, name: str) -> None:
        """Look `name` up for --per-ip, off the scheduler's path; its slots wait meanwhile."""
        task = asyncio.get_running_loop().create_task(self._lookup(name))
        self._lookups.add(task)
        task.add_done_callback(self._lookups.discard)

    async def _lookup(self, name: str) -> None:
        if self.addresses is not None:
            # A name that does not resolve fails its fetches, with the resolver's error.
            with contextlib.suppress(Exception):
                await self.addresses.resolve(name.strip("[]"))
        self.scheduler.resolved(name)

    def close(self) -> None:
        for task in self._lookups:
            task.cancel()
        self.scheduler.close()
        self.window.close()
        self.coordination.close()
        if isinstance(self.budget, StoreBudget):
            self.budget.close()


def _unhandled(exc: BaseException) -> None:
    raise exc
