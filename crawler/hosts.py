"""Per-host politeness slots: how many requests are open, when the next may start.

Scrapy's downloader keeps one slot per host; so do we. A slot answers one question,
`wait_time()`: how long until this host may start another request (0 = now, None =
not until a request finishes). The frontier keeps a slot only while its host has URLs
queued, requests open or a delay still running, so memory follows active hosts only.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from dataclasses import dataclass, field

from crawler.records import Job
from crawler.robots import Rules


@dataclass(slots=True, eq=False)
class HostSlot:
    key: str  # scheme://host:port
    per_host: int
    delay: float  # the effective least gap between starts: max(--delay, Crawl-delay)
    queue: deque[Job] = field(default_factory=deque)
    open: int = 0  # requests in flight
    next_start: float = 0.0  # loop time before which no request may start
    rules: Rules | None = None
    fetching_robots: bool = False
    robots_failures: int = 0  # robots.txt attempts that found the host unreachable
    failures: int = 0  # consecutive failed attempts
    dead: str | None = None  # reason the host's queue is being dropped
    fetched: int = 0  # pages handed out this run (for host_budget)
    in_ready: bool = False
    timer: asyncio.TimerHandle | None = None

    def wait_time(self, now: float, needs_robots: bool) -> float | None:
        """Seconds until a job may start here; None when there is nothing to start."""
        if self.dead or self.fetching_robots or self.open >= self.per_host:
            return None  # a dead host's URLs get their error rows as they arrive
        if not self.queue and not (needs_robots and self.rules is None):
            return None
        return max(0.0, self.next_start - now)

    def started(self, now: float) -> None:
        self.open += 1
        self.next_start = now + self.delay

    def back_off(self, now: float, seconds: float) -> None:
        """Keep the whole host quiet for `seconds` (Retry-After, or after failures)."""
        self.next_start = max(self.next_start, now + seconds)

    def idle(self, now: float) -> bool:
        return (
            not self.queue
            and self.open == 0
            and not self.fetching_robots
            and (self.next_start <= now)
        )


MAX_RETRY_AFTER = 120.0  # longest Retry-After we wait out; a longer one fails the URL


def backoff_seconds(attempt: int, base: float = 0.5, cap: float = 60.0) -> float:
    """Exponential backoff with full jitter (attempt 1 -> up to `base` seconds)."""
    return random.uniform(0, min(cap, base * 2 ** (attempt - 1)))
