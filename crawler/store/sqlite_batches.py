"""Batched writes of a SQLite store: outcomes in, one transaction per batch out.

Crash safety: every fetch becomes one `Outcome` (its page row, its links, the URLs it
discovered and its frontier change); outcomes are committed in batches, in the order they
were added, each batch in one transaction. A `kill -9` loses at most the batch in flight:
those URLs are still `queued` in the file and are fetched again on resume, and the UNIQUE
constraint on `pages.url` makes a second row for one URL impossible.

Failures: a batch refused because of its data (a value SQLite cannot bind, a constraint)
is written again outcome by outcome, each in a savepoint, and an outcome still refused
becomes an `internal: ...` error row for its URL: no value can stall the writer. A
failure of the store itself (disk full, I/O error, a lock held past busy_timeout) raises
`StoreFailure`; every later flush raises it again and the file keeps what was committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sqlite3
from collections.abc import Iterator

import aiosqlite

from crawler.records import Change, Outcome, PageRow, URLState
from crawler.store import sqlite_revisits as revisits
from crawler.store.buffer import OutcomeBuffer, one_line
from crawler.store.sqlite_many import (
    BODY_BYTES,
    BODY_ROWS,
    byte_chunk_sizes,
    on_thread,
    sql_for,
    write_many,
)
from crawler.store.sqlite_rows import Rows, rows_of

log = logging.getLogger(__name__)


class BatchWriter(OutcomeBuffer):
    """The write side of a SQLite store: one connection, one batch at a time."""

    def __init__(self, db: aiosqlite.Connection, path: str, *, batch_size: int = 500) -> None:
        super().__init__(batch_size)
        self.db = db
        self.path = self.name = path
        self.run_id: int | None = None  # the run whose fetches are written (`fetches.run_id`)
        # robots.txt rows (host, status, error, body, fetched_at) for the next batch.
        self._robots: dict[str, RobotsRow] = {}
        # `inserted` stays empty in `on_commit` here: every new URL a batch sends is new
        # (the frontier's seen-set deduplicates; `dedups` is False).

    async def _flush(self) -> int:
        async with self._lock:
            if self.failure is not None:
                raise self.failure
            batch = self._take()
            robots, self._robots = self._robots, {}
            if not batch and not robots:
                return 0
            job = asyncio.ensure_future(self._commit(batch, robots))
            try:
                await asyncio.shield(job)
            except asyncio.CancelledError:
                # The commit runs to its end: a batch it committed must not be put back
                # (and written twice), one it rolled back must be.
                job.add_done_callback(functools.partial(self._unless_committed, batch, robots))
                raise
            except BaseException as exc:
                self._put_back(batch, robots)
                if isinstance(exc, Exception) and _is_store_failure(exc):
                    self.failure = self._failure(exc)
                    raise self.failure from exc
                raise
        if self.on_commit is not None:
            self.on_commit(batch, ())  # not `dedups`: every new URL it was sent is new
        return len(batch)

    def _unless_committed(
        self, batch: list[Outcome], robots: dict[str, RobotsRow], job: asyncio.Future[None]
    ) -> None:
        if job.cancelled() or job.exception() is not None:
            self._put_back(batch, robots)

    def _put_back(self, batch: list[Outcome], robots: dict[str, RobotsRow]) -> None:
        self._buffer[:0] = batch
        self._robots = {**robots, **self._robots}  # a host's later copy wins

    async def _commit(self, batch: list[Outcome], robots: dict[str, RobotsRow]) -> None:
        """The batch in one transaction, rolled back whole when any statement fails; when it
        is refused for its data, written again outcome by outcome (`_commit_each`): one
        value must not hold up the batch, or stop the writer by failing on every flush.

        Two jobs of the writer thread (`on_thread`): the transaction's start, which reads
        the last page id, and every statement to the commit. The rows are built here in
        between, on the event loop's thread: on the writer's, hashing each body (hashlib
        lets the GIL go) cost a wait for the busy event loop to hand the GIL back.
        """
        db = self.db
        try:
            last_id = await on_thread(db, _begin)
            try:
                rows = rows_of(batch, last_id, self.run_id)
            except BaseException:
                await on_thread(db, _roll_back)
                raise
            await on_thread(db, self._write_all, rows, list(robots.values()))
        except Exception as exc:
            if _is_store_failure(exc):
                raise
            log.warning(
                "a batch of %d outcomes was refused (%s); writing them one by one",
                len(batch),
                _one_line(exc),
            )
            await on_thread(db, self._commit_each, batch, list(robots.values()))

    # ------------------------------------------------------------------ on the writer thread

    def _write_all(self, db: sqlite3.Connection, rows: Rows, robots: list[RobotsRow]) -> None:
        try:
            write_many(db, _SAVE_ROBOTS, "(?,?,?,?,?)", robots)
            self._write(db, rows)
            db.commit()
        except BaseException:
            _roll_back(db)
            raise

    def _commit_each(
        self, db: sqlite3.Connection, batch: list[Outcome], robots: list[RobotsRow]
    ) -> None:
        """The batch in one transaction, each outcome in its own savepoint; an outcome that
        is still refused is stored as an error row for its URL, without its links. A
        robots.txt row refused is left out: the host's robots.txt is fetched again."""
        db.execute("BEGIN IMMEDIATE")
        try:
            for saved in robots:
                try:
                    with _savepoint(db):
                        db.execute(sql_for(_SAVE_ROBOTS, "(?,?,?,?,?)", 1), saved)
                except Exception as exc:
                    if _is_store_failure(exc):
                        raise
                    log.error("dropped the robots.txt of %s: %s", saved[0], _one_line(exc))
            last_id = _last_page_id(db)
            for outcome in batch:
                try:
                    last_id = self._write_savepoint(db, [outcome], last_id)
                    continue
                except Exception as exc:
                    if _is_store_failure(exc):
                        raise
                    error = exc
                log.debug("outcome for %r refused", outcome.url, exc_info=error)
                row = _error_row(outcome, error)
                if row is None:
                    log.error("dropped an outcome the store refused: %s", _one_line(error))
                    continue
                log.warning("%s: stored as an error row: %s", row.url, row.error)
                try:
                    last_id = self._write_savepoint(db, [error_outcome(outcome, row)], last_id)
                except Exception as exc:
                    if _is_store_failure(exc):
                        raise
                    log.error("dropped an outcome the store refused: %s", _one_line(exc))
            db.commit()
        except BaseException:
            _roll_back(db)
            raise

    def _write_savepoint(
        self, db: sqlite3.Connection, outcomes: list[Outcome], last_id: int
    ) -> int:
        rows = rows_of(outcomes, last_id, self.run_id)
        with _savepoint(db):
            self._write(db, rows)
        return rows.last_id

    def _write(self, db: sqlite3.Connection, rows: Rows) -> None:
        # Order matters: a URL discovered and fetched within one batch must exist before
        # its state is set to done; a page before its body; pages before a chain's end.
        # Many rows per statement (crawler.store.sqlite_many): the writer thread hands the
        # GIL over a few times per batch, not once per row.
        write_many(
            db,
            "INSERT OR IGNORE INTO urls (url, host, depth, hops, origin, discovered_at) "
            "VALUES {values}",
            "(?,?,?,?,?,?)",
            rows.new_urls,
        )
        write_many(db, _INSERT_PAGE, _PAGE_ROW, rows.pages)
        # A page ignored as a second row for its URL has no row with the given id. OR
        # IGNORE (with foreign keys not enforced) spares the statement a statement
        # journal: SQLite wrote ~0.9 byte to a temporary file per byte of body inserted
        # (300 MB in 146,000 writes a bench crawl). Nothing is ignored: a body is never
        # NULL and its page id is new (`_last_page_id` clears the range).
        write_many(
            db,
            "INSERT OR IGNORE INTO bodies (page_id, body, body_codec) "
            "SELECT v.column3, v.column1, v.column2 FROM (VALUES {values}) AS v "
            "WHERE v.column3 IN (SELECT id FROM page_rows)",
            "(?,?,?)",
            rows.bodies,
            sizes=byte_chunk_sizes([_size(b[0]) for b in rows.bodies], BODY_BYTES, BODY_ROWS),
        )
        if rows.data:
            # Apart from the INSERT, so that a crawl without hooks binds no extra column.
            db.executemany("UPDATE page_rows SET data = ? WHERE id = ?", rows.data)
        if rows.texts:
            # The page_text_insert trigger adds each row to the full-text index.
            db.executemany(
                "INSERT INTO page_text (page_id, title, text, truncated) "
                "SELECT id, ?, ?, ? FROM page_rows WHERE id = ?",
                rows.texts,
            )
        if rows.new_fetches:
            db.execute(_NEW_FETCHES, rows.new_fetches)
        revisits.write(db, rows.revisits)
        # CROSS JOIN keeps the runs the outer loop: rows go in in document order.
        write_many(
            db,
            "INSERT INTO links (src_url, dst_url, nofollow, kind) "
            "SELECT v.column1, j.value, v.column3, v.column4 "
            "FROM (VALUES {values}) AS v CROSS JOIN json_each(v.column2) AS j",
            "(?,?,?,?)",
            rows.links,
        )
        # One state per URL (the batch's last): an UPDATE ... FROM uses one of several
        # matching rows, not the last.
        states = list({url: (state, reason, url) for state, reason, url in rows.states}.values())
        write_many(
            db,
            "UPDATE urls SET state = v.column1, reason = v.column2 FROM (VALUES {values}) AS v "
            "WHERE urls.url = v.column3",
            "(?,?,?)",
            states,
        )
        if rows.chains:
            db.executemany(_END_CHAIN, rows.chains)
        if rows.skipped:
            db.executemany(
                "INSERT INTO skipped (reason, count) VALUES (?, ?) "
                "ON CONFLICT (reason) DO UPDATE SET count = count + excluded.count",
                rows.skipped.items(),
            )
        if rows.sitemaps:
            # Every row is added when found; a done one is then marked with its fetch.
            db.executemany(
                "INSERT INTO sitemaps (url, host, robots_host, source, level, discovered_at) "
                "VALUES (?,?,?,?,?,?) ON CONFLICT (url) DO NOTHING",
                rows.sitemaps,
            )
        if rows.sitemaps_done:
            db.executemany(
                "UPDATE sitemaps SET state = 'done', kind = ?, status = ?, error = ?, urls = ?, "
                "fetched_at = ? WHERE url = ?",
                rows.sitemaps_done,
            )
        if rows.sitemap_urls:
            db.executemany(
                "INSERT INTO sitemap_urls (url, sitemap, lastmod, changefreq, priority) "
                "VALUES (?,?,?,?,?) ON CONFLICT (url, sitemap) DO NOTHING",
                rows.sitemap_urls,
            )

    @staticmethod
    def is_store_failure(exc: BaseException) -> bool:
        return isinstance(exc, Exception) and _is_store_failure(exc)


# A later fetch of a host's robots.txt replaces its row.
_SAVE_ROBOTS = (
    "INSERT OR REPLACE INTO robots (host, status, error, body, fetched_at) VALUES {values}"
)
RobotsRow = tuple[str, int | None, str | None, str | None, float]

_PAGE_COLUMNS = (
    "id, url, final_url, status, final_status, error, content_type, depth, fetched_at, host, "
    "headers, elapsed, size, truncated, links_found, links_truncated, redirect_to, attempts, "
    "content_hash, title, canonical_url, noindex"
)
# content_hash: the engine's value, else the SHA-1 of the (plain) body (`_rows`).
# A second row for a URL is ignored; unlike INSERT OR IGNORE, a NULL in a NOT NULL column
# is an error (that row becomes an error row), not a page silently missing.
_PAGE_ROW = f"({', '.join('?' * 22)})"
_INSERT_PAGE = (
    f"INSERT INTO page_rows ({_PAGE_COLUMNS}) VALUES {{values}} ON CONFLICT (url) DO NOTHING"
)
# The new pages' first fetches, read back from their rows (content_hash included) in one
# statement: the batch's ids are a range of the rowid (a row ignored as a second one for
# its URL has no id in it).
_NEW_FETCHES = (
    "INSERT INTO fetches (url, run_id, fetched_at, status, error, content_hash, change) "
    "SELECT url, ?, fetched_at, status, error, content_hash, 'new' FROM page_rows "
    "WHERE id > ? AND id <= ? ORDER BY id"
)
# Both lookups are index searches: pages by url, the chain's other hops by urls_origin.
_END_CHAIN = (
    "UPDATE page_rows SET final_url = ?1, "
    "final_status = coalesce(?2, (SELECT f.final_status FROM page_rows AS f WHERE f.url = ?1)), "
    "error = coalesce(error, ?3) "
    "WHERE url = ?4 OR url IN (SELECT url FROM urls WHERE origin = ?4)"
)

# sqlite3 errors that are a value's fault (with InterfaceError, outside DatabaseError).
_DATA_ERRORS = (sqlite3.IntegrityError, sqlite3.DataError, sqlite3.ProgrammingError)


def _size(body: object) -> int:
    return len(body) if isinstance(body, bytes) else 0  # None: no body


def _is_store_failure(exc: Exception) -> bool:
    """Disk full, I/O error, locked, read-only, corrupt: not a row's fault."""
    if isinstance(exc, OSError):
        return True
    return isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, _DATA_ERRORS)


@contextlib.contextmanager
def _savepoint(db: sqlite3.Connection) -> Iterator[None]:
    """What the block writes, undone (and re-raised) when it raises."""
    db.execute("SAVEPOINT outcome")
    try:
        yield
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK TO outcome")
            db.execute("RELEASE outcome")
        raise
    db.execute("RELEASE outcome")


def _begin(db: sqlite3.Connection) -> int:
    """A batch's transaction, begun; the last page id before it."""
    db.execute("BEGIN IMMEDIATE")
    try:
        return _last_page_id(db)
    except BaseException:
        _roll_back(db)
        raise


def _last_page_id(db: sqlite3.Connection) -> int:
    # Page ids are given here, not by SQLite, so that a body can name its page within
    # the same statement. Under BEGIN IMMEDIATE: no other writer can take one.
    row = db.execute("SELECT coalesce(max(id), 0) FROM page_rows").fetchone()
    last = int(row[0]) if row else 0
    # A body past the last page is an orphan (its page deleted by a connection that
    # does not enforce foreign keys): it goes, or the batch's INSERT OR IGNORE would keep
    # it as the body of the new page that takes its id.
    db.execute("DELETE FROM bodies WHERE page_id > ?", (last,))
    return last


def _roll_back(db: sqlite3.Connection) -> None:
    # Some failures (SQLITE_FULL, IOERR) have rolled the transaction back already.
    with contextlib.suppress(sqlite3.Error):
        db.rollback()


async def _rollback(db: aiosqlite.Connection) -> None:
    """`_roll_back` for the store's own transactions, awaited from the event loop."""
    await asyncio.shield(on_thread(db, _roll_back))


_one_line = one_line


def _error_row(outcome: Outcome, exc: Exception) -> PageRow | None:
    """The error row that stands for a refused outcome; None when it had no page row."""
    page = outcome.page
    if page is None:
        return None
    # Only the URL is kept as it came: any other field may be the value that was refused.
    return PageRow.failed(
        page.url,
        page.host if isinstance(page.host, str) else "",
        page.depth if isinstance(page.depth, int) else 0,
        f"internal: {type(exc).__name__}: {_one_line(exc)}",
        attempts=page.attempts if isinstance(page.attempts, int) else 1,
    )


def error_outcome(outcome: Outcome, row: PageRow) -> Outcome:
    """The outcome that stores `row` for a refused `outcome`: a recrawl's keeps the stored
    page and records the error (a failed fetch), a new page's inserts the error row."""
    if outcome.change is Change.NEW:
        return Outcome(url=row.url, state=URLState.DONE, page=row)
    return Outcome(
        url=row.url, state=URLState.DONE, page=row, change=Change.FAILED, interval=outcome.interval
    )
