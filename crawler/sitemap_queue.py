"""Which sitemaps the crawl fetches, and what their entries become.

A sitemap is found three ways: a `Sitemap:` line of a host's robots.txt, /sitemap.xml
tried when robots.txt names none (--sitemap-probe), or a `<sitemap>` of an index. Each
is queued once per crawl on its own host's slot (polite as a page, outside the page
budget) and gets a `sitemaps` row. What a sitemap lists is taken only on its own host or
on the host whose robots.txt led to it (cross-submission); URLs then go through
admission at depth 1 (scope, dedup, traps, --max-depth), robots.txt applies when they
are fetched, and every refusal is counted by reason, as for links.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

from crawler.admission import Admission
from crawler.config import Settings
from crawler.reasons import Reason
from crawler.records import NewURL, Outcome, Sitemap
from crawler.robots import Rules
from crawler.scheduler import Scheduler
from crawler.sitemaps import MAX_LEVEL, Entry
from crawler.store import Store
from crawler.urls import canonical_url, host_key

DEPTH = 1  # a sitemap's URLs are one hop from the seeds, as links of a home page
_Fact = tuple[str, str, str | None, str | None, float | None]


class SitemapQueue:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        scheduler: Scheduler,
        admission: Admission,
        queue: Callable[[NewURL], NewURL],
    ) -> None:
        self.on = settings.sitemaps and not settings.ignore_robots
        self.probe = settings.sitemap_probe
        self.max_length = settings.max_url_length
        self.store = store
        self.scheduler = scheduler
        self.admission = admission
        self.queue = queue  # the frontier's: a new URL to its host's RAM queue
        self.known: set[str] = set()  # every sitemap found, in any run
        self.pending: dict[str, list[Sitemap]] = {}  # queued in an earlier run, by robots host
        self.enqueued: set[str] = set()  # sitemaps handed to the scheduler by this process
        self.owns: Callable[[str], bool] = lambda host: True  # this process's hosts (`load`)

    async def load(self, owns: Callable[[str], bool]) -> None:
        """Sitemaps of earlier runs: done ones are never fetched again, queued ones are
        (at once when their robots host is this process's, else with its robots.txt)."""
        self.owns = owns
        if not self.on:
            return
        for sitemap in await self.store.sitemaps():
            self.known.add(sitemap.url)
            if sitemap.state == "queued":
                self.pending.setdefault(sitemap.robots_host, []).append(sitemap)
        for host in [h for h in self.pending if owns(h)]:
            for sitemap in self.pending.pop(host):
                self._enqueue(sitemap)

    def named(self, host: str, rules: Rules) -> None:
        """Queue the sitemaps `host`'s robots.txt names (or /sitemap.xml, with
        --sitemap-probe, when it names none). Only for this process's hosts: a host
        fetched here for a sitemap of another's robots.txt has its own sitemaps read by
        the process (or worker) that crawls it; and a host out of scope has none read."""
        if not self.on or not self.owns(host):
            return
        home = canonical_url(host + "/")
        if home is None or not self.admission.scope.host_in_scope(home):
            return
        for sitemap in self.pending.pop(host, []):
            self._enqueue(sitemap)
        named = list(rules.parser.sitemaps) if rules.parser is not None else []
        if not named and self.probe and not rules.unreachable:
            named = ["/sitemap.xml"]
        source = host + "/robots.txt"
        found: list[Sitemap] = []
        skipped: dict[str, int] = {}
        for raw in named:
            url = canonical_url(raw, source, max_length=self.max_length)
            if url is None:
                _count(skipped, Reason.SITEMAP_URL)
            elif url not in self.known:
                self.known.add(url)
                found.append(Sitemap(url, host_key(url), host, source))
        if found or skipped:
            self.store.add(
                Outcome(url="", state=None, sitemaps=found, skipped=tuple(skipped.items()))
            )
        for sitemap in found:
            self._enqueue(sitemap)

    def leased(self, sitemaps: Sequence[Sitemap]) -> None:
        """Sitemaps still to read of hosts this worker has just leased (left queued by an
        earlier run or by a worker that died): read here. With sitemaps off they are
        recorded as not read, so that they stop being work for ever."""
        for sitemap in sitemaps:
            self.known.add(sitemap.url)
            if self.on:
                self._enqueue(sitemap)
                continue
            dropped = dataclasses.replace(
                sitemap, state="done", error="not read: sitemaps are off", fetched_at=time.time()
            )
            self.store.add(Outcome(url="", state=None, sitemaps=(dropped,)))

    def _enqueue(self, sitemap: Sitemap) -> None:
        if sitemap.url not in self.enqueued:
            self.enqueued.add(sitemap.url)
            self.scheduler.enqueue_sitemap(sitemap)

    def read(
        self,
        sitemap: Sitemap,
        *,
        status: int | None,
        error: str | None,
        kind: str | None = None,
        entries: Sequence[Entry] = (),
        redirect: str | None = None,
    ) -> None:
        """A sitemap's fetch is over: its row is done, and what it lists enters (an
        index's sitemaps, or a redirect's target, as sitemaps; URLs through admission)."""
        skipped: dict[str, int] = {}
        children: list[Sitemap] = []
        urls: list[str] = []
        facts: list[_Fact] = []
        if redirect is not None:
            target = self._accepted(sitemap, redirect, skipped)
            if target is None:
                error = "sitemap: redirect to another host, or to an unusable URL, not followed"
            else:
                children += self._child(sitemap, target, sitemap.level)
        for entry in entries:
            url = self._accepted(sitemap, entry.loc, skipped)
            if url is None:
                continue
            if kind == "sitemapindex":
                if sitemap.level >= MAX_LEVEL:
                    _count(skipped, Reason.SITEMAP_NESTING)
                else:
                    children += self._child(sitemap, url, sitemap.level + 1)
            else:
                urls.append(url)
                lastmod, freq = _cut(entry.lastmod), _cut(entry.changefreq)
                facts.append((url, sitemap.url, lastmod, freq, entry.priority))
        new = self.admission.links(urls, DEPTH, skipped)
        for n in new:
            self.queue(n)
        done = dataclasses.replace(
            sitemap, state="done", kind=kind, status=status, error=error,
            urls=len(entries), fetched_at=time.time(),
        )  # fmt: skip
        self.store.add(
            Outcome(
                url="", state=None, new_urls=new, skipped=tuple(skipped.items()),
                sitemaps=(*children, done), sitemap_urls=facts,
            )
        )  # fmt: skip
        for child in children:
            self._enqueue(child)

    def _accepted(self, sitemap: Sitemap, loc: str, skipped: dict[str, int]) -> str | None:
        """The canonical URL of an entry when the sitemap may speak for it, else None."""
        url = canonical_url(loc, sitemap.url, max_length=self.max_length)
        if url is None:
            _count(skipped, Reason.SITEMAP_URL)
        elif host_key(url) not in (sitemap.host, sitemap.robots_host):
            _count(skipped, Reason.SITEMAP_HOST)
            return None
        return url

    def _child(self, parent: Sitemap, url: str, level: int) -> list[Sitemap]:
        if url in self.known:
            return []
        self.known.add(url)
        return [Sitemap(url, host_key(url), parent.robots_host, parent.url, level)]


def _count(skipped: dict[str, int], reason: Reason) -> None:
    skipped[reason] = skipped.get(reason, 0) + 1


def _cut(text: str | None, most: int = 64) -> str | None:
    """A sitemap's lastmod or changefreq, bounded (a W3C datetime is 25 characters)."""
    return text[:most] if text is not None else None
