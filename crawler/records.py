"""The records that cross module boundaries: frozen, slotted, and nothing else.

A URL travels as `NewURL` (found, to admit) -> `QueuedURL` (in the frontier) -> `Job`
(handed to a worker) -> `Outcome` (what its fetch changes in the store, with its
`PageRow`). `CrawlRecord` is a crawl as stored, `Summary` a run's end. URL states and
error kinds are enums, so no module parses strings to learn them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from crawler.config import Settings


class URLState(StrEnum):
    """`urls.state`: where a URL the crawl admitted stands."""

    QUEUED = "queued"  # waiting to be fetched (also while in flight: until its commit)
    DONE = "done"  # fetched, or given up with an error row: it has a `pages` row
    DISALLOWED = "disallowed"  # robots.txt forbids it: no `pages` row, `urls.reason` says so
    DROPPED = "dropped"  # given up before a fetch (a host budget): no `pages` row


class ErrorKind(StrEnum):
    """The kind of an error row: the text before the first ':' of `pages.error`."""

    TIMEOUT = "timeout"
    DNS = "dns"
    CONNECT = "connect"
    TLS = "tls"
    DISCONNECTED = "disconnected"
    PAYLOAD = "payload"
    HTTP = "http"  # an invalid response (not an HTTP status: those are data)
    INVALID_URL = "invalid url"
    OS = "os error"
    PRIVATE = "private address"  # refused before connecting (crawler.guard)
    NOT_DOWNLOADED = "not downloaded"  # a status, but --accept-type refused the body
    ROBOTS = "robots.txt unreachable"
    HOST_DROPPED = "host dropped after failures"
    REDIRECT = "redirect"
    INTERNAL = "internal"


class Change(StrEnum):
    """`fetches.change`: what one fetch of a URL found, against what was stored."""

    NEW = "new"  # the URL's first fetch
    CHANGED = "changed"  # another status or body: the row and body replaced, links again
    UNCHANGED = "unchanged"  # 304, or the same status and body: the stored page kept
    GONE = "gone"  # 404 or 410 now: the status recorded, the last body kept
    FAILED = "failed"  # no usable answer this time (network error, 429, 5xx): body kept


def error_kind(error: str) -> str:
    """The kind of an error text: "timeout: no complete response within 5s" -> "timeout".

    The one place that reads a kind out of an error; `stats` does the same in SQL.
    """
    return error.split(":", 1)[0]


@dataclass(frozen=True, slots=True)
class NewURL:
    """A URL to add to the frontier (ignored when already present)."""

    url: str
    host: str
    depth: int
    hops: int = 0
    origin: str | None = None


@dataclass(frozen=True, slots=True)
class Stored:
    """What a recrawl knows of a URL's stored page: what to send and compare with."""

    status: int | None
    content_hash: str | None
    etag: str | None  # for If-None-Match
    last_modified: str | None  # for If-Modified-Since
    interval: float | None  # the page's revisit interval (None: the crawl's default)


@dataclass(frozen=True, slots=True)
class QueuedURL:
    """A frontier row waiting to be fetched; `id` is the store's handle, not an order."""

    id: int
    url: str
    host: str
    depth: int
    hops: int
    origin: str | None
    stored: Stored | None = None  # a page stored before (a recrawl): fetched conditionally


@dataclass(frozen=True, slots=True)
class Sitemap:
    """A `sitemaps` row: queued when found, done (with what its fetch gave) when read."""

    url: str
    host: str  # the politeness key of the sitemap's own host: its fetch waits there
    robots_host: str  # whose robots.txt named it (or its index): that host's URLs count too
    source: str  # the robots.txt or the sitemap index that named it
    level: int = 0  # 0: named by robots.txt; n: listed n indexes below
    state: str = "queued"  # queued | done
    kind: str | None = None  # urlset | sitemapindex | text
    status: int | None = None
    error: str | None = None
    urls: int | None = None  # entries read
    fetched_at: float | None = None


@dataclass(frozen=True, slots=True)
class Job:
    """A URL handed to a worker (or, with `item` None, its host's robots.txt, or the
    `sitemap` named)."""

    host: str  # the politeness key of the host slot that handed it out
    item: QueuedURL | None
    attempt: int = 1
    sitemap: Sitemap | None = None

    @property
    def robots(self) -> bool:
        return self.item is None and self.sitemap is None


@dataclass(frozen=True, slots=True)
class PageRow:
    """One `pages` row; docs/schema.md describes each column."""

    url: str
    final_url: str | None
    status: int | None
    error: str | None
    content_type: str | None
    depth: int
    fetched_at: float
    body: bytes | None
    host: str
    headers: str | None
    elapsed: float | None
    size: int | None
    truncated: bool
    links_found: int | None
    links_truncated: bool
    redirect_to: str | None
    attempts: int
    body_codec: str | None
    content_hash: str | None  # None: the store hashes the plain body itself
    title: str | None
    final_status: int | None = None  # None: `status` unless a 3xx (a chain's end sets it)
    canonical_url: str | None = None  # the page's <link rel=canonical> target
    noindex: bool | None = None  # meta robots / X-Robots-Tag noindex; None: no response
    data: str | None = None  # JSON of the fields hooks and --extract stored (crawler.hooks)
    text: str | None = None  # visible text (`text` setting): a `page_text` row, indexed
    text_truncated: bool = False  # `text` was cut at text.TEXT_LIMIT characters

    @classmethod
    def failed(cls, url: str, host: str, depth: int, reason: str, *, attempts: int) -> PageRow:
        """An error row: the URL was given up on without a usable response."""
        return cls(
            url=url, final_url=None, status=None, error=reason, content_type=None, depth=depth,
            fetched_at=time.time(), body=None, host=host, headers=None, elapsed=None, size=None,
            truncated=False, links_found=None, links_truncated=False, redirect_to=None,
            attempts=attempts, body_codec=None, content_hash=None, title=None,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class ChainEnd:
    """A redirect chain ended: every row of the chain (its origin and each URL whose
    `urls.origin` is it) gets `final_url` and `final_status`, and `error` when they have
    none. A None `final_status` with a `final_url` is looked up: that page's own."""

    origin: str
    final_url: str | None
    final_status: int | None
    error: str | None


# (src_url, dst_urls, nofollow, kind): a run of a page's `links` rows that differ only in
# dst_url. A page's 30 links travel as one run, not 30 row tuples: the SQLite store binds
# a run as one JSON array that SQL expands (crawler.store.sqlite_rows).
LinkRun = tuple[str, Sequence[str], int, str]


@dataclass(frozen=True, slots=True)
class Outcome:
    """Everything one fetch changes in the store, committed together."""

    url: str
    state: URLState | None  # the URL's new state (None: no change, e.g. seeds being added)
    reason: str | None = None
    page: PageRow | None = None
    links: Sequence[LinkRun] = ()  # the page's `links` rows, in document order
    new_urls: Sequence[NewURL] = ()
    chain_end: ChainEnd | None = None
    skipped: Sequence[tuple[str, int]] = ()  # (crawler.reasons.Reason value, links) not followed
    sitemaps: Sequence[Sitemap] = ()  # rows to add (queued) or to mark done
    # (url, sitemap, lastmod, changefreq, priority): what a sitemap says of a URL it lists
    sitemap_urls: Sequence[tuple[str, str, str | None, str | None, float | None]] = ()
    # A page stored before (a recrawl): what this fetch found, and its next revisit
    # interval. NEW: the page row is inserted (a second row for a URL is ignored).
    change: Change = Change.NEW
    interval: float | None = None


@dataclass(frozen=True, slots=True)
class CrawlRecord:
    """A crawl as stored: what `resume` continues with."""

    settings: Settings
    seeds: tuple[str, ...]
    started_at: float
    finished_at: float | None


@dataclass(frozen=True, slots=True)
class Summary:
    """The end of one run, for the summary table or JSON line."""

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
    not_downloaded: int = 0  # responses whose body --accept-type refused (rows say so)
    stopped_by: str | None = None  # an interrupted run: "signal" or "time limit of 2h reached"
    changes: dict[str, int] = field(default_factory=dict)  # fetches.change: n, this run


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One page `crawler search` found, best first."""

    rank: int  # 1 for the best page
    score: float  # relevance, higher is better (SQLite: -bm25; PostgreSQL: ts_rank)
    url: str
    title: str | None
    snippet: str  # the text around the match, matched words in [brackets]


# Visible text of a stored body (`crawler search --reindex`): (title, text, truncated), or
# None when the body is not an HTML page. Passed into the store, which never parses HTML.
TextOf = Callable[[bytes, str | None], tuple[str | None, str, bool] | None]


# ---------------------------------------------------------------------- the report

STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx", "error")


@dataclass(frozen=True, slots=True)
class Bucket:
    """The pages fetched in one time slice [start, start + width)."""

    start: float  # unix time
    pages: int
    bytes: int
    by_class: dict[str, int]  # STATUS_CLASSES -> pages


@dataclass(frozen=True, slots=True)
class HostRow:
    host: str
    pages: int
    errors: int  # network errors and statuses >= 400
    median_s: float | None  # response time (pages.elapsed), nearest rank
    p95_s: float | None
    pages_per_s: float | None  # pages over the span from the host's first to last fetch


@dataclass(frozen=True, slots=True)
class BrokenLink:
    url: str
    status: int | None  # where its redirect chain ended
    error: str | None
    links: int  # links to it
    sources: list[str]  # a few pages that link to it


@dataclass(frozen=True, slots=True)
class ReportData:
    stats: dict[str, Any]  # queries.stats: headline numbers and small tables
    generated_at: float
    bucket_width: int  # seconds
    buckets: list[Bucket]
    hosts: list[HostRow]  # the busiest `top_hosts`
    slowest: list[dict[str, Any]]  # url, elapsed, status
    largest: list[dict[str, Any]]  # url, size, content_type
    broken: list[BrokenLink]
    broken_pages: int  # pages that are broken links' targets (linked or not)
    broken_links: int  # links to them
    not_followed: list[dict[str, Any]]  # frontier rows disallowed/dropped: state, reason, urls
    extra: dict[str, Any] = field(default_factory=dict)
