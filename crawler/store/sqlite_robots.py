"""robots.txt and sitemaps in the SQLite store: what a crawl keeps of each host's
robots.txt (reused on resume) and the sitemaps it found (as store/postgres_robots.py does
on PostgreSQL)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from crawler.records import Sitemap
from crawler.store.sqlite_batches import BatchWriter
from crawler.store.sqlite_query import chunks, first, rows

# A robots.txt answer that may be used again: 2xx, or 4xx but 429 (RFC 9309 2.3.1).
_USABLE = "fetched_at >= ? AND status >= 200 AND status < 500 AND status <> 429"


def _usable(status: int) -> bool:
    return 200 <= status < 500 and status != 429


class SQLiteRobots(BatchWriter):
    """The robots.txt and sitemap part of `SQLiteStore`."""

    _robots_hosts: set[str] | None = None  # hosts whose robots.txt the file may hold

    async def robots_for(self, host: str, since: float) -> tuple[int, str | None, float] | None:
        """(status, body, fetched_at) of `host`'s robots.txt if it answered (2xx, or 4xx
        but 429) at or after `since`: a copy the crawl may use again (RFC 9309 2.4).

        A host whose robots.txt the file never held costs no query: the first call reads
        which hosts have a usable copy (none, in a new crawl) and this store adds those it
        saves. Without that, a crawl opening on 2,000 hosts queued 2,000 reads on the write
        lock, and the hosts' first pages waited seconds behind them. (With --processes,
        each host is one process's: no other one saves its copy meanwhile.)

        Under the write lock, as `claim` is, and one job of the connection's thread
        (`sqlite_query`): a read left open on this connection while a batch begins would
        make that batch's write fail at once ("database is locked") when another process
        has committed in between (--processes)."""
        if (row := self._robots.get(host)) is not None:  # saved, not yet committed
            _, status, _, body, fetched_at = row
            if status is None or not _usable(status) or fetched_at < since:
                return None
            return status, body, fetched_at
        if self._robots_hosts is None:
            async with self._lock:
                hosts = await rows(self.db, f"SELECT host FROM robots WHERE {_USABLE}", (since,))
            self._robots_hosts = {h for (h,) in hosts}
        if host not in self._robots_hosts:
            return None
        async with self._lock:
            found = await first(
                self.db,
                f"SELECT status, body, fetched_at FROM robots WHERE host = ? AND {_USABLE}",
                (host, since),
            )
        return (found[0], found[1], found[2]) if found else None

    async def save_robots(
        self, host: str, status: int | None, error: str | None, body: str | None
    ) -> None:
        """Kept for the next batch, in its transaction (`flush`): a transaction of its own
        per host queued 2,000 commits on the write lock as a broad crawl opened."""
        self._robots[host] = (host, status, error, body, time.time())
        self.backlog_bytes += len(body or "") + 100
        if self._robots_hosts is not None:
            self._robots_hosts.add(host)

    async def sitemaps(self) -> list[Sitemap]:
        """Every sitemap the crawl found (the queued ones are fetched on resume)."""
        async with self._lock:
            found = await rows(
                self.db, "SELECT url, host, robots_host, source, level, state FROM sitemaps"
            )
        return [Sitemap(*row) for row in found]

    async def stored_robots(
        self, since: float
    ) -> AsyncIterator[tuple[str, int, str | None, float]]:
        """(host, status, body, fetched_at) of robots.txt fetched at or after `since` that
        answered (2xx or 4xx other than 429): what a resumed crawl reuses (RFC 9309 2.4)."""
        sql = (
            f"SELECT host, status, body, fetched_at FROM robots WHERE {_USABLE} "
            "AND host > ? ORDER BY host LIMIT ?"
        )
        # 1,000 a job: a robots.txt body may be 500 KB.
        async for found in chunks(self.db, sql, (since,), "", 1000):
            for host, status, body, fetched_at in found:
                yield host, status, body, fetched_at
