"""The jobs that fetch a host's own files, not pages: its robots.txt and its sitemaps."""

from __future__ import annotations

import time

import aiohttp

from crawler import robots, sitemaps
from crawler.config import Settings
from crawler.counters import Counters
from crawler.fetcher import fetch
from crawler.frontier import Frontier
from crawler.hosts import MAX_RETRY_AFTER, backoff_seconds
from crawler.netbytes import location_url
from crawler.network import Network
from crawler.records import Job
from crawler.robots import fetch_rules
from crawler.sitemaps import SitemapReader
from crawler.store import Store
from crawler.urls import canonical_url


class HostFiles:
    """What the engine's workers do with a robots.txt or a sitemap job: fetch it on the
    host's slot, retry it as a page is retried, and hand the result to the frontier."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        frontier: Frontier,
        network: Network,
        counters: Counters,
    ) -> None:
        self.settings = settings
        self.store = store
        self.frontier = frontier
        self.network = network
        self.counters = counters

    async def robots(self, session: aiohttp.ClientSession, job: Job) -> None:
        agent = self.settings.user_agent
        # RFC 9309 2.4: a copy fetched in the last 24 hours (by an earlier run, or before
        # the host's rules left the bounded cache) is used again, not fetched again.
        stored = await self.store.robots_for(job.host, time.time() - robots.TTL)
        if stored is not None:
            status, body, fetched_at = stored
            self.frontier.robots_loaded(job, robots.restored(status, body, agent, fetched_at))
            return
        try:
            rules = await fetch_rules(
                session,
                job.host,
                agent,
                timeout=self.settings.timeout,
                on_sent=self.frontier.sent(job),
                network=self.network,
            )
        except BaseException:
            self.frontier.finish(job, stored=False)
            raise
        if rules.unreachable:
            # RFC 9309 2.3.1.4: hold the host and ask again on the page retry schedule.
            failures = self.frontier.robots_failures(job)
            after = rules.retry_after
            if (
                rules.retryable
                and failures < self.settings.retries
                and (after is None or after <= MAX_RETRY_AFTER)
            ):
                self.counters.retries += 1
                wait = after if after is not None else backoff_seconds(failures + 1)
                self.frontier.robots_retry(job, wait)
                return
            await self.store.save_robots(job.host, rules.status, rules.error, rules.body)
            self.frontier.robots_failed(job, rules.error or "robots.txt unreachable")
            return
        # The host goes on while its copy is saved (with the next batch, on SQLite).
        self.frontier.robots_loaded(job, rules)
        await self.store.save_robots(job.host, rules.status, rules.error, rules.body)

    async def sitemap(self, session: aiohttp.ClientSession, job: Job) -> None:
        """Fetch a sitemap on its host's slot, streamed into a `SitemapReader` (50 MB
        whatever --max-bytes says); its row and entries go to the frontier. A network
        error, 429 or 5xx is tried again as a page is (--retries), then is the row's error."""
        assert job.sitemap is not None
        url = job.sitemap.url
        reader = SitemapReader()
        try:
            resp = await fetch(
                session,
                url,
                timeout=self.settings.timeout,
                max_bytes=sitemaps.MAX_BYTES,
                on_sent=self.frontier.sent(job),
                consume=reader.take,
                network=self.network,  # proxy and guard; never --accept-type (exempt)
            )
        except BaseException:
            self.frontier.finish(job, stored=False)  # cancelled: queued again on resume
            raise
        status, error, target = resp.status, resp.error, None
        if (status is None and resp.retryable) or status == 429 or (status or 0) >= 500:
            wait = resp.retry_after if status is not None else None
            if wait is not None:  # the server asked the whole host to wait, as for a page
                self.frontier.back_off(job, min(wait, MAX_RETRY_AFTER))
            if job.attempt <= self.settings.retries and (wait or 0) <= MAX_RETRY_AFTER:
                self.counters.retries += 1
                self.frontier.retry(job, wait if wait is not None else backoff_seconds(job.attempt))
                return
        if status is not None and 200 <= status < 300:
            reader.finish(truncated=resp.truncated)
            error = reader.error
        elif status is not None and 300 <= status < 400:
            location = resp.header("Location")
            target = canonical_url(location_url(location), url) if location else None
            if target is None:
                error = "sitemap: redirect to an unusable URL"
        elif status is not None:
            error = f"sitemap: HTTP {status}"
        self.frontier.sitemap_read(
            job,
            status=status,
            error=error,
            kind=reader.kind,
            entries=reader.entries,
            redirect=target,
        )
