"""The outcome buffer every store's writer shares: outcomes wait here for their batch."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence

from crawler.errors import StoreFailure
from crawler.records import Outcome


class OutcomeBuffer:
    """Outcomes added by the workers, until the writer's `flush` commits them as a batch.

    `backlog_bytes` is a rough count of the RAM they hold (bodies, ~100 bytes a row), so
    that workers can wait for the writer instead of piling outcomes up (back-pressure).
    """

    name: str  # the store, for messages (a path, or a URL without its password)

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        # (batch, inserted): called after each commit (see Store.on_commit).
        self.on_commit: Callable[[list[Outcome], Sequence[str]], None] | None = None
        self._buffer: list[Outcome] = []
        self.backlog_bytes = 0
        self._lock = asyncio.Lock()  # one batch (or one store-wide read) at a time
        self._full = asyncio.Event()
        self.failure: StoreFailure | None = None  # set once the store could not write

    def add(self, outcome: Outcome) -> None:
        """Queue an outcome for the next batch (committed by `flush`)."""
        self._buffer.append(outcome)
        page = outcome.page
        held = (len(page.body or b"") + len(page.text or "")) if page else 0
        self.backlog_bytes += held + 100 * (len(outcome.links) + len(outcome.new_urls) + 1)
        if len(self._buffer) >= self.batch_size:
            self._full.set()

    @property
    def backlog(self) -> int:
        return len(self._buffer)

    async def wait_full(self, interval: float) -> None:
        """Wait until a batch is full or `interval` seconds passed, whichever comes first."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._full.wait(), interval)
        self._full.clear()

    @staticmethod
    def is_store_failure(exc: BaseException) -> bool:
        """Whether `exc` is the store's fault (disk, I/O, connection), not a row's."""
        raise NotImplementedError

    def _failure(self, exc: BaseException) -> StoreFailure:
        if isinstance(exc, StoreFailure):
            return exc
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        return StoreFailure(
            f"store failed: {one_line(reason) or type(exc).__name__} ({self.name}); everything "
            "committed before is intact: `crawler resume` continues"
        )

    @contextlib.asynccontextmanager
    async def _writing(self) -> AsyncIterator[None]:
        """A write outside the batches: a store that cannot write raises StoreFailure."""
        try:
            yield
        except Exception as exc:
            if not self.is_store_failure(exc):
                raise
            self.failure = self.failure or self._failure(exc)
            raise self.failure from exc


def one_line(value: object) -> str:
    """A value as one bounded line of valid UTF-8, for a message or an error row."""
    text = str(value).encode("utf-8", "backslashreplace").decode("utf-8")
    return " ".join(text.split())[:300]
