"""The outcome buffer every store's writer shares: outcomes wait here for their batch."""

from __future__ import annotations

import asyncio
import contextlib
import functools
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
        self._next: asyncio.Future[int] | None = None  # the flush waiting for the lock
        self._taken: asyncio.Future[None] | None = None  # resolved when `_next` takes its batch
        self._full = False  # a batch is full: the writer's `wait_full` returns
        self._wake: asyncio.Future[None] | None = None  # what `wait_full` awaits meanwhile
        self.failure: StoreFailure | None = None  # set once the store could not write

    def add(self, outcome: Outcome) -> None:
        """Queue an outcome for the next batch (committed by `flush`)."""
        self._buffer.append(outcome)
        page = outcome.page
        held = (len(page.body or b"") + len(page.text or "")) if page else 0
        links = sum(len(run[1]) for run in outcome.links)
        self.backlog_bytes += held + 100 * (links + len(outcome.new_urls) + 1)
        if len(self._buffer) >= self.batch_size:
            self._full = True
            if self._wake is not None:
                _release(self._wake)

    @property
    def backlog(self) -> int:
        return len(self._buffer)

    async def wait_full(self, interval: float) -> None:
        """Wait until a batch is full or `interval` seconds passed, whichever comes first.
        One waiter at a time: the engine's write loop.

        A future and a timer, not `asyncio.wait_for`: cancelled just as the batch filled,
        Python 3.11's wait_for returns instead of raising. The engine's cancel of its
        write loop was lost that way, and the crawl, its work all committed, never ended
        (about one run in 40 on the benchmark site).
        """
        if not self._full:
            loop = asyncio.get_running_loop()
            wake = self._wake = loop.create_future()
            timer = loop.call_later(interval, _release, wake)
            try:
                await wake
            finally:
                timer.cancel()
                if self._wake is wake:
                    self._wake = None
        self._full = False

    async def flush(self) -> int:
        """Commit every outcome added so far in one transaction; how many the batch held.

        A group commit: callers that come while a batch waits for the writer share that
        batch. Workers held back by back-pressure wait for one commit together, instead
        of each queueing a commit of its own behind the others' (a convoy that once kept
        60 of 64 workers waiting, released one per commit, and cut batches small).

        StoreFailure when the store cannot write (then and on every later call); the batch
        stays in the buffer, its URLs still queued in the store for `resume`.

        Shielded: a writer cancelled mid-batch (a stop, a second Ctrl-C) would otherwise
        leave a transaction open, or put back a batch whose commit already ran and write
        its rows twice. The batch finishes; the next flush waits on the lock.
        """
        return await asyncio.shield(self._pending())

    async def make_room(self) -> None:
        """Back-pressure: return once the outcomes added so far are taken by a batch.

        Not once they are committed: the batch before may still be in the writer's hands,
        and waiting for both would idle the workers through two commits. RAM then holds at
        most the batch being written and the one being filled. StoreFailure as `flush`.
        """
        self._pending()
        assert self._taken is not None
        await asyncio.shield(self._taken)

    def _pending(self) -> asyncio.Future[int]:
        """The flush that will take the outcomes added so far: the waiting one, or a new one."""
        task = self._next
        if task is None or task.done():
            task = self._next = asyncio.ensure_future(self._flush())
            # A caller cancelled while its batch was written no longer awaits the result:
            # a failure then is not lost (`self.failure` keeps it), only not logged.
            task.add_done_callback(_retrieved)
            taken = self._taken = task.get_loop().create_future()
            task.add_done_callback(functools.partial(_settle, taken))
        return task

    async def _flush(self) -> int:
        raise NotImplementedError

    def _take(self) -> list[Outcome]:
        """The batch, for the flush that holds the lock; a later `flush` starts the next."""
        self._next = None
        if self._taken is not None and not self._taken.done():
            self._taken.set_result(None)
        batch, self._buffer = self._buffer, []
        self.backlog_bytes = 0
        return batch

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


def _release(wake: asyncio.Future[None]) -> None:
    if not wake.done():
        wake.set_result(None)


def _retrieved(task: asyncio.Future[int]) -> None:
    if not task.cancelled():
        task.exception()


def _settle(taken: asyncio.Future[None], task: asyncio.Future[int]) -> None:
    """A flush that ended before taking its batch (a store failed before) fails its
    `make_room` waiters as it fails its own."""
    if taken.done():
        return
    if task.cancelled():
        taken.cancel()
    elif (exc := task.exception()) is not None:
        taken.set_exception(exc)
        taken.exception()  # retrieved: the flush's own result reports it
    else:
        taken.set_result(None)


def one_line(value: object) -> str:
    """A value as one bounded line of valid UTF-8, for a message or an error row."""
    text = str(value).encode("utf-8", "backslashreplace").decode("utf-8")
    return " ".join(text.split())[:300]
