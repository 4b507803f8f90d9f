"""Connecting to a PostgreSQL crawl database: the URL without its password, clean errors,
and migrations/postgres/ applied under an advisory lock, each in one transaction.

asyncpg is imported here and in the other postgres_* modules only; a missing driver is
a one-line StorageError. The password comes from the URL, PGPASSWORD or ~/.pgpass (asyncpg
reads both); it is never part of `name`, of a message, or of what the crawl stores.
"""

from __future__ import annotations

import logging
import re
import time
import urllib.parse
from importlib import resources
from typing import TYPE_CHECKING, Any

from crawler.errors import StorageError

if TYPE_CHECKING:
    import asyncpg

log = logging.getLogger(__name__)

_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
# Held (per transaction) while a process migrates: workers starting at once take turns.
_MIGRATION_LOCK = 0x63726177_6C657231  # "crawler1"


def public_name(dsn: str) -> str:
    """The URL without its password: what messages show.

    >>> public_name("postgresql://bob:pw@db:5432/crawl?password=pw&sslmode=require")
    'postgresql://bob@db:5432/crawl?sslmode=require'
    """
    parts = urllib.parse.urlsplit(dsn)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hosts = netloc.rpartition("@")
        netloc = f"{userinfo.split(':', 1)[0]}@{hosts}"
    query = urllib.parse.urlencode(
        [(k, v) for k, v in urllib.parse.parse_qsl(parts.query) if k.lower() != "password"]
    )
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def driver() -> Any:
    """The asyncpg module; StorageError (exit 2) when the extra is not installed."""
    try:
        import asyncpg
    except ImportError:
        raise StorageError(
            "the PostgreSQL store needs asyncpg: pip install 'crawler[postgres]'"
        ) from None
    return asyncpg


def connect_error(name: str, exc: BaseException) -> StorageError:
    """A one-line StorageError for a failed connection attempt (never the password)."""
    apg = driver()
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, apg.InvalidPasswordError | apg.InvalidAuthorizationSpecificationError):
        return StorageError(f"{name}: the server refused the credentials ({text})")
    if isinstance(exc, apg.InvalidCatalogNameError):
        return StorageError(f"{name}: {text} (create it first: createdb)")
    if isinstance(exc, OSError | TimeoutError | apg.PostgresConnectionError):
        return StorageError(f"cannot connect to {name}: {text}")
    return StorageError(f"{name}: {text}")


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) for every file in migrations/postgres/, in order."""
    found = []
    for entry in resources.files("crawler.migrations.postgres").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found)


SCHEMA_VERSION = max(v for v, _, _ in migrations())


async def check_and_migrate(conn: asyncpg.Connection, name: str, *, create: bool) -> None:
    """Refuse databases we must not touch, then bring the schema up to date.

    The checks run again under the advisory lock: another worker may have migrated while
    this one waited. A migration and its bookkeeping row commit together or not at all.
    """
    apg = driver()
    applied = await _check(conn, name, create=create)
    if all(v in applied for v, _, _ in migrations()):
        return  # the common case (a worker joining): no lock, no write
    try:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            applied = await _check(conn, name, create=create)
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, "
                "name text NOT NULL, applied_at double precision NOT NULL)"
            )
            for version, file, sql in migrations():
                if version in applied:
                    continue
                log.info("applying migration %s", file)
                async with conn.transaction():  # a savepoint: its own error message
                    try:
                        await conn.execute(sql)
                    except apg.PostgresError as exc:
                        raise StorageError(f"{name}: migration {file} failed: {exc}") from None
                    await conn.execute(
                        "INSERT INTO schema_migrations VALUES ($1, $2, $3)",
                        version,
                        file,
                        time.time(),
                    )
    except apg.InsufficientPrivilegeError as exc:
        raise StorageError(f"cannot create the crawl's tables in {name}: {exc}") from None


async def _check(conn: asyncpg.Connection, name: str, *, create: bool) -> set[int]:
    tables = {
        r[0]
        for r in await conn.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        )
    }
    if "schema_migrations" not in tables:
        if tables:
            raise StorageError(f"{name} is a PostgreSQL database but not a crawl database")
        if not create:
            raise StorageError(f"no crawl in {name}")
        return set()
    applied = {r[0] for r in await conn.fetch("SELECT version FROM schema_migrations")}
    if applied and not {"crawl", "urls", "page_rows", "hosts"} <= tables:
        raise StorageError(f"{name} is a PostgreSQL database but not a crawl database")
    if applied and max(applied) > SCHEMA_VERSION:
        raise StorageError(
            f"{name} has schema version {max(applied)}, newer than this crawler "
            f"understands ({SCHEMA_VERSION}); upgrade crawler"
        )
    return applied
