"""One writing run per crawl file: an exclusive `flock` on the database file itself.

The kernel drops a `flock` when its process dies, kill -9 included, so a lock is never
stale. SQLite locks with `fcntl` byte-range locks, which on Linux are independent of
`flock`, so the two do not interfere (but for the lock's descriptor, which must close
after the process's connections: `hold`), and readers (`stats`, `export`, `why`) take no
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
    another run holds it. Only where no SQLite connection of this process has the file
    open as it ends (`hold` says why)."""
    fds: list[int] = []
    try:
        hold(db, fds)
        yield
    finally:
        for fd in fds:
            os.close(fd)  # drops the lock


def hold(db: str, fds: list[int]) -> None:
    """Take the crawl file `db` (which exists) for this process; UsageError (exit 2) when
    another run holds it. The descriptor goes in `fds`, taken or not: closing it drops
    the lock.

    Close them only after every SQLite connection of this process to the file has
    closed: closing any descriptor of a file drops all the fcntl locks the process holds
    on it, SQLite's included, and a connection left without its lock lets another take
    itself for the file's last (a reader closing checkpointed and deleted the WAL under
    a crawl). A refused one too: the process may hold the file through another store.
    """
    fd = os.open(db, os.O_RDONLY)
    fds.append(fd)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise UsageError(
            f"{db} is in use by another crawl; wait for it to end or stop it first"
        ) from None
