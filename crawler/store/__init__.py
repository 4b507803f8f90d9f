"""Where a crawl keeps its state: `open_store` for a run, `open_reader` for questions.

`--db` picks the backend: a `postgres://` or `postgresql://` URL is a PostgreSQL database
that many workers share; anything else is a path to a SQLite file (the embedded default).
Nothing outside this package writes SQL or imports a database driver.
"""

from __future__ import annotations

from crawler.store.protocol import PAGE_FIELDS, Leases, Reader, Store

__all__ = [
    "PAGE_FIELDS",
    "Leases",
    "Reader",
    "Store",
    "is_postgres",
    "open_reader",
    "open_store",
    "shown_name",
]


def is_postgres(db: str) -> bool:
    """Whether `--db` names a PostgreSQL database (a URL) rather than a SQLite file."""
    return db.startswith(("postgres://", "postgresql://"))


def shown_name(db: str) -> str:
    """`--db` as messages may show it: a PostgreSQL URL without its password."""
    if is_postgres(db):
        from crawler.store.postgres_schema import public_name

        return public_name(db)
    return db


async def open_store(db: str, *, create: bool) -> Store:
    """The store named by `--db`, migrated; StorageError (exit 2) when it is unusable."""
    if is_postgres(db):
        from crawler.store.postgres import PostgresStore

        return await PostgresStore.open(db, create=create)
    from crawler.store.sqlite import SQLiteStore

    return await SQLiteStore.open(db, create=create)


def open_reader(db: str) -> Reader:
    """A read-only view of the crawl named by `--db`."""
    if is_postgres(db):
        from crawler.store.postgres_read import PostgresReader

        return PostgresReader(db)
    from crawler.store.sqlite_read import SQLiteReader

    return SQLiteReader(db)
