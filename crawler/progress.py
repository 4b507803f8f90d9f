"""Progress while a crawl runs: a live display on a terminal, periodic log lines elsewhere.

Three shapes, chosen once when the crawl starts:
- a terminal (stderr is a TTY) and text logs: a rich `Live` display, redrawn 4 times a second;
- not a terminal: one `progress: ...` log line every `CRAWLER_PROGRESS_EVERY` seconds (10);
- `--log-format json`: the same lines as JSON objects with one field per number.
`--quiet` shows none of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

log = logging.getLogger(__name__)

LOG_EVERY = 10.0  # seconds between progress log lines when not on a terminal
EVERY_ENV = "CRAWLER_PROGRESS_EVERY"  # overrides LOG_EVERY (tests use a small value)
REFRESH = 0.25  # seconds between redraws of the live display


def status_line(data: dict[str, Any]) -> str:
    """One line of text for a snapshot, e.g. `120 pages  40.0/s  8 in flight  ...`."""
    kinds = ", ".join(f"{k} {n}" for k, n in data["errors_by_kind"].items())
    errors = f"{data['errors']} errors" + (f" ({kinds})" if kinds else "")
    return (
        f"{data['pages']:,} pages  {data['pages_per_s']:,.1f}/s  {data['in_flight']} in flight  "
        f"{data['queued']:,} queued  {data['hosts_active']} hosts  {errors}  "
        f"{data['http_errors']} HTTP>=400  {_mb(data['bytes'])}"
    )


def progress_every() -> float:
    """Seconds between progress log lines: $CRAWLER_PROGRESS_EVERY, else LOG_EVERY."""
    raw = os.environ.get(EVERY_ENV)
    if raw is None:
        return LOG_EVERY
    try:
        every = float(raw)
    except ValueError:
        every = 0.0
    if every <= 0:
        log.warning("ignoring %s=%r: expected a positive number of seconds", EVERY_ENV, raw)
        return LOG_EVERY
    return every


@contextlib.asynccontextmanager
async def shown(
    source: Callable[[], dict[str, Any]], *, quiet: bool = False, log_format: str = "text"
) -> AsyncIterator[None]:
    """Show progress for the duration of the block; `source()` returns a `snapshot`."""
    if quiet:
        yield
        return
    if log_format == "text" and sys.stderr.isatty():
        task = _live(source)
    else:
        task = _log_lines(source, progress_every(), as_json=log_format == "json")
    running = asyncio.create_task(task)
    try:
        yield
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running


async def _live(source: Callable[[], dict[str, Any]]) -> None:
    # Redrawn from this task, not rich's refresh thread: the counters belong to the loop.
    # Live redirects sys.stderr, and the CLI's log handler writes to whatever sys.stderr
    # is at the time, so warnings appear above the display instead of tearing it.
    console = Console(stderr=True)
    with Live(render(source()), console=console, auto_refresh=False) as live:
        try:
            while True:
                await asyncio.sleep(REFRESH)
                live.update(render(source()), refresh=True)
        finally:
            # Cancelled at the end of the crawl: leave the final numbers on screen.
            live.update(render(source()), refresh=True)


def render(data: dict[str, Any]) -> Group:
    """The live display: one row of numbers, and the errors by kind when there are any."""
    grid = Table.grid(padding=(0, 2))
    cells = [
        ("pages", f"{data['pages']:,}"),
        ("pages/s", f"{data['pages_per_s']:,.1f}"),
        ("in flight", f"{data['in_flight']:,}"),
        ("queued", f"{data['queued']:,}"),
        ("hosts", f"{data['hosts_active']:,}"),
        ("errors", f"{data['errors']:,}"),
        ("HTTP>=400", f"{data['http_errors']:,}"),
        ("data", _mb(data["bytes"])),
    ]
    for _ in cells:
        grid.add_column(justify="right")
    grid.add_row(*(Text(label, style="dim") for label, _ in cells))
    grid.add_row(*(Text(value, style="bold") for _, value in cells))
    parts: list[Table | Text] = [grid]
    if data["errors_by_kind"]:
        kinds = ", ".join(f"{k} {n:,}" for k, n in data["errors_by_kind"].items())
        parts.append(Text(f"errors by kind: {kinds}", style="red"))
    return Group(*parts)


async def _log_lines(source: Callable[[], dict[str, Any]], every: float, *, as_json: bool) -> None:
    while True:
        await asyncio.sleep(every)
        data = source()
        if as_json:
            log.info("progress", extra={"fields": {"event": "progress", **data}})
        else:
            log.info("progress: %s", status_line(data))


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


def watched(
    status: tuple[str, int] | None, source: Callable[[], dict[str, Any]], db: str
) -> contextlib.AbstractAsyncContextManager[Any]:
    """The status server (`--status-port`) for the duration of the block, or nothing.

    Imported only when asked for: the report's and Prometheus' modules would otherwise
    cost every crawl's start-up CPU.
    """
    if status is None:
        return contextlib.nullcontext()
    from crawler.status import serve_status

    return serve_status(status[0], status[1], source, db)
