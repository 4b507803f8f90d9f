"""Fetch latencies as a histogram: what the engine counts and `/metrics` serves.

A small mutable record the engine's `Counters` feeds once per stored fetch (the same
seconds as `pages.elapsed`); `data()` is its plain-data form in a progress snapshot, which
crosses process boundaries under `--processes`, where `merged` sums the children's.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

# Upper bounds (seconds, inclusive, as Prometheus' `le`); one more bucket for the rest.
BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass(slots=True)
class Latency:
    counts: list[int] = field(default_factory=lambda: [0] * (len(BOUNDS) + 1))
    total: float = 0.0  # seconds, summed

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(BOUNDS, seconds)] += 1
        self.total += seconds

    def data(self) -> dict[str, Any]:
        """{"bounds": [...], "counts": [...per bucket, the last is +Inf], "sum": s}."""
        return {"bounds": list(BOUNDS), "counts": list(self.counts), "sum": self.total}


def merged(parts: Iterable[dict[str, Any] | None]) -> dict[str, Any]:
    """Several `Latency.data()` summed (a process that sent none yet is skipped)."""
    out = Latency()
    for part in parts:
        if not part:
            continue
        for i, n in enumerate(part["counts"]):
            out.counts[i] += n
        out.total += part["sum"]
    return out.data()
