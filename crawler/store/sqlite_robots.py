"""robots.txt and sitemaps in the SQLite store: what a crawl keeps of each host's
robots.txt (reused on resume) and the sitemaps it found (as store/postgres_robots.py does
on PostgreSQL)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from crawler.records import Sitemap
from crawler.store.sqlite_batches import BatchWriter


class SQLiteRobots(BatchWriter):
    """The robots.txt and sitemap part of `SQLiteStore`."""

    async def robots_for(self, host: str, since: float) -> tuple[int, str | None, float] | None:
        """(status, body, fetched_at) of `host`'s robots.txt if it answered (2xx, or 4xx
        but 429) at or after `since`: a copy the crawl may use again (RFC 9309 2.4).

        Under the write lock, as `claim` is: a read left open on this connection while a
        batch begins would make that batch's write fail at once ("database is locked")
        when another process has committed in between (--processes)."""
        async with (
            self._lock,
            self.db.execute(
                "SELECT status, body, fetched_at FROM robots WHERE host = ? AND fetched_at >= ? "
                "AND status >= 200 AND status < 500 AND status <> 429",
                (host, since),
            ) as cur,
        ):
            row = await cur.fetchone()
        return (row[0], row[1], row[2]) if row else None

    async def save_robots(
        self, host: str, status: int | None, error: str | None, body: str | None
    ) -> None:
        # Under the lock: between a read's first step and its last fetch the connection
        # holds a read transaction, and a write from there fails at once ("database is
        # locked", no busy wait) when another process has committed in the meantime.
        async with self._lock, self._writing():
            await self.db.execute(
                "INSERT OR REPLACE INTO robots (host, status, error, body, fetched_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (host, status, error, body, time.time()),
            )

    async def sitemaps(self) -> list[Sitemap]:
        """Every sitemap the crawl found (the queued ones are fetched on resume)."""
        async with (
            self._lock,
            self.db.execute(
                "SELECT url, host, robots_host, source, level, state FROM sitemaps"
            ) as cur,
        ):
            return [Sitemap(*row) for row in await cur.fetchall()]

    async def stored_robots(
        self, since: float
    ) -> AsyncIterator[tuple[str, int, str | None, float]]:
        """(host, status, body, fetched_at) of robots.txt fetched at or after `since` that
        answered (2xx or 4xx other than 429): what a resumed crawl reuses (RFC 9309 2.4)."""
        async with self.db.execute(
            "SELECT host, status, body, fetched_at FROM robots WHERE fetched_at >= ? "
            "AND status >= 200 AND status < 500 AND status <> 429",
            (since,),
        ) as cur:
            while rows := await cur.fetchmany(10_000):
                for host, status, body, fetched_at in rows:
                    yield host, status, body, fetched_at
