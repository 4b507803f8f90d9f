"""A batch as two jobs of the writer thread, its rows as a few statements of many rows.

`on_thread` runs a function as one job of aiosqlite's thread: a batch is two (its start,
then every statement to the commit). Awaited statement by statement, a batch cost one
round trip through the event loop per statement: with the loop busy with 64 workers, each
took a turn of the loop, a 700-page batch took 0.4 s where the thread alone needs 0.12,
and the writer fell behind the fetchers (whom back-pressure then held waiting).

`executemany` steps a statement once per row, and Python's sqlite3 releases the GIL around
every step. While the event loop's thread is busy, each of those releases is a hand-over
of the GIL between the two threads (a context switch each way): on the benchmark site,
a crawl's 600,000 link rows cost the event loop more CPU than they cost SQLite. Here a
batch's rows go out as a few statements of `VALUES (...), (...), ...`, so the writer
thread takes and gives back the GIL a few times per batch instead of once per row.

Chunk sizes are powers of two (at most `max_rows`, and at most `_MAX_PARAMETERS` bound
values), so the statements' texts repeat from batch to batch: sqlite3's statement cache
prepares each of them once. SQLite copies every bound value, so rows that carry bodies go
in chunks bounded by their bytes (`byte_chunk_sizes`): by count alone, 16 pages at the
10 MB that `--max-bytes` allows held 160 MB more at the peak, while 16 pages of 15 KB
took a statement (and a hand-over of the GIL) per 240 KB. Fewer,
larger statements matter too: each takes the GIL back once (on the bench site, chunks of
2,048 links instead of 256 saved a third of the context switches).
"""

from __future__ import annotations

import functools
import itertools
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import aiosqlite

T = TypeVar("T")

_MAX_ROWS = 2048
BODY_ROWS = 256  # rows that carry a body each, at most BODY_BYTES of bodies in all
BODY_BYTES = 2_000_000  # SQLite holds a copy of every bound body until the statement ends
# Bound values per statement (SQLite's own limit is 32,766): 2,048 links, 256 page rows.
_MAX_PARAMETERS = 8192


def chunk_sizes(rows: int, width: int, max_rows: int = _MAX_ROWS) -> list[int]:
    """How many rows each statement carries: full chunks, then the rest in powers of two.

    >>> chunk_sizes(5000, 4)
    [2048, 2048, 512, 256, 128, 8]
    >>> chunk_sizes(700, 22)
    [256, 256, 128, 32, 16, 8, 4]
    """
    full = max_rows
    while full > 1 and full * width > _MAX_PARAMETERS:
        full //= 2
    return _powers_of_two(rows, full, lambda start, size: True)


def byte_chunk_sizes(weights: Sequence[int], max_bytes: int, max_rows: int) -> list[int]:
    """How many rows each statement carries, in powers of two (so that the statements'
    texts repeat), each chunk at most `max_rows` rows and `max_bytes` of `weights` in all;
    a row heavier than `max_bytes` goes alone.

    >>> byte_chunk_sizes([15_000] * 300, 2_000_000, 256)
    [128, 128, 32, 8, 4]
    >>> byte_chunk_sizes([10, 5_000_000, 10, 10, 10], 2_000_000, 256)
    [1, 1, 2, 1]
    """
    ends = list(itertools.accumulate(weights, initial=0))
    return _powers_of_two(
        len(weights), max_rows, lambda start, size: ends[start + size] - ends[start] <= max_bytes
    )


def _powers_of_two(rows: int, max_rows: int, fits: Callable[[int, int], bool]) -> list[int]:
    """`rows` cut in chunks, each the largest power of two up to `max_rows` (and the rows
    left) that `fits(start, size)`; a single row always does."""
    sizes: list[int] = []
    start = 0
    while start < rows:
        size = 1 << (min(max_rows, rows - start).bit_length() - 1)
        while size > 1 and not fits(start, size):
            size //= 2
        sizes.append(size)
        start += size
    return sizes


async def on_thread(db: aiosqlite.Connection, fn: Callable[..., T], *args: Any) -> T:
    """`fn(connection, *args)` on `db`'s own thread, as one job of its queue.

    aiosqlite has no public call for this: its `_execute` (the queue every `execute` goes
    through) and `_conn` (the sqlite3 connection) are used as they are inside aiosqlite.
    The job runs to its end once queued, even when the caller is cancelled meanwhile.
    """
    result: T = await db._execute(fn, db._conn, *args)  # type: ignore[no-untyped-call]
    return result


def write_many(
    db: sqlite3.Connection,
    statement: str,
    row: str,
    rows: Sequence[Sequence[object]],
    *,
    max_rows: int = _MAX_ROWS,
    sizes: Sequence[int] | None = None,
) -> None:
    """Run `statement` once per chunk of `rows`, its `{values}` replaced by `row` (the SQL
    of one row, such as "(?, ?)") repeated once per row of the chunk, comma-separated;
    `max_rows`: a power of two. `sizes`: the chunks' sizes, when not `chunk_sizes`'."""
    if not rows:
        return
    start = 0
    if sizes is None:
        sizes = chunk_sizes(len(rows), row.count("?"), max_rows)
    for size in sizes:
        chunk = rows[start : start + size]
        start += size
        db.execute(sql_for(statement, row, size), tuple(itertools.chain.from_iterable(chunk)))


@functools.cache
def sql_for(statement: str, row: str, size: int) -> str:
    """The text of a statement of `size` rows (a few dozen distinct ones in a crawl)."""
    return statement.format(values=", ".join(itertools.repeat(row, size)))
