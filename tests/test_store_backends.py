"""The Store and Reader contract, written once and proved on every backend (SQLite and
PostgreSQL, a real throwaway server from tests/pg.py). A test only one backend can pass
says why in its name."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from backends import Backend
from pg import PASSWORD, Cluster

from crawler.config import Settings
from crawler.errors import StorageError, StoreFailure
from crawler.reasons import Reason
from crawler.records import (
    STATUS_CLASSES,
    BrokenLink,
    Bucket,
    ChainEnd,
    HostRow,
    NewURL,
    Outcome,
    PageRow,
    ReportData,
)
from crawler.store import Store, open_reader, open_store
from crawler.store.protocol import PAGE_FIELDS
from crawler.urls import server_key

HOST = "http://127.0.0.2:8000"
OTHER = "http://127.0.0.3:8000"


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return Backend.fresh(request, tmp_path)


@pytest.fixture
def postgres(pg_dsn: str) -> Backend:
    return Backend("postgres", pg_dsn)


# ---------------------------------------------------------------------- helpers


def page(path: str, status: int = 200, depth: int = 0, host: str = HOST) -> PageRow:
    row = PageRow.failed(host + path, host, depth, "unused", attempts=1)
    return dataclasses.replace(row, status=status, error=None, final_url=host + path)


def outcome(path: str, links: tuple[str, ...] = (), status: int = 200) -> Outcome:
    src = HOST + path
    return Outcome(
        url=src,
        state="done",
        page=page(path, status),
        links=[(src, [HOST + dst for dst in links], 0, "a")],
        new_urls=[NewURL(HOST + dst, HOST, 1) for dst in links],
    )


def with_page(o: Outcome, **changes: Any) -> Outcome:
    assert o.page is not None
    return dataclasses.replace(o, page=dataclasses.replace(o.page, **changes))


def batch() -> list[Outcome]:
    # "/" is discovered by "/b" and fetched in the same batch: order inside a flush matters.
    return [outcome("/a", ("/c", "/d")), outcome("/b", ("/",)), outcome("/", ("/a",))]


def seeds(*paths: str, host: str = HOST) -> Outcome:
    return Outcome(url="", state=None, new_urls=[NewURL(host + p, host, 0) for p in paths])


@contextlib.asynccontextmanager
async def opened(backend: Backend, *first: Outcome) -> AsyncIterator[Store]:
    """A store with `first` committed (seeds: /a and /b queued by default)."""
    store = await backend.open()
    try:
        for o in first or (seeds("/a", "/b"),):
            store.add(o)
        await store.flush()
        yield store
    finally:
        await store.close()


# ---------------------------------------------------------------------- batches


async def test_flush_commits_a_batch_and_reports_what_it_inserted(backend: Backend) -> None:
    committed: list[tuple[int, list[str]]] = []
    async with opened(backend) as store:
        store.on_commit = lambda done, new: committed.append((len(done), sorted(new)))
        for o in batch():
            store.add(o)
        assert await backend.rows("SELECT count(*) FROM pages") == [(0,)]  # not before flush
        assert await store.flush() == 3
        assert await store.flush() == 0
    # "/a" was known already: PostgreSQL says so. SQLite reports nothing: its frontier's
    # seen-set deduplicates, so every URL it is sent is new (`dedups` is False).
    new = [HOST + p for p in ("/", "/c", "/d")] if store.dedups else []
    assert committed == [(3, new)]
    assert await backend.rows("SELECT count(*) FROM pages") == [(3,)]
    assert await backend.rows("SELECT count(*) FROM links") == [(4,)]
    assert dict(await backend.rows("SELECT url, state FROM urls")) == {
        HOST + "/a": "done",
        HOST + "/b": "done",
        HOST + "/": "done",
        HOST + "/c": "queued",
        HOST + "/d": "queued",
    }


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        pytest.param({"headers": '[["X", "caf\udce9"]]'}, "Error", id="surrogate"),
        pytest.param({"size": 2**70}, "Error", id="int-too-big"),
        pytest.param({"depth": None}, "NotNull|IntegrityError: NOT NULL", id="not-null"),
        pytest.param({"title": ["not", "a", "str"]}, "Error", id="unbindable"),
    ],
)
async def test_a_refused_row_becomes_an_error_row_and_its_batch_commits(
    backend: Backend, bad: dict[str, Any], error: str
) -> None:
    committed: list[list[str]] = []
    good_a, good_b, root = batch()
    refused = dataclasses.replace(with_page(good_b, **bad), skipped=(("depth", 5),))
    async with opened(backend) as store:
        store.on_commit = lambda done, new: committed.append([o.url for o in done])
        for o in (good_a, refused, root):
            store.add(dataclasses.replace(o, skipped=(*o.skipped, ("nofollow", 1))))
        assert await store.flush() == 3
        assert store.backlog == 0  # never retried
    assert committed == [[HOST + "/a", HOST + "/b", HOST + "/"]]
    found = {r[0]: r[1:] for r in await backend.rows("SELECT url, status, error FROM pages")}
    assert found[HOST + "/a"] == (200, None)
    assert found[HOST + "/"] == (200, None)
    status, message = found[HOST + "/b"]
    assert status is None
    assert re.match(rf"internal: \w*({error})", message), message
    assert "\n" not in message
    links = await backend.rows("SELECT DISTINCT src_url FROM links ORDER BY src_url")
    assert links == [(HOST + "/",), (HOST + "/a",)]
    assert await backend.rows("SELECT state FROM urls WHERE url = ?", HOST + "/b") == [("done",)]
    assert await backend.rows("SELECT reason, count FROM skipped") == [("nofollow", 2)]


async def test_a_nul_in_text_is_refused_by_postgres_only_and_costs_one_row(
    postgres: Backend,
) -> None:
    async with opened(postgres) as store:
        store.add(outcome("/a"))
        store.add(with_page(outcome("/b"), title="a\x00b"))
        store.add(Outcome(url="", state=None, new_urls=[NewURL(HOST + "/\x00", HOST, 1)]))
        assert await store.flush() == 3
    found = dict(await postgres.rows("SELECT url, error FROM pages"))
    assert found[HOST + "/a"] is None
    assert found[HOST + "/b"].startswith("internal: CharacterNotInRepertoireError: ")


async def test_final_status_and_a_chain_end_reach_every_row_of_the_chain(
    backend: Backend,
) -> None:
    def redirect(path: str, to: str, *, origin: str | None = None, hops: int = 0) -> Outcome:
        row = dataclasses.replace(page(path, 301), final_url=HOST + to, redirect_to=HOST + to)
        nxt = NewURL(HOST + to, HOST, 0, hops + 1, HOST + (origin or path))
        return Outcome(url=HOST + path, state="done", page=row, new_urls=[nxt])

    async with opened(backend) as store:
        store.add(outcome("/a", status=404))
        store.add(redirect("/r", "/mid"))
        store.add(with_page(outcome("/given"), status=302, final_status=200))
        failed = PageRow.failed(HOST + "/x", HOST, 0, "connect: refused", attempts=3)
        store.add(Outcome(url=HOST + "/x", state="done", page=failed))
        await store.flush()
        assert await backend.rows("SELECT final_status FROM pages WHERE url = ?", HOST + "/r") == [
            (None,)
        ]  # until the chain ends
        store.add(dataclasses.replace(redirect("/mid", "/end", origin="/r", hops=1), new_urls=[]))
        store.add(
            dataclasses.replace(
                outcome("/end"), chain_end=ChainEnd(HOST + "/r", HOST + "/end", None, None)
            )
        )
        await store.flush()
    found = {u: (f, s, e) for u, f, s, e in await backend.rows(
        "SELECT url, final_url, final_status, error FROM pages")}  # fmt: skip
    assert found[HOST + "/r"] == (HOST + "/end", 200, None)  # looked up: /end's own status
    assert found[HOST + "/mid"] == (HOST + "/end", 200, None)
    assert found[HOST + "/a"] == (HOST + "/a", 404, None)
    assert found[HOST + "/given"][1] == 200
    assert found[HOST + "/x"] == (None, None, "connect: refused")


async def test_skipped_counts_add_up_across_batches(backend: Backend) -> None:
    async with opened(backend) as store:
        store.add(dataclasses.replace(outcome("/a"), skipped=((Reason.DEPTH, 3), (Reason.DENY, 1))))
        store.add(dataclasses.replace(outcome("/b"), skipped=((Reason.DEPTH, 2),)))
        await store.flush()
        store.add(Outcome(HOST + "/c", "disallowed", "robots.txt", skipped=((Reason.ROBOTS, 1),)))
        await store.flush()
    assert dict(await backend.rows("SELECT reason, count FROM skipped")) == {
        "depth": 5,
        "deny": 1,
        "robots": 1,
    }


async def test_one_row_per_url_and_bodies_behind_the_pages_view(backend: Backend) -> None:
    async with opened(backend) as store:
        store.add(with_page(outcome("/a"), body=b"<html>a</html>"))
        store.add(with_page(outcome("/a", status=500), body=b"second"))  # ignored, with body
        store.add(with_page(outcome("/b"), body=b"\x78\x9c", body_codec="zlib",
                            content_hash="abc"))  # fmt: skip
        await store.flush()
        store.add(with_page(outcome("/", status=404), body=b""))
        store.add(with_page(outcome("/a", status=404), body=b"third"))  # a later batch
        store.add(outcome("/c"))  # no body
        await store.flush()
    assert await backend.rows(
        "SELECT url, status, body, body_codec, content_hash FROM pages ORDER BY id"
    ) == [
        (HOST + "/a", 200, b"<html>a</html>", None, hashlib.sha1(b"<html>a</html>").hexdigest()),
        (HOST + "/b", 200, b"\x78\x9c", "zlib", "abc"),
        (HOST + "/", 404, b"", None, None),
        (HOST + "/c", 200, None, None, None),
    ]
    assert await backend.rows("SELECT count(*) FROM bodies") == [(3,)]


async def test_runs_and_the_crawl_record(backend: Backend) -> None:
    store = await backend.open()
    try:
        assert await store.load_crawl() is None
        await store.save_crawl(Settings(max_pages=7), ["http://a/"])
        first = await store.start_run("crawl")
        took = await store.end_run(first, 5, True)
        second = await store.start_run("resume")
        assert second != first and took >= 0
        await store.mark_finished()
        crawl = await store.load_crawl()
    finally:
        await store.close()
    assert crawl is not None and crawl.settings.max_pages == 7
    assert crawl.seeds == ("http://a/",) and crawl.finished_at is not None
    assert await backend.rows("SELECT pages, interrupted FROM runs ORDER BY id") == [
        (5, 1),
        (None, None),
    ]


async def test_robots_are_kept_once_per_host(backend: Backend) -> None:
    store = await backend.open()
    try:
        await store.save_robots(HOST, 200, None, "User-agent: *\nDisallow: /x\n")
        await store.save_robots(HOST, 200, None, "User-agent: *\n")  # a second fetch
        await store.save_robots(OTHER, 503, None, None)  # not reused: no answer
        before = await store.robots_for(HOST, 0)  # saved with the next batch on SQLite
        assert before is not None and before[:2] == (200, "User-agent: *\n")
        assert await store.robots_for(OTHER, 0) is None
        await store.flush()
        kept = [r async for r in store.stored_robots(0)]
        assert await store.robots_for(HOST, 0) == (200, "User-agent: *\n", kept[0][3])
        assert await store.robots_for(OTHER, 0) is None
        assert await store.robots_for(HOST, kept[0][3] + 1) is None  # too old
    finally:
        await store.close()
    assert [(h, s, b) for h, s, b, _ in kept] == [(HOST, 200, "User-agent: *\n")]
    assert await backend.rows("SELECT count(*) FROM robots") == [(2,)]


async def test_a_closed_store_leaves_the_loops_exception_handler_as_it_was(
    backend: Backend,
) -> None:
    """The Python API: a program opening store after store in one loop does not pile up
    the PostgreSQL store's handler (which hides a failed store's dying connections)."""
    loop = asyncio.get_running_loop()

    def mine(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        loop.default_exception_handler(context)

    loop.set_exception_handler(mine)
    try:
        for _ in range(3):
            store = await backend.open()
            await store.close()
            assert loop.get_exception_handler() is mine
    finally:
        loop.set_exception_handler(None)


# ---------------------------------------------------------------------- claims


async def test_claims_hand_out_each_queued_url_once_until_released(backend: Backend) -> None:
    paths = ("/1", "/2", "/3", "/4", "/5")
    async with opened(backend, seeds(*paths), seeds("/o", host=OTHER)) as store:
        assert await store.queued_hosts() == [HOST, OTHER]
        first, done = await store.claim(HOST, 2, lambda u: False)
        assert [q.url for q in first] == [HOST + "/1", HOST + "/2"] and not done
        rest, done = await store.claim(HOST, 10, lambda u: False, batch=2)
        assert [q.url for q in rest] == [HOST + p for p in ("/3", "/4", "/5")] and done
        assert await store.claim(HOST, 10, lambda u: False) == ([], True)
        store.release(HOST)
        again, done = await store.claim(HOST, 10, lambda u: u == HOST + "/1")
        assert [q.url for q in again] == [HOST + p for p in ("/2", "/3", "/4", "/5")] and done
        assert await store.any_queued()
        store.add(Outcome(url="", state=None, new_urls=[]))
        for p in paths:
            store.add(outcome(p))
        store.add(dataclasses.replace(outcome("/o"), url=OTHER + "/o"))
        await store.flush()
        assert not await store.any_queued()


async def test_the_seen_set_comes_from_the_store_unless_it_deduplicates(backend: Backend) -> None:
    async with opened(backend) as store:
        seen = [u async for u in store.seen_urls()]
    assert sorted(seen) == ([] if store.dedups else [HOST + "/a", HOST + "/b"])


# ---------------------------------------------------------------------- the reader


async def crawled(backend: Backend) -> None:
    async with opened(backend) as store:
        await store.save_crawl(Settings(user_agent="TestBot/1"), [HOST + "/"])
        run = await store.start_run("crawl")
        store.add(seeds("/", "/d"))
        store.add(with_page(outcome("/", ("/a", "/b", "/r")), body=b"<html>root</html>",
                            content_type="text/html; charset=utf-8", elapsed=0.5))  # fmt: skip
        store.add(with_page(outcome("/a", ("/b",)), content_type="text/html", size=10))
        store.add(with_page(outcome("/b", status=404), content_type="text/plain", size=5))
        redirect = with_page(outcome("/r"), status=301, redirect_to=HOST + "/a")
        store.add(redirect)
        store.add(Outcome(url="", state=None, new_urls=[NewURL(HOST + "/q", HOST, 2)]))
        failed = PageRow.failed(HOST + "/x", HOST, 1, "timeout: slow", attempts=2)
        store.add(Outcome(url=HOST + "/x", state="done", page=failed))
        store.add(Outcome(HOST + "/d", "disallowed", "robots.txt", skipped=((Reason.ROBOTS, 1),)))
        await store.flush()
        await store.end_run(run, 6, False)


async def test_the_reader_answers_alike_on_every_backend(backend: Backend) -> None:
    await crawled(backend)
    reader = open_reader(backend.db)
    try:
        stats = reader.stats()
        pages = list(reader.pages(with_body=True, with_headers=True))
        filtered = [p["url"] for p in reader.pages(where="status >= 400")]
        settings, seed_list = reader.crawl() or (None, [])
        agent = reader.user_agent()
        one = reader.page(HOST + "/r")
        state = reader.url_state(HOST + "/q")
        linked = reader.linked_from(HOST + "/b", 1)
        redirected = reader.redirected_from(HOST + "/a", 5)
        depth = reader.linking_depth(HOST + "/b")
    finally:
        reader.close()
    assert reader.name == backend.db.replace(f":{PASSWORD}@", "@")
    assert (stats["pages"], stats["ok"], stats["redirects"], stats["http_errors"]) == (5, 2, 1, 1)
    assert (stats["network_errors"], stats["failed"], stats["hosts"]) == (1, 2, 1)
    assert (stats["links"], stats["queued"], stats["disallowed"], stats["runs"]) == (4, 1, 1, 1)
    assert stats["bytes"] == 15
    assert stats["by_status_class"] == [
        {"class": "2xx", "pages": 2}, {"class": "3xx", "pages": 1},
        {"class": "4xx", "pages": 1}, {"class": "error", "pages": 1},
    ]  # fmt: skip
    assert stats["by_content_type"][0] == {"content_type": "(none)", "pages": 2}
    assert {"content_type": "text/html", "pages": 2} in stats["by_content_type"]
    assert stats["error_reasons"] == [
        {"reason": "HTTP 404", "pages": 1},
        {"reason": "timeout", "pages": 1},
    ]
    assert stats["top_hosts"] == [{"host": HOST, "pages": 5, "failed": 2, "avg_elapsed_s": 0.5}]
    assert stats["skipped"] == [{"reason": "robots", "links": 1}]
    assert stats["seeds"] == [HOST + "/"] and stats["duration_s"] >= 0
    assert [p["url"] for p in pages] == [HOST + p for p in ("/", "/a", "/b", "/r", "/x")]
    assert list(pages[0]) == [*PAGE_FIELDS, "headers", "body"]
    assert pages[0]["body"] == b"<html>root</html>"
    assert filtered == [HOST + "/b"]
    assert settings is not None and seed_list == [HOST + "/"] and agent == "TestBot/1"
    assert one is not None and (one["status"], one["final_status"]) == (301, None)
    assert state == {"state": "queued", "reason": None, "depth": 2, "origin": None}
    assert linked[1] == 2 and len(linked[0]) == 1
    assert redirected == [HOST + "/r"]
    assert depth == (0, False, ["a"])


def test_stats_keys_are_the_same_on_both_backends(tmp_path: Path, pg_dsn: str) -> None:
    sqlite = Backend("sqlite", str(tmp_path / "crawl.db"))
    postgres = Backend("postgres", pg_dsn)
    keys = []
    for b in (sqlite, postgres):
        asyncio.run(crawled(b))
        reader = open_reader(b.db)
        try:
            keys.append(reader.stats())
        finally:
            reader.close()
    assert list(keys[0]) == list(keys[1])
    for name in keys[0]:
        if name not in ("duration_s", "pages_per_s", "started_at"):
            assert keys[0][name] == keys[1][name], name


T0 = 1_700_000_001.0  # the report's clock: buckets start on multiples of their width


def fetched(
    host: str,
    path: str,
    at: float,
    status: int | None = 200,
    links: tuple[str, ...] = (),
    **changes: Any,
) -> Outcome:
    """A page of `host` fetched `at` seconds after T0, linking to `links` (full URLs)."""
    if status is None:
        row = PageRow.failed(host + path, host, 0, "timeout: slow", attempts=2)
    else:
        row = page(path, status, host=host)
    row = dataclasses.replace(row, fetched_at=T0 + at, **changes)
    return Outcome(host + path, "done", page=row, links=[(host + path, links, 0, "a")])


async def test_the_report_is_the_same_on_every_backend(backend: Backend) -> None:
    b, x, gone = HOST + "/b", HOST + "/x", OTHER + "/gone"
    paths = ("/", "/a", "/b", "/c", "/r", "/x", "/q", "/d1", "/d2", "/deep", "/z")
    async with opened(backend, seeds(*paths), seeds("/", "/gone", "/e", host=OTHER)) as store:
        await store.save_crawl(Settings(), [HOST + "/"])
        run = await store.start_run("crawl")
        for o in (
            fetched(
                HOST,
                "/",
                0,
                links=(HOST + "/a", b, x, HOST + "/r"),
                elapsed=0.5,
                size=100,
                content_type="text/html",
            ),
            fetched(HOST, "/a", 1, links=(b, b), elapsed=0.25, size=300, content_type="text/html"),
            fetched(HOST, "/b", 3, 404, elapsed=0.125, size=5),
            fetched(HOST, "/c", 3, elapsed=0.375),
            fetched(HOST, "/r", 12, 301, redirect_to=HOST + "/a", elapsed=0.5),
            fetched(HOST, "/x", 12, None),
            fetched(OTHER, "/", 239, links=(b, gone), elapsed=1.0, size=50),
            fetched(OTHER, "/gone", 245, 500, elapsed=2.0, size=7),
            fetched(OTHER, "/e", 250, links=(b,), elapsed=0.75, size=20),
            Outcome(HOST + "/d1", "disallowed", "robots.txt"),
            Outcome(HOST + "/d2", "disallowed", "robots.txt"),
            Outcome(HOST + "/deep", "dropped", Reason.DEPTH),
            Outcome(HOST + "/z", "dropped"),
        ):
            store.add(o)
        await store.flush()
        await store.end_run(run, 9, False)
    for sql in (  # the clock's other readings, pinned
        f"UPDATE crawl SET started_at = {T0 - 10}",
        f"UPDATE runs SET started_at = {T0 - 2}, ended_at = {T0 + 254}",
    ):
        await backend.execute(sql)
    reader = open_reader(backend.db)
    try:
        report = reader.report()
    finally:
        reader.close()

    def bucket(pages: int = 0, size: int = 0, **by_class: int) -> Bucket:
        return Bucket(0.0, pages, size, {c: by_class.get(f"c{c}", 0) for c in STATUS_CLASSES})

    # T0 + 12 is 13 s past the first bucket's start (T0 - 1): bucket 2 of 5 s.
    filled = {
        0: bucket(4, 405, c2xx=3, c4xx=1),
        2: bucket(2, 0, c3xx=1, cerror=1),
        48: bucket(1, 50, c2xx=1),
        49: bucket(1, 7, c5xx=1),
        50: bucket(1, 20, c2xx=1),
    }
    buckets = [dataclasses.replace(filled.get(i, bucket()), start=T0 - 1 + 5 * i)
               for i in range(51)]  # fmt: skip
    stats = {
        "pages": 9, "ok": 5, "redirects": 1, "http_errors": 2, "network_errors": 1, "failed": 3,
        "hook_errors": 0,
        "hosts": 2, "bytes": 482, "links": 9, "queued": 1, "disallowed": 2, "dropped": 2,
        "by_status_class": [{"class": c, "pages": n} for c, n in
                            (("2xx", 5), ("3xx", 1), ("4xx", 1), ("5xx", 1), ("error", 1))],
        "by_status": [{"status": c, "pages": n} for c, n in ((200, 5), (301, 1), (404, 1),
                                                             (500, 1))],
        "by_content_type": [{"content_type": "(none)", "pages": 7},
                            {"content_type": "text/html", "pages": 2}],
        "top_hosts": [{"host": HOST, "pages": 6, "failed": 2, "avg_elapsed_s": 0.35},
                      {"host": OTHER, "pages": 3, "failed": 1, "avg_elapsed_s": 1.25}],
        "error_reasons": [{"reason": r, "pages": 1} for r in ("HTTP 404", "HTTP 500", "timeout")],
        "depths": [{"depth": 0, "pages": 9}], "skipped": [], "runs": 1,
        "per_run": [{"run": 1, "kind": "crawl", "fetched": 9, "new": 9, "changed": 0,
                     "unchanged": 0, "gone": 0, "failed": 0}],
        "duration_s": 256.0,
        "pages_per_s": 0.04, "seeds": [HOST + "/"], "started_at": T0 - 10, "resumed_at": None,
        "finished_at": None,
        "sitemaps": {"fetched": 0, "failed": 0, "queued": 0, "urls": 0},
    }  # fmt: skip
    assert dataclasses.replace(report, generated_at=0.0) == ReportData(
        stats=stats,
        generated_at=0.0,
        bucket_width=5,  # 250 s in at most 120 bars
        buckets=buckets,
        hosts=[
            HostRow(HOST, 6, 2, 0.375, 0.5, 6 / 12),
            HostRow(OTHER, 3, 1, 1.0, 2.0, 3 / 11),
        ],
        slowest=[
            {"url": gone, "elapsed": 2.0, "status": 500},
            {"url": OTHER + "/", "elapsed": 1.0, "status": 200},
            {"url": OTHER + "/e", "elapsed": 0.75, "status": 200},
            {"url": HOST + "/", "elapsed": 0.5, "status": 200},
            {"url": HOST + "/r", "elapsed": 0.5, "status": 301},
            {"url": HOST + "/c", "elapsed": 0.375, "status": 200},
            {"url": HOST + "/a", "elapsed": 0.25, "status": 200},
            {"url": b, "elapsed": 0.125, "status": 404},
        ],
        largest=[
            {"url": HOST + "/a", "size": 300, "content_type": "text/html"},
            {"url": HOST + "/", "size": 100, "content_type": "text/html"},
            {"url": OTHER + "/", "size": 50, "content_type": None},
            {"url": OTHER + "/e", "size": 20, "content_type": None},
            {"url": gone, "size": 7, "content_type": None},
            {"url": b, "size": 5, "content_type": None},
        ],
        broken=[
            BrokenLink(b, 404, None, 5, [HOST + "/", HOST + "/a", OTHER + "/"]),
            BrokenLink(x, None, "timeout: slow", 1, [HOST + "/"]),
            BrokenLink(gone, 500, None, 1, [OTHER + "/"]),
        ],
        broken_pages=3,
        broken_links=7,
        not_followed=[
            {"state": "disallowed", "reason": "robots.txt", "urls": 2, "example": HOST + "/d1"},
            {"state": "dropped", "reason": "(no reason)", "urls": 1, "example": HOST + "/z"},
            {"state": "dropped", "reason": "depth", "urls": 1, "example": HOST + "/deep"},
        ],
    )


async def test_a_bad_where_filter_is_a_usage_error(backend: Backend) -> None:
    from crawler.errors import UsageError

    await crawled(backend)
    reader = open_reader(backend.db)
    try:
        with pytest.raises(UsageError, match="invalid --where filter"):
            reader.pages(where="no_such_column = 1")
        with pytest.raises(UsageError):
            list(reader.pages(where="1 = 1); DELETE FROM links; SELECT (1"))
        assert len(list(reader.pages())) == 5  # the session still works
    finally:
        reader.close()
    assert await backend.rows("SELECT count(*) FROM links") == [(4,)]


# ---------------------------------------------------------------------- PostgreSQL only:
# many workers share one database; it is a server, so it can refuse us or go away.


async def test_postgres_refuses_what_it_cannot_use_in_one_line(
    pg_cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncpg

    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", "/nonexistent")
    other = pg_cluster.dsn(pg_cluster.new_database())
    conn = await asyncpg.connect(other)
    await conn.execute("CREATE TABLE notes (id int, text text)")
    await conn.close()
    newer = pg_cluster.dsn(pg_cluster.new_database())
    store = await open_store(newer, create=True)
    await store.close()
    conn = await asyncpg.connect(newer)
    await conn.execute("INSERT INTO schema_migrations VALUES (9999, '9999_future.sql', 0)")
    await conn.close()
    empty = pg_cluster.dsn(pg_cluster.new_database())
    wrong = empty.replace(PASSWORD, "wrong-password")
    cases = [
        (other, True, "is a PostgreSQL database but not a crawl database"),
        (newer, True, "schema version 9999, newer than this crawler"),
        (empty, False, "no crawl in"),
        (wrong, True, "refused the credentials"),
        (pg_cluster.dsn(empty.rsplit("/", 1)[1], password=False), True, "refused the credentials"),
        (empty.rsplit("/", 1)[0] + "/nosuchdb", True, 'database "nosuchdb" does not exist'),
        (f"postgresql://crawler:{PASSWORD}@127.0.0.1:1/x", True, "cannot connect to"),
    ]
    for dsn, create, message in cases:
        with pytest.raises(StorageError, match=message) as refused:
            await open_store(dsn, create=create)
        text = str(refused.value)
        assert len(text.splitlines()) == 1 and refused.value.exit_code == 2
        assert PASSWORD not in text and "wrong-password" not in text
    conn = await asyncpg.connect(other)
    tables = {
        r[0]
        for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    }
    await conn.close()
    assert tables == {"notes"}  # untouched


async def test_postgres_password_from_pgpassword_and_never_in_the_name(
    pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    bare = pg_dsn.replace(f":{PASSWORD}@", "@")
    store = await open_store(bare + "?application_name=x", create=True)
    try:
        assert store.name == bare + "?application_name=x"
    finally:
        await store.close()
    store = await open_store(pg_dsn, create=False)
    try:
        assert store.name == bare and PASSWORD not in store.name
    finally:
        await store.close()


async def test_postgres_workers_starting_at_once_migrate_once(postgres: Backend) -> None:
    stores = await asyncio.gather(*(postgres.open() for _ in range(4)))
    for s in stores:
        await s.close()
    from crawler.store.postgres_schema import migrations

    want = [(v,) for v, _, _ in migrations()]  # each file once
    assert await postgres.rows("SELECT version FROM schema_migrations ORDER BY 1") == want


async def test_postgres_leases_a_host_to_one_worker_until_it_expires(postgres: Backend) -> None:
    from crawler.store.postgres import PostgresStore

    a = await PostgresStore.open(postgres.db, create=True)
    b = await PostgresStore.open(postgres.db, create=False)
    try:
        a.add(seeds("/1", "/2", "/3"))
        a.add(seeds("/o", host=OTHER))
        await a.flush()
        assert await a.lease_hosts(1) == {HOST: None}
        assert await b.lease_hosts(5) == {OTHER: None}  # HOST is a's
        assert await b.lease_hosts(5) == {}
        claimed, _ = await a.claim(HOST, 2, lambda u: False)
        assert [q.url for q in claimed] == [HOST + "/1", HOST + "/2"]
        # Leases are per server (`server_key`), as politeness is.
        assert await a.renew() == [server_key(HOST)]
        assert await b.renew([server_key(OTHER), server_key(HOST)]) == [server_key(OTHER)]
        assert await a.any_leased()

        # a is cut off: its worker row and lease run out (as if --lease seconds passed).
        await postgres.execute(f"UPDATE workers SET lease_until = 0 WHERE id = '{a.worker}'")
        await postgres.execute(
            "UPDATE servers SET lease_until = extract(epoch FROM clock_timestamp()) - 5 "
            f"WHERE server = '{server_key(HOST)}'"
        )
        taken = await b.lease_hosts(5)
        # a may have fetched HOST until its lease lapsed: b is told how long ago that was.
        assert list(taken) == [HOST] and 5 <= (taken[HOST] or 0) < 60
        # a's claimed URLs came back to the queue: b gets them all, nothing lost.
        got, done = await b.claim(HOST, 10, lambda u: False)
        assert [q.url for q in got] == [HOST + p for p in ("/1", "/2", "/3")] and done
        with pytest.raises(StoreFailure, match="longer than its lease"):
            await a.renew()
        a.add(outcome("/1"))
        with pytest.raises(StoreFailure, match="longer than its lease"):
            await a.flush()  # a stores nothing more: the URL is b's to fetch
        assert await postgres.rows("SELECT count(*) FROM pages") == [(0,)]
    finally:
        await a.close()
        await b.close()


async def test_postgres_release_keeps_politeness_and_clears_a_finished_host(
    postgres: Backend,
) -> None:
    from crawler.store.postgres import PostgresStore

    a = await PostgresStore.open(postgres.db, create=True)
    b = await PostgresStore.open(postgres.db, create=False)
    try:
        a.add(seeds("/1", "/2"))
        a.add(seeds("/o", host=OTHER))
        await a.flush()
        assert list(await a.lease_hosts(5)) == [HOST, OTHER]
        await a.claim(HOST, 10, lambda u: False)
        a.add(outcome("/1"))
        await a.flush()
        await a.release_servers({server_key(HOST): 3600.0, server_key(OTHER): 0.0})
        assert await b.lease_hosts(5) == {OTHER: None}
        assert await b.new_work() == [OTHER]
        b.add(dataclasses.replace(outcome("/o"), url=OTHER + "/o"))
        await b.flush()
        await b.release_server(server_key(OTHER))
        assert dict(await postgres.rows("SELECT host, queued FROM hosts")) == {
            HOST: True,  # /2 is still queued
            OTHER: False,  # nothing left: no worker leases it again
        }
        await postgres.execute("UPDATE servers SET next_start = 0")
        assert await b.lease_hosts(5) == {HOST: None}  # released: no lapse to wait out
        got, _ = await b.claim(HOST, 10, lambda u: False)
        assert [q.url for q in got] == [HOST + "/2"]  # a's claim went back on release
    finally:
        await a.close()
        await b.close()


async def test_postgres_max_pages_is_exact_across_workers(postgres: Backend) -> None:
    from crawler.store.postgres import PostgresStore

    a = await PostgresStore.open(postgres.db, create=True)
    b = await PostgresStore.open(postgres.db, create=False)
    c = await PostgresStore.open(postgres.db, create=False)
    try:
        grants = await asyncio.gather(*(s.take_pages(5, 2) for s in (a, b, c, a, b, c)))
        assert sum(grants) == 5
        assert await a.pages_left(5) == 0
        await b.give_pages(b._units)  # b's fetches stored nothing
        assert await a.pages_left(5) == grants[1] + grants[4]
        a.add(outcome("/a"))
        a.add(outcome("/b"))
        a_units = a._units
        await a.flush()  # stored pages keep their units, as pages
        assert a._units == max(a_units - 2, 0)
        assert await a.pages_left(5) == 5 - 2 - a._units - c._units
        # c dies holding units: once its row is reaped they return to the budget.
        assert c._units == grants[2] + grants[5] > 0
        await postgres.execute(f"UPDATE workers SET lease_until = 0 WHERE id = '{c.worker}'")
        assert await a.lease_hosts(1) == {}  # any worker's lease round reaps
        assert await a.pages_left(5) == 5 - 2 - a._units
    finally:
        for s in (a, b):
            await s.close()
        c.failure = StoreFailure("cut off")  # its row is gone: close gives nothing back
        await c.close()
    assert await postgres.rows("SELECT stored, in_flight FROM page_budget") == [(2, 0)]


async def test_postgres_server_going_away_is_a_store_failure(pg_cluster: Cluster) -> None:
    name = pg_cluster.new_database()
    postgres = Backend("postgres", pg_cluster.dsn(name))
    async with opened(postgres) as store:
        # The pool reconnects after a dropped connection; a server that takes none is gone.
        pg_cluster.psql(
            f"ALTER DATABASE {name} WITH ALLOW_CONNECTIONS false; "
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{name}'"
        )
        for o in batch():
            store.add(o)
        with pytest.raises(StoreFailure, match=r"^store failed: .*\(postgresql://") as failed:
            await store.flush()
        assert len(str(failed.value).splitlines()) == 1 and PASSWORD not in str(failed.value)
        assert failed.value.exit_code == 1
        assert store.backlog == 3  # kept; still queued in the database for the next worker
        with pytest.raises(StoreFailure):
            await store.flush()
    pg_cluster.psql(f"ALTER DATABASE {name} WITH ALLOW_CONNECTIONS true")
    assert await postgres.rows("SELECT count(*) FROM pages") == [(0,)]
    assert dict(await postgres.rows("SELECT url, state FROM urls")) == {
        HOST + "/a": "queued",
        HOST + "/b": "queued",
    }


async def test_postgres_claim_is_an_index_scan_at_two_million_queued_urls(
    postgres: Backend,
) -> None:
    import asyncpg

    from crawler.store.postgres import CLAIM

    store = await postgres.open()
    await store.close()
    conn = await asyncpg.connect(postgres.db)
    try:
        # Indexes built after the rows (sorted, in one go) rather than row by row: the
        # same indexes, in a fraction of the time.
        indexes = await conn.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'urls' "
            "AND indexname <> 'urls_pkey'"
        )
        await conn.execute("ALTER TABLE urls DROP CONSTRAINT urls_url_key")
        for name, _ in indexes:
            if name != "urls_url_key":
                await conn.execute(f"DROP INDEX {name}")
        await conn.execute(
            "INSERT INTO urls (url, host, depth, discovered_at) "
            "SELECT 'http://h' || (i % 2000) || '.test/p' || i, "
            "'http://h' || (i % 2000) || '.test', 1, 0 FROM generate_series(1, 2000000) AS i"
        )
        await conn.execute("SET maintenance_work_mem = '256MB'")
        for _, sql in indexes:
            await conn.execute(sql)
        await conn.execute("ANALYZE urls")
        assert await conn.fetchval("SELECT count(*) FROM urls WHERE state = 'queued'") == 2_000_000
        plan = "\n".join(
            r[0]
            for r in await conn.fetch(
                f"EXPLAIN {CLAIM}", "00000000-0000-0000-0000-000000000001", "http://h7.test", 100
            )
        )
    finally:
        await conn.close()
    assert "Index Scan using urls_queued on urls" in plan, plan
    assert "Seq Scan" not in plan, plan
