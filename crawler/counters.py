"""A run's live numbers: what the progress display, the summary and `/status` show."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from crawler.latency import Latency
from crawler.records import error_kind


@dataclass(slots=True)
class Counters:
    """Counted by the engine as rows are made; read through snapshots, never shared."""

    started: float = field(default_factory=time.monotonic)
    pages: int = 0  # pages stored this run
    errors: int = 0  # rows with a network error
    http_errors: int = 0  # rows with status >= 400
    retries: int = 0
    not_downloaded: int = 0  # responses whose body --accept-type refused
    bytes: int = 0
    errors_by_kind: dict[str, int] = field(default_factory=dict)
    by_status_class: dict[str, int] = field(default_factory=dict)  # "2xx": n; "error": no status
    by_status: dict[str, int] = field(default_factory=dict)  # "200": n; "error": no status
    latency: Latency = field(default_factory=Latency)  # seconds per stored fetch
    changes: dict[str, int] = field(default_factory=dict)  # fetches.change: n (a recrawl's)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def rate(self) -> float:
        return self.pages / self.elapsed if self.elapsed > 0 else 0.0

    def response(self, status: int | None, error: str | None, size: int, elapsed: float) -> None:
        """A row for a fetch: an HTTP status, or (status None) a network error."""
        self.pages += 1
        self.bytes += size
        self.latency.observe(elapsed)
        if status is None:
            self._error(error or "error")
            return
        if status >= 400:
            self.http_errors += 1
        klass = f"{status // 100}xx"
        self.by_status_class[klass] = self.by_status_class.get(klass, 0) + 1
        code = str(status)
        self.by_status[code] = self.by_status.get(code, 0) + 1

    def failed_row(self, reason: str, change: str = "new") -> None:
        """An error row written without a response (an internal error, a dropped host);
        `change`: what it means for a page stored before (`fetches.change`)."""
        self.pages += 1
        self._error(reason)
        self.changed(change)

    def changed(self, change: str) -> None:
        """A fetch stored: what it found (`fetches.change`)."""
        self.changes[change] = self.changes.get(change, 0) + 1

    def _error(self, reason: str) -> None:
        self.errors += 1
        kind = error_kind(reason)
        self.errors_by_kind[kind] = self.errors_by_kind.get(kind, 0) + 1
        self.by_status_class["error"] = self.by_status_class.get("error", 0) + 1
        self.by_status["error"] = self.by_status.get("error", 0) + 1
