"""Running a crawl from the CLI: open the database, start or resume, report the end."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any

from crawler.config import Settings, build_settings
from crawler.engine import Engine, Summary, canonical_seeds
from crawler.errors import UsageError
from crawler.processes import run_partitioned
from crawler.progress import shown, snapshot
from crawler.report import print_summary
from crawler.storage import Storage

log = logging.getLogger(__name__)


def run_crawl(
    db: str, settings: Settings, seeds: list[str], *, quiet: bool = False, log_format: str = "text"
) -> int:
    """`crawler crawl`: a new crawl (or more seeds for the one in `db`)."""
    seeds = canonical_seeds(seeds, settings.max_url_length)  # before the file is touched
    main = crawl(db, settings, seeds, quiet=quiet, log_format=log_format, handle_signals=True)
    return _run(main, quiet=quiet, log_format=log_format)


def resume_crawl(
    db: str, overrides: dict[str, Any], *, quiet: bool = False, log_format: str = "text"
) -> int:
    """`crawler resume`: continue the crawl in `db`."""
    main = resume(db, overrides, quiet=quiet, log_format=log_format, handle_signals=True)
    return _run(main, quiet=quiet, log_format=log_format)


def _run(main: Coroutine[Any, Any, Summary], *, quiet: bool, log_format: str) -> int:
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        summary = runner.run(main)
    print_summary(summary, quiet=quiet, log_format=log_format)
    return 0


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed: its event loop is markedly cheaper per request."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


async def crawl(
    db: str,
    settings: Settings,
    seeds: list[str],
    *,
    quiet: bool = True,
    log_format: str = "text",
    handle_signals: bool = False,
) -> Summary:
    """Crawl `seeds` into `db` (the library entry point; the CLI wraps it).

    `handle_signals`: SIGINT/SIGTERM stop the crawl gracefully (the CLI's behaviour);
    off by default so that embedding the crawler does not take over the process' signals.
    """
    seeds = canonical_seeds(seeds, settings.max_url_length)
    storage = await Storage.open(db, create=True)
    try:
        record = await storage.load_crawl()
        all_seeds = list(dict.fromkeys([*(record.seeds if record else ()), *seeds]))
        if record is not None:
            log.info("%s already holds a crawl: continuing it with %d new seed(s)", db, len(seeds))
        await storage.save_crawl(settings, all_seeds)
        return await _go(storage, settings, all_seeds, seeds, quiet, log_format, handle_signals)
    finally:
        await storage.close()


async def resume(
    db: str,
    overrides: dict[str, Any] | None = None,
    *,
    quiet: bool = True,
    log_format: str = "text",
    handle_signals: bool = False,
) -> Summary:
    """Continue the crawl stored in `db`, with `overrides` replacing stored settings."""
    storage = await Storage.open(db, create=False)
    try:
        record = await storage.load_crawl()
        if record is None:
            raise UsageError(f"{db} holds no crawl to resume")
        settings = record.settings
        if overrides:
            settings = build_settings(overrides, source="command line", base=settings)[0]
            await storage.save_crawl(settings, record.seeds)
        # The seeds again: a kill -9 before the first commit leaves them only in `crawl`
        # (the frontier skips the ones it already holds).
        seeds = list(record.seeds)
        return await _go(storage, settings, seeds, seeds, quiet, log_format, handle_signals)
    finally:
        await storage.close()


async def _go(
    storage: Storage,
    settings: Settings,
    seeds: list[str],
    new_seeds: list[str],
    quiet: bool,
    log_format: str,
    handle_signals: bool,
) -> Summary:
    if settings.processes > 1:
        return await run_partitioned(
            storage,
            settings,
            seeds,
            new_seeds,
            quiet=quiet,
            log_format=log_format,
            handle_signals=handle_signals,
        )
    engine = Engine(storage, settings, seeds)
    async with (
        storage.deferred_indexes(),
        shown(partial(snapshot, engine), quiet=quiet, log_format=log_format),
    ):
        summary = await engine.run(new_seeds, handle_signals=handle_signals)
    if summary.finished:
        await storage.mark_finished()
    return summary
