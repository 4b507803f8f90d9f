"""Redirects: each hop is its own frontier entry, row and request (scope, robots, politeness)."""

from __future__ import annotations

import itertools

import pytest
from support import Site, rows, run, urls


def page_rows(db: str) -> dict[str, tuple[object, ...]]:
    """url -> (status, redirect_to, final_url, error, depth)."""
    found = rows(db, "SELECT url, status, redirect_to, final_url, error, depth FROM pages")
    return {r[0]: r[1:] for r in found}


async def test_chain_records_every_hop(site: Site, db: str) -> None:
    host = await site.host()
    host.redirect("/a", "/b", status=301)
    host.redirect("/b", host.url("/c"), status=302)  # absolute Location
    host.page("/c", ["/d"])
    host.page("/d")
    a, b, c, d = (host.url(p) for p in ("/a", "/b", "/c", "/d"))

    summary = await run(db, [a])

    assert page_rows(db) == {
        a: (301, b, c, None, 0),
        b: (302, c, c, None, 0),  # redirect hops keep the depth of the URL that was linked
        c: (200, None, c, None, 0),
        d: (200, None, d, None, 1),
    }
    assert [host.requests_for(p) for p in ("/a", "/b", "/c", "/d")] == [1, 1, 1, 1]
    assert summary.errors == 0
    assert rows(db, "SELECT count(*) FROM frontier") == [(0,)]


async def test_relative_location_with_dot_segments(site: Site, db: str) -> None:
    host = await site.host()
    host.redirect("/dir/a", "../target#frag", status=307)
    host.page("/target")

    await run(db, [host.url("/dir/a")])

    assert page_rows(db)[host.url("/dir/a")][:3] == (307, host.url("/target"), host.url("/target"))
    assert host.requests_for("/target") == 1


async def test_each_hop_waits_its_turn_on_the_host(site: Site, db: str) -> None:
    host = await site.host()
    host.redirect("/a", "/b")
    host.redirect("/b", "/c")
    host.page("/c")

    await run(db, [host.url("/a")], delay=0.15, ignore_robots=True)

    starts = [h.arrived for h in host.hits]
    assert host.paths == ["/a", "/b", "/c"]
    assert all(b - a >= 0.15 - 0.01 for a, b in itertools.pairwise(starts)), starts


async def test_hop_to_another_in_scope_host(site: Site, db: str) -> None:
    one, two = await site.host(), await site.host()
    one.redirect("/moved", two.url("/here"))
    two.robots("User-agent: *\nAllow: /\n")
    two.page("/here")
    two.page("/")

    # Both seeds' hosts are in scope (scope host); the hop goes through two's robots.txt.
    await run(db, [one.url("/moved"), two.url("/")])

    assert two.paths[0] == "/robots.txt"
    assert two.requests_for("/here") == 1
    assert page_rows(db)[one.url("/moved")][:3] == (301, two.url("/here"), two.url("/here"))
    assert rows(db, "SELECT host FROM pages WHERE url = ?", two.url("/here")) == [(two.origin,)]


async def test_hop_out_of_scope_is_not_fetched(site: Site, db: str) -> None:
    one, other = await site.host(), await site.host()
    one.redirect("/away", other.url("/x"))
    other.page("/x")

    await run(db, [one.url("/away")])

    assert other.hits == []
    # The chain failed: its origin says why (test_fates has the longer chains).
    error = "redirect target not followed: out of scope"
    assert page_rows(db) == {one.url("/away"): (301, other.url("/x"), other.url("/x"), error, 0)}
    assert rows(db, "SELECT url FROM urls") == [(one.url("/away"),)]


async def test_redirect_loop_ends(site: Site, db: str) -> None:
    host = await site.host()
    host.redirect("/a", "/b")
    host.redirect("/b", "/a")

    summary = await run(db, [host.url("/a")])

    assert host.requests_for("/a") == 1
    assert host.requests_for("/b") == 1
    assert urls(db) == {host.url("/a"), host.url("/b")}
    assert rows(db, "SELECT status, redirect_to FROM pages ORDER BY url") == [
        (301, host.url("/b")),
        (301, host.url("/a")),
    ]
    assert summary.finished
    assert summary.errors == 0
    assert rows(db, "SELECT count(*) FROM frontier") == [(0,)]
    # A loop has no final URL; the hop that closes it says so, and so does the URL that
    # was linked (the chain's origin).
    assert rows(db, "SELECT url, final_url, error FROM pages ORDER BY url") == [
        (host.url("/a"), None, "redirect loop"),
        (host.url("/b"), None, "redirect loop"),
    ]


async def test_redirect_to_already_fetched_page(site: Site, db: str) -> None:
    host = await site.host()
    host.page("/", ["/old", "/new"])
    host.redirect("/old", "/new")
    host.page("/new")

    await run(db, [host.url("/")], per_host=1)

    assert host.requests_for("/new") == 1
    assert page_rows(db)[host.url("/old")][:3] == (301, host.url("/new"), host.url("/new"))


CHAIN = ["/r0", "/r1", "/r2", "/r3"]  # r0 -> r1 -> r2 -> r3 -> /end


@pytest.mark.parametrize(
    ("limit", "fetched"),
    [
        pytest.param(0, 1, id="limit-0"),
        pytest.param(1, 2, id="limit-1"),
        pytest.param(2, 3, id="limit-2"),
        pytest.param(4, 5, id="limit-equals-chain"),
    ],
)
async def test_max_redirects(site: Site, db: str, limit: int, fetched: int) -> None:
    host = await site.host()
    for here, there in itertools.pairwise([*CHAIN, "/end"]):
        host.redirect(here, there)
    host.page("/end")
    paths = [*CHAIN, "/end"]

    summary = await run(db, [host.url("/r0")], max_redirects=limit)

    assert [host.requests_for(p) for p in paths] == [1] * fetched + [0] * (len(paths) - fetched)
    stored = rows(db, "SELECT url, status, error FROM pages ORDER BY id")
    assert [r[0] for r in stored] == [host.url(p) for p in paths[:fetched]]
    errors = [r[2] for r in stored]
    if fetched == len(paths):
        assert errors == [None] * fetched
        assert stored[-1][1] == 200
    else:
        # The hop past the limit is not followed: every row of the chain says why.
        assert errors == [f"redirect limit of {limit} hops reached"] * fetched
        assert stored[-1][1] == 301
    assert summary.finished


async def test_redirect_into_disallowed_path(site: Site, db: str) -> None:
    host = await site.host()
    host.robots("User-agent: *\nDisallow: /secret\n")
    host.redirect("/a", "/secret/x")
    host.page("/secret/x")

    await run(db, [host.url("/a")])

    assert host.requests_for("/secret/x") == 0
    assert urls(db) == {host.url("/a")}
    assert rows(db, "SELECT url, state FROM frontier") == [(host.url("/secret/x"), "disallowed")]


async def test_redirect_to_unusable_location(site: Site, db: str) -> None:
    host = await site.host()
    host.redirect("/a", "mailto:someone@example.com")

    summary = await run(db, [host.url("/a")])

    error = "redirect to an unusable URL: 'mailto:someone@example.com'"
    assert page_rows(db) == {host.url("/a"): (301, None, None, error, 0)}
    assert summary.finished
