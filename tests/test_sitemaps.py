"""Sitemaps (issue 13): robots.txt `Sitemap:` lines, indexes, gzip, plain text, the
protocol's limits, hostile XML, --sitemap-probe, the page budget and resume; crawled for
real from loopback servers into both stores. The reader itself: parametrised tables."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest
from aiohttp import web
from backends import Backend
from support import Host, Site, rows, run, run_resume

from crawler.sitemaps import MAX_BYTES, MAX_URLS, Entry, SitemapError, SitemapReader

NS = 'xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"'


def urlset(*locs: str, extra: str = "") -> str:
    urls = "".join(f"<url><loc>{loc}</loc>{extra}</url>" for loc in locs)
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<urlset {NS}>{urls}</urlset>'


def index(*locs: str) -> str:
    maps = "".join(f"<sitemap><loc>{loc}</loc></sitemap>" for loc in locs)
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<sitemapindex {NS}>{maps}</sitemapindex>'


DB = Backend  # a crawl database of either backend


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> DB:
    return Backend.fresh(request, tmp_path)


def gzipped(host: Host, path: str, text: str, *, encoded: bool) -> None:
    """`text` gzipped: as a .xml.gz file (no Content-Encoding), or gzip-encoded."""
    headers = {"Content-Encoding": "gzip"} if encoded else None
    kind = "application/xml" if encoded else "application/x-gzip"
    host.page(path, body=gzip.compress(text.encode()), content_type=kind, headers=headers)


async def pages(store: DB) -> dict[str, int]:
    return {url: depth for url, depth in await store.rows("SELECT url, depth FROM pages")}


async def skipped(store: DB) -> dict[str, int]:
    return {reason: int(n) for reason, n in await store.rows("SELECT reason, count FROM skipped")}


# ---------------------------------------------------------------------- crawls, both stores


async def test_an_orphan_listed_only_in_a_gzipped_sitemap_behind_an_index_is_crawled(
    site: Site, store: DB
) -> None:
    a = await site.host()
    other = await site.host()
    a.robots("User-agent: *\nDisallow: /private\nSitemap: /index.xml\n")
    a.page("/")  # links nowhere: /orphan is known from the sitemap only
    gzipped(a, "/index.xml", index(a.url("/maps/pages.xml.gz")), encoded=True)
    facts = "<lastmod>2026-11-01</lastmod><changefreq>weekly</changefreq><priority>0.7</priority>"
    body = urlset(a.url("/orphan"), a.url("/private/x"), other.url("/elsewhere"), extra=facts)
    gzipped(a, "/maps/pages.xml.gz", body, encoded=False)
    a.page("/orphan")
    other.page("/elsewhere")

    await run(store.db, [a.url("/")])

    assert await pages(store) == {a.url("/"): 0, a.url("/orphan"): 1}
    assert other.paths == []  # its URL was in a sitemap of another host: not followed
    assert a.requests_for("/private/x") == 0  # listed, admitted, but robots.txt says no
    got = await skipped(store)
    assert got["sitemap host"] == 1
    assert got["robots"] == 1
    assert sorted(
        await store.rows("SELECT url, level, state, kind, status, error, urls FROM sitemaps")
    ) == [
        (a.url("/index.xml"), 0, "done", "sitemapindex", 200, None, 1),
        (a.url("/maps/pages.xml.gz"), 1, "done", "urlset", 200, None, 3),
    ]
    assert await store.rows(
        "SELECT lastmod, changefreq, priority FROM sitemap_urls WHERE url = ?", a.url("/orphan")
    ) == [("2026-11-01", "weekly", 0.7)]
    assert a.requests_for("/index.xml") == a.requests_for("/maps/pages.xml.gz") == 1


async def test_a_60_mb_sitemap_and_an_entity_bomb_cost_one_error_row_each(
    site: Site, store: DB
) -> None:
    a = await site.host()
    a.robots(
        "User-agent: *\nDisallow: /blocked/\nSitemap: /blocked/map.xml\n"
        "Sitemap: /huge.xml\nSitemap: /bomb.xml\nSitemap: /missing.xml\nSitemap: /list.txt\n"
    )
    a.page("/")
    a.page("/t1")
    a.page("/h1")
    blanks = b" " * 1_048_576

    async def huge(request: web.Request) -> web.StreamResponse:
        # 60 MB streamed from one 1 MB buffer: the URL comes first, then blanks.
        resp = web.StreamResponse(headers={"Content-Type": "application/xml"})
        await resp.prepare(request)
        await resp.write(f"<urlset {NS}><url><loc>{a.url('/h1')}</loc></url>".encode())
        for _ in range(60):
            await resp.write(blanks)
        await resp.write(b"</urlset>")
        return resp

    a.handle("/huge.xml", huge)
    lol = "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10))
    bomb = f'<?xml version="1.0"?><!DOCTYPE urlset [<!ENTITY l0 "lol">{lol}]><urlset>&l9;</urlset>'
    a.page("/bomb.xml", body=bomb, content_type="application/xml")
    a.page("/list.txt", body=f"{a.url('/t1')}\n\n", content_type="text/plain")

    summary = await run(store.db, [a.url("/")], max_bytes=100_000)

    assert await pages(store) == {a.url("/"): 0, a.url("/t1"): 1, a.url("/h1"): 1}
    assert summary.errors == 0  # sitemap failures are sitemap rows, not page rows
    found = {
        url.removeprefix(a.origin): (kind, error, urls)
        for url, kind, error, urls in await store.rows(
            "SELECT url, kind, error, urls FROM sitemaps WHERE state = 'done'"
        )
    }
    assert found["/list.txt"] == ("text", None, 1)
    assert found["/missing.xml"] == (None, "sitemap: HTTP 404", 0)
    kind, error, urls = found["/huge.xml"]
    assert (kind, urls) == ("urlset", 1)  # what came before the limit is kept
    assert error.startswith("sitemap: larger than 52,428,800 bytes")
    assert found["/bomb.xml"] == (None, "sitemap: unsafe XML refused (EntitiesForbidden)", 0)
    assert found["/blocked/map.xml"] == (None, "sitemap: disallowed by robots.txt", None)
    assert a.requests_for("/blocked/map.xml") == 0
    assert len(found) == 5
    assert await store.one("SELECT count(*) FROM sitemaps WHERE error IS NOT NULL") == 4


async def test_sitemap_fetches_do_not_count_against_max_pages(site: Site, store: DB) -> None:
    a = await site.host()
    a.robots("Sitemap: /sitemap.xml\n")
    a.page("/")
    listed = [f"/p{i}" for i in range(5)]
    for path in listed:
        a.page(path)
    a.page("/sitemap.xml", body=urlset(*map(a.url, listed)), content_type="text/xml")

    summary = await run(store.db, [a.url("/")], max_pages=3, per_host=1)

    assert summary.total_pages == 3
    assert await store.one("SELECT count(*) FROM pages") == 3
    assert await store.rows("SELECT state, urls FROM sitemaps") == [("done", 5)]
    assert a.requests_for("/sitemap.xml") == 1


async def test_resume_fetches_an_unfinished_sitemap_again_and_a_done_one_never(
    site: Site, store: DB
) -> None:
    a = await site.host()
    a.robots("Sitemap: /one.xml\nSitemap: /two.xml\n")
    a.page("/", links=["/next"])
    a.page("/next")
    for path in ("/s1", "/s2"):
        a.page(path)
    a.page("/one.xml", body=urlset(a.url("/s1")), content_type="text/xml")
    a.page("/two.xml", body=urlset(a.url("/s2")), content_type="text/xml")

    await run(store.db, [a.url("/")], max_pages=1, per_host=1)
    assert await store.one("SELECT count(*) FROM sitemaps WHERE state = 'done'") == 2
    # As if the run had been killed while reading /two.xml: its row is still queued.
    await store.rows(
        "UPDATE sitemaps SET state = 'queued' WHERE url = ? RETURNING url", a.url("/two.xml")
    )

    await run_resume(store.db, max_pages=0)

    assert set(await pages(store)) == {a.url(p) for p in ("/", "/next", "/s1", "/s2")}
    assert a.requests_for("/one.xml") == 1
    assert a.requests_for("/two.xml") == 2
    assert a.requests_for("/robots.txt") == 1  # the stored copy is used again
    assert await store.rows("SELECT DISTINCT state FROM sitemaps") == [("done",)]


async def test_a_sitemap_left_queued_is_read_on_resume_when_its_host_has_nothing_else(
    site: Site, store: DB
) -> None:
    """Every URL of the host is done, only its sitemap is not (a worker killed while it
    read it): resume reads it. On PostgreSQL that host must still be leased by someone."""
    a = await site.host()
    a.robots("Sitemap: /one.xml\n")
    a.page("/")
    for path in ("/s1", "/s2"):
        a.page(path)
    a.page("/one.xml", body=urlset(a.url("/s1")), content_type="text/xml")
    await run(store.db, [a.url("/")])
    assert set(await pages(store)) == {a.url("/"), a.url("/s1")}
    # As if the run had been killed while reading /one.xml, which now lists /s2 as well.
    await store.execute("UPDATE sitemaps SET state = 'queued' WHERE url = ?", a.url("/one.xml"))
    a.page("/one.xml", body=urlset(a.url("/s1"), a.url("/s2")), content_type="text/xml")

    await run_resume(store.db)

    assert set(await pages(store)) == {a.url(p) for p in ("/", "/s1", "/s2")}
    assert a.requests_for("/one.xml") == 2
    assert await store.rows("SELECT DISTINCT state FROM sitemaps") == [("done",)]


# ---------------------------------------------------------------------- crawls, SQLite


async def test_sitemap_probe_tries_sitemap_xml_only_when_asked(site: Site, db: str) -> None:
    a = await site.host()
    a.robots("User-agent: *\nDisallow:\n")  # names no sitemap
    a.page("/")
    a.page("/probed")
    a.page("/sitemap.xml", body=urlset(a.url("/probed")), content_type="application/xml")

    await run(db, [a.url("/")])
    assert a.requests_for("/sitemap.xml") == 0
    assert set(await pages(DB("sqlite", db))) == {a.url("/")}

    b = await site.host()
    b.page("/")  # robots.txt 404: no rules, no sitemap named
    b.page("/probed")
    b.page("/sitemap.xml", body=urlset(b.url("/probed")), content_type="application/xml")
    await run(db + "2", [b.url("/")], sitemap_probe=True)
    assert set(await pages(DB("sqlite", db + "2"))) == {b.url("/"), b.url("/probed")}
    assert b.requests_for("/sitemap.xml") == 1


async def test_sitemap_probe_with_ignore_robots_says_it_does_nothing(
    site: Site, db: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Sitemaps are found through robots.txt: unread, none is found, and the user is told.
    a = await site.host()
    a.page("/")
    a.page("/sitemap.xml", body=urlset(a.url("/probed")), content_type="application/xml")
    await run(db, [a.url("/")], sitemap_probe=True, ignore_robots=True)
    assert a.requests_for("/sitemap.xml") == 0
    assert "--sitemap-probe does nothing with --ignore-robots" in caplog.text


async def test_no_sitemaps_turns_them_off(site: Site, db: str) -> None:
    a = await site.host()
    a.robots("Sitemap: /sitemap.xml\n")
    a.page("/")
    a.page("/sitemap.xml", body=urlset(a.url("/x")), content_type="application/xml")
    await run(db, [a.url("/")], sitemaps=False)
    assert a.requests_for("/sitemap.xml") == 0


async def test_a_sitemap_on_another_host_speaks_for_the_host_whose_robots_named_it(
    site: Site, db: str
) -> None:
    a = await site.host()
    maps = await site.host()
    a.robots(f"Sitemap: {maps.url('/for-a.xml')}\n")
    a.page("/")
    a.page("/cross")
    body = urlset(a.url("/cross"), maps.url("/own"), "mailto:x@example.com")
    maps.page("/for-a.xml", body=body, content_type="application/xml")
    maps.page("/own")
    maps.robots("Sitemap: /own-map.xml\n")  # a host out of scope: its sitemaps are not read
    maps.page("/own-map.xml", body=urlset(maps.url("/own")), content_type="application/xml")

    await run(db, [a.url("/")])

    assert set(await pages(DB("sqlite", db))) == {a.url("/"), a.url("/cross")}
    # The sitemap's own host may be listed (cross-submission), but scope still applies.
    got = await skipped(DB("sqlite", db))
    assert got == {"out of scope": 1, "sitemap invalid url": 1}
    assert maps.paths == ["/robots.txt", "/for-a.xml"]  # fetched politely: robots.txt first


async def test_a_sitemap_that_fails_with_503_is_tried_again_under_retries(
    site: Site, db: str
) -> None:
    a = await site.host()
    a.robots("Sitemap: /flaky.xml\n")
    a.page("/")
    a.page("/f")
    answers = [web.Response(status=503)]

    async def flaky(request: web.Request) -> web.StreamResponse:
        if answers:
            return answers.pop()
        return web.Response(text=urlset(a.url("/f")), content_type="application/xml")

    a.handle("/flaky.xml", flaky)
    await run(db, [a.url("/")], retries=1)
    assert a.requests_for("/flaky.xml") == 2
    assert set(await pages(DB("sqlite", db))) == {a.url("/"), a.url("/f")}
    assert rows(db, "SELECT status, error, urls FROM sitemaps") == [(200, None, 1)]

    answers.append(web.Response(status=503))
    await run(db + "2", [a.url("/")], retries=0)  # no retry: the row keeps the failure
    assert rows(db + "2", "SELECT status, error FROM sitemaps") == [(503, "sitemap: HTTP 503")]


async def test_sitemaps_show_in_stats(site: Site, db: str) -> None:
    from crawler.store import open_reader

    a = await site.host()
    a.robots("Sitemap: /good.xml\nSitemap: /bad.xml\n")
    a.page("/")
    a.page("/g")
    a.page("/good.xml", body=urlset(a.url("/g")), content_type="application/xml")
    a.page("/bad.xml", body="<html>", content_type="text/html")
    await run(db, [a.url("/")])
    reader = open_reader(db)
    try:
        stats = reader.stats()
    finally:
        reader.close()
    assert stats["sitemaps"] == {"fetched": 2, "failed": 1, "queued": 0, "urls": 1}


# ---------------------------------------------------------------------- the reader


def read(body: bytes, chunk: int = 7) -> SitemapReader:
    reader = SitemapReader()
    for i in range(0, len(body), chunk):
        reader.feed(body[i : i + chunk])
    reader.close()
    return reader


XML = urlset("http://a.example/x", extra="<priority>0.5</priority>").encode()


@pytest.mark.parametrize(
    ("body", "kind", "entries"),
    [
        pytest.param(XML, "urlset", [Entry("http://a.example/x", priority=0.5)], id="xml"),
        pytest.param(
            gzip.compress(XML), "urlset", [Entry("http://a.example/x", priority=0.5)], id="gzip"
        ),
        pytest.param(
            b"\xef\xbb\xbf  http://a/1\r\n\nhttp://a/2",
            "text",
            [Entry("http://a/1"), Entry("http://a/2")],
            id="text-bom-crlf",
        ),
        pytest.param(
            index("http://a/s.xml").encode(), "sitemapindex", [Entry("http://a/s.xml")], id="index"
        ),
        pytest.param(
            b"<urlset><url><loc> http://a/ </loc><priority>2</priority></url></urlset>",
            "urlset",
            [Entry("http://a/")],
            id="no-namespace-bad-priority",
        ),
        pytest.param(
            b"http://a/" + b"x" * 5000 + b"\nhttp://a/ok\n",
            "text",
            [Entry("http://a/ok")],
            id="over-long-line-dropped",
        ),
    ],
)
def test_reader(body: bytes, kind: str, entries: list[Entry]) -> None:
    for chunk in (1, 7, len(body)):
        reader = read(body, chunk)
        assert (reader.kind, reader.entries) == (kind, entries)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(b"<html><body>", "not a sitemap (root element <html>)", id="html"),
        pytest.param(b"<urlset><url>", "invalid XML", id="cut-short"),
        pytest.param(gzip.compress(XML)[:-8], "gzip stream cut short", id="gzip-cut"),
        pytest.param(b"", "empty", id="empty"),
        pytest.param(
            b'<!DOCTYPE u [<!ENTITY e SYSTEM "file:///etc/passwd">]><urlset>&e;</urlset>',
            "unsafe XML refused",
            id="external-entity",
        ),
        pytest.param(
            b"".join(b"http://a/%d\n" % i for i in range(MAX_URLS + 1)),
            "more than 50,000 URLs",
            id="too-many-urls",
        ),
    ],
)
def test_reader_refuses(body: bytes, message: str) -> None:
    with pytest.raises(SitemapError, match=re.escape(message)):
        read(body, 65_536)


def test_a_gzip_bomb_stops_at_the_uncompressed_limit() -> None:
    bomb = gzip.compress(b"<urlset>" + b" " * (MAX_BYTES + 10))
    reader = SitemapReader()
    assert len(bomb) < 100_000
    assert reader.take(bomb) is False
    assert reader.error is not None and "larger than" in reader.error
    assert reader.size <= MAX_BYTES + 1


async def test_processes_read_each_sitemap_once_and_crawl_what_they_list(
    site: Site, tmp_path: Path
) -> None:
    hosts = [await site.host() for _ in range(4)]
    for k, host in enumerate(hosts):
        keeper = hosts[(k + 1) % 4]  # each host's sitemap lives on the next host
        host.robots(f"Sitemap: {keeper.url(f'/for-{k}.xml')}\nSitemap: /own.xml\n")
        host.page("/")
        host.page("/orphan-a")
        host.page("/orphan-b")
        body = urlset(host.url("/orphan-a"))
        keeper.page(f"/for-{k}.xml", body=body, content_type="application/xml")
        host.page("/own.xml", body=urlset(host.url("/orphan-b")), content_type="text/xml")
    db = str(tmp_path / "crawl.db")

    summary = await run(db, [h.url("/") for h in hosts], processes=2)

    assert summary.total_pages == 4 * 3
    assert set(await pages(DB("sqlite", db))) == {
        h.url(p) for h in hosts for p in ("/", "/orphan-a", "/orphan-b")
    }
    for k, host in enumerate(hosts):
        assert host.requests_for("/own.xml") == 1
        assert host.requests_for(f"/for-{(k - 1) % 4}.xml") == 1
    assert rows(db, "SELECT count(*), count(error) FROM sitemaps WHERE state = 'done'") == [(8, 0)]
