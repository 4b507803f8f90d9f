"""crawler: a fast, polite, resumable asynchronous web crawler that stores into SQLite.

The data flow, one module each: cli -> config -> run -> engine -> frontier (hosts,
robots, scope, urls) -> fetcher -> parser -> storage; queries/report/exporter read the
database afterwards.
"""

from __future__ import annotations

__version__ = "0.1.0"

from crawler.config import Settings
from crawler.errors import CrawlerError, StorageError, UsageError

__all__ = ["CrawlerError", "Settings", "StorageError", "UsageError", "__version__"]
