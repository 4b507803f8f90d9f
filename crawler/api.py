"""The Python API: crawl, resume, recrawl and read a crawl from code, as the CLI does from a shell.

    summary = crawler.crawl("https://example.com/", db="site.db", max_pages=100)
    with crawler.open_crawl("site.db") as c:
        for page in c.pages("status >= 400"):
            print(page.url, page.status, c.why(page.url)["fate"])

Settings are keyword arguments named as in config.toml; a bad one is a ValueError
(`crawler.SettingError`) naming it, raised before anything is touched. Nothing here
prints, logs to the terminal or takes over signals: the caller's process is its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterable, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

from crawler.config import Settings, build_settings
from crawler.errors import SettingError, UsageError
from crawler.hooks import Hook
from crawler.records import Summary
from crawler.runoptions import RunOptions, run_options
from crawler.store import Reader, open_reader

T = TypeVar("T")

__all__ = ["Link", "PageRecord", "StoredCrawl", "acrawl", "arecrawl", "aresume", "crawl",
           "open_crawl", "recrawl", "resume"]  # fmt: skip


def crawl(
    seeds: str | Iterable[str],
    db: str = "crawl.db",
    *,
    on_page: Hook | Sequence[Hook] | None = None,
    **settings: Any,
) -> Summary:
    """Crawl `seeds` into a new crawl in `db` (a SQLite path or a postgresql:// URL) and
    return the run's summary; blocks until the crawl is done. See `acrawl`."""
    return _blocking(acrawl(seeds, db, on_page=on_page, **settings))


async def acrawl(
    seeds: str | Iterable[str],
    db: str = "crawl.db",
    *,
    on_page: Hook | Sequence[Hook] | None = None,
    **settings: Any,
) -> Summary:
    """Crawl `seeds` into a new crawl in `db`; the summary when the frontier runs dry,
    `max_pages` is reached or the task is cancelled (state saved: `resume` continues).

    `settings` are the config.toml keys (`per_host=4, delay=0.5`), and this run's own
    options (`header=`, `proxy=`, `resolve=`, `time_limit=`: never stored); `on_page`
    one hook or a list (crawler.hooks.Page in, a dict of fields for `pages.data` or None
    out). A
    UsageError (`db` already holds a crawl, a seed that is not a URL, a hook that cannot
    be imported) or SettingError (a ValueError) comes before any fetch.
    """
    from crawler import run

    options = _options(settings)
    chosen = _settings(settings, "crawl()")
    seed_list = [seeds] if isinstance(seeds, str) else list(seeds)
    return await run.crawl(db, chosen, seed_list, hooks=_hook_list(on_page), options=options)


def resume(
    db: str = "crawl.db",
    *,
    seeds: Iterable[str] = (),
    on_page: Hook | Sequence[Hook] | None = None,
    **settings: Any,
) -> Summary:
    """Continue the crawl in `db` with its stored settings; blocks. See `aresume`."""
    return _blocking(aresume(db, seeds=seeds, on_page=on_page, **settings))


async def aresume(
    db: str = "crawl.db",
    *,
    seeds: Iterable[str] = (),
    on_page: Hook | Sequence[Hook] | None = None,
    **settings: Any,
) -> Summary:
    """Continue the crawl in `db`: `settings` replace stored ones (and are stored),
    `seeds` are added; hooks named in the stored settings are loaded again."""
    from crawler import run

    options = _options(settings)
    _settings(settings, "resume()")  # every value checked before the store is opened
    return await run.resume(db, settings, list(seeds), hooks=_hook_list(on_page), options=options)


def recrawl(
    db: str = "crawl.db",
    *,
    where: str | None = None,
    older_than: float | str | None = None,
    due: bool = False,
    on_page: Hook | Sequence[Hook] | None = None,
    **settings: Any,
) -> Summary:
    """Fetch the stored pages of the crawl in `db` again; blocks. See `arecrawl`."""
    return _blocking(
        arecrawl(db, where=where, older_than=older_than, due=due, on_page=on_page, **settings)
    )


async def arecrawl(
    db: str = "crawl.db",
    *,
    where: str | None = None,
    older_than: float | str | None = None,
    due: bool = False,
    on_page: Hook | Sequence[Hook] | None = None,
    **settings: Any,
) -> Summary:
    """`crawler recrawl` from code: fetch again, conditionally, the stored pages that
    match (default: all): `where` an SQL condition on `pages`, `older_than` seconds (or
    "7d") since their last fetch, `due` those whose revisit interval has passed. Changed
    pages are replaced and their new links crawled; `settings` replace stored ones."""
    from crawler import run
    from crawler.revisit import duration_seconds

    options = _options(settings)
    _settings(settings, "recrawl()")
    if isinstance(older_than, str):
        older_than = duration_seconds(older_than)
    return await run.recrawl(
        db,
        settings,
        where=where,
        older_than=older_than,
        due=due,
        hooks=_hook_list(on_page),
        options=options,
    )


def _options(values: dict[str, Any]) -> RunOptions:
    """This run's own options, taken out of `values`: `header` ("Name: value" or a list),
    `proxy` (a URL or "env"), `resolve` ("HOST:ADDRESS" or a list), `time_limit` (seconds
    or "15m"). Never stored: give them again to `resume`. UsageError when one is bad."""

    def listed(value: str | Iterable[str]) -> tuple[str, ...]:
        return (value,) if isinstance(value, str) else tuple(value)

    limit = values.pop("time_limit", None)
    return run_options(
        listed(values.pop("header", ())),
        values.pop("proxy", None),
        listed(values.pop("resolve", ())),
        None if limit is None else str(limit),
    )


def _settings(values: dict[str, Any], source: str) -> Settings:
    return build_settings(values, source=source)[0]  # SettingError: a ValueError


def _hook_list(on_page: Hook | Sequence[Hook] | None) -> list[Hook]:
    if on_page is None:
        return []
    hooks = [on_page] if callable(on_page) else list(on_page)
    for hook in hooks:
        if not callable(hook):
            raise SettingError(f"on_page: {hook!r} is not callable")
    return hooks


def _blocking(main: Coroutine[Any, Any, T]) -> T:
    from crawler.eventloop import crawl_runner

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        with crawl_runner() as runner:
            return runner.run(main)
    main.close()
    raise RuntimeError("crawler.crawl(), resume() and recrawl() block: inside an event loop, "
                       "await crawler.acrawl(), aresume() or arecrawl()")  # fmt: skip


# ---------------------------------------------------------------------- reading a crawl


@dataclass(frozen=True, slots=True)
class PageRecord:
    """One stored page (docs/schema.md, `pages`): what `StoredCrawl.pages` yields."""

    url: str
    final_url: str | None
    status: int | None
    error: str | None
    content_type: str | None
    depth: int
    fetched_at: float
    size: int | None
    truncated: bool
    elapsed: float | None
    title: str | None
    content_hash: str | None
    canonical_url: str | None  # the page's <link rel=canonical> target
    noindex: bool | None  # meta robots / X-Robots-Tag noindex (None: not known)
    data: dict[str, Any] | None  # pages.data: what hooks and --extract stored
    headers: list[tuple[str, str]] | None = None  # with headers=True
    body: bytes | None = None  # with body=True (decompressed)


@dataclass(frozen=True, slots=True)
class Link:
    """One `links` row."""

    src_url: str
    dst_url: str
    nofollow: bool
    kind: str = "a"  # or a subresource: img, script, style, icon, preload, iframe


class StoredCrawl:
    """A crawl opened read-only (SQLite or PostgreSQL): pages, links, stats and `why`,
    without SQL. Use it as a context manager, or call `close()`."""

    def __init__(self, db: str) -> None:
        self._reader: Reader = open_reader(db)
        try:
            stored = self._reader.crawl()
        except BaseException:
            self._reader.close()
            raise
        if stored is None:
            self._reader.close()
            raise UsageError(f"{self._reader.name} holds no crawl")
        self.settings: Settings = stored[0]
        self.seeds: list[str] = list(stored[1])

    def pages(
        self,
        where: str | None = None,
        *,
        since: float | None = None,
        headers: bool = False,
        body: bool = False,
    ) -> Iterator[PageRecord]:
        """Stored pages in crawl order, in constant memory. `where` is an SQL condition on
        `pages` in the store's dialect (`"status >= 400"`); `since` unix seconds."""
        rows = self._reader.pages(
            where=where, since=since, with_body=body, with_headers=headers, with_data=True
        )
        for row in rows:
            if "headers" in row and row["headers"] is not None:
                row["headers"] = [(k, v) for k, v in row["headers"]]
            row["truncated"] = bool(row["truncated"])
            if row.get("noindex") is not None:
                row["noindex"] = bool(row["noindex"])
            yield PageRecord(**row)

    def links(self, url: str) -> list[Link]:
        """The links on the page `url` (canonical), in page order. No index serves this
        (links are indexed by target): on a very large crawl it reads the whole table."""
        return [Link(url, dst, nf, kind) for dst, nf, kind in self._reader.links_on(url)]

    def linked_from(self, url: str, limit: int = 100) -> list[Link]:
        """Up to `limit` links to `url` (canonical) from stored pages."""
        found, _ = self._reader.linked_from(url, limit)
        return [Link(src, url, nofollow, kind) for src, nofollow, kind in found]

    def stats(self, top: int = 10) -> dict[str, Any]:
        """What `crawler stats --json` prints: counts by status, hosts, errors, pages/s."""
        return self._reader.stats(top=top)

    def why(self, url: str) -> dict[str, Any]:
        """What happened to `url` (any form: it is made canonical): what `crawler why
        --json` prints, with `fate` one of stored, queued, disallowed, dropped, ..."""
        from crawler import why

        return why.explain(self._reader, url)

    def close(self) -> None:
        self._reader.close()

    def __enter__(self) -> StoredCrawl:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def open_crawl(db: str = "crawl.db") -> StoredCrawl:
    """Open the crawl in `db` for reading (also while a crawl writes it); UsageError or
    StorageError when `db` holds no crawl."""
    return StoredCrawl(db)
