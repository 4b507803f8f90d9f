"""One crawl in several processes (`--processes N`): start them, relay signals, sum up.

One event loop is one core: past ~3,000 pages/s the loop itself is the limit. With N
processes, child i crawls the hosts of `Partition(i, N)` with its own event loop,
ClientSession (concurrency / N connections) and SQLite connection. They share the
database file (WAL; each commit is one batch, one writer at a time) and the page
budget (a counter in shared memory). The parent only supervises: it drops and rebuilds
the deferred index, relays SIGINT/SIGTERM, shows the summed progress and fails the run
when a child fails.

Children are spawned, never forked: the parent has threads (aiosqlite's). What a child
does and says is in `crawler.child`; nothing goes parent -> child but SIGTERM.
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
from crawler.child import ChildSpec, child_main
from crawler.config import Settings
from crawler.errors import CrawlerError
from crawler.progress import shown, watched
from crawler.records import Summary
from crawler.runoptions import NO_OPTIONS, RunOptions
from crawler.store import Store

log = logging.getLogger(__name__)

_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
_SUMMED = ("pages", "in_flight", "queued", "hosts_active", "errors", "http_errors", "retries",
           "bytes")  # fmt: skip


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
    ready: bool = False  # it hears SIGTERM (before, it ignores it)
    owed: bool = False  # a SIGTERM it would have ignored: sent when it is ready


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
    as a deadline that its own engine keeps (one it meets late stops it at once,
    gracefully). A stop while a child starts up reaches it once it can hear it.
    """
    ctx = multiprocessing.get_context("spawn")
    count = settings.processes
    budget: ctypes.c_longlong = ctx.RawValue("q", await store.page_count())
    lock_fd, budget_lock = tempfile.mkstemp(prefix="crawler-budget-")
    os.close(lock_fd)
    started = time.monotonic()
    deadline = time.time() + options.time_limit if options.time_limit else None
    children: list[_Child] = []
    relay = _Relay(children)
    loop = asyncio.get_running_loop()
    if handle_signals:  # before any child starts: a Ctrl-C during start-up is a stop too
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, relay.stop)
    try:
        async with store.deferred_indexes():  # rebuilt once every child has exited
            level = logging.getLogger().getEffectiveLevel()
            try:
                for i in range(count):
                    spec = ChildSpec(
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
                    )
                    children.append(_start(ctx, spec))
                    if relay.stops:  # stopped while the others started: this one too
                        _signal_all(children[-1:], signal.SIGTERM)
                await _supervise(children, started, quiet, log_format, status, store.name)
            finally:
                await _reap(children)
                with contextlib.suppress(OSError):
                    os.unlink(budget_lock)
    finally:
        if handle_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
    stops = relay.stops
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
    status: tuple[str, int] | None,
    db: str,
) -> None:
    """Show progress until every child has exited; one that fails stops the others."""
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


class _Relay:
    """The parent's SIGINT/SIGTERM, passed on to the children as SIGTERM (each child
    counts them as its engine does: the first finishes open requests, the second not)."""

    def __init__(self, children: list[_Child]) -> None:
        self.children = children  # those started so far
        self.stops = 0

    def stop(self) -> None:
        self.stops += 1
        log.warning(
            "stopping: finishing open requests; interrupt again to stop at once"
            if self.stops == 1
            else "stopping at once"
        )
        _signal_all(self.children, signal.SIGTERM)


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
    # Spawned ignoring SIGINT and SIGTERM (ignoring survives exec; a mask does not): a
    # stop during its imports would kill it. It says "ready" when it hears them; a stop
    # it missed is sent again then (`_signal_all`, `_receive`).
    before = {sig: signal.signal(sig, signal.SIG_IGN) for sig in _STOP_SIGNALS}
    try:
        process.start()
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
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
            if kind == "ready":
                child.ready = True
                if child.owed:
                    _signal_all([child], signal.SIGTERM)
            elif kind == "progress":
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
        if sig == signal.SIGTERM and not child.ready:
            child.owed = True  # it would ignore it now
            continue
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
