"""Incremental recrawl against real local servers that answer conditional requests, on
both stores: what is sent, what is stored, what `fetches` remembers, the adaptive
schedule, retrying failures, interrupting and resuming a recrawl, and bad input."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from backends import Backend
from support import (
    Host,
    Site,
    assert_one_line_error,
    broken_body,
    invoke,
    settings,
    threaded_site,
)

from crawler.config import Settings
from crawler.errors import UsageError
from crawler.records import Change, Outcome, PageRow, Stored, URLState
from crawler.revisit import change_of, duration_seconds, next_interval, stored_page
from crawler.run import Output, crawl, recrawl, resume
from crawler.store import open_reader, open_store
from crawler.store.lock import exclusive


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return Backend.fresh(request, tmp_path)


@pytest.fixture
def postgres_db(pg_dsn: str) -> Backend:
    return Backend("postgres", pg_dsn)


@dataclasses.dataclass
class Page:
    """A page whose body and status a test changes between crawls; it answers
    If-None-Match / If-Modified-Since with 304 and records what it was sent."""

    body: str
    etag: str | None = None
    last_modified: str | None = None
    status: int = 200
    bodies_sent: int = 0
    conditionals: list[dict[str, str]] = dataclasses.field(default_factory=list)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        sent = {k: v for k, v in request.headers.items() if k.lower().startswith("if-")}
        self.conditionals.append(sent)
        headers = {"Content-Type": "text/html; charset=utf-8"}
        if self.etag:
            headers["ETag"] = self.etag
        if self.last_modified:
            headers["Last-Modified"] = self.last_modified
        if self.status == 200 and (
            (self.etag and sent.get("If-None-Match") == self.etag)
            or (
                not self.etag
                and self.last_modified
                and sent.get("If-Modified-Since") == self.last_modified
            )
        ):
            return web.Response(status=304, headers=headers)
        self.bodies_sent += 1
        return web.Response(status=self.status, text=self.body, headers=headers)


def links(*hrefs: str) -> str:
    return "<html><body>" + "".join(f'<a href="{h}">{h}</a>' for h in hrefs) + "</body></html>"


def serve(host: Host, pages: dict[str, Page]) -> None:
    for path, page in pages.items():
        host.handle(path, page.handle)


async def fetches(b: Backend, url: str) -> list[tuple[Any, ...]]:
    return await b.rows(
        "SELECT f.change, f.status, r.kind FROM fetches AS f LEFT JOIN runs AS r "
        "ON r.id = f.run_id WHERE f.url = ? ORDER BY f.id",
        url,
    )


# ---------------------------------------------------------------------- the whole story


async def test_recrawl_sends_validators_keeps_unchanged_replaces_changed_records_gone(
    site: Site, backend: Backend
) -> None:
    host = await site.host()
    pages = {
        "/": Page(links("/a", "/b", "/gone"), etag='"home-1"'),
        "/a": Page(links("/b"), etag='"a-1"'),
        "/b": Page("<html>b</html>", last_modified="Wed, 21 Oct 2015 07:28:00 GMT"),
        "/gone": Page("<html>soon gone</html>", etag='"g-1"'),
        "/new": Page("<html>new</html>"),
    }
    serve(host, pages)
    first = await crawl(backend.db, settings(), [host.url("/")])
    assert first.pages == 4 and host.requests_for("/new") == 0
    assert host.requests_for("/robots.txt") == 1

    pages["/a"].body, pages["/a"].etag = links("/b", "/new"), '"a-2"'
    pages["/gone"].status = 410
    summary = await recrawl(backend.db)
    assert summary.finished and summary.pages == 5  # 4 stored pages again + the new one
    assert host.requests_for("/robots.txt") == 1  # the stored copy, reused for 24 hours
    assert summary.changes == {"unchanged": 2, "changed": 1, "gone": 1, "new": 1}

    # The server was sent the validators it gave, and sent no body that did not change.
    assert pages["/"].conditionals[-1] == {"If-None-Match": '"home-1"'}
    assert pages["/a"].conditionals[-1] == {"If-None-Match": '"a-1"'}
    assert pages["/b"].conditionals[-1] == {"If-Modified-Since": "Wed, 21 Oct 2015 07:28:00 GMT"}
    assert pages["/new"].conditionals == [{}]
    assert [pages[p].bodies_sent for p in ("/", "/a", "/b", "/gone", "/new")] == [1, 2, 1, 2, 1]

    stored = {
        url: (status, body)
        for url, status, body in await backend.rows("SELECT url, status, body FROM pages")
    }
    assert stored[host.url("/")] == (200, pages["/"].body.encode())  # a 304 keeps the body
    assert stored[host.url("/a")] == (200, pages["/a"].body.encode())  # replaced
    assert stored[host.url("/gone")] == (410, b"<html>soon gone</html>")  # last body kept
    assert stored[host.url("/new")] == (200, b"<html>new</html>")
    assert {
        r[0]
        for r in await backend.rows("SELECT dst_url FROM links WHERE src_url = ?", host.url("/a"))
    } == {
        host.url("/b"),
        host.url("/new"),
    }
    assert await backend.rows("SELECT state FROM urls WHERE url = ?", host.url("/gone")) == [
        ("done",)
    ]

    # The history: the first crawl's fetch and the recrawl's, with what each found.
    assert await fetches(backend, host.url("/")) == [
        ("new", 200, "crawl"),
        ("unchanged", 304, "recrawl"),
    ]
    assert await fetches(backend, host.url("/a")) == [
        ("new", 200, "crawl"),
        ("changed", 200, "recrawl"),
    ]
    assert await fetches(backend, host.url("/b")) == [
        ("new", 200, "crawl"),
        ("unchanged", 304, "recrawl"),
    ]
    assert await fetches(backend, host.url("/gone")) == [
        ("new", 200, "crawl"),
        ("gone", 410, "recrawl"),
    ]
    assert await fetches(backend, host.url("/new")) == [("new", 200, "recrawl")]
    # The schedule adapted: changed pages come back sooner than unchanged ones.
    intervals = dict(await backend.rows("SELECT url, revisit_interval FROM page_rows"))
    base = Settings().recrawl_interval
    assert intervals[host.url("/a")] == pytest.approx(base * 0.8)
    assert intervals[host.url("/b")] == pytest.approx(base * 1.4)
    assert intervals[host.url("/gone")] == Settings().recrawl_max_interval
    assert intervals[host.url("/new")] is None

    reader = open_reader(backend.db)
    try:
        runs = reader.stats()["per_run"]
    finally:
        reader.close()
    assert [
        (r["kind"], r["fetched"], r["new"], r["changed"], r["unchanged"], r["gone"]) for r in runs
    ] == [
        ("crawl", 4, 4, 0, 0, 0),
        ("recrawl", 5, 1, 1, 2, 1),
    ]


async def test_identical_body_without_validators_is_unchanged(site: Site, backend: Backend) -> None:
    host = await site.host()
    pages = {"/": Page(links("/x")), "/x": Page("<html>x</html>")}
    serve(host, pages)
    await crawl(backend.db, settings(), [host.url("/")])
    pages["/x"].body = "<html>x, edited</html>"
    await recrawl(backend.db)
    assert pages["/"].conditionals[-1] == {}  # nothing to send: no ETag, no Last-Modified
    assert await fetches(backend, host.url("/")) == [
        ("new", 200, "crawl"),
        ("unchanged", 200, "recrawl"),
    ]
    assert await fetches(backend, host.url("/x")) == [
        ("new", 200, "crawl"),
        ("changed", 200, "recrawl"),
    ]
    hashes = await backend.rows(
        "SELECT content_hash FROM fetches WHERE url = ? ORDER BY id", host.url("/x")
    )
    assert hashes[0] != hashes[1]
    assert await backend.rows("SELECT content_hash FROM pages WHERE url = ?", host.url("/x")) == [
        hashes[1]
    ]


# ---------------------------------------------------------------------- selection


async def test_due_takes_only_pages_whose_interval_has_passed(site: Site, backend: Backend) -> None:
    host = await site.host()
    pages = {p: Page(links("/a", "/b", "/c") if p == "/" else p) for p in ("/", "/a", "/b", "/c")}
    serve(host, pages)
    await crawl(backend.db, settings(), [host.url("/")])
    now = time.time()
    day = Settings().recrawl_interval
    # The clock, moved through the stored times: /a was fetched two days ago (never
    # recrawled: the first interval, a day, has passed); /b's own interval has passed;
    # /c's has not; / is fresh.
    await backend.execute(
        "UPDATE page_rows SET fetched_at = ? WHERE url = ?", now - 2 * day, host.url("/a")
    )
    await backend.execute(
        "UPDATE page_rows SET revisit_interval = ?, due_at = ? WHERE url = ?",
        3600.0,
        now - 10,
        host.url("/b"),
    )
    await backend.execute(
        "UPDATE page_rows SET fetched_at = ?, revisit_interval = ?, due_at = ? WHERE url = ?",
        now - 2 * day,
        4 * day,
        now + 2 * day,
        host.url("/c"),
    )
    before = {p: len(pages[p].conditionals) for p in pages}
    summary = await recrawl(backend.db, due=True)
    assert summary.pages == 2
    fetched = {p for p in pages if len(pages[p].conditionals) > before[p]}
    assert fetched == {"/a", "/b"}
    # Fetched and unchanged: each is due again an interval x1.4 from now, not before.
    due = dict(await backend.rows("SELECT url, due_at - fetched_at FROM page_rows"))
    assert due[host.url("/a")] == pytest.approx(day * 1.4)
    assert due[host.url("/b")] == pytest.approx(3600 * 1.4)
    again = await recrawl(backend.db, due=True)
    assert again.pages == 0


async def test_where_error_retries_failures_only(site: Site, backend: Backend) -> None:
    host = await site.host()
    pages = {"/": Page(links("/ok", "/flaky")), "/ok": Page("<html>ok</html>")}
    serve(host, pages)
    host.handle("/flaky", broken_body)
    await crawl(backend.db, settings(), [host.url("/")])
    assert await backend.rows("SELECT url FROM pages WHERE error IS NOT NULL") == [
        (host.url("/flaky"),)
    ]
    fixed = Page("<html>fine now</html>")
    host.handle("/flaky", fixed.handle)
    hits = len(host.hits)
    summary = await recrawl(backend.db, where="error IS NOT NULL")
    assert summary.pages == 1
    assert [h.path for h in host.hits[hits:]] == ["/flaky"]
    assert await backend.rows(
        "SELECT status, error, body FROM pages WHERE url = ?", host.url("/flaky")
    ) == [(200, None, b"<html>fine now</html>")]
    assert [c for c, _, _ in await fetches(backend, host.url("/flaky"))] == ["new", "changed"]


async def test_older_than_leaves_recent_pages(site: Site, backend: Backend) -> None:
    host = await site.host()
    pages = {"/": Page(links("/old")), "/old": Page("<html>old</html>")}
    serve(host, pages)
    await crawl(backend.db, settings(), [host.url("/")])
    await backend.execute(
        "UPDATE page_rows SET fetched_at = fetched_at - 7200 WHERE url = ?", host.url("/old")
    )
    summary = await recrawl(backend.db, older_than=3600.0)
    assert summary.pages == 1
    assert len(pages["/old"].conditionals) == 2 and len(pages["/"].conditionals) == 1


async def test_bad_where_is_one_line_exit_2_and_changes_nothing(
    site: Site, backend: Backend, in_tmp: Path
) -> None:
    host = await site.host()
    serve(host, {"/": Page(links("/a")), "/a": Page("a")})
    await crawl(backend.db, settings(), [host.url("/")])
    before = await backend.rows("SELECT url, state FROM urls ORDER BY url")
    runs = await backend.rows("SELECT count(*) FROM runs")
    for where in ("no_such_column = 1", "status = = 3", "1); DELETE FROM urls; SELECT (1"):
        with pytest.raises(UsageError, match="invalid --where condition"):
            await recrawl(backend.db, where=where)
    result = await asyncio.to_thread(
        invoke, "recrawl", "--db", backend.db, "--where", "nonsense(((", "--quiet"
    )
    assert_one_line_error(result, "invalid --where condition")
    assert await backend.rows("SELECT url, state FROM urls ORDER BY url") == before
    assert await backend.rows("SELECT count(*) FROM runs") == runs
    assert await backend.rows("SELECT recrawling FROM crawl") == [(0,)]
    assert len(host.hits) == 3  # robots.txt and two pages, all from the crawl


def test_bad_duration_is_one_line_exit_2(in_tmp: Path) -> None:
    result = invoke("recrawl", "--db", "crawl.db", "--older-than", "3 fortnights")
    assert_one_line_error(result, "invalid duration")


async def test_interrupted_recrawl_is_finished_by_resume(site: Site, backend: Backend) -> None:
    host = await site.host()
    paths = [f"/p{i}" for i in range(6)]
    pages = {"/": Page(links(*paths), etag='"h"')} | {p: Page(p, etag=f'"{p}"') for p in paths}
    serve(host, pages)
    await crawl(backend.db, settings(concurrency=1, per_host=1), [host.url("/")])
    interrupt = pages["/p2"]

    async def interrupting(request: web.Request) -> web.StreamResponse:
        os.kill(os.getpid(), signal.SIGINT)  # the recrawl's Ctrl-C, while this one is open
        return await interrupt.handle(request)

    host.handle("/p2", interrupting)
    stopped = await recrawl(backend.db, output=Output(handle_signals=True))
    assert stopped.interrupted and not stopped.finished
    assert 0 < stopped.pages < 7
    assert await backend.rows("SELECT recrawling FROM crawl") == [(1,)]
    host.handle("/p2", interrupt.handle)
    done = await resume(backend.db)
    assert done.finished and stopped.pages + done.pages == 7
    # Every page fetched once more, conditionally: each has its crawl fetch and one more.
    counts = await backend.rows(
        "SELECT change, count(*) FROM fetches GROUP BY change ORDER BY change"
    )
    assert counts == [("new", 7), ("unchanged", 7)]
    assert all(p.bodies_sent == 1 for p in pages.values())
    assert await backend.rows("SELECT recrawling FROM crawl") == [(0,)]
    kinds = await backend.rows("SELECT kind FROM runs ORDER BY id")
    assert kinds == [("crawl",), ("recrawl",), ("resume",)]


# ---------------------------------------------------------------------- pure parts


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        pytest.param("90s", 90, id="seconds"),
        pytest.param("15m", 900, id="minutes"),
        pytest.param("2h", 7200, id="hours"),
        pytest.param("7d", 604_800, id="days"),
        pytest.param("1.5h", 5400, id="fraction"),
        pytest.param("45", 45, id="bare number"),
    ],
)
def test_duration(text: str, seconds: float) -> None:
    assert duration_seconds(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "-5m", "3 fortnights", "1y"])
def test_bad_duration(text: str) -> None:
    with pytest.raises(UsageError):
        duration_seconds(text)


STORED = Stored(status=200, content_hash="abc", etag=None, last_modified=None, interval=None)


@pytest.mark.parametrize(
    ("status", "digest", "change"),
    [
        pytest.param(304, None, Change.UNCHANGED, id="304"),
        pytest.param(200, "abc", Change.UNCHANGED, id="same body"),
        pytest.param(200, "def", Change.CHANGED, id="new body"),
        pytest.param(301, "abc", Change.CHANGED, id="new status"),
        pytest.param(404, "abc", Change.GONE, id="404"),
        pytest.param(410, None, Change.GONE, id="410"),
        pytest.param(None, None, Change.FAILED, id="network error"),
        pytest.param(503, None, Change.FAILED, id="5xx"),
        pytest.param(429, None, Change.FAILED, id="429"),
    ],
)
def test_change_of(status: int | None, digest: str | None, change: Change) -> None:
    assert change_of(STORED, status, digest) is change


def test_interval_adapts_within_bounds() -> None:
    s = Settings(
        recrawl_interval=100_000, recrawl_min_interval=50_000, recrawl_max_interval=200_000
    )
    assert next_interval(s, Change.CHANGED, None) == 80_000
    assert next_interval(s, Change.UNCHANGED, None) == 140_000
    assert next_interval(s, Change.CHANGED, 55_000) == 50_000  # floored
    assert next_interval(s, Change.UNCHANGED, 190_000) == 200_000  # capped
    assert next_interval(s, Change.GONE, 60_000) == 200_000
    assert next_interval(s, Change.FAILED, 60_000) == 60_000


def test_validators_come_only_from_a_2xx_and_only_when_sendable() -> None:
    headers = '[["ETag", "\\"v1\\""], ["Last-Modified", "Wed, 21 Oct 2015 07:28:00 GMT"]]'
    assert stored_page(200, "h", headers, None).etag == '"v1"'
    assert stored_page(200, "h", headers, None).last_modified == "Wed, 21 Oct 2015 07:28:00 GMT"
    assert stored_page(404, "h", headers, None).etag is None
    escaped = '[["ETag", "\\\\xff"]]'  # a byte that was not UTF-8, stored escaped
    assert stored_page(200, "h", escaped, None).etag is None
    assert stored_page(200, "h", "not json", None).etag is None


async def test_a_refused_recrawl_outcome_keeps_the_page_and_records_the_error(
    site: Site, backend: Backend
) -> None:
    host = await site.host()
    serve(host, {"/": Page("<html>home</html>")})
    await crawl(backend.db, settings(), [host.url("/")])
    store = await open_store(backend.db, create=False)
    try:
        row = PageRow.failed(host.url("/"), host.origin, 0, "unused", attempts=1)
        bad = dataclasses.replace(row, status=200, error=None, body=b"new", title=["no"])  # type: ignore[arg-type]
        store.add(
            Outcome(
                url=row.url, state=URLState.DONE, page=bad, change=Change.CHANGED, interval=60.0
            )
        )
        await store.flush()
    finally:
        await store.close()
    ((status, error, body),) = await backend.rows("SELECT status, error, body FROM pages")
    assert status is None and error.startswith("internal: ")
    assert body == b"<html>home</html>"
    assert [c for c, _, _ in await fetches(backend, host.url("/"))] == ["new", "failed"]


async def test_max_pages_counts_pages_stored_so_a_recrawl_refetches_them(
    site: Site, backend: Backend
) -> None:
    host = await site.host()
    pages = {"/": Page(links("/a", "/b", "/c", "/d"))} | {
        p: Page(p) for p in ("/a", "/b", "/c", "/d")
    }
    serve(host, pages)
    first = await crawl(
        backend.db, settings(concurrency=1, per_host=1, max_pages=3), [host.url("/")]
    )
    assert first.total_pages == 3
    summary = await recrawl(backend.db)
    # The three stored pages again, and none of the two left queued: the budget is spent.
    assert summary.pages == 3 and summary.total_pages == 3
    assert await backend.rows("SELECT count(*) FROM pages") == [(3,)]
    assert await backend.rows(
        "SELECT change, count(*) FROM fetches GROUP BY change ORDER BY change"
    ) == [("new", 3), ("unchanged", 3)]
    assert await backend.rows("SELECT recrawling FROM crawl") == [(0,)]
    # A larger budget: the recrawl is over, the rest is crawled as new pages.
    more = await resume(backend.db, {"max_pages": 0})
    assert more.pages == 2 and more.total_pages == 5


async def test_recrawl_with_processes_sqlite_only(site: Site, tmp_path: Path) -> None:
    # --processes splits hosts among processes sharing one SQLite file.
    db = str(tmp_path / "crawl.db")
    hosts = [await site.host() for _ in range(3)]
    served = []
    for h in hosts:
        pages = {"/": Page(links("/a", "/b"), etag='"r"'), "/a": Page("a"), "/b": Page("b")}
        serve(h, pages)
        served.append(pages)
    await crawl(db, settings(processes=2), [h.url("/") for h in hosts])
    served[1]["/a"].body = "a, changed"
    summary = await recrawl(db)
    assert summary.finished and summary.pages == 9
    backend = Backend("sqlite", db)
    assert await backend.rows(
        "SELECT r.kind, f.change, count(*) FROM fetches AS f JOIN runs AS r ON r.id = f.run_id "
        "GROUP BY r.kind, f.change ORDER BY 1, 2"
    ) == [("crawl", "new", 9), ("recrawl", "changed", 1), ("recrawl", "unchanged", 8)]
    assert all(p["/"].bodies_sent == 1 for p in served)  # 304s


async def test_a_recrawl_stopped_by_max_pages_stays_a_recrawl_for_resume(
    site: Site, backend: Backend
) -> None:
    host = await site.host()
    pages = {"/": Page(links("/a", "/b", "/c", "/d"), etag='"h"')} | {
        p: Page(p, etag=f'"{p}"') for p in ("/a", "/b", "/c", "/d")
    }
    serve(host, pages)
    await crawl(backend.db, settings(concurrency=1, per_host=1), [host.url("/")])
    part = await recrawl(backend.db, {"max_pages": 3})
    assert part.pages == 3
    assert await backend.rows("SELECT recrawling FROM crawl") == [(1,)]
    rest = await resume(backend.db, {"max_pages": 0})
    assert rest.pages == 2 and rest.total_pages == 5
    assert await backend.rows(
        "SELECT change, count(*) FROM fetches GROUP BY change ORDER BY change"
    ) == [("new", 5), ("unchanged", 5)]
    assert all(p.bodies_sent == 1 for p in pages.values())
    assert await backend.rows("SELECT recrawling FROM crawl") == [(0,)]


def test_cli_recrawl_summary_and_stats_show_what_changed(in_tmp: Path) -> None:
    with threaded_site() as (site, thread):
        host = thread.call(site.host())
        pages = {"/": Page(links("/a"), etag='"h"'), "/a": Page("a")}
        serve(host, pages)
        assert invoke("crawl", host.url("/"), "--db", "c.db", "--quiet").exit_code == 0
        pages["/a"].body = "a, changed"
        result = invoke("recrawl", "--db", "c.db", "--older-than", "0s")
        assert result.exit_code == 0, result.stderr
    assert "pages changed" in result.stderr and "pages unchanged" in result.stderr
    stats = invoke("stats", "--db", "c.db", "--json")
    per_run = json.loads(stats.stdout)["per_run"]
    assert [(r["kind"], r["new"], r["changed"], r["unchanged"]) for r in per_run] == [
        ("crawl", 2, 0, 0),
        ("recrawl", 0, 1, 1),
    ]
    assert "Fetches per run" in invoke("stats", "--db", "c.db").stdout


async def test_recrawl_takes_the_crawl_lock_sqlite_only(site: Site, tmp_path: Path) -> None:
    # The lock is the SQLite file's; PostgreSQL workers share a crawl by design.
    db = str(tmp_path / "crawl.db")
    host = await site.host()
    serve(host, {"/": Page("home")})
    await crawl(db, settings(), [host.url("/")])
    with exclusive(db), pytest.raises(UsageError, match="in use by another crawl"):
        await recrawl(db)
    assert len(host.hits) == 2  # robots.txt and the page, by the crawl


async def test_a_host_gone_down_keeps_its_pages_and_records_failed_fetches(
    site: Site, backend: Backend
) -> None:
    host = await site.host()
    pages = {"/": Page(links("/a", "/b", "/c"))} | {p: Page(p) for p in ("/a", "/b", "/c")}
    serve(host, pages)
    await crawl(backend.db, settings(concurrency=1, per_host=1), [host.url("/")])
    await site.runners[0].cleanup()  # the server is gone: connections are refused
    summary = await recrawl(backend.db, {"host_failures": 1})
    assert summary.finished and summary.changes == {"failed": 4}
    stored = await backend.rows("SELECT url, status, error, body FROM pages ORDER BY url")
    assert [(u, s) for u, s, _, _ in stored] == [
        (host.url(p), None) for p in ("/", "/a", "/b", "/c")
    ]
    assert all(e for _, _, e, _ in stored)  # connect: ..., then the host's dropped rows
    assert [b for *_, b in stored] == [pages[p].body.encode() for p in ("/", "/a", "/b", "/c")]
    assert await backend.rows(
        "SELECT change, count(*) FROM fetches GROUP BY change ORDER BY change"
    ) == [("failed", 4), ("new", 4)]


async def test_postgres_0003_backfills_one_fetch_per_stored_page(
    site: Site, postgres_db: Backend
) -> None:
    b = postgres_db
    host = await site.host()
    serve(host, {"/": Page(links("/a")), "/a": Page("a")})
    await crawl(b.db, settings(), [host.url("/")])
    # Back to the schema before 0003, with the pages the crawl stored.
    for sql in (
        "DROP TABLE fetches",
        "ALTER TABLE page_rows DROP COLUMN revisit_interval, DROP COLUMN due_at",
        "ALTER TABLE crawl DROP COLUMN recrawling",
        "DELETE FROM runs WHERE kind = 'recrawl'",
        "ALTER TABLE runs DROP CONSTRAINT runs_kind_check",
        "ALTER TABLE runs ADD CONSTRAINT runs_kind_check "
        "CHECK (kind IN ('crawl', 'resume', 'work'))",
        "DELETE FROM schema_migrations WHERE name = '0003_recrawl.sql'",
    ):
        await b.execute(sql)
    store = await open_store(b.db, create=False)
    await store.close()
    ((run,),) = await b.rows("SELECT id FROM runs")
    assert await b.rows(
        "SELECT url, fetched_at, status, content_hash, change, run_id FROM fetches ORDER BY url"
    ) == [
        (*r, "new", run)
        for r in await b.rows(
            "SELECT url, fetched_at, status, content_hash FROM pages ORDER BY url"
        )
    ]
    assert len(await b.rows("SELECT 1 FROM fetches")) == 2  # / and /a


async def test_a_changed_page_is_searched_by_its_new_words_only(
    site: Site, backend: Backend
) -> None:
    host = await site.host()
    pages = {
        "/": Page(links("/a", "/b") + "<p>home of the heron</p>", etag='"h-1"'),
        "/a": Page("<html><title>Birds</title><body><p>the brown pelican dives</p></body></html>"),
        "/b": Page("<html><body><p>a quiet cormorant</p></body></html>", etag='"b-1"'),
    }
    serve(host, pages)
    await crawl(backend.db, settings(text=True), [host.url("/")])

    def search(query: str) -> list[str]:
        result = invoke("search", query, "--db", backend.db)
        assert result.exit_code in (0, 1), result.stderr
        return [line.split("\t")[1] for line in result.stdout.splitlines()]

    assert await asyncio.to_thread(search, "pelican") == [host.url("/a")]
    pages["/a"].body = "<html><title>Flamingos</title><body><p>pink flamingo</p></body></html>"
    summary = await recrawl(backend.db)
    assert summary.changes == {"unchanged": 2, "changed": 1}
    assert await asyncio.to_thread(search, "flamingo") == [host.url("/a")]
    assert await asyncio.to_thread(search, "pelican") == []  # the old words are gone
    assert await asyncio.to_thread(search, "cormorant") == [host.url("/b")]  # a 304 keeps it
    assert await backend.rows(
        "SELECT t.title FROM page_text AS t JOIN pages AS p ON p.id = t.page_id WHERE p.url = ?",
        host.url("/a"),
    ) == [("Flamingos",)]
    if backend.kind == "sqlite":  # the FTS5 index agrees with its content table
        await backend.execute(
            "INSERT INTO page_text_fts (page_text_fts) VALUES ('integrity-check')"
        )
