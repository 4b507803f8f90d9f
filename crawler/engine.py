"""The engine runs one crawl: frontier -> workers (fetch) -> outcomes -> store.

`concurrency` workers share one `ClientSession`; each asks the frontier for a job the
politeness rules allow now, fetches it, has `Outcomes` turn the response into one
`Outcome` and hands that to the store, whose writer task commits outcomes in batches
(a robots.txt or sitemap job goes to `HostFiles` instead, `host_files.py`).
A first SIGINT/SIGTERM stops handing out work and lets open requests finish; a second
cancels them. A job that raises costs its URL an error row; the store or a background
task failing stops the whole crawl at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
import urllib.request
from typing import Any

import aiohttp
import yarl

from crawler.addresses import Addresses
from crawler.config import Settings
from crawler.counters import Counters
from crawler.errors import InternalError, StoreFailure
from crawler.fetcher import fetch, make_session
from crawler.frontier import Frontier
from crawler.hooks import Hooks
from crawler.host_files import HostFiles
from crawler.hosts import MAX_RETRY_AFTER, backoff_seconds
from crawler.network import Network
from crawler.outcome import Outcomes
from crawler.partition import PageBudget, Partition
from crawler.records import Job, PageRow, Summary
from crawler.revisit import conditional_headers, error_outcome
from crawler.robots import RobotsCache
from crawler.runoptions import NO_OPTIONS, RunOptions, duration_text
from crawler.scope import Scope
from crawler.store import Store

log = logging.getLogger(__name__)

FLUSH_INTERVAL = 0.25  # seconds between commits when batches do not fill up sooner
BACKLOG_BYTES = 12_000_000  # RAM held by outcomes awaiting the writer before workers help write


class Engine:
    def __init__(
        self,
        store: Store,
        settings: Settings,
        seeds: list[str],
        *,
        options: RunOptions = NO_OPTIONS,
        resolver: aiohttp.abc.AbstractResolver | None = None,
        partition: Partition | None = None,
        budget: PageBudget | None = None,
        hooks: Hooks | None = None,
        deadline: float | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.seeds = seeds
        self.options = options  # this run's own: headers, proxy, --resolve, time limit
        self.deadline = deadline  # unix time the time limit ends (None: time_limit from now)
        self.resolver = resolver  # None: aiohttp's own name resolution (under the guard)
        self.network = Network(settings, options, _hosts(seeds), resolver=resolver)
        # --per-ip resolves each name once per crawl and groups hosts by the address the
        # connector then uses: it asks the guarded resolver, so both see checked answers.
        self.addresses = Addresses(self.network.resolver) if settings.per_ip else None
        if self.addresses is not None:
            self.network.resolver = self.addresses
        self.counters = Counters()
        self.scope = Scope.from_settings(seeds, settings.scope, settings.allow, settings.deny)
        self.partition = partition  # None: this process crawls every host (processes.py)
        self.frontier = Frontier(
            settings,
            self.scope,
            store,
            RobotsCache(),
            partition=partition,
            budget=budget,
            on_fatal=self._fatal,
            on_failed_row=self.counters.failed_row,
            addresses=self.addresses,
        )
        self.outcomes = Outcomes(settings, self.frontier, hooks)
        self.files = HostFiles(settings, store, self.frontier, self.network, self.counters)
        self._session: aiohttp.ClientSession | None = None
        self._stops = 0
        self._workers: list[asyncio.Task[None]] = []
        self._failure: BaseException | None = None  # what stopped the crawl at once
        self.stopped_by: str | None = None  # why the run stopped early: a signal, the time limit

    def snapshot(self) -> dict[str, Any]:
        """The live numbers, as plain data: what progress, `/status` and a JSON progress
        line show."""
        c = self.counters
        f = self.frontier
        return {
            "pages": c.pages,
            "pages_per_s": round(c.rate, 2),
            "in_flight": f.in_flight,
            "queued": f.queued,
            "hosts_active": f.active_hosts,
            "errors": c.errors,
            "errors_by_kind": dict(sorted(c.errors_by_kind.items())),
            "http_errors": c.http_errors,
            "retries": c.retries,
            "bytes": c.bytes,
            "elapsed_s": round(c.elapsed, 3),
        }

    def status(self) -> dict[str, Any]:
        """The snapshot with what `/metrics` adds: per-status counts, the latency histogram."""
        c = self.counters
        return self.snapshot() | {
            "by_status_class": dict(sorted(c.by_status_class.items())),
            "by_status": dict(sorted(c.by_status.items())),
            "latency": c.latency.data(),
        }

    # ------------------------------------------------------------------ lifecycle

    async def run(
        self, new_seeds: list[str] | None = None, *, handle_signals: bool = False
    ) -> Summary:
        """Crawl until the frontier is empty, max_pages is reached, or we are stopped.

        The file's own bookkeeping (deferred indexes, `crawl.finished_at`) is the caller's,
        (`Store.deferred_indexes`, `mark_finished`): with --processes, several engines
        write one file.
        """
        await self.frontier.load(new_seeds if new_seeds is not None else self.seeds)
        writer = asyncio.create_task(self._write_loop())
        writer.add_done_callback(self._task_done)
        if handle_signals:
            self._install_signals()
        limit = self.options.time_limit
        if limit and self.deadline is not None:
            # A --processes child met its parent's deadline late: stop at once, gracefully.
            limit = max(0.001, self.deadline - time.time())
        timer = asyncio.get_running_loop().call_later(limit, self._time_up) if limit else None
        network = self.network
        if self.options.proxy == "env" and not network.proxies.by_scheme:
            log.warning("--proxy env: neither HTTP_PROXY nor HTTPS_PROXY is set: no proxy")
        elif not self.options.proxy and urllib.request.getproxies_environment().keys() & {
            "http",
            "https",
        }:  # never silently: a user who set HTTP_PROXY expects it used
            log.warning("HTTP_PROXY/HTTPS_PROXY is set but not used: give --proxy env to use it")
        try:
            async with make_session(
                self.settings, network=network, before_send=self.frontier.before_send
            ) as session:
                self._session = session
                self._workers = [
                    asyncio.create_task(self._work()) for _ in range(self.settings.concurrency)
                ]
                for task in self._workers:
                    task.add_done_callback(self._task_done)
                await asyncio.gather(*self._workers, return_exceptions=True)
        finally:
            if timer is not None:
                timer.cancel()
            await network.close()
            if handle_signals:
                self._remove_signals()
            self.frontier.close()
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            if self._failure is None:
                await self.store.flush()
        if self._failure is not None:
            raise self._failure
        interrupted = self._stops > 0
        finished = not interrupted
        return Summary(
            pages=self.counters.pages,
            total_pages=self.frontier.stored,
            errors=self.counters.errors,
            elapsed=self.counters.elapsed,
            finished=finished,
            interrupted=interrupted,
            http_errors=self.counters.http_errors,
            bytes=self.counters.bytes,
            errors_by_kind=dict(self.counters.errors_by_kind),
            by_status_class=dict(self.counters.by_status_class),
            not_downloaded=self.counters.not_downloaded,
            stopped_by=self.stopped_by if interrupted else None,
            changes=dict(self.counters.changes),
        )

    def _time_up(self) -> None:
        if self._stops:
            return
        self.stopped_by = f"time limit of {duration_text(self.options.time_limit)} reached"
        log.warning("%s: stopping; `crawler resume` continues", self.stopped_by)
        self.stop()

    def stop(self) -> None:
        """First call: finish open requests, start no new ones. Second: cancel them too."""
        if self.stopped_by is None:
            self.stopped_by = "signal"
        self._stops += 1
        self.frontier.stop()
        if self._stops == 1:
            log.warning(
                "stopping: finishing %d open request(s); interrupt again to stop at once",
                self.frontier.in_flight,
            )
        else:
            log.warning("stopping at once")
            for task in self._workers:
                task.cancel()

    def _signals(self) -> tuple[signal.Signals, ...]:
        # A partition's process hears only SIGTERM, from its parent: a Ctrl-C reaches the
        # whole process group, and the parent passes it on once, not twice.
        return (signal.SIGTERM,) if self.partition else (signal.SIGINT, signal.SIGTERM)

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in self._signals():
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stop)

    def _remove_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in self._signals():
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None:
            self._fatal(exc)

    def _fatal(self, exc: BaseException) -> None:
        """The store or a background task failed: stop fetching at once, keep the cause."""
        if self._failure is not None:
            return
        if not isinstance(exc, StoreFailure):
            log.error("crawl stopped by an internal error", exc_info=exc)
            exc = InternalError(f"internal: {type(exc).__name__}: {exc}")  # one line, exit 1
        self._failure = exc
        self.frontier.stop()
        for task in self._workers:
            task.cancel()

    async def _write_loop(self) -> None:
        while True:
            await self.store.wait_full(FLUSH_INTERVAL)
            await self.store.flush()

    # ------------------------------------------------------------------ workers

    async def _work(self) -> None:
        while (job := await self.frontier.get()) is not None:
            try:
                if job.robots:
                    assert self._session is not None
                    await self.files.robots(self._session, job)
                elif job.sitemap is not None:
                    assert self._session is not None
                    await self.files.sitemap(self._session, job)
                else:
                    await self._page(job)
            except (StoreFailure, asyncio.CancelledError):
                raise
            except Exception as exc:
                # A bug while handling one URL costs that URL an error row, not the worker
                # (which would shrink concurrency for good, and again on every resume).
                log.debug("internal error on %s", job.item or job.host, exc_info=True)
                self._internal_error(job, f"internal: {type(exc).__name__}: {exc}")

    def _internal_error(self, job: Job, reason: str) -> None:
        if job.robots:
            self.frontier.robots_failed(job, f"robots.txt unreachable: {reason}")
            return
        if job.sitemap is not None:
            self.frontier.sitemap_read(job, status=None, error=f"sitemap: {reason}")
            return
        item = job.item
        assert item is not None
        row = PageRow.failed(item.url, item.host, item.depth, reason[:300], attempts=job.attempt)
        outcome = error_outcome(item, row)
        self.counters.failed_row(reason, outcome.change)
        self.store.add(outcome)
        self.frontier.finish(job, stored=True, failed=None)

    async def _page(self, job: Job) -> None:
        assert self._session is not None and job.item is not None
        settings = self.settings
        try:
            resp = await fetch(
                self._session,
                job.item.url,
                timeout=settings.timeout,
                max_bytes=settings.max_bytes,
                on_sent=self.frontier.sent(job),
                network=self.network,
                accept=settings.accept_type,
                request_headers=conditional_headers(job.item.stored),
            )
        except BaseException:
            # Cancelled (second SIGINT): the URL stays queued in the file for resume.
            self.frontier.finish(job, stored=False)
            raise
        status = resp.status
        retryable = (status is None and resp.retryable) or status == 429 or (status or 0) >= 500
        wait = resp.retry_after if status == 429 or (status or 0) >= 500 else None
        if wait is not None:
            # RFC 9110 10.2.3: the server asked us to wait, so the whole host waits, also
            # when this URL has no attempt left; past MAX_RETRY_AFTER the URL is given up.
            self.frontier.back_off(job, min(wait, MAX_RETRY_AFTER))
            retryable = retryable and wait <= MAX_RETRY_AFTER
        if retryable and job.attempt <= settings.retries:
            self.counters.retries += 1
            self.frontier.retry(job, wait if wait is not None else backoff_seconds(job.attempt))
            return
        failed = None
        if status is None:
            failed = resp.error or "error"
        elif status == 429 or status >= 500:
            failed = f"HTTP {status}"
        log.debug("%s %s (%.3fs)", resp.status or resp.error, job.item.url, resp.elapsed)
        self.counters.response(resp.status, resp.error, len(resp.body), resp.elapsed)
        if not resp.downloaded:
            self.counters.not_downloaded += 1
        outcome = await self.outcomes.build(job, resp)
        self.counters.changed(outcome.change)
        self.store.add(outcome)
        self.frontier.finish(job, stored=True, failed=failed, elapsed=resp.elapsed)
        if self.store.backlog_bytes >= BACKLOG_BYTES:
            # Back-pressure: when the store falls behind, workers wait for the writer to
            # take the backlog instead of piling outcomes up in RAM.
            await self.store.make_room()


def _hosts(seeds: list[str]) -> list[str]:
    """The seeds' hosts (what the private-address guard lets through as the user's choice)."""
    return [h for h in (yarl.URL(s, encoded=True).host for s in seeds) if h]
