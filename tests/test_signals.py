"""More of what a page says (issue 13): subresources recorded by kind (fetched only with
--assets), rel=canonical, meta robots and X-Robots-Tag. Crawls of real loopback servers,
into both stores where the store is involved."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from multidict import CIMultiDict
from support import Host, Site, invoke, rows, run
from test_store_backends import Backend

from crawler.directives import Directives, agent_token, x_robots_tag
from crawler.parser import extract_links, srcset_urls
from crawler.store import open_reader
from crawler.why import explain

SCHEMA_DOC = Path(__file__).resolve().parents[1] / "docs" / "schema.md"
ROOT_0001 = SCHEMA_DOC.parents[1] / "migrations" / "postgres" / "0001_initial.sql"

# A page that names one URL of every kind, plus links that are not subresources.
RICH = """<!DOCTYPE html><html><head><title>rich</title>
<link rel="stylesheet" href="/s.css">
<link rel="shortcut icon" href="/favicon.ico">
<link rel="preload" href="/font.woff2" as="font">
<link rel="canonical" href="/canon?#top">
<link rel="alternate" hreflang="de" href="/de/">
<script src="/app.js"></script>
<script>var inline = 1;</script>
</head><body>
<a href="/next">next</a>
<img src="/logo.png" srcset="/logo.png 1x, /logo-2x.png 2x">
<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=">
<iframe src="/frame.html"></iframe>
</body></html>"""

KINDS = {
    ("/next", "a"),
    ("/s.css", "style"),
    ("/favicon.ico", "icon"),
    ("/font.woff2", "preload"),
    ("/app.js", "script"),
    ("/logo.png", "img"),
    ("/logo-2x.png", "img"),
    ("/frame.html", "iframe"),
}
ASSETS = {path for path, kind in KINDS if kind != "a"}


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        return Backend("sqlite", str(tmp_path / "crawl.db"))
    cluster = request.getfixturevalue("pg_cluster")
    return Backend("postgres", cluster.dsn(cluster.new_database()))


def rich_site(host: Host) -> None:
    host.page("/", body=RICH)
    host.page("/next", links=["/"])
    host.page("/canon", links=[])
    host.page("/s.css", body="body {}", content_type="text/css")
    host.page("/favicon.ico", body=b"\x00\x00\x01\x00", content_type="image/x-icon")
    host.page("/font.woff2", body=b"wOF2", content_type="font/woff2")
    host.page("/app.js", body="let x = 1;", content_type="text/javascript")
    host.page("/logo.png", body=b"\x89PNG\r\n", content_type="image/png")
    host.page("/logo-2x.png", body=b"\x89PNG\r\n2x", content_type="image/png")
    host.page("/frame.html", links=["/framed"])
    host.page("/framed", links=[])


def x_robots(host: Host, path: str, tags: list[str], links: list[str]) -> None:
    """A page answering with these X-Robots-Tag headers (one header each)."""
    anchors = "".join(f'<a href="{h}">{h}</a>' for h in links)
    body = f"<html><head><title>{path}</title></head><body>{anchors}</body></html>".encode()

    async def handler(request: web.Request) -> web.StreamResponse:
        headers = CIMultiDict([("Content-Type", "text/html")])
        for tag in tags:
            headers.add("X-Robots-Tag", tag)
        return web.Response(body=body, headers=headers)

    host.handle(path, handler)


def docs_query(heading: str) -> str:
    """The ```sql block under a heading of docs/schema.md (run as written)."""
    text = SCHEMA_DOC.read_text()
    found = re.search(rf"^###[^\n]*{re.escape(heading)}.*?\n```sql\n(.*?)```", text, re.M | re.S)
    assert found, f"no sql block under {heading!r}"
    return found[1]


# ---------------------------------------------------------------------- pure parts


def test_parser_finds_every_kind_in_one_page() -> None:
    page = extract_links(RICH.encode(), "http://h.test/")
    assert page.links == ("http://h.test/next",)
    assert {(u.removeprefix("http://h.test"), k) for u, k in page.resources} == KINDS - {
        ("/next", "a")
    }
    assert page.canonical == "http://h.test/canon"  # empty query and fragment dropped
    assert (page.noindex, page.robots_nofollow) == (False, False)


def test_subresources_are_not_links_and_nofollow_leaves_them() -> None:
    body = b'<meta name=robots content="noindex, nofollow"><a href=/a>a</a><img src=/i.png>'
    page = extract_links(body, "http://h.test/")
    assert (page.links, page.nofollow) == ((), ("http://h.test/a",))
    assert page.resources == (("http://h.test/i.png", "img"),)
    assert (page.noindex, page.robots_nofollow) == (True, True)
    page = extract_links(b"<a href=/a>a</a>", "http://h.test/", follow=False)
    assert (page.links, page.nofollow, page.robots_nofollow) == ((), ("http://h.test/a",), True)


@pytest.mark.parametrize(
    ("name", "noindex"),
    [
        pytest.param("robots", True, id="robots"),
        pytest.param("TestBot", True, id="our-agent"),
        pytest.param("googlebot", False, id="other-agent"),
    ],
)
def test_meta_robots_for_us(name: str, noindex: bool) -> None:
    body = f'<meta name="{name}" content="noindex"><a href=/a>a</a>'.encode()
    page = extract_links(body, "http://h.test/", agent="testbot")
    assert (page.noindex, page.links) == (noindex, ("http://h.test/a",))


def test_subresources_share_the_cap() -> None:
    body = "".join(f'<img src="/{i}.png">' for i in range(5)).encode()
    page = extract_links(body + b"<a href=/x>x</a>", "http://h.test/", max_links=3)
    assert (len(page.resources), page.truncated, page.links) == (3, True, ("http://h.test/x",))


@pytest.mark.parametrize(
    ("srcset", "urls"),
    [
        pytest.param("a.png", ["a.png"], id="one"),
        pytest.param(" a.png 1x , b.png 2x", ["a.png", "b.png"], id="descriptors"),
        pytest.param("a.png 100w,b.png 200w", ["a.png", "b.png"], id="no-space-after-comma"),
        pytest.param("a.png,, b.png,", ["a.png", "b.png"], id="bare-commas"),
        pytest.param("a,b.png 1x", ["a,b.png"], id="comma-inside-url"),
        pytest.param("", [], id="empty"),
    ],
)
def test_srcset_urls(srcset: str, urls: list[str]) -> None:
    assert srcset_urls(srcset) == urls


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param(["noindex"], Directives(True, False), id="generic"),
        pytest.param(["NoIndex, NoFollow"], Directives(True, True), id="both"),
        pytest.param(["none"], Directives(True, True), id="none"),
        pytest.param(["googlebot: noindex, nofollow"], Directives(), id="other-agent"),
        pytest.param(["crawler: nofollow"], Directives(False, True), id="our-agent"),
        pytest.param(["CRAWLER : noindex"], Directives(True, False), id="our-agent-case"),
        pytest.param(["googlebot: noindex", "nofollow"], Directives(False, True), id="two-headers"),
        pytest.param(["otherbot: noindex, crawler: nofollow"], Directives(False, True), id="mid"),
        pytest.param(["crawler2: noindex"], Directives(), id="longer-name-is-another-agent"),
        pytest.param(["unavailable_after: 25 Jun 2010 15:00:00 PST"], Directives(), id="valued"),
        pytest.param(["max-snippet: 20, noindex"], Directives(True, False), id="valued-then"),
        pytest.param(["all"], Directives(), id="all"),
    ],
)
def test_x_robots_tag(values: list[str], expected: Directives) -> None:
    assert x_robots_tag(values, "crawler/0.1 (+https://example.com/)") == expected


def test_agent_token() -> None:
    assert agent_token("Mozilla/5.0 (compatible)") == "mozilla"
    assert agent_token("TestBot") == "testbot"


# ---------------------------------------------------------------------- crawls


async def test_kinds_recorded_and_subresources_not_fetched(site: Site, backend: Backend) -> None:
    host = await site.host()
    rich_site(host)
    await run(backend.db, [host.url("/")])
    got = await backend.rows(
        "SELECT dst_url, kind, nofollow FROM links WHERE src_url = ?", host.url("/")
    )
    assert {(dst.removeprefix(host.origin), kind) for dst, kind, _ in got} == KINDS
    assert all(nofollow == 0 for *_, nofollow in got)
    assert not ASSETS & set(host.paths)  # the server never saw a subresource request
    fetched = {u.removeprefix(host.origin) for (u,) in await backend.rows("SELECT url FROM pages")}
    assert fetched == {"/", "/next"}
    assert await backend.rows("SELECT count FROM skipped WHERE reason = 'asset'") == [(7,)]
    assert await backend.rows(
        "SELECT canonical_url, noindex, links_found FROM pages WHERE url = ?", host.url("/")
    ) == [(host.url("/canon"), 0, 1)]


async def test_assets_are_fetched_under_scope_robots_and_politeness(
    site: Site, backend: Backend
) -> None:
    host, other = await site.host(), await site.host()
    rich_site(host)
    host.robots("User-agent: *\nDisallow: /font\n")
    host.page("/", body=RICH.replace("</body>", f'<img src="{other.url("/far.png")}"></body>'))
    other.page("/far.png", body=b"GIF89a", content_type="image/gif")
    await run(backend.db, [host.url("/")], assets=True, per_host=1, delay=0.01)
    fetched = {u.removeprefix(host.origin) for (u,) in await backend.rows("SELECT url FROM pages")}
    # /font.woff2: robots.txt; the other host's image: out of scope (the seed's host only).
    assert fetched == {"/", "/next", "/framed"} | ASSETS - {"/font.woff2"}
    assert "/font.woff2" not in host.paths and other.paths == []
    assert host.max_open == 1  # --per-host 1 holds for assets too
    assert sorted(await backend.rows("SELECT reason, count FROM skipped")) == [
        ("out of scope", 1),
        ("robots", 1),
    ]
    assert await backend.rows("SELECT url, state FROM frontier") == [
        (host.url("/font.woff2"), "disallowed")
    ]
    # An asset is stored as a page: its body kept, no links parsed unless it is HTML.
    png = await backend.rows(
        "SELECT status, content_type, body, links_found FROM pages WHERE url = ?",
        host.url("/logo.png"),
    )
    assert [(s, t, bytes(b), n) for s, t, b, n in png] == [(200, "image/png", b"\x89PNG\r\n", None)]
    framed = await backend.rows("SELECT depth FROM pages WHERE url = ?", host.url("/framed"))
    assert framed == [(2,)]  # the iframe (depth 1) was parsed: its link followed


async def test_assets_count_against_max_pages(site: Site, db: str) -> None:
    host = await site.host()
    rich_site(host)
    summary = await run(db, [host.url("/")], assets=True, max_pages=4, concurrency=1)
    assert summary.total_pages == 4
    types = [t for (t,) in rows(db, "SELECT content_type FROM pages")]
    assert len(types) == 4 and any(not t.startswith("text/html") for t in types)


async def test_links_rows_keep_the_pages_order_across_kinds(site: Site, db: str) -> None:
    # A page's links travel to SQLite as runs of one kind, one JSON array each: the rows
    # come out one per link, links first, then nofollow ones, then subresources in
    # document order (kinds interleaved), as `crawler outlinks` lists them.
    host = await site.host()
    body = (
        '<a href="/a1">1</a><img src="/i1.png"><a href="/n" rel="nofollow">n</a>'
        '<script src="/s.js"></script><a href="/a2">2</a><img src="/i2.png">'
        '<link rel="stylesheet" href="/c.css"><img src="/i1.png"><a href="/a\'&quot;">3</a>'
    )
    host.page("/", body=body)
    await run(db, [host.url("/")], max_pages=1)
    got = rows(db, "SELECT dst_url, nofollow, kind FROM links ORDER BY rowid")
    assert [(dst.removeprefix(host.origin), nf, kind) for dst, nf, kind in got] == [
        ("/a1", 0, "a"),
        ("/a2", 0, "a"),
        ("/a'%22", 0, "a"),
        ("/n", 1, "a"),
        ("/i1.png", 0, "img"),
        ("/s.js", 0, "script"),
        ("/i2.png", 0, "img"),
        ("/c.css", 0, "style"),
    ]


async def test_canonical_and_meta_noindex_recorded(site: Site, backend: Backend) -> None:
    host = await site.host()
    host.page("/", links=["/quiet", "/plain", "/pdf"])
    host.page(
        "/quiet",
        body='<html><head><meta name="robots" content="noindex"><link rel=canonical '
        'href="HTTP://OTHER.test:80/a/../b#x"></head><body><a href="/plain">p</a></body></html>',
    )
    host.page("/plain", links=[])
    host.page("/pdf", body=b"%PDF-1.4", content_type="application/pdf")
    await run(backend.db, [host.url("/")])
    got = dict(
        (url.removeprefix(host.origin), (canonical, noindex))
        for url, canonical, noindex in await backend.rows(
            "SELECT url, canonical_url, noindex FROM pages"
        )
    )
    assert got == {
        "/": (None, 0),
        "/quiet": ("http://other.test/b", 1),  # noindex is recorded; its links still followed
        "/plain": (None, 0),
        "/pdf": (None, 0),  # not parsed, no X-Robots-Tag: a response that says nothing
    }


async def test_x_robots_tag_obeyed_for_us_only(site: Site, backend: Backend) -> None:
    host = await site.host()
    host.page("/", links=["/nofollow", "/noindex", "/theirs", "/ours", "/image"])
    x_robots(host, "/nofollow", ["nofollow"], ["/hidden-1", "/hidden-2"])
    x_robots(host, "/noindex", ["noindex"], ["/after-noindex"])
    x_robots(host, "/theirs", ["googlebot: noindex, nofollow", "otherbot: none"], ["/seen"])
    x_robots(host, "/ours", ["googlebot: all", "testbot: noindex, nofollow"], ["/hidden-3"])
    for path in ("/after-noindex", "/seen"):
        host.page(path, links=[])

    async def image(request: web.Request) -> web.StreamResponse:
        return web.Response(body=b"GIF89a", headers={"X-Robots-Tag": "noindex"})

    host.handle("/image", image)
    await run(backend.db, [host.url("/")], user_agent="TestBot/1.0")
    assert not {"/hidden-1", "/hidden-2", "/hidden-3"} & set(host.paths)
    assert {"/after-noindex", "/seen"} <= set(host.paths)
    noindex = dict(await backend.rows("SELECT url, noindex FROM pages"))
    assert {u.removeprefix(host.origin) for u, n in noindex.items() if n} == {
        "/noindex",
        "/ours",
        "/image",  # any response, HTML or not
    }
    hidden = await backend.rows("SELECT dst_url, nofollow FROM links WHERE dst_url LIKE '%hidden%'")
    assert sorted(u.removeprefix(host.origin) for u, nf in hidden if nf == 1) == [
        "/hidden-1",
        "/hidden-2",
        "/hidden-3",
    ]
    assert await backend.rows("SELECT count FROM skipped WHERE reason = 'nofollow'") == [(3,)]


async def test_broken_images_query_from_the_docs(site: Site, backend: Backend) -> None:
    host = await site.host()
    body = '<img src="/ok.png"><img src="/gone.png"><img src="/moved.png"><a href="/gone.png">x</a>'
    host.page("/", body=f"<html><body>{body}</body></html>")
    host.page("/ok.png", body=b"PNG", content_type="image/png")
    host.redirect("/moved.png", "/gone-too.png")  # the chain ends at a 404
    await run(backend.db, [host.url("/")], assets=True)
    got = await backend.rows(docs_query("Broken images"))
    assert [tuple(str(v) for v in row) for row in got] == [
        (host.url("/gone.png"), "404", host.url("/")),
        (host.url("/moved.png"), "404", host.url("/")),
    ]


async def test_why_says_a_url_is_only_an_image(site: Site, backend: Backend) -> None:
    host = await site.host()
    host.page("/", body='<html><body><img src="/pic.png"><a href="/p">p</a></body></html>')
    host.page("/p", body='<html><body><img src="/pic.png"></body></html>')
    await run(backend.db, [host.url("/")])
    reader = open_reader(backend.db)
    try:
        data = explain(reader, host.url("/pic.png"))
        page = explain(reader, host.url("/"))
    finally:
        reader.close()
    assert data["fate"] == "not followed"
    assert data["reason"] == (
        "asset: linked only as a subresource (img), fetched only with --assets"
    )
    assert {(link["url"], link["kind"]) for link in data["linked_from"]} == {
        (host.url("/"), "img"),
        (host.url("/p"), "img"),
    }
    assert page["page"]["noindex"] == 0 and page["page"]["canonical_url"] is None
    text = invoke("why", host.url("/pic.png"), "--db", backend.db).stdout
    assert f"{host.url('/p')} (img)" in text and "only as a subresource (img)" in text


async def test_export_carries_signals_and_link_kinds(
    site: Site, backend: Backend, tmp_path: Path
) -> None:
    host = await site.host()
    host.page("/", body='<link rel=canonical href="/"><img src="/i.png"><a href="/i.png">i</a>')
    await run(backend.db, [host.url("/")])
    out = tmp_path / "pages.jsonl"
    assert invoke("export", "--db", backend.db, "--format", "jsonl", "-o", str(out)).exit_code == 0
    record: dict[str, Any] = json.loads(out.read_text().splitlines()[0])
    assert (record["url"], record["canonical_url"], record["noindex"]) == (
        host.url("/"),
        host.url("/"),
        0,
    )
    images = tmp_path / "links.csv"
    where = "kind = 'img' OR nofollow = 1"
    args = ("--format", "csv", "--links", "--where", where, "-o", str(images))
    assert invoke("export", "--db", backend.db, *args).exit_code == 0
    assert images.read_text().splitlines() == [
        "src_url,dst_url,nofollow,kind",
        f"{host.url('/')},{host.url('/i.png')},0,img",
    ]
    out = tmp_path / "links.jsonl"
    args = ("--format", "jsonl", "--links", "-o", str(out))
    assert invoke("export", "--db", backend.db, *args).exit_code == 0
    kinds = sorted(json.loads(line)["kind"] for line in out.read_text().splitlines())
    assert kinds == ["a", "img"]
    bad = invoke("export", "--db", backend.db, "--format", "warc", "--links", "-o", str(out))
    assert bad.exit_code == 2 and "--links writes jsonl or csv" in bad.stderr


async def test_x_robots_tag_noindex_on_a_page(site: Site, backend: Backend) -> None:
    host = await site.host()
    x_robots(host, "/", ["noindex"], ["/a"])
    host.page("/a", links=[])
    await run(backend.db, [host.url("/")])
    assert sorted(await backend.rows("SELECT url, noindex FROM pages")) == [
        (host.url("/"), 1),
        (host.url("/a"), 0),
    ]


def test_sqlite_reader_reads_a_file_from_before_0005_without_upgrading_it(tmp_path: Path) -> None:
    """Readers open files read-only: one written before migration 0005 (a crawl no newer
    crawler has resumed) reads with kind 'a' and NULL signals, as the migration would."""
    from crawler.store.sqlite_schema import migrations

    db = str(tmp_path / "old.db")
    shutil.copyfile(Path(__file__).parent / "data" / "crawl_0001.db", db)
    (version, name, sql) = next(m for m in migrations() if m[0] == 2)
    with sqlite3.connect(db) as conn:
        conn.executescript(
            f"BEGIN;\n{sql}\n"
            f"INSERT INTO schema_migrations VALUES ({version}, '{name}', 0);\nCOMMIT;"
        )
    conn.close()
    origin = "http://127.0.0.201:48201"
    reader = open_reader(db)
    try:
        data = explain(reader, origin + "/missing")
        links = list(reader.links(where="dst_url LIKE '%/missing'"))
        pages = list(reader.pages(where="url LIKE '%/missing'"))
    finally:
        reader.close()
    assert data["fate"] == "stored" and data["page"]["noindex"] is None
    assert {link["kind"] for link in data["linked_from"]} == {"a"}
    assert links and {link["kind"] for link in links} == {"a"}
    assert [(p["canonical_url"], p["noindex"]) for p in pages] == [(None, None)]
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT max(version) FROM schema_migrations").fetchone() == (2,)
    conn.close()


async def test_postgres_reader_reads_a_database_from_before_0004(site: Site, pg_dsn: str) -> None:
    """PostgreSQL's own test: a database as the 0001 schema left it (migration 0004 undone
    after a crawl), read without being upgraded."""
    host = await site.host()
    host.page("/", body='<img src="/i.png"><a href="/a">a</a><link rel=canonical href="/a">')
    host.page("/a", links=[])
    await run(pg_dsn, [host.url("/")])
    before = Backend("postgres", pg_dsn)
    view = re.search(r"CREATE VIEW pages AS.*?;", (ROOT_0001.read_text()), re.S)
    assert view is not None
    await before.execute(
        "DROP VIEW pages; ALTER TABLE page_rows DROP COLUMN canonical_url, DROP COLUMN noindex; "
        "DELETE FROM links WHERE kind <> 'a'; ALTER TABLE links DROP COLUMN kind; "
        f"{view[0]} DELETE FROM schema_migrations WHERE version = 4;"
    )
    reader = open_reader(pg_dsn)
    try:
        data = explain(reader, host.url("/a"))
        links = list(reader.links())
        pages = list(reader.pages())
    finally:
        reader.close()
    assert data["page"]["canonical_url"] is None and data["linked_from"][0]["kind"] == "a"
    assert [(link["dst_url"], link["kind"]) for link in links] == [(host.url("/a"), "a")]
    assert {(p["canonical_url"], p["noindex"]) for p in pages} == {(None, None)}
