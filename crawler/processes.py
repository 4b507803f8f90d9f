"""One crawl in several processes (`--processes N`): start them, relay signals, sum up.

One event loop is one core: past ~3,000 pages/s the loop itself is the limit. With N
processes, child i crawls the hosts of `Partition(i, N)` with its own event loop,
ClientSession (concurrency / N connections) and SQLite connection. They share the
database file (WAL; each commit is one batch, one writer at a time) and the page
budget (a counter in shared memory). The parent only supervises: it drops and rebuilds
the deferred index, relays SIGINT/SIGTERM, shows the summed progress and fails the run
when a child fails.

Children are spawned, never forked: the parent has threads (aiosqlite's). Messages go
child -> parent over a pipe: a progress snapshot twice a second, then the summary or
an error. Nothing goes the other way: a child that sees that pipe's twin close (its
parent died, kill -9 included) stops gracefully, as after SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import logging
import multiprocessing
import os
import signal
import tempfile
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from crawler import latency
from crawler.config import Settings
from crawler.engine import Engine
from crawler.errors import CrawlerError
from crawler.eventloop import crawl_runner
from crawler.hooks import load_hooks
from crawler.logs import setup_logging
from crawler.partition import PageBudget, Partition
from crawler.progress import shown, watched
from crawler.records import Summary
from crawler.runoptions import NO_OPTIONS, RunOptions
from crawler.store import Store, open_store

log = logging.getLogger(__name__)

REPORT_EVERY = 0.5  # seconds between a child's progress messages
_SUMMED = ("pages", "in_flight", "queued", "hosts_active", "errors", "http_errors", "retries",
           "bytes")  # fmt: skip


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


@dataclasses.dataclass
class _Child:
    index: int
    process: BaseProcess
    messages: Connection  # child -> parent
    alive: Connection  # the parent's end of the pipe whose closing tells the child to stop
    exited: asyncio.Future[None]
    progress: dict[str, Any] = dataclasses.field(default_factory=dict)
    summary: Summary | None = None
    error: str | None = None


async def run_partitioned(
    store: Store,
    settings: Settings,
    seeds: list[str],
    new_seeds: list[str],
    *,
    quiet: bool,
    log_format: str,
    handle_signals: bool,
    status: tuple[str, int] | None = None,
    options: RunOptions = NO_OPTIONS,
) -> Summary:
    """Crawl with `settings.processes` child processes into the open `store`.

    Each child gets the run options (headers, proxy) with its spec, and the time limit
    as a deadline that its own engine keeps: a signal sent to a child still starting up
    would kill it, a deadline it meets late stops it at once, gracefully.
    """
    ctx = multiprocessing.get_context("spawn")
    count = settings.processes
    budget: ctypes.c_longlong = ctx.RawValue("q", await store.page_count())
    lock_fd, budget_lock = tempfile.mkstemp(prefix="crawler-budget-")
    os.close(lock_fd)
    started = time.monotonic()
    deadline = time.time() + options.time_limit if options.time_limit else None
    async with store.deferred_indexes():  # rebuilt once every child has exited
        level = logging.getLogger().getEffectiveLevel()
        children = [
            _start(
                ctx,
                ChildSpec(
                    i,
                    count,
                    getattr(store, "dsn", "") or store.name,
                    settings,
                    seeds,
                    new_seeds,
                    budget,
                    budget_lock,
                    level,
                    log_format,
                    options,
                    deadline,
                ),
            )
            for i in range(count)
        ]
        try:
            stops = await _supervise(
                children, started, quiet, log_format, handle_signals, status, store.name
            )
        finally:
            await _reap(children)
            with contextlib.suppress(OSError):
                os.unlink(budget_lock)
    broken = [c for c in children if c.summary is None]
    if broken:
        child = broken[0]
        reason = child.error or f"exit code {child.process.exitcode}"
        raise CrawlerError(
            f"process {child.index + 1} of {count} failed: {reason} "
            "(what was committed is kept; `crawler resume` continues)"
        )
    summaries = [c.summary for c in children if c.summary is not None]
    interrupted = stops > 0 or any(s.interrupted for s in summaries)
    finished = not interrupted and all(s.finished for s in summaries)
    if finished:
        await store.mark_finished()
    return Summary(
        pages=sum(s.pages for s in summaries),
        total_pages=await store.page_count(),
        errors=sum(s.errors for s in summaries),
        elapsed=time.monotonic() - started,
        finished=finished,
        interrupted=interrupted,
        http_errors=sum(s.http_errors for s in summaries),
        bytes=sum(s.bytes for s in summaries),
        errors_by_kind=_merged([s.errors_by_kind for s in summaries]),
        by_status_class=_merged([s.by_status_class for s in summaries]),
        not_downloaded=sum(s.not_downloaded for s in summaries),
        stopped_by=_stopped_by(stops, summaries) if interrupted else None,
        changes=_merged([s.changes for s in summaries]),
    )


async def _supervise(
    children: list[_Child],
    started: float,
    quiet: bool,
    log_format: str,
    handle_signals: bool,
    status: tuple[str, int] | None,
    db: str,
) -> int:
    """Relay signals and show progress until every child has exited; returns the stops."""
    loop = asyncio.get_running_loop()
    stops = 0

    def stop() -> None:
        nonlocal stops
        stops += 1
        log.warning(
            "stopping: finishing open requests; interrupt again to stop at once"
            if stops == 1
            else "stopping at once"
        )
        _signal_all(children, signal.SIGTERM)

    if handle_signals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop)
    try:
        source = summed_progress(children, started)
        async with (
            shown(source, quiet=quiet, log_format=log_format),
            watched(status, source, db),
        ):
            pending = {c.exited for c in children}
            failed = False
            while pending:
                _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for child in children:
                    _receive(child)  # what it sent before exiting
                    if not failed and child.exited.done() and child.summary is None:
                        failed = True  # one part of the crawl is gone: stop the others
                        _signal_all(children, signal.SIGTERM)
    finally:
        if handle_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
    return stops


def summed_progress(children: list[_Child], started: float) -> Callable[[], dict[str, Any]]:
    """The progress numbers of all children, summed (progress.shown's source)."""

    def source() -> dict[str, Any]:
        parts = [c.progress for c in children if c.progress]
        elapsed = time.monotonic() - started
        data: dict[str, Any] = {k: sum(p.get(k, 0) for p in parts) for k in _SUMMED}
        data["pages_per_s"] = round(data["pages"] / elapsed, 2) if elapsed > 0 else 0.0
        data["errors_by_kind"] = _merged([p.get("errors_by_kind", {}) for p in parts])
        data["by_status_class"] = _merged([p.get("by_status_class", {}) for p in parts])
        data["by_status"] = _merged([p.get("by_status", {}) for p in parts])
        data["latency"] = latency.merged(p.get("latency") for p in parts)
        data["elapsed_s"] = round(elapsed, 3)
        return data

    return source


def _stopped_by(stops: int, summaries: list[Summary]) -> str:
    """Why an interrupted run stopped: a child's time limit, unless a signal came first."""
    reasons = [s.stopped_by for s in summaries if s.stopped_by not in (None, "signal")]
    return reasons[0] if reasons and not stops else "signal"


def _merged(counts: list[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for part in counts:
        for key, n in part.items():
            out[key] = out.get(key, 0) + n
    return dict(sorted(out.items()))


def _start(ctx: Any, spec: ChildSpec) -> _Child:
    """Spawn one child; its exit and its messages are watched from the running loop."""
    receive, send = ctx.Pipe(duplex=False)
    watch, alive = ctx.Pipe(duplex=False)
    process = ctx.Process(
        target=child_main,
        args=(spec, send, watch),
        name=f"crawler-{spec.index + 1}-of-{spec.count}",
        daemon=True,  # a parent that exits normally takes its children along
    )
    process.start()
    send.close()  # the child's ends: ours would hide its exit (no EOF) or outlive the parent
    watch.close()
    loop = asyncio.get_running_loop()
    child = _Child(spec.index, process, receive, alive, loop.create_future())
    loop.add_reader(process.sentinel, _set_exited, child)
    loop.add_reader(receive.fileno(), _receive, child)
    return child


def _set_exited(child: _Child) -> None:
    asyncio.get_running_loop().remove_reader(child.process.sentinel)
    if not child.exited.done():
        child.exited.set_result(None)


def _receive(child: _Child) -> None:
    """Read what the child sent; its messages are small, so a ready pipe never blocks."""
    try:
        while child.messages.poll():
            kind, data = child.messages.recv()
            if kind == "progress":
                child.progress = data
            elif kind == "summary":
                child.summary = Summary(**data)
            elif kind == "error":
                child.error = data
    except (EOFError, OSError):
        with contextlib.suppress(OSError, ValueError):
            asyncio.get_running_loop().remove_reader(child.messages.fileno())


def _signal_all(children: list[_Child], sig: signal.Signals) -> None:
    for child in children:
        if child.process.exitcode is None and child.process.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.process.pid, sig)


async def _reap(children: list[_Child]) -> None:
    """Wait for every child; one that ignores SIGTERM for 30 s is killed."""
    loop = asyncio.get_running_loop()
    for child in children:
        loop.remove_reader(child.process.sentinel)
        with contextlib.suppress(OSError, ValueError):
            loop.remove_reader(child.messages.fileno())
    if any(c.process.exitcode is None for c in children):
        _signal_all(children, signal.SIGTERM)  # cancelled (a library caller, a test)
    for child in children:
        await asyncio.to_thread(child.process.join, 30)
        if child.process.exitcode is None:
            child.process.kill()
            await asyncio.to_thread(child.process.join)
        child.messages.close()
        child.alive.close()


# ---------------------------------------------------------------------- in the child


def child_main(spec: ChildSpec, messages: Connection, watch: Connection) -> None:
    """A child process's entry point: crawl one partition and report to the parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent relays Ctrl-C as SIGTERM

    level = spec.log_level
    setup_logging(level <= logging.DEBUG, level >= logging.WARNING, spec.log_format)
    main = _crawl_partition(spec, messages, watch)
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


async def _crawl_partition(spec: ChildSpec, messages: Connection, watch: Connection) -> Summary:
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
