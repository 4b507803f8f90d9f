"""A `--processes` child: crawl one partition of the hosts and report to the parent.

Messages go child -> parent over a pipe: "ready" once it hears SIGTERM (it is spawned
ignoring it), a progress snapshot twice a second, then the summary or an error. A child
that sees its watch pipe close (the parent died, kill -9 included) stops gracefully.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import logging
import signal
from multiprocessing.connection import Connection
from typing import Any

from crawler.config import Settings
from crawler.engine import Engine
from crawler.errors import CrawlerError
from crawler.eventloop import crawl_runner
from crawler.hooks import load_hooks
from crawler.logs import setup_logging
from crawler.partition import PageBudget, Partition
from crawler.records import Summary
from crawler.runoptions import RunOptions
from crawler.store import open_store

log = logging.getLogger(__name__)

REPORT_EVERY = 0.5  # seconds between progress messages


@dataclasses.dataclass(frozen=True)
class ChildSpec:
    """What a child needs to crawl its partition (pickled to it by spawn)."""

    index: int
    count: int
    db: str = dataclasses.field(repr=False)  # a PostgreSQL URL may hold its password
    settings: Settings
    seeds: list[str]
    new_seeds: list[str]
    budget: ctypes.c_longlong
    budget_lock: str
    log_level: int
    log_format: str
    options: RunOptions  # this run's own (headers, proxy): passed over the pipe, never stored
    deadline: float | None = None  # unix time the run's --time-limit ends


def child_main(spec: ChildSpec, messages: Connection, watch: Connection) -> None:
    """A child process's entry point: crawl one partition and report to the parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent relays Ctrl-C as SIGTERM
    early = _EarlyStops()
    signal.signal(signal.SIGTERM, early.heard)  # ignored since the spawn
    _send(messages, ("ready", None))

    level = spec.log_level
    setup_logging(level <= logging.DEBUG, level >= logging.WARNING, spec.log_format)
    main = _crawl_partition(spec, messages, watch, early)
    try:
        with crawl_runner() as runner:
            summary = runner.run(main)
    except CrawlerError as exc:
        _send(messages, ("error", str(exc)))
        raise SystemExit(1) from None
    except Exception as exc:
        log.exception("process %d of %d failed", spec.index + 1, spec.count)
        _send(messages, ("error", f"internal: {type(exc).__name__}: {exc}"))
        raise SystemExit(1) from None
    _send(messages, ("summary", dataclasses.asdict(summary)))


def _send(messages: Connection, message: tuple[str, Any]) -> None:
    """Tell the parent; a parent that is gone (kill -9) hears nothing, and that is fine."""
    with contextlib.suppress(OSError):
        messages.send(message)


class _EarlyStops:
    """SIGTERMs that come before the engine runs (which then hears them itself): counted,
    and passed to the engine once it exists."""

    def __init__(self) -> None:
        self.count = 0
        self.engine: Engine | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def heard(self, signum: int, frame: object) -> None:
        self.count += 1
        if self.engine is not None and self.loop is not None:
            self.loop.call_soon_threadsafe(self.engine.stop)  # not from inside a handler

    def hand_over(self, engine: Engine) -> None:
        self.engine, self.loop = engine, asyncio.get_running_loop()
        for _ in range(self.count):
            engine.stop()


async def _crawl_partition(
    spec: ChildSpec, messages: Connection, watch: Connection, early: _EarlyStops
) -> Summary:
    index, count, settings = spec.index, spec.count, spec.settings
    # Connections split so that all processes together keep to --concurrency.
    share = settings.concurrency // count + (index < settings.concurrency % count)
    mine = dataclasses.replace(settings, concurrency=max(1, share))
    store = await open_store(spec.db, create=False)
    try:
        engine = Engine(
            store,
            mine,
            spec.seeds,
            options=spec.options,
            deadline=spec.deadline,
            partition=Partition(index, count),
            budget=PageBudget(settings.max_pages, shared=spec.budget, lock_path=spec.budget_lock),
            hooks=load_hooks(settings),  # by name: the parent checked they import
        )
        early.hand_over(engine)
        loop = asyncio.get_running_loop()

        def parent_gone() -> None:
            loop.remove_reader(watch.fileno())
            log.warning("process %d of %d: the parent process is gone, stopping", index + 1, count)
            engine.stop()

        loop.add_reader(watch.fileno(), parent_gone)
        reporter = asyncio.create_task(_report(engine, messages))
        try:
            return await engine.run(spec.new_seeds, handle_signals=True)
        finally:
            reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reporter
            with contextlib.suppress(OSError, ValueError):
                loop.remove_reader(watch.fileno())
    finally:
        await store.close()


async def _report(engine: Engine, messages: Connection) -> None:
    while True:
        _send(messages, ("progress", engine.status()))
        await asyncio.sleep(REPORT_EVERY)
