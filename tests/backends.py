"""A crawl database of either backend (SQLite file or PostgreSQL URL) and plain SQL on it,
read and written through connections of its own: what the tests check a store against."""

from __future__ import annotations

import dataclasses
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from pg import Cluster

from crawler.store import Store, open_store


@dataclasses.dataclass
class Backend:
    kind: str  # "sqlite" or "postgres"
    db: str

    @classmethod
    def fresh(cls, request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
        """An empty database of the backend `request.param` names."""
        if request.param == "sqlite":
            return cls("sqlite", str(tmp_path / "crawl.db"))
        cluster: Cluster = request.getfixturevalue("pg_cluster")
        return cls("postgres", cluster.dsn(cluster.new_database()))

    async def open(self, *, create: bool = True) -> Store:
        return await open_store(self.db, create=create)

    async def rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """Rows of `sql` (`?` placeholders)."""
        if self.kind == "sqlite":
            with sqlite3.connect(self.db) as conn:
                found = conn.execute(sql, args).fetchall()
            conn.close()
            return found
        import asyncpg

        conn = await asyncpg.connect(self.db)
        try:
            return [tuple(r) for r in await conn.fetch(_numbered(sql), *args)]
        finally:
            await conn.close()

    async def one(self, sql: str, *args: Any) -> Any:
        return (await self.rows(sql, *args))[0][0]

    async def execute(self, sql: str, *args: Any) -> None:
        """Run `sql` (committed: sqlite3's `with` commits, asyncpg autocommits)."""
        if self.kind == "sqlite":
            with sqlite3.connect(self.db) as conn:
                conn.execute(sql, args)
            conn.close()
            return
        import asyncpg

        conn = await asyncpg.connect(self.db)
        try:
            await conn.execute(_numbered(sql) if args else sql, *args)
        finally:
            await conn.close()


def _numbered(sql: str) -> str:
    """`?` placeholders as PostgreSQL's `$1, $2, ...`."""
    counter = iter(range(1, 1000))
    return re.sub(r"\?", lambda _: f"${next(counter)}", sql)
