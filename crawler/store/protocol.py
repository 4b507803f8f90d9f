"""What a crawl needs from the place it keeps its state: the seam a backend fills.

A `Store` is opened by one crawling process for one run; records (`crawler.records`)
cross this seam, never connections or cursors. Its contract, which a shared backend
(PostgreSQL, many machines) must keep as the SQLite file does:

- **Outcomes commit atomically, in order.** `add` buffers one fetch's `Outcome` (its
  page row, links, discovered URLs, state change, skipped counts, chain end); `flush`
  commits the buffer in one transaction and then calls `on_commit(batch)`. A URL stays
  `queued` until the commit that carries its fetch, so a crash loses nothing: the URL is
  fetched again. A value the store refuses costs its URL an `internal:` error row, never
  the batch; a failing store raises `StoreFailure` from then on.
- **Claims, not cursors.** `claim(host, limit, skip)` hands out queued URLs of a host
  that this store has not handed out before; `release(host)` takes that back (the rows
  may be claimed again). Ids are handles with no ordering promise. A shared store makes
  claims that expire (leases), so a worker that dies gives its work back.
- **Dedup may happen in the store.** `seen_urls` rebuilds an in-memory seen-set when
  the store has one to give; a store that deduplicates itself (INSERT ... ON CONFLICT DO
  NOTHING) may yield nothing, and then reports through `on_commit` only what it added.
- **Coordination.** `watch` + `new_work` tell a process which hosts others queued work
  for; `any_queued` is the end-of-crawl test across every process sharing the store.

A `Reader` answers the read-only questions (`stats`, `export`, `why`) and never writes.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any, Protocol

from crawler.config import Settings
from crawler.errors import StoreFailure
from crawler.records import CrawlRecord, Outcome, QueuedURL

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
)


class Store(Protocol):
    """A crawl's state, opened for one run of one process."""

    name: str  # for messages: a path, or a URL without its password
    failure: StoreFailure | None  # set once the store could not write
    on_commit: Callable[[list[Outcome]], None] | None
    backlog_bytes: int  # RAM held by outcomes not yet committed (back-pressure)

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

    async def mark_finished(self) -> None: ...

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
    ) -> None: ...

    def stored_robots(self, since: float) -> AsyncIterator[tuple[str, int, str | None, float]]:
        """(host, status, body, fetched_at) of robots.txt answers fetched since `since`."""
        ...

    # ------------------------------------------------------------------ outcomes

    def add(self, outcome: Outcome) -> None: ...

    @property
    def backlog(self) -> int: ...

    async def wait_full(self, interval: float) -> None: ...

    async def flush(self) -> int: ...

    # ------------------------------------------------------------------ other processes

    async def watch(self) -> None: ...

    async def new_work(self) -> list[str]: ...

    async def any_queued(self) -> bool: ...


class Reader(Protocol):
    """Read-only questions to a stored crawl."""

    name: str

    def close(self) -> None: ...

    def crawl(self) -> tuple[Settings, list[str]] | None: ...

    def user_agent(self) -> str | None: ...

    def stats(self, *, top: int = 10) -> dict[str, Any]: ...

    def pages(
        self,
        *,
        where: str | None = None,
        since: float | None = None,
        with_body: bool = False,
        with_headers: bool = False,
    ) -> Iterator[dict[str, Any]]: ...

    def page(self, url: str) -> dict[str, Any] | None: ...

    def url_state(self, url: str) -> dict[str, Any] | None: ...

    def linked_from(self, url: str, limit: int) -> tuple[list[tuple[str, bool]], int]: ...

    def redirected_from(self, url: str, limit: int) -> list[str]: ...

    def linking_depth(self, url: str) -> tuple[int | None, bool]: ...
