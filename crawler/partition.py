"""One crawl split across processes: which process owns a host, and the page budget they share.

Each host belongs to exactly one process (a stable hash of its server, the politeness
key: http and https of one name go to one process), so
per-host limits, delays, robots.txt and failure counts stay local to that process and
need no coordination. URLs found for another process's host go to the database as
queued rows; their owner picks them up from there (`Frontier` watches for them).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from crawler.urls import server_key


def owner(host: str, count: int) -> int:
    """The process (0 .. count-1) that crawls origin `host`; the same in every process and run."""
    return zlib.crc32(server_key(host).encode()) % count


@dataclass(frozen=True, slots=True)
class Partition:
    index: int
    count: int

    def owns(self, host: str) -> bool:
        return owner(host, self.count) == self.index


class PageBudget:
    """`max_pages` against pages stored plus pages being fetched (0: no limit).

    A fetch takes one unit before it starts and keeps it once its row is stored; a fetch
    that ends without a row (a retry, a cancel) gives it back. With `shared`, a counter in
    shared memory, every process of a crawl draws from the one budget, so
    `--max-pages 1000` stores 1000 pages however many processes fetch them. The counter
    is guarded by a `flock` on `lock_path`, not by a multiprocessing lock: the kernel
    drops a flock when its holder dies, so a child killed mid-update (kill -9) cannot
    leave its siblings waiting for ever.
    """

    def __init__(
        self, limit: int, shared: ctypes.c_longlong | None = None, lock_path: str | None = None
    ) -> None:
        self.limit = limit
        self.shared = shared
        self.lock_path = lock_path
        self._fd: int | None = None
        self._used = 0

    def start(self, stored: int) -> None:
        """Pages already stored (a resumed crawl); a shared budget was set by its creator."""
        if self.shared is None:
            self._used = stored

    @property
    def used(self) -> int:
        return self._used if self.shared is None else int(self.shared.value)

    def left(self) -> int:
        if not self.limit:
            return 1 << 62
        return self.limit - self.used

    def can_take(self) -> bool:
        """Whether `take` may succeed now."""
        return self.left() > 0

    def take(self) -> bool:
        """Reserve one page; False when the budget is spent."""
        if self.shared is None:
            if self.limit and self._used >= self.limit:
                return False
            self._used += 1
            return True
        with self._locked():
            if self.limit and self.shared.value >= self.limit:
                return False
            self.shared.value += 1
            return True

    def add(self, n: int) -> None:
        """Count `n` more units as used (negative: give units back)."""
        if self.shared is None:
            self._used += n
            return
        with self._locked():
            self.shared.value += n

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        if self._fd is None:
            assert self.lock_path is not None, "a shared budget needs a lock file"
            self._fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
