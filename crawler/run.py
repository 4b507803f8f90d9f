"""Running a crawl: lock and open the database, start or resume, report the end."""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from crawler import pool
from crawler.admission import Admission
from crawler.config import PROJECT_URL, SETTING_NAMES, Settings, build_settings
from crawler.engine import Engine
from crawler.errors import UsageError
from crawler.eventloop import crawl_runner
from crawler.hooks import Hook, Hooks, hook_name, load_hooks
from crawler.network import Network, Proxies
from crawler.processes import run_partitioned
from crawler.progress import shown, watched
from crawler.reasons import Reason
from crawler.records import Summary
from crawler.report import print_summary
from crawler.runoptions import NO_OPTIONS, RunOptions
from crawler.scope import Scope
from crawler.seen import SeenSet
from crawler.store import Store, open_store, shown_name
from crawler.urls import canonical_url

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Output:
    """How a run shows itself; the run's own, never stored with the crawl."""

    quiet: bool = True
    log_format: str = "text"
    handle_signals: bool = False  # SIGINT/SIGTERM stop the crawl gracefully (the CLI's way)
    status: tuple[str, int] | None = None  # (host, port) of the live status server


def run_crawl(
    db: str, settings: Settings, seeds: list[str], out: Output, options: RunOptions = NO_OPTIONS
) -> int:
    """`crawler crawl`: a new crawl into `db`."""
    seeds = canonical_seeds(seeds, settings.max_url_length)  # before the file is touched
    Network(settings, options, ())  # a bad --proxy env or CA file: exit 2, file untouched
    return _run(crawl(db, settings, seeds, output=out, options=options), db, out, options)


def resume_crawl(
    db: str,
    overrides: dict[str, Any],
    seeds: Sequence[str],
    out: Output,
    options: RunOptions = NO_OPTIONS,
) -> int:
    """`crawler resume`: continue the crawl in `db`, optionally with more seeds."""
    Proxies.of(options.proxy)  # a bad --proxy env: exit 2 before the file is touched
    return _run(resume(db, overrides, seeds, output=out, options=options), db, out, options)


def _run(main: Coroutine[Any, Any, Summary], db: str, out: Output, options: RunOptions) -> int:
    with crawl_runner() as runner:
        summary = runner.run(main)
    again = [
        f"--{n}" for n, given in (("header", options.header), ("proxy", options.proxy)) if given
    ]
    print_summary(
        summary, db=shown_name(db), quiet=out.quiet, log_format=out.log_format, again=again
    )
    return 0


async def crawl(
    db: str,
    settings: Settings,
    seeds: list[str],
    *,
    output: Output = Output(),
    hooks: Sequence[Hook] = (),
    options: RunOptions = NO_OPTIONS,
) -> Summary:
    """Crawl `seeds` into a new crawl in `db` (crawler.api and the CLI wrap it).

    A file that already holds a crawl is refused (UsageError): `resume` continues it.
    `output.handle_signals` is off by default so that embedding the crawler does not take
    over the process' signals. `hooks`: callables run with `settings.hooks` in this
    process only (they are not stored with the crawl). `options` are this run's own:
    never stored.
    """
    seeds = list(dict.fromkeys(canonical_seeds(seeds, settings.max_url_length)))
    _some_seed_admitted(settings, seeds)
    settings, page_hooks = _prepared(settings, hooks)  # before the file is made
    store = await open_store(db, create=True)
    try:
        with store.lock():
            if await store.load_crawl() is not None:
                raise UsageError(
                    f"{store.name} already holds a crawl: continue it with "
                    f"`crawler resume --db {store.name}` "
                    "(add seeds with --seed URL), or crawl into another file"
                )
            await store.save_crawl(settings, seeds)
            return await _go(store, settings, seeds, seeds, "crawl", output, page_hooks, options)
    finally:
        await store.close()


async def resume(
    db: str,
    overrides: dict[str, Any] | None = None,
    seeds: Sequence[str] = (),
    *,
    output: Output = Output(),
    hooks: Sequence[Hook] = (),
    options: RunOptions = NO_OPTIONS,
) -> Summary:
    """Continue the crawl stored in `db`; `overrides` replace stored settings (and are
    stored), `seeds` are added to the crawl, `hooks` run in this process only; `options`
    (headers, proxy) are given again: they never were stored."""
    store = await open_store(db, create=False)
    try:
        with store.lock():
            record = await store.load_crawl()
            if record is None:
                raise UsageError(f"{store.name} holds no crawl to resume")
            settings = _overridden(record.settings, overrides, "resume")
            added = canonical_seeds(list(seeds), settings.max_url_length)
            settings, page_hooks = _prepared(settings, hooks)  # before anything is stored
            all_seeds = list(dict.fromkeys([*record.seeds, *added]))
            if settings != record.settings or added:
                await store.save_crawl(settings, all_seeds)
            # The seeds again: a kill -9 before the first commit leaves them only in `crawl`
            # (the frontier skips the ones it already holds).
            return await _go(
                store, settings, all_seeds, all_seeds, "resume", output, page_hooks, options
            )
    finally:
        await store.close()


def _overridden(stored: Settings, overrides: dict[str, Any] | None, kind: str) -> Settings:
    """The stored settings with the flags given now on top; each change is logged."""
    if not overrides:
        return stored
    settings = build_settings(overrides, source="command line", base=stored)[0]
    for name in SETTING_NAMES:
        old, new = getattr(stored, name), getattr(settings, name)
        if old != new:
            log.warning("%s: %s is now %r (was %r)", kind, name, new, old)
    return settings


def recrawl_crawl(
    db: str,
    overrides: dict[str, Any],
    selection: dict[str, Any],
    out: Output,
    options: RunOptions = NO_OPTIONS,
) -> int:
    """`crawler recrawl`: fetch the stored pages of `db` that match `selection` again."""
    Proxies.of(options.proxy)  # a bad --proxy env: exit 2 before the file is touched
    main = recrawl(db, overrides, **selection, output=out, options=options)
    return _run(main, db, out, options)


async def recrawl(
    db: str,
    overrides: dict[str, Any] | None = None,
    *,
    where: str | None = None,
    older_than: float | None = None,
    due: bool = False,
    output: Output = Output(),
    hooks: Sequence[Hook] = (),
    options: RunOptions = NO_OPTIONS,
) -> Summary:
    """Fetch again the stored pages of the crawl in `db` that match (default: all):
    `where` an SQL condition on `pages`, `older_than` seconds since their last fetch,
    `due` only those whose revisit interval has passed. Conditional requests; changed
    pages are replaced and their new links crawled (crawler.revisit).

    An interrupted recrawl is continued by `crawler resume` (the crawl stays marked as
    recrawling until its frontier runs dry); `recrawl` again selects pages anew.
    `hooks` and `options` as for `resume`.
    """
    store = await open_store(db, create=False)
    try:
        with store.lock():
            record = await store.load_crawl()
            if record is None:
                raise UsageError(
                    f"{store.name} holds no crawl to recrawl: start one with `crawler crawl`"
                )
            settings = _overridden(record.settings, overrides, "recrawl")
            settings, page_hooks = _prepared(settings, hooks)  # before anything is stored
            since = time.time() - older_than if older_than is not None else None
            first = settings.recrawl_interval if due else None
            count = await store.select_recrawl(where, since, first)
            log.info("recrawl: %d stored page(s) to fetch again", count)
            if settings != record.settings:
                await store.save_crawl(settings, record.seeds)
            seeds = list(record.seeds)
            return await _go(store, settings, seeds, [], "recrawl", output, page_hooks, options)
    finally:
        await store.close()


# What a worker may choose for itself; every other setting is the crawl's, stored once.
WORKER_OWN = ("concurrency", "processes")


def work_crawl(
    db: str, overrides: dict[str, Any], out: Output, options: RunOptions = NO_OPTIONS
) -> int:
    """`crawler work`: join the crawl in a shared store as one more worker."""
    Proxies.of(options.proxy)
    return _run(work(db, overrides, output=out, options=options), db, out, options)


async def work(
    db: str,
    overrides: dict[str, Any] | None = None,
    *,
    output: Output = Output(),
    options: RunOptions = NO_OPTIONS,
) -> Summary:
    """Crawl the shared store `db` as one more worker, until its crawl is over.

    Only `WORKER_OWN` settings may be given: the others (scope, limits, politeness) are
    the crawl's, stored by `crawl`, so that every worker keeps to the same rules.
    """
    crawl_only = sorted(set(overrides or {}) - set(WORKER_OWN))
    if crawl_only:
        raise UsageError(
            f"--{crawl_only[0].replace('_', '-')} is the crawl's setting, not a worker's: "
            "set it on `crawler crawl` or `crawler resume`"
        )
    store = await open_store(db, create=False)
    try:
        if not hasattr(store, "lease_hosts"):
            raise UsageError(
                "crawler work needs a shared store (--db postgresql://...); "
                "to use more cores on one SQLite file, give --processes N"
            )
        record = await store.load_crawl()
        if record is None:
            raise UsageError(f"{store.name} holds no crawl: start one with `crawler crawl`")
        settings = record.settings
        if overrides:
            settings = build_settings(overrides, source="command line", base=settings)[0]
        page_hooks = _prepared(settings, ())[1]
        return await _go(
            store, settings, list(record.seeds), [], "work", output, page_hooks, options
        )
    finally:
        await store.close()


async def _go(
    store: Store,
    settings: Settings,
    seeds: list[str],
    new_seeds: list[str],
    kind: str,
    out: Output,
    hooks: Hooks | None,
    options: RunOptions,
) -> Summary:
    if not has_contact(settings.user_agent):
        log.warning(
            "the User-Agent names no contact of yours: site owners cannot reach you about "
            "this crawl; add a URL or e-mail with --user-agent 'mybot/1.0 (+https://you.example/bot)'"
        )
    if settings.ignore_robots and settings.sitemaps and settings.sitemap_probe:
        log.warning(
            "--sitemap-probe does nothing with --ignore-robots: sitemaps are found through "
            "robots.txt, which is not read"
        )
    if hasattr(store, "use_lease"):
        await store.use_lease(settings.lease)
    run_id = await store.start_run(kind)
    if settings.processes > 1:
        summary = await run_partitioned(
            store,
            settings,
            seeds,
            new_seeds,
            quiet=out.quiet,
            log_format=out.log_format,
            handle_signals=out.handle_signals,
            status=out.status,
            options=options,
        )
    else:
        engine = Engine(store, settings, seeds, hooks=hooks, options=options)
        async with (
            store.deferred_indexes(),
            shown(engine.snapshot, quiet=out.quiet, log_format=out.log_format),
            watched(out.status, engine.status, store.name),
        ):
            summary = await engine.run(new_seeds, handle_signals=out.handle_signals)
        if summary.finished:
            await store.mark_finished()
    # The run's duration as stored, so that the summary and `stats` agree.
    elapsed = await store.end_run(run_id, summary.pages, summary.interrupted)
    return dataclasses.replace(summary, elapsed=elapsed)


def _some_seed_admitted(settings: Settings, seeds: list[str]) -> None:
    """A UsageError when the crawl's own rules (--deny, --allow, trap guards) refuse every
    seed: such a crawl would end at once, "done" with nothing fetched."""
    scope = Scope.from_settings(seeds, settings.scope, settings.allow, settings.deny)
    admission = Admission(settings, scope, SeenSet())
    refusals = [(seed, admission.admit(seed, depth=0)) for seed in seeds]
    if seeds and all(isinstance(r, Reason) for _, r in refusals):
        seed, reason = refusals[0]
        more = f" (and {len(seeds) - 1} more)" if len(seeds) > 1 else ""
        raise UsageError(f"no seed can be crawled: {seed} is refused ({reason}){more}")


def _prepared(settings: Settings, extra: Sequence[Hook]) -> tuple[Settings, Hooks | None]:
    """What a run must settle before anything is stored or fetched: room for its
    connections within `ulimit -n` (crawler.pool; UsageError), and its hooks (`_hooks`)."""
    pool.idle_room(settings.concurrency)
    return _hooks(settings, extra)


def _hooks(settings: Settings, extra: Sequence[Hook]) -> tuple[Settings, Hooks | None]:
    """The crawl's hooks, imported. A callable that other processes can import by name
    joins `settings.hooks` (stored with the crawl: children, workers and `resume` load
    it); any other runs in this process only. UsageError when a hook cannot be imported,
    or when a callable without a name meets processes > 1."""
    local: list[Hook] = []
    for fn in extra:
        name = hook_name(fn)
        if name is None:
            local.append(fn)
        elif name not in settings.hooks:
            settings = dataclasses.replace(settings, hooks=(*settings.hooks, name))
    if local and settings.processes > 1:
        raise UsageError(
            f"hook {local[0]!r} cannot run in other processes (processes > 1): make it a "
            "function of an importable module, or name it in the setting hooks"
        )
    return settings, load_hooks(settings, local)


_URL_OR_EMAIL = re.compile(r"https?://[^\s;)]+|www\.[^\s;)]+|[\w.+-]+@[\w-]+\.[\w.-]+")


def has_contact(user_agent: str) -> bool:
    """Whether the User-Agent carries a URL or e-mail other than the project's own.

    >>> has_contact("crawler/0.1.0 (+https://github.com/crawler/crawler)")
    False
    >>> has_contact("mybot/1.0 (+https://me.example/bot)")
    True
    """
    found = _URL_OR_EMAIL.findall(user_agent)
    return any(not u.rstrip("/").startswith(PROJECT_URL) for u in found)


def canonical_seeds(seeds: list[str], max_length: int) -> list[str]:
    """Seeds in canonical form; a UsageError naming the first one that is not a web URL."""
    out = []
    for seed in seeds:
        url = canonical_url(seed.strip(), max_length=max_length)
        if url is None or "://" not in seed:
            raise UsageError(f"invalid seed URL {seed!r}: expected an http:// or https:// URL")
        out.append(url)
    return out
