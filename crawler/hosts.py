"""Per-host politeness slots: how many requests are open, when the next may start.

Scrapy's downloader keeps one slot per host; so do we. A slot (one origin: its queue,
robots.txt rules, failures) answers one question, `wait_time()`: how long until it may
start another request (0 = now, None = not until a request finishes). The limits it
obeys live in `Gate`s it shares: one per server (host name, plus the port when not the
scheme's default, so http and https of one name share a limit and a delay, as in
Heritrix), and with `--per-ip` one per IP address. The scheduler keeps a slot only while
its origin has URLs queued, requests open or a delay still running, so memory follows
active hosts only.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from dataclasses import dataclass, field

from crawler.records import Job
from crawler.robots import Rules


@dataclass(slots=True, eq=False)
class Gate:
    """A limit shared by the slots behind it: at most `limit` requests open at once and,
    for a server, no start before `next_start`. Slots that found it full wait in
    `blocked` and are reconsidered one at a time as requests end."""

    key: str
    limit: int
    open: int = 0
    next_start: float = 0.0  # loop time before which no request may start (servers only)
    members: int = 0  # slots using it: the scheduler forgets it at 0
    blocked: deque[HostSlot] = field(default_factory=deque)

    @property
    def full(self) -> bool:
        return self.open >= self.limit


class Gates:
    """The live gates by key: each made with its first slot, forgotten with its last."""

    def __init__(self) -> None:
        self._by_key: dict[str, Gate] = {}

    def join(self, key: str, limit: int) -> Gate:
        gate = self._by_key.get(key)
        if gate is None:
            gate = self._by_key[key] = Gate(key, limit)
        gate.members += 1
        return gate

    def leave(self, gate: Gate) -> None:
        gate.members -= 1
        if gate.members == 0:
            del self._by_key[gate.key]

    def __len__(self) -> int:
        return len(self._by_key)


@dataclass(slots=True, eq=False)
class HostSlot:
    key: str  # scheme://host:port
    server: Gate  # per_host and the delay, shared by the origins of one server
    delay: float  # the effective least gap between starts: max(--delay, Crawl-delay)
    ip: Gate | None = None  # --per-ip: shared by every server on one address
    queue: deque[Job] = field(default_factory=deque)
    sitemaps: deque[Job] = field(default_factory=deque)  # sitemap fetches: no page budget
    open: int = 0  # requests in flight from this origin
    rules: Rules | None = None
    fetching_robots: bool = False
    robots_failures: int = 0  # robots.txt attempts that found the host unreachable
    failures: int = 0  # consecutive failed attempts
    dead: str | None = None  # reason the host's queue is being dropped
    fetched: int = 0  # pages handed out this run (for host_budget)
    in_ready: bool = False
    in_blocked: bool = False  # waiting in a full gate's `blocked`
    resolving: bool = False  # --per-ip: its address is being looked up
    timer: asyncio.TimerHandle | None = None

    @property
    def next_start(self) -> float:
        return self.server.next_start

    @next_start.setter
    def next_start(self, at: float) -> None:
        self.server.next_start = at

    def has_work(self, needs_robots: bool) -> bool:
        if self.dead or self.fetching_robots or self.resolving:
            return False  # a dead host's URLs get their error rows as they arrive
        return bool(self.queue or self.sitemaps) or (needs_robots and self.rules is None)

    def full_gate(self) -> Gate | None:
        """The shared limit that keeps this slot from starting a request, if any."""
        if self.server.full:
            return self.server
        if self.ip is not None and self.ip.full:
            return self.ip
        return None

    def wait_time(self, now: float, needs_robots: bool) -> float | None:
        """Seconds until a job may start here; None when there is nothing to start."""
        if not self.has_work(needs_robots) or self.full_gate() is not None:
            return None
        return max(0.0, self.server.next_start - now)

    def started(self, now: float) -> None:
        self.open += 1
        self.server.open += 1
        if self.ip is not None:
            self.ip.open += 1
        self.server.next_start = max(self.server.next_start, now + self.delay)

    def ended(self) -> list[Gate]:
        """A request is over; the gates it freed (their blocked slots may go now)."""
        self.open -= 1
        freed = []
        for gate in (self.server, self.ip):
            if gate is not None:
                gate.open -= 1
                if gate.blocked:
                    freed.append(gate)
        return freed

    def back_off(self, now: float, seconds: float) -> None:
        """Keep the whole server quiet for `seconds` (Retry-After, or after failures)."""
        self.server.next_start = max(self.server.next_start, now + seconds)

    def idle(self, now: float) -> bool:
        return (
            not self.queue
            and not self.sitemaps
            and self.open == 0
            and not self.fetching_robots
            and not self.resolving
            and (self.server.next_start <= now)
        )


MAX_RETRY_AFTER = 120.0  # longest Retry-After we wait out; a longer one fails the URL


def backoff_seconds(attempt: int, base: float = 0.5, cap: float = 60.0) -> float:
    """Exponential backoff with full jitter (attempt 1 -> up to `base` seconds)."""
    return random.uniform(0, min(cap, base * 2 ** (attempt - 1)))
