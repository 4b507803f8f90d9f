"""The SQLite crawl file's schema: migrations/sqlite/ applied in order, each with its
bookkeeping row in one transaction, and the checks that refuse files we must not touch."""

from __future__ import annotations

import contextlib
import logging
import re
import sqlite3
import time
from importlib import resources

import aiosqlite

from crawler.errors import StorageError
from crawler.store.sqlite_query import rows

log = logging.getLogger(__name__)

_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) for every file in migrations/sqlite/, in order."""
    found = []
    for entry in resources.files("crawler.migrations.sqlite").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found)


SCHEMA_VERSION = max(v for v, _, _ in migrations())


async def check_and_migrate(db: aiosqlite.Connection, path: str) -> None:
    """Refuse files we must not touch, then bring the schema up to date.

    Every check reads only: PRAGMA journal_mode=WAL rewrites the file header, so it comes
    after we know the file is a crawl database (or an empty new one).
    """
    try:
        found = await rows(db, "SELECT name FROM sqlite_master WHERE type = 'table'")
        tables = {row[0] for row in found}
    except sqlite3.DatabaseError as exc:
        raise StorageError(f"{path} is not a SQLite database ({exc})") from None
    applied: set[int] = set()
    if "schema_migrations" in tables:
        applied = {row[0] for row in await rows(db, "SELECT version FROM schema_migrations")}
        if applied and max(applied) > SCHEMA_VERSION:
            raise StorageError(
                f"{path} has schema version {max(applied)}, newer than this crawler "
                f"understands ({SCHEMA_VERSION}); upgrade crawler"
            )
    elif tables:
        raise StorageError(f"{path} is a SQLite database but not a crawl database")
    pending = [m for m in migrations() if m[0] not in applied]
    try:
        await db.execute("PRAGMA journal_mode = WAL")
        await db.execute("PRAGMA synchronous = NORMAL")
        # Foreign keys are not enforced (SQLite's default): with them, every statement of
        # a batch kept a statement journal in a temporary file (~0.9 byte per byte of
        # body). The batch writer ties bodies and texts to their pages itself.
        # An INSERT OR REPLACE that replaces a page_text row fires its delete trigger
        # (which takes the old text out of the full-text index) only with this on.
        await db.execute("PRAGMA recursive_triggers = ON")
        # Writers take turns: with --processes, each commit may wait for the others'.
        await db.execute("PRAGMA busy_timeout = 30000")
        if "schema_migrations" not in tables:
            await db.executescript(
                "BEGIN; CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, "
                "name TEXT NOT NULL, applied_at REAL NOT NULL); COMMIT;"
            )
        for version, name, sql in pending:
            log.info("applying migration %s", name)
            try:
                await db.executescript(
                    f"BEGIN;\n{sql}\nINSERT INTO schema_migrations VALUES "
                    f"({version}, '{name}', {time.time()});\nCOMMIT;"
                )
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    await db.rollback()
                # Any error, not only OperationalError (a data migration can hit a constraint).
                raise StorageError(f"{path}: migration {name} failed: {exc}") from None
    except sqlite3.OperationalError as exc:
        raise StorageError(f"cannot write {path}: {exc}") from None
