"""One writing run per crawl file: an exclusive `flock` on the database file itself.

The kernel drops a `flock` when its process dies, kill -9 included, so a lock is never
stale. SQLite locks with `fcntl` byte-range locks, which on Linux are independent of
`flock`, so the two do not interfere, and readers (`stats`, `export`, `why`) take no
lock at all: WAL lets them read while a crawl writes. SQLite's own exclusive mode is
not used because it would shut those readers out. No sidecar file: a refused command
leaves the folder as it was.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator

from crawler.errors import UsageError


@contextlib.contextmanager
def exclusive(db: str) -> Iterator[None]:
    """Hold the crawl file `db` (which exists) for one run; UsageError (exit 2) when
    another run holds it."""
    fd = os.open(db, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(
                f"{db} is in use by another crawl; wait for it to end or stop it first"
            ) from None
        yield
    finally:
        os.close(fd)  # drops the lock
