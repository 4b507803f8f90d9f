"""Reads on the crawl's own connection, each one job of its thread that leaves nothing open.

Through aiosqlite's cursor a query is three jobs (execute, fetch, close), and a caller
cancelled while the first one waits never gets the cursor to close: the job still runs,
and its statement stays open (a read transaction) for as long as the lost cursor lives.
SQLite never waits (`busy_timeout`) for the write lock on a connection that holds a read
transaction: the next batch's BEGIN IMMEDIATE then failed at once with "database is
locked" whenever another process of --processes was writing, and the store stopped the
crawl. (The coordination's watcher, cancelled as a crawl ends, did that about once in 40
runs of a test.) Here a read is one job that fetches its rows and closes its cursor.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import aiosqlite

from crawler.store.sqlite_many import on_thread

Params = Sequence[Any]


async def rows(db: aiosqlite.Connection, sql: str, params: Params = ()) -> list[Any]:
    """Every row of one statement."""
    return await on_thread(db, _read, sql, params, sqlite3.Cursor.fetchall)


async def first(db: aiosqlite.Connection, sql: str, params: Params = ()) -> Any | None:
    """The statement's first row (a query's, an UPDATE ... RETURNING's), or None."""
    return await on_thread(db, _read, sql, params, sqlite3.Cursor.fetchone)


async def chunks(
    db: aiosqlite.Connection, sql: str, params: Params, after: Any, size: int = 10_000
) -> AsyncIterator[list[Any]]:
    """A long result, `size` rows a job, without a statement open between jobs: `sql`
    takes the last key read (first: `after`) and the page size as its last two parameters,
    and yields rows whose first column is that key, in its order."""
    while found := await rows(db, sql, (*params, after, size)):
        yield found
        if len(found) < size:
            return
        after = found[-1][0]


def _read(conn: sqlite3.Connection, sql: str, params: Params, fetch: Callable[..., Any]) -> Any:
    with contextlib.closing(conn.execute(sql, params)) as cur:
        return fetch(cur)
