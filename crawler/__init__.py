"""crawler: a fast, polite, resumable asynchronous web crawler that stores into SQLite
(or PostgreSQL).

The Python API (README, "Python API"): `crawl` / `acrawl`, `resume` / `aresume` and
`recrawl` / `arecrawl` run a crawl and return its `Summary`; `open_crawl` reads one
(pages, links, stats, why); hooks get a `Page`. Importing `crawler` is cheap: the
crawl's modules load on first use.

The data flow, one module each: cli -> config -> run -> engine -> frontier (hosts,
robots, scope, urls) -> fetcher -> outcome (parser, hooks) -> store; report, exporter
and why read the database afterwards.
"""

from __future__ import annotations

__version__ = "0.1.0"

import importlib
from typing import TYPE_CHECKING, Any

from crawler.config import Settings
from crawler.errors import CrawlerError, SettingError, StorageError, UsageError

if TYPE_CHECKING:
    from crawler.api import (
        Link,
        PageRecord,
        StoredCrawl,
        acrawl,
        arecrawl,
        aresume,
        crawl,
        open_crawl,
        recrawl,
        resume,
    )
    from crawler.hooks import Page
    from crawler.records import Summary

# name -> module: loaded on first use, so `import crawler` does not import aiohttp.
_LAZY = {
    "Link": "crawler.api",
    "Page": "crawler.hooks",
    "PageRecord": "crawler.api",
    "StoredCrawl": "crawler.api",
    "Summary": "crawler.records",
    "acrawl": "crawler.api",
    "arecrawl": "crawler.api",
    "aresume": "crawler.api",
    "crawl": "crawler.api",
    "open_crawl": "crawler.api",
    "recrawl": "crawler.api",
    "resume": "crawler.api",
}

__all__ = [
    "CrawlerError",
    "Link",
    "Page",
    "PageRecord",
    "SettingError",
    "Settings",
    "StorageError",
    "StoredCrawl",
    "Summary",
    "UsageError",
    "__version__",
    "acrawl",
    "arecrawl",
    "aresume",
    "crawl",
    "open_crawl",
    "recrawl",
    "resume",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'crawler' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
