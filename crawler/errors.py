"""The crawler's exception tree; the CLI turns each into a one-line message and an exit code.

CrawlerError                 exit 1 unless a subclass says otherwise
├── UsageError               exit 2: bad seeds, flags or config.toml
│   └── SettingError         a setting's value (also a ValueError, for Python callers)
├── StorageError             exit 2: --db is not a crawl database we can use
├── StoreFailure             exit 1: a write to the store failed (disk full, I/O, lock)
│   └── LeaseLost            exit 1: a worker of a shared store was cut off past its lease
└── InternalError            exit 1: a bug stopped the crawl (a background task failed)

A failed request is no exception: `fetcher.fetch` returns it as a `Response` with
`status=None` and a readable `error`, stored as an error row.
"""

from __future__ import annotations


class CrawlerError(Exception):
    """Base of every error the crawler raises on purpose."""

    exit_code = 1


class UsageError(CrawlerError):
    """The user asked for something that cannot be done as asked."""

    exit_code = 2


class SettingError(UsageError, ValueError):
    """A setting has a value it cannot take; the message names the setting.

    Raised when a `Settings` is built, whether from Python, config.toml, the command line
    or a stored crawl: a bad value never reaches a crawl (where it could make it hang).
    """


class StorageError(CrawlerError):
    """The database file is unusable (not SQLite, newer schema, read-only...)."""

    exit_code = 2


class StoreFailure(CrawlerError):
    """The store refused a write for a reason no row can fix: disk full, an I/O error, a
    lock held past busy_timeout, a read-only file. The crawl stops; what was committed
    before stays intact and `crawler resume` continues it."""

    exit_code = 1


class LeaseLost(StoreFailure):
    """A worker of a shared store could not renew its host leases in time (cut off from
    the server longer than `--lease`): its hosts are other workers' now."""


class InternalError(CrawlerError):
    """A background task (the writer, a refill, the process watcher) failed on a bug: the
    crawl stops at once rather than hang; what was committed stays, `resume` continues."""

    exit_code = 1
