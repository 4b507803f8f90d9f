"""Where a crawl keeps its state: `open_store` for a run, `open_reader` for questions.

`--db` picks the backend: a path is a SQLite file (the embedded default). Nothing
outside this package writes SQL or imports a database driver.
"""

from __future__ import annotations

from crawler.store.protocol import PAGE_FIELDS, Reader, Store

__all__ = ["PAGE_FIELDS", "Reader", "Store", "open_reader", "open_store"]


async def open_store(db: str, *, create: bool) -> Store:
    """The store named by `--db`, migrated; StorageError (exit 2) when it is unusable."""
    from crawler.store.sqlite import SQLiteStore

    return await SQLiteStore.open(db, create=create)


def open_reader(db: str) -> Reader:
    """A read-only view of the crawl named by `--db`."""
    from crawler.store.sqlite_read import SQLiteReader

    return SQLiteReader(db)
