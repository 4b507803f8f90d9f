"""robots.txt and sitemaps in the PostgreSQL store: what every worker of a crawl shares
(each host's robots.txt fetched once for all of them, sitemaps found by any of them)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from crawler.records import Sitemap
from crawler.store.postgres_batches import PostgresWriter


class PostgresRobots(PostgresWriter):
    """The robots.txt and sitemap part of `PostgresStore`."""

    async def save_robots(
        self, host: str, status: int | None, error: str | None, body: str | None
    ) -> None:
        async with self._writing(), self.pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO robots (host, status, error, body, fetched_at) "
                "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (host) DO UPDATE SET "
                "status = excluded.status, error = excluded.error, body = excluded.body, "
                "fetched_at = excluded.fetched_at",
                host,
                status,
                error,
                body,
                time.time(),
            )

    async def robots_for(self, host: str, since: float) -> tuple[int, str | None, float] | None:
        """(status, body, fetched_at) of `host`'s robots.txt if it answered (2xx, or 4xx
        but 429) at or after `since`: fetched once per host for every worker of the crawl."""
        async with self._writing(), self.pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT status, body, fetched_at FROM robots WHERE host = $1 AND fetched_at >= $2 "
                "AND status >= 200 AND status < 500 AND status <> 429",
                host,
                since,
            )
        return (row[0], row[1], row[2]) if row else None

    async def queued_sitemaps(self, hosts: list[str]) -> list[Sitemap]:
        """The sitemaps still to read that `hosts`' robots.txt named (hosts just leased)."""
        async with self._writing(), self.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT url, host, robots_host, source, level, state FROM sitemaps "
                "WHERE state = 'queued' AND robots_host = ANY($1::text[]) ORDER BY url",
                hosts,
            )
        return [Sitemap(*row) for row in rows]

    async def sitemaps(self) -> list[Sitemap]:
        """Every sitemap the crawl found (the queued ones are fetched on resume)."""
        async with self._writing(), self.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT url, host, robots_host, source, level, state FROM sitemaps"
            )
        return [Sitemap(*row) for row in rows]

    async def stored_robots(
        self, since: float
    ) -> AsyncIterator[tuple[str, int, str | None, float]]:
        """(host, status, body, fetched_at) of robots.txt fetched at or after `since` that
        answered (2xx or 4xx other than 429): what any worker of the crawl reuses."""
        async with self._writing(), self.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT host, status, body, fetched_at FROM robots WHERE fetched_at >= $1 "
                "AND status >= 200 AND status < 500 AND status <> 429",
                since,
            )
        for host, status, body, fetched_at in rows:
            yield host, status, body, fetched_at
