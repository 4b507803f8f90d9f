"""Progress while a crawl runs: a live line on a terminal, periodic log lines elsewhere."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator

from rich.console import Console
from rich.live import Live
from rich.text import Text

from crawler.engine import Engine

log = logging.getLogger(__name__)

LOG_EVERY = 10.0  # seconds between progress log lines when not on a terminal


def status_line(engine: Engine) -> str:
    c = engine.counters
    f = engine.frontier
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(c.errors_by_kind.items()))
    errors = f"{c.errors} errors" + (f" ({kinds})" if kinds else "")
    return (
        f"{c.pages:,} pages  {c.rate:,.1f}/s  {f.in_flight} in flight  {f.queued:,} queued  "
        f"{f.active_hosts} hosts  {errors}  {c.http_errors} HTTP>=400  "
        f"{c.bytes / 1e6:,.1f} MB"
    )


@contextlib.asynccontextmanager
async def shown(engine: Engine, *, quiet: bool = False) -> AsyncIterator[None]:
    """Show progress for the duration of the block."""
    if quiet:
        yield
        return
    if sys.stderr.isatty():
        console = Console(stderr=True)
        with Live(Text(status_line(engine)), console=console, refresh_per_second=4) as live:
            task = asyncio.create_task(_refresh(engine, live))
            try:
                yield
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                live.update(Text(status_line(engine)))
        return
    task = asyncio.create_task(_log_lines(engine))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _refresh(engine: Engine, live: Live) -> None:
    while True:
        await asyncio.sleep(0.25)
        live.update(Text(status_line(engine)))


async def _log_lines(engine: Engine) -> None:
    while True:
        await asyncio.sleep(LOG_EVERY)
        log.info("progress: %s", status_line(engine))
