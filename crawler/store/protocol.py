"""What a crawl needs from the place it keeps its state: the seam a backend fills.

A `Store` is opened by one crawling process for one run; records (`crawler.records`)
cross this seam, never connections or cursors. Its contract, which a shared backend
(PostgreSQL, many machines) must keep as the SQLite file does:

- **Outcomes commit atomically, in order.** `add` buffers one fetch's `Outcome` (its
  page row, links, discovered URLs, state change, skipped counts, chain end); `flush`
  commits the buffer in one transaction and then calls `on_commit(batch, inserted)`,
  `inserted` the new URLs the commit really added to the frontier. A URL stays
  `queued` until the commit that carries its fetch, so a crash loses nothing: the URL is
  fetched again. A value the store refuses costs its URL an `internal:` error row, never
  the batch; a failing store raises `StoreFailure` from then on.
- **Claims, not cursors.** `claim(host, limit, skip)` hands out queued URLs of a host
  that this store has not handed out before; `release(host)` takes that back (the rows
  may be claimed again). Ids are handles with no ordering promise. A shared store makes
  claims that expire (leases), so a worker that dies gives its work back.
- **Dedup may happen in the store.** `seen_urls` rebuilds an in-memory seen-set when
  the store has one to give; a store that deduplicates itself (`dedups`: INSERT ... ON
  CONFLICT DO NOTHING, shared by many workers) yields nothing, and only the `inserted`
  URLs of a commit are new: the frontier queues a URL once its insert is confirmed.
- **Coordination.** `watch` + `new_work` tell a process which hosts others queued work
  for; `any_queued` is the end-of-crawl test across every process sharing the store.
  A store shared by machines also implements `Leases`: a worker crawls only the hosts
  it leases, and `max_pages` is a counter in the store.

A `Reader` answers the read-only questions (`stats`, `export`, `why`) and never writes.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

from crawler.config import Settings
from crawler.errors import StoreFailure
from crawler.records import (
    CrawlRecord,
    Outcome,
    QueuedURL,
    ReportData,
    SearchHit,
    Sitemap,
    TextOf,
)

# The columns of an exported page, in order (jsonl keys, csv header).
PAGE_FIELDS = (
    "url",
    "final_url",
    "status",
    "error",
    "content_type",
    "depth",
    "fetched_at",
    "size",
    "truncated",
    "elapsed",
    "title",
    "content_hash",
    "canonical_url",
    "noindex",
)
# The columns of an exported link (`crawler export --links`).
LINK_FIELDS = ("src_url", "dst_url", "nofollow", "kind")


class Store(Protocol):
    """A crawl's state, opened for one run of one process."""

    name: str  # for messages: a path, or a URL without its password
    failure: StoreFailure | None  # set once the store could not write
    dedups: bool  # True: the store deduplicates URLs; `inserted` says which were new
    # (batch, inserted): called after each commit; `inserted` the URLs of the batch's
    # `new_urls` that the commit added (empty when `dedups` is False: all were new).
    on_commit: Callable[[list[Outcome], Sequence[str]], None] | None
    backlog_bytes: int  # RAM held by outcomes not yet committed (back-pressure)
    # A recrawl is going (set at open from the crawl, or by `select_recrawl`): claims
    # carry each queued URL's stored page (`QueuedURL.stored`), and `page_count` leaves
    # out the pages queued to be fetched again.
    revisit: bool

    async def close(self) -> None: ...

    def lock(self) -> contextlib.AbstractContextManager[None]:
        """Hold the crawl for one run; UsageError when another run holds it."""
        ...

    # ------------------------------------------------------------------ the crawl

    async def load_crawl(self) -> CrawlRecord | None: ...

    async def save_crawl(self, settings: Settings, seeds: Sequence[str]) -> None: ...

    async def start_run(self, kind: str) -> int: ...

    async def end_run(self, run_id: int, pages: int, interrupted: bool) -> float:
        """Record a run's end; its duration in seconds, as `stats` adds it up."""
        ...

    async def mark_finished(self) -> None:
        """The frontier ran dry: the crawl (and a recrawl) is finished."""
        ...

    async def select_recrawl(
        self, where: str | None, older_than: float | None, due: float | None
    ) -> int:
        """Queue again the stored pages that match (`where`: an SQL condition on `pages`,
        UsageError and nothing changed when the database refuses it; `older_than`: fetched
        before this unix time; `due`: only pages whose revisit is due, `due` the first
        interval of pages never revisited), in one transaction; and mark the crawl as
        recrawling. How many were queued."""
        ...

    async def reindex_text(self, text_of: TextOf, *, batch: int = 100) -> int:
        """Store the text of stored HTML pages that have none (crawled with text off, or
        before full-text search existed); how many. Commits batch by batch."""
        ...

    def deferred_indexes(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Around a whole run: indexes that only queries need may be built at its end."""
        ...

    # ------------------------------------------------------------------ the frontier

    def seen_urls(self) -> AsyncIterator[str]: ...

    async def queued_hosts(self) -> list[str]: ...

    async def claim(
        self, host: str, limit: int, skip: Callable[[str], bool], *, batch: int = 2000
    ) -> tuple[list[QueuedURL], bool]:
        """Up to `limit` queued URLs of `host` not handed out before; True when no more."""
        ...

    def release(self, host: str) -> None: ...

    async def page_count(self) -> int: ...

    async def host_page_counts(self) -> dict[str, int]: ...

    async def save_robots(
        self, host: str, status: int | None, error: str | None, body: str | None
    ) -> None:
        """Keep `host`'s robots.txt answer: at once, or with the next batch (`flush`; the
        SQLite store), but `robots_for` sees it from the call on."""
        ...

    async def robots_for(self, host: str, since: float) -> tuple[int, str | None, float] | None:
        """(status, body, fetched_at) of a usable robots.txt of `host` fetched since `since`."""
        ...

    async def sitemaps(self) -> list[Sitemap]:
        """Every sitemap the crawl found: queued ones are fetched again, done ones never."""
        ...

    def stored_robots(self, since: float) -> AsyncIterator[tuple[str, int, str | None, float]]:
        """(host, status, body, fetched_at) of robots.txt answers fetched since `since`."""
        ...

    # ------------------------------------------------------------------ outcomes

    def add(self, outcome: Outcome) -> None: ...

    @property
    def backlog(self) -> int: ...

    async def wait_full(self, interval: float) -> None: ...

    async def flush(self) -> int: ...

    async def make_room(self) -> None:
        """Back-pressure: return once the outcomes added so far are taken by a batch (being
        written), so that RAM holds at most two backlogs; StoreFailure as `flush`."""
        ...

    # ------------------------------------------------------------------ other processes

    async def watch(self) -> None: ...

    async def new_work(self) -> list[str]: ...

    async def any_queued(self) -> bool: ...


class Leases(Protocol):
    """What a store shared by many workers adds (PostgreSQL): server leases and an exact
    page budget across workers. A lease is per server (`crawler.urls.server_key`), as
    politeness is: its holder crawls every origin of it. Times are the store's clock,
    never a worker's."""

    lease_seconds: float  # a lease not renewed for this long expires (`--lease`)
    leased: set[str]  # servers this worker holds, as far as it knows

    async def lease_hosts(self, n: int) -> dict[str, float | None]:
        """Up to `n` more servers with queued work that no live lease holds and that may
        be fetched now: their origins with queued work, each with the seconds since its
        server's last holder's lease lapsed (None: it was released); their stale claims
        (a dead worker's) go back to the queue."""
        ...

    async def renew(self, servers: Iterable[str] | None = None) -> list[str]:
        """Extend leases (all held by default); the servers still held. StoreFailure when
        this worker was cut off longer than its lease (its servers are others' now)."""
        ...

    async def release_servers(self, waits: Mapping[str, float]) -> None:
        """Give servers back with the seconds until each may be fetched again; this
        worker's claims of their origins go back to the queue. Flush before: a fetched
        URL stays queued until its commit."""
        ...

    async def release_server(self, server: str, wait: float = 0.0) -> None: ...

    async def any_leased(self) -> bool:
        """Whether any worker holds a live lease (no lease and nothing queued: the end)."""
        ...

    async def take_pages(self, limit: int, n: int = 1) -> int:
        """Reserve up to `n` of `limit` pages (stored + in flight, all workers); granted."""
        ...

    async def take_page(self, limit: int) -> bool: ...

    async def add_pages(self, n: int) -> None:
        """Count `n` pages taken whatever the limit; negative: give units back."""
        ...

    async def give_pages(self, n: int) -> None: ...

    async def pages_left(self, limit: int) -> int: ...

    async def page_budget(self) -> tuple[int, int]:
        """(pages stored, units held for fetches under way), all workers."""
        ...


class Reader(Protocol):
    """Read-only questions to a stored crawl."""

    name: str

    def close(self) -> None: ...

    def crawl(self) -> tuple[Settings, list[str]] | None: ...

    def user_agent(self) -> str | None: ...

    def stats(self, *, top: int = 10) -> dict[str, Any]: ...

    def report(self, *, top: int = 20) -> ReportData: ...

    def pages(
        self,
        *,
        where: str | None = None,
        since: float | None = None,
        with_body: bool = False,
        with_headers: bool = False,
        with_data: bool = False,
    ) -> Iterator[dict[str, Any]]: ...

    def links(self, *, where: str | None = None) -> Iterator[dict[str, Any]]:
        """`links` rows (LINK_FIELDS) one at a time, in constant memory; a bad `where`
        raises UsageError before this returns."""
        ...

    def page(self, url: str) -> dict[str, Any] | None: ...

    def url_state(self, url: str) -> dict[str, Any] | None: ...

    def linked_from(self, url: str, limit: int) -> tuple[list[tuple[str, bool, str]], int]:
        """Up to `limit` (page, nofollow, kind) that link to `url`, and how many links."""
        ...

    def links_on(self, url: str) -> list[tuple[str, bool, str]]:
        """(target, nofollow, kind) of the links on the page `url`."""
        ...

    def redirected_from(self, url: str, limit: int) -> list[str]: ...

    def linking_depth(self, url: str) -> tuple[int | None, bool, list[str]]:
        """The least depth of a stored page linking to `url`, whether every <a> link to it
        is nofollow (False when there is none), and the kinds it is linked as, sorted."""
        ...

    def search(self, query: str, limit: int) -> list[SearchHit]:
        """The best pages for a full-text query; UsageError when it is malformed."""
        ...

    def text_pages(self) -> int:
        """Pages with text stored (what `search` can find)."""
        ...
