"""Every URL's fate is stored: redirect chains end on their origin row, links not followed
are counted by reason, robots.txt failures hold a host and then cost each URL a row,
and an unexpected exception costs one URL, never a worker or a hung crawl."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from support import Site, rows, run

from crawler import outcome, window
from crawler.errors import InternalError
from crawler.fetcher import Response
from crawler.reasons import Reason
from crawler.records import Job, Outcome


def skipped(db: str) -> dict[str, int]:
    return dict(rows(db, "SELECT reason, count FROM skipped"))


# ---------------------------------------------------------------------- redirect chains


async def test_chain_final_status_on_every_hop(site: Site, db: str) -> None:
    host = await site.host()
    host.page("/", links=["/a"])
    host.redirect("/a", "/b")
    host.redirect("/b", "/c", status=302)
    host.page("/c", status=404)
    await run(db, [host.url("/")])
    got = rows(db, "SELECT url, status, final_status, final_url, error FROM pages ORDER BY url")
    assert got == [
        (host.url("/"), 200, 200, host.url("/"), None),
        (host.url("/a"), 301, 404, host.url("/c"), None),
        (host.url("/b"), 302, 404, host.url("/c"), None),
        (host.url("/c"), 404, 404, host.url("/c"), None),
    ]


async def test_loop_error_lands_on_the_linked_url(site: Site, db: str) -> None:
    host = await site.host()
    host.page("/", links=["/a"])
    host.redirect("/a", "/b")
    host.redirect("/b", "/a")
    await run(db, [host.url("/")])
    got = dict(rows(db, "SELECT url, error FROM pages"))
    assert got[host.url("/a")] == "redirect loop"
    assert got[host.url("/b")] == "redirect loop"


async def test_chain_out_of_scope_is_an_error_on_its_origin(site: Site, db: str) -> None:
    host = await site.host()
    other = await site.host()
    other.page("/x")
    host.page("/", links=["/a"])
    host.redirect("/a", "/b")
    host.redirect("/b", other.url("/x"))
    await run(db, [host.url("/")])
    got = {
        r[0]: r[1:]
        for r in rows(db, "SELECT url, status, final_status, final_url, error FROM pages")
    }
    want_error = "redirect target not followed: out of scope"
    assert got[host.url("/a")] == (301, None, other.url("/x"), want_error)
    assert got[host.url("/b")] == (301, None, other.url("/x"), want_error)
    assert other.hits == []
    assert skipped(db)[Reason.OUT_OF_SCOPE] == 1


async def test_chain_to_disallowed_target(site: Site, db: str) -> None:
    host = await site.host()
    host.robots("User-agent: *\nDisallow: /private\n")
    host.page("/", links=["/a"])
    host.redirect("/a", "/private/x")
    await run(db, [host.url("/")])
    (error,) = rows(db, "SELECT error FROM pages WHERE url = ?", host.url("/a"))[0]
    assert error == "redirect target not fetched: robots.txt"
    assert rows(db, "SELECT state FROM urls WHERE url = ?", host.url("/private/x")) == [
        ("disallowed",)
    ]
    assert skipped(db)[Reason.ROBOTS] == 1


async def test_chain_failing_last_hop_errors_the_origin(site: Site, db: str) -> None:
    host = await site.host()
    host.page("/", links=["/a"])
    host.redirect("/a", "/broken")

    async def reset(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.close()
        return web.Response()

    host.handle("/broken", reset)
    await run(db, [host.url("/")])
    got = dict(rows(db, "SELECT url, error FROM pages"))
    assert got[host.url("/broken")] is not None
    assert got[host.url("/a")] == got[host.url("/broken")]
    assert rows(db, "SELECT final_status FROM pages WHERE url = ?", host.url("/a")) == [(None,)]


# ---------------------------------------------------------------------- reasons


async def test_links_not_followed_are_counted_by_reason(site: Site, db: str) -> None:
    host = await site.host()
    other = await site.host()
    host.robots("User-agent: *\nDisallow: /private\n")
    long_href = "/" + "x" * 300
    trap = "/t/t/t/t/t"
    body = (
        f'<a href="{other.url("/")}">o</a><a href="{other.url("/2")}">o2</a>'
        '<a href="/deny-me">d</a><a href="/private/p">p</a>'
        f'<a href="{long_href}">l</a><a href="{trap}">t</a>'
        '<a href="/nf" rel="nofollow">n</a><a href="/deep">deep</a>'
    )
    host.page("/", body=f"<html><body>{body}</body></html>")
    host.page("/deep", links=["/deeper", "/deeper2"])
    await run(
        db,
        [host.url("/")],
        deny=(r"deny-me",),
        max_url_length=200,
        max_depth=1,
        repeat_segments=3,
    )
    assert skipped(db) == {
        Reason.OUT_OF_SCOPE: 2,
        Reason.DENY: 1,
        Reason.ROBOTS: 1,
        Reason.TOO_LONG: 1,
        Reason.TRAP: 1,
        Reason.NOFOLLOW: 1,
        Reason.DEPTH: 2,
    }


async def test_host_budget_counts(site: Site, db: str) -> None:
    host = await site.host()
    host.page("/", links=[f"/{i}" for i in range(5)])
    for i in range(5):
        host.page(f"/{i}")
    await run(db, [host.url("/")], host_budget=3, per_host=1)
    assert skipped(db) == {Reason.HOST_BUDGET: 3}
    assert rows(db, "SELECT count(*) FROM pages") == [(3,)]


# ---------------------------------------------------------------------- robots.txt


async def test_robots_503_then_200_holds_the_host(site: Site, db: str) -> None:
    host = await site.host()
    answers = iter([503, 503, 200])

    async def robots(request: web.Request) -> web.StreamResponse:
        status = next(answers)
        text = "User-agent: *\nDisallow: /no\n" if status == 200 else "down"
        return web.Response(status=status, text=text, headers={"Retry-After": "0"})

    host.handle("/robots.txt", robots)
    host.page("/", links=["/a", "/no"])
    host.page("/a")
    summary = await run(db, [host.url("/")], retries=2)
    assert host.paths[:3] == ["/robots.txt"] * 3  # nothing of the host before the rules
    assert sorted(host.paths[3:]) == ["/", "/a"]
    assert rows(db, "SELECT status FROM robots") == [(200,)]
    assert summary.errors == 0


async def test_robots_unreachable_gives_every_url_an_error_row(site: Site, db: str) -> None:
    host = await site.host()
    host.robots("down", status=503)
    summary = await run(db, [host.url("/"), host.url("/b")], retries=1)
    assert host.paths == ["/robots.txt", "/robots.txt"]
    got = rows(db, "SELECT url, status, error FROM pages ORDER BY url")
    reason = "robots.txt unreachable: HTTP 503"
    assert got == [(host.url("/"), None, reason), (host.url("/b"), None, reason)]
    assert summary.errors == 2
    assert summary.pages == 2
    assert summary.errors_by_kind == {"robots.txt unreachable": 2}


async def test_seed_on_a_closed_port_is_an_error_not_done(site: Site, db: str) -> None:
    host = await site.host()
    await site.close()  # nothing listens there any more: connection refused
    site.runners.clear()
    summary = await run(db, [host.url("/")], retries=0)
    (row,) = rows(db, "SELECT status, error FROM pages")
    assert row[0] is None
    assert row[1].startswith("robots.txt unreachable: connect:")
    assert summary.errors == 1


async def test_robots_retry_after_is_honoured(site: Site, db: str) -> None:
    host = await site.host()
    answers = iter([(429, "1"), (200, None)])

    async def robots(request: web.Request) -> web.StreamResponse:
        status, after = next(answers)
        headers = {"Retry-After": after} if after else {}
        return web.Response(status=status, text="User-agent: *\nAllow: /\n", headers=headers)

    host.handle("/robots.txt", robots)
    host.page("/")
    await run(db, [host.url("/")], retries=1)
    first, second = (h for h in host.hits if h.path == "/robots.txt")
    assert first.end is not None
    assert second.start - first.end >= 1.0 - 0.01  # what the server asked for
    assert rows(db, "SELECT status FROM pages") == [(200,)]


# ---------------------------------------------------------------------- internal errors


async def test_an_exception_costs_one_row_not_the_worker(
    site: Site, db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = await site.host()
    host.page("/", links=[f"/{i}" for i in range(20)])
    for i in range(20):
        host.page(f"/{i}")
    real = outcome.Outcomes.build

    async def build(self: outcome.Outcomes, job: Job, resp: Response) -> Outcome:
        if job.item is not None and job.item.url.endswith("/7"):
            raise KeyError("boom")
        return await real(self, job, resp)

    monkeypatch.setattr(outcome.Outcomes, "build", build)
    summary = await run(db, [host.url("/")], concurrency=1)  # one worker: it must survive
    assert rows(db, "SELECT count(*) FROM pages") == [(21,)]
    assert rows(db, "SELECT error FROM pages WHERE url = ?", host.url("/7")) == [
        ("internal: KeyError: 'boom'",)
    ]
    assert summary.errors == 1


async def test_a_failing_background_task_stops_the_crawl(
    site: Site, db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = await site.host()
    host.page("/", links=[f"/{i}" for i in range(30)])
    for i in range(30):
        host.page(f"/{i}")

    async def broken_refill(self: window.Window) -> None:
        raise RuntimeError("refill broke")

    monkeypatch.setattr(window.Window, "_refill", broken_refill)
    from support import settings

    from crawler.engine import Engine
    from crawler.store.sqlite import SQLiteStore as Storage

    storage = await Storage.open(db, create=True)
    try:
        s = settings()
        await storage.save_crawl(s, [host.url("/")])
        eng = Engine(storage, s, [host.url("/")])
        eng.frontier.window.size = 10  # overflow at once, so a refill is needed
        eng.frontier.window.host_size = 10
        with pytest.raises(InternalError, match="internal: RuntimeError: refill broke"):
            await asyncio.wait_for(eng.run(), 30)
    finally:
        await storage.close()


async def test_robots_txt_is_reused_across_resumes(site: Site, db: str) -> None:
    """RFC 9309 2.4: at most once per host per 24 hours, also when the crawl is resumed."""
    from support import run_resume

    host = await site.host()
    host.robots("User-agent: *\nDisallow: /no\n")
    host.page("/", links=["/a", "/b", "/no"])
    host.page("/a")
    host.page("/b")
    await run(db, [host.url("/")], max_pages=2)
    await run_resume(db, max_pages=10)
    assert host.requests_for("/robots.txt") == 1
    assert rows(db, "SELECT count(*) FROM pages") == [(3,)]
    assert rows(db, "SELECT state FROM urls WHERE url = ?", host.url("/no")) == [("disallowed",)]
