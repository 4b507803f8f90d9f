"""The engine wires the parts: frontier -> workers (fetch, parse) -> storage.

`concurrency` workers share one `ClientSession`; each asks the frontier for a job the
politeness rules allow now, fetches it, turns the response into one `Outcome` and hands
that to storage, whose writer task commits outcomes in batches. A first SIGINT/SIGTERM
stops handing out work and lets open requests finish; a second cancels them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import signal
import time
import zlib
from dataclasses import dataclass, field

import aiohttp

from crawler.config import Settings
from crawler.errors import StoreFailure, UsageError
from crawler.fetcher import Response, fetch, make_session
from crawler.frontier import Frontier
from crawler.hosts import MAX_RETRY_AFTER, Job, backoff_seconds
from crawler.netbytes import location_url
from crawler.parser import ParsedPage, extract_links, is_html
from crawler.partition import PageBudget, Partition
from crawler.reasons import Reason
from crawler.robots import RobotsCache, fetch_rules
from crawler.scope import Scope
from crawler.storage import ChainEnd, NewURL, Outcome, PageRow, Storage
from crawler.urls import canonical_url

log = logging.getLogger(__name__)

FLUSH_INTERVAL = 0.25  # seconds between commits when batches do not fill up sooner
BACKLOG_BYTES = 12_000_000  # RAM held by outcomes awaiting the writer before workers help write


@dataclass(slots=True)
class Counters:
    """Live numbers for progress display and the final summary."""

    started: float = field(default_factory=time.monotonic)
    pages: int = 0  # pages stored this run
    errors: int = 0  # rows with a network error
    http_errors: int = 0  # rows with status >= 400
    retries: int = 0
    bytes: int = 0
    errors_by_kind: dict[str, int] = field(default_factory=dict)
    by_status_class: dict[str, int] = field(default_factory=dict)  # "2xx": n; "error": no status

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def failed_row(self, reason: str) -> None:
        """An error row written without a response (a network error, a dropped host)."""
        self.pages += 1
        self.errors += 1
        kind = reason.split(":", 1)[0]
        self.errors_by_kind[kind] = self.errors_by_kind.get(kind, 0) + 1
        self.by_status_class["error"] = self.by_status_class.get("error", 0) + 1

    @property
    def rate(self) -> float:
        return self.pages / self.elapsed if self.elapsed > 0 else 0.0


@dataclass(frozen=True, slots=True)
class Summary:
    pages: int  # stored this run
    total_pages: int  # stored in the database
    errors: int
    elapsed: float
    finished: bool  # the frontier ran dry (or max_pages was reached)
    interrupted: bool
    http_errors: int = 0  # this run, status >= 400
    bytes: int = 0  # body bytes received this run
    errors_by_kind: dict[str, int] = field(default_factory=dict)
    by_status_class: dict[str, int] = field(default_factory=dict)


def canonical_seeds(seeds: list[str], max_length: int) -> list[str]:
    """Seeds in canonical form; a UsageError naming the first one that is not a web URL."""
    out = []
    for seed in seeds:
        url = canonical_url(seed.strip(), max_length=max_length)
        if url is None or "://" not in seed:
            raise UsageError(f"invalid seed URL {seed!r}: expected an http:// or https:// URL")
        out.append(url)
    return out


class Engine:
    def __init__(
        self,
        storage: Storage,
        settings: Settings,
        seeds: list[str],
        *,
        resolver: aiohttp.abc.AbstractResolver | None = None,
        partition: Partition | None = None,
        budget: PageBudget | None = None,
    ) -> None:
        self.storage = storage
        self.settings = settings
        self.seeds = seeds
        self.resolver = resolver  # None: aiohttp's own name resolution
        self.counters = Counters()
        self.scope = Scope.from_settings(seeds, settings.scope, settings.allow, settings.deny)
        self.partition = partition  # None: this process crawls every host (processes.py)
        self.frontier = Frontier(
            settings, self.scope, storage, RobotsCache(), partition=partition, budget=budget
        )
        self.frontier.on_fatal = self._fatal
        self.frontier.on_failed_row = self.counters.failed_row
        self._session: aiohttp.ClientSession | None = None
        self._stops = 0
        self._workers: list[asyncio.Task[None]] = []
        self._failure: BaseException | None = None  # what stopped the crawl at once

    # ------------------------------------------------------------------ lifecycle

    async def run(
        self, new_seeds: list[str] | None = None, *, handle_signals: bool = False
    ) -> Summary:
        """Crawl until the frontier is empty, max_pages is reached, or we are stopped.

        The file's own bookkeeping (deferred indexes, `crawl.finished_at`) is the caller's,
        (`Storage.deferred_indexes`, `mark_finished`): with --processes, several engines
        write one file.
        """
        await self.frontier.load(new_seeds if new_seeds is not None else self.seeds)
        writer = asyncio.create_task(self._write_loop())
        writer.add_done_callback(self._task_done)
        if handle_signals:
            self._install_signals()
        try:
            async with make_session(self.settings, resolver=self.resolver) as session:
                self._session = session
                self._workers = [
                    asyncio.create_task(self._work()) for _ in range(self.settings.concurrency)
                ]
                for task in self._workers:
                    task.add_done_callback(self._task_done)
                await asyncio.gather(*self._workers, return_exceptions=True)
        finally:
            if handle_signals:
                self._remove_signals()
            self.frontier.close()
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            if self._failure is None:
                await self.storage.flush()
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
        )

    def stop(self) -> None:
        """First call: finish open requests, start no new ones. Second: cancel them too."""
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
            exc = StoreFailure(f"internal: {type(exc).__name__}: {exc}")  # one line, exit 1
        self._failure = exc
        self.frontier.stop()
        for task in self._workers:
            task.cancel()

    async def _write_loop(self) -> None:
        while True:
            await self.storage.wait_full(FLUSH_INTERVAL)
            await self.storage.flush()

    # ------------------------------------------------------------------ workers

    async def _work(self) -> None:
        while (job := await self.frontier.get()) is not None:
            try:
                if job.robots:
                    await self._robots(job)
                else:
                    await self._page(job)
            except (StoreFailure, asyncio.CancelledError):
                raise
            except Exception as exc:
                # A bug while handling one URL costs that URL an error row, not the worker
                # (which would shrink concurrency for good, and again on every resume).
                log.debug("internal error on %s", job.item or job.host.key, exc_info=True)
                self._internal_error(job, f"internal: {type(exc).__name__}: {exc}")

    def _internal_error(self, job: Job, reason: str) -> None:
        if job.robots:
            self.frontier.robots_failed(job, f"robots.txt unreachable: {reason}")
            return
        item = job.item
        assert item is not None
        row = PageRow.failed(item.url, item.host, item.depth, reason[:300], attempts=job.attempt)
        self.counters.failed_row(reason)
        self.storage.add(Outcome(url=item.url, state="done", page=row))
        self.frontier.finish(job, stored=True, failed=None)

    async def _robots(self, job: Job) -> None:
        assert self._session is not None
        try:
            rules = await fetch_rules(
                self._session,
                job.host.key,
                self.settings.user_agent,
                timeout=self.settings.timeout,
            )
        except BaseException:
            self.frontier.finish(job, stored=False)
            raise
        if rules.unreachable:
            # RFC 9309 2.3.1.4: hold the host and ask again on the page retry schedule.
            slot = job.host
            after = rules.retry_after
            if slot.robots_failures < self.settings.retries and (
                after is None or after <= MAX_RETRY_AFTER
            ):
                self.counters.retries += 1
                wait = after if after is not None else backoff_seconds(slot.robots_failures + 1)
                self.frontier.robots_retry(job, wait)
                return
            await self.storage.save_robots(job.host.key, rules.status, rules.error, rules.body)
            self.frontier.robots_failed(job, rules.error or "robots.txt unreachable")
            return
        await self.storage.save_robots(job.host.key, rules.status, rules.error, rules.body)
        self.frontier.robots_loaded(job, rules)

    async def _page(self, job: Job) -> None:
        assert self._session is not None and job.item is not None
        settings = self.settings
        try:
            resp = await fetch(
                self._session, job.item.url, timeout=settings.timeout, max_bytes=settings.max_bytes
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
            job.host.back_off(time.monotonic(), min(wait, MAX_RETRY_AFTER))
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
        outcome = self._outcome(job, resp)
        self.storage.add(outcome)
        self.frontier.finish(job, stored=True, failed=failed)
        if self.storage.backlog_bytes >= BACKLOG_BYTES:
            # Back-pressure: when SQLite falls behind, workers wait for the write
            # instead of piling outcomes up in RAM.
            await self.storage.flush()

    def _outcome(self, job: Job, resp: Response) -> Outcome:
        item = job.item
        assert item is not None
        settings = self.settings
        counters = self.counters
        counters.pages += 1
        counters.bytes += len(resp.body)
        if resp.error is not None:
            counters.errors += 1
            kind = resp.error.split(":", 1)[0]
            counters.errors_by_kind[kind] = counters.errors_by_kind.get(kind, 0) + 1
        elif resp.status is not None and resp.status >= 400:
            counters.http_errors += 1
        klass = f"{resp.status // 100}xx" if resp.status is not None else "error"
        counters.by_status_class[klass] = counters.by_status_class.get(klass, 0) + 1
        log.debug("%s %s (%.3fs)", resp.status or resp.error, item.url, resp.elapsed)

        new: list[NewURL] = []
        links: list[tuple[str, str, int]] = []
        skipped: dict[str, int] = {}
        parsed: ParsedPage | None = None
        redirect_to = None
        error = resp.error
        final_url: str | None = item.url if resp.status is not None else None
        final_status = resp.status
        chain_error: str | None = None  # the redirect chain through this URL failed
        continues = False  # the chain goes on with a next hop
        status = resp.status or 0
        content_type = resp.content_type
        if 300 <= status < 400 and (location := resp.header("Location")) is not None:
            redirect_to = canonical_url(
                location_url(location), item.url, max_length=settings.max_url_length
            )
            if redirect_to is None:
                error = chain_error = f"redirect to an unusable URL: {location[:200]!r}"
            elif item.hops >= settings.max_redirects:
                error = chain_error = f"redirect limit of {settings.max_redirects} hops reached"
            elif redirect_to in (item.url, item.origin):
                error = chain_error = "redirect loop"  # the chain has no final URL
            else:
                hop = self.frontier.redirect(job, redirect_to)
                if isinstance(hop, NewURL):
                    new.append(hop)
                    final_status, continues = None, True  # known when the chain ends
                elif hop is not None:
                    chain_error = f"redirect target not followed: {hop.value}"
                    skipped[hop] = 1
                else:
                    final_status = None  # the chain ends at a URL the crawl already knows
            final_url = None if error == "redirect loop" else redirect_to
        elif error is not None and item.origin is not None:
            chain_error = error  # the chain's last hop failed
        if chain_error is not None:
            final_status = None  # the chain ended at no response
        chain_end = None
        if not continues and (item.origin or chain_error or redirect_to):
            # The chain through this URL ended here (at a final status, an error, or a URL
            # already known): every row of the chain learns where.
            chain_end = ChainEnd(item.origin or item.url, final_url, final_status, chain_error)
        if 200 <= status < 300 and is_html(content_type) and resp.body:
            parsed = extract_links(
                resp.body,
                item.url,
                content_type,
                max_links=settings.max_links,
                max_url_length=settings.max_url_length,
            )
            src = item.url
            links = [(src, dst, 0) for dst in parsed.links]
            links.extend((src, dst, 1) for dst in parsed.nofollow)
            new.extend(self.frontier.discover(job, parsed.links, skipped))
            if parsed.nofollow:
                skipped[Reason.NOFOLLOW] = len(parsed.nofollow)
            if parsed.too_long:
                skipped[Reason.TOO_LONG] = parsed.too_long

        body: bytes | None = resp.body if resp.status is not None else None
        codec = None
        if body and settings.compress:
            body, codec = zlib.compress(body, 6), "zlib"
        page = PageRow(
            url=item.url,
            final_url=final_url,
            status=resp.status,
            error=error,
            content_type=content_type,
            depth=item.depth,
            fetched_at=time.time(),
            body=body,
            host=item.host,
            headers=json.dumps(resp.headers) if resp.headers else None,
            elapsed=round(resp.elapsed, 6),
            size=len(resp.body) if resp.status is not None else None,
            truncated=resp.truncated,
            links_found=len(links) if parsed is not None else None,
            links_truncated=parsed.truncated if parsed is not None else False,
            redirect_to=redirect_to,
            attempts=job.attempt,
            body_codec=codec,
            # Plain bodies are hashed by storage, off the event loop.
            content_hash=hashlib.sha1(resp.body).hexdigest() if codec and resp.body else None,
            title=parsed.title if parsed is not None else None,
            final_status=final_status,
        )
        return Outcome(
            url=item.url,
            state="done",
            page=page,
            links=links,
            new_urls=new,
            chain_end=chain_end,
            skipped=tuple(skipped.items()),
        )
