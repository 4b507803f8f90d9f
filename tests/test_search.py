"""Full-text search: a real crawl with `--text` on both backends, then `crawler search` as
users run it, the index kept incrementally (resume, updates), `--reindex` for pages stored
without text, and docs/schema.md's search queries run as written."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from pg import Cluster
from support import Host, Site, assert_one_line_error, invoke, rows, run, run_resume

from crawler.store import lock
from crawler.store.sqlite import SQLiteStore
from crawler.text import TEXT_LIMIT, page_text

SCHEMA_MD = Path(__file__).resolve().parent.parent / "docs" / "schema.md"

FILLER = "a quiet harbour with boats, gulls, ropes and nets in the morning light"
PAGES = {
    "/birds": (
        "Pelican facts",
        "<p>The brown pelican dives for fish.</p><p>A pelican eats. Every pelican swims.</p>",
    ),
    "/other": ("Harbour", f"<p>One pelican flew by once.</p><p>{FILLER}. {FILLER}.</p>"),
    "/scripted": (
        "Scripted",
        "<p>Visible words only</p><script>var zebra = 'hidden crossing';</script>"
        "<style>.zebra { color: red }</style><noscript>nojsword</noscript>"
        "<template><p>templateword</p></template><!-- commentword -->",
    ),
    "/boats": ("Boats", f"<p>{FILLER}</p>"),
    "/nets": ("Nets", f"<p>Nets and ropes. {FILLER}</p>"),
}


def html(title: str, body: str, links: Sequence[str] = ()) -> str:
    anchors = "".join(f'<a href="{href}">{href}</a> ' for href in links)
    return f"<html><head><title>{title}</title></head><body>{body}{anchors}</body></html>"


def build(host: Host) -> None:
    host.page("/", body=html("Home", "<p>Welcome</p>", [*PAGES, "/doc.pdf"]))
    for path, (title, body) in PAGES.items():
        host.page(path, body=html(title, body))
    host.page("/doc.pdf", body=b"%PDF-1.4 pelican", content_type="application/pdf")


@dataclass
class DB:
    """A crawl database of either backend, queried through a connection of its own."""

    kind: str
    url: str
    origin: str = ""

    async def rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        if self.kind == "sqlite":
            with contextlib.closing(sqlite3.connect(self.url)) as conn, conn:
                return conn.execute(sql, args).fetchall()
        import asyncpg

        conn = await asyncpg.connect(self.url)
        try:
            return [tuple(r) for r in await conn.fetch(sql, *args)]
        finally:
            await conn.close()

    async def execute(self, sql: str) -> None:
        if self.kind == "sqlite":
            with contextlib.closing(sqlite3.connect(self.url)) as conn, conn:
                conn.executescript(sql)
            return
        import asyncpg

        conn = await asyncpg.connect(self.url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def search(self, *args: str) -> Result:
        # In a thread: the command runs event loops of its own.
        return await asyncio.to_thread(invoke, "search", *args, "--db", self.url)

    def path(self, result: Result) -> list[str]:
        """The paths of the hits of a text-mode result, best first."""
        lines = result.stdout.splitlines()
        return [line.split("\t")[1].removeprefix(self.origin) for line in lines]


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> DB:
    if request.param == "sqlite":
        return DB("sqlite", str(tmp_path / "crawl.db"))
    cluster: Cluster = request.getfixturevalue("pg_cluster")
    return DB("postgres", cluster.dsn(cluster.new_database()))


@pytest.fixture
async def crawled(db: DB, site: Site) -> DB:
    host = await site.host()
    build(host)
    await run(db.url, [host.url("/")], text=True)
    db.origin = host.origin
    return db


# ---------------------------------------------------------------------- crawler search


async def test_a_phrase_finds_its_page_only(crawled: DB) -> None:
    result = await crawled.search('"brown pelican"')
    assert result.exit_code == 0, result.stderr
    assert crawled.path(result) == ["/birds"]
    score, _, title, snippet = result.stdout.splitlines()[0].split("\t")
    assert float(score) > 0 and title == "Pelican facts"
    assert "[brown" in snippet and "pelican]" in snippet and "dives for fish" in snippet


@pytest.mark.parametrize(
    "word", ["zebra", "crossing", "nojsword", "templateword", "commentword", "color"]
)
async def test_script_style_and_hidden_text_is_not_indexed(crawled: DB, word: str) -> None:
    result = await crawled.search(word)
    assert result.exit_code == 1 and result.stdout == ""
    assert f"no page matches {word!r}" in result.stderr
    visible = await crawled.search("visible", "words")
    assert crawled.path(visible) == ["/scripted"]


async def test_the_better_page_ranks_first(crawled: DB) -> None:
    result = await crawled.search("pelican")
    # /birds: in the title and three times in the text; /other: once. Not the PDF.
    assert crawled.path(result) == ["/birds", "/other"]
    scores = [float(line.split("\t")[0]) for line in result.stdout.splitlines()]
    assert scores[0] > scores[1]


async def test_a_prefix_matches_longer_words(crawled: DB) -> None:
    assert set(crawled.path(await crawled.search("pelic*"))) == {"/birds", "/other"}
    assert (await crawled.search("pelic")).exit_code == 1  # a word is not its own prefix


async def test_json_is_one_object_per_line(crawled: DB) -> None:
    result = await crawled.search("pelican", "--json")
    assert result.exit_code == 0
    hits = [json.loads(line) for line in result.stdout.splitlines()]
    assert [h["rank"] for h in hits] == [1, 2]
    assert hits[0]["url"] == crawled.origin + "/birds" and hits[0]["title"] == "Pelican facts"
    assert "[pelican]" in hits[0]["snippet"].lower() and hits[0]["score"] > hits[1]["score"]
    assert set(hits[0]) == {"rank", "score", "url", "title", "snippet"}


async def test_limit_keeps_the_best(crawled: DB) -> None:
    result = await crawled.search("pelican", "--limit", "1")
    assert crawled.path(result) == ["/birds"]
    bad = await crawled.search("pelican", "--limit", "0")
    assert_one_line_error(bad, "--limit")


async def test_a_malformed_query_is_one_line_exit_2(crawled: DB) -> None:
    assert_one_line_error(await crawled.search("!!!"), "bad search query")
    assert_one_line_error(await asyncio.to_thread(invoke, "search", "--db", crawled.url), "terms")


async def test_each_backend_speaks_its_own_query_syntax(crawled: DB) -> None:
    if crawled.kind == "sqlite":  # FTS5: a stray quote, a dangling NOT, a bare hyphen
        for query in ('"unterminated', "pelican NOT", "AND", "e-mail"):
            assert_one_line_error(await crawled.search(query), "bad search query")
        assert crawled.path(await crawled.search("pelican NOT brown")) == ["/other"]
        assert crawled.path(await crawled.search("title:pelican")) == ["/birds"]
    else:  # websearch_to_tsquery: lenient, -word excludes
        assert crawled.path(await crawled.search("pelican -brown")) == ["/other"]
        assert crawled.path(await crawled.search('"pelican flew" OR swims')) == [
            "/birds",
            "/other",
        ]


async def test_an_updated_text_updates_the_index(crawled: DB) -> None:
    # What a recrawl (or anyone) writing page_text does: the index follows the row.
    await crawled.execute(
        "UPDATE page_text SET text = 'now about flamingos' "
        "WHERE page_id = (SELECT id FROM page_rows WHERE url LIKE '%/other')"
    )
    assert crawled.path(await crawled.search("flamingos")) == ["/other"]
    assert crawled.path(await crawled.search("pelican")) == ["/birds"]
    await crawled.execute("DELETE FROM page_rows WHERE url LIKE '%/birds'")
    assert (await crawled.search("pelican")).exit_code == 1


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)  # REPLACE and its triggers
async def test_the_stores_replace_keeps_the_sqlite_index_right(crawled: DB) -> None:
    # A writer on the crawler's own connection (a recrawl, say) replacing a row.
    store = await SQLiteStore.open(crawled.url, create=False)
    try:
        await store.db.execute(
            "INSERT OR REPLACE INTO page_text (page_id, title, text) "
            "SELECT id, 'Harbour', 'now about herons' FROM page_rows WHERE url LIKE '%/other'"
        )
        await store.db.commit()
    finally:
        await store.close()
    assert crawled.path(await crawled.search("herons")) == ["/other"]
    assert crawled.path(await crawled.search("pelican")) == ["/birds"]  # the old text is gone
    with contextlib.closing(sqlite3.connect(crawled.url)) as conn:
        conn.execute("INSERT INTO page_text_fts (page_text_fts) VALUES ('integrity-check')")


# ---------------------------------------------------------------------- what is stored


async def test_no_text_stores_no_text_and_reindex_adds_it(db: DB, site: Site) -> None:
    host = await site.host()
    build(host)
    await run(db.url, [host.url("/")], compress=True)  # text is off by default
    db.origin = host.origin
    assert await db.rows("SELECT count(*) FROM page_text") == [(0,)]
    empty = await db.search("pelican")
    assert empty.exit_code == 1 and empty.stdout == ""
    assert "no page text" in empty.stderr and "--reindex" in empty.stderr

    # Bodies stored zlib-compressed are read back for the text.
    result = await db.search("--reindex", "pelican")
    assert result.exit_code == 0, result.stderr
    assert "indexed the text of 6 pages" in result.stderr  # 6 HTML pages; not the PDF
    assert db.path(result) == ["/birds", "/other"]
    again = await db.search("--reindex")
    assert again.exit_code == 0 and "indexed the text of 0 pages" in again.stderr


async def test_a_crawl_from_before_search_is_upgraded_then_reindexed(db: DB, site: Site) -> None:
    host = await site.host()
    build(host)
    await run(db.url, [host.url("/")], text=True)
    db.origin = host.origin
    if db.kind == "sqlite":  # as a file written before migration 0007
        await db.execute(
            "DROP TABLE page_text_fts; DROP TABLE page_text; "
            "DELETE FROM schema_migrations WHERE version = 7;"
        )
    else:
        await db.execute("DROP TABLE page_text; DELETE FROM schema_migrations WHERE version = 6;")
    assert_one_line_error(await db.search("pelican"), "no search index", "--reindex")
    result = await db.search("--reindex", "pelican")
    assert result.exit_code == 0, result.stderr
    assert "indexed the text of 6 pages" in result.stderr
    assert db.path(result) == ["/birds", "/other"]


async def test_reindex_waits_for_no_running_crawl_on_sqlite(tmp_path: Path, site: Site) -> None:
    path = str(tmp_path / "crawl.db")
    host = await site.host()
    build(host)
    await run(path, [host.url("/")])
    with lock.exclusive(path):  # what a running crawl or resume holds
        result = await asyncio.to_thread(invoke, "search", "--reindex", "--db", path)
    assert_one_line_error(result, "in use")
    assert rows(path, "SELECT count(*) FROM page_text") == [(0,)]


async def test_text_rows_and_their_cap(db: DB, site: Site) -> None:
    host = await site.host()
    build(host)
    long = " ".join(["word"] * (TEXT_LIMIT // 5 + 10))
    host.page("/long", body=html("Long", f"<p>{long}</p>"))
    await run(db.url, [host.url("/"), host.url("/long")], text=True)
    rows = {
        url.removeprefix(host.origin): (title, text, truncated)
        for url, title, text, truncated in await db.rows(
            "SELECT p.url, t.title, t.text, t.truncated FROM page_text AS t "
            "JOIN page_rows AS p ON p.id = t.page_id"
        )
    }
    assert set(rows) == {"/", "/long", *PAGES}  # HTML pages only
    assert rows["/scripted"] == ("Scripted", "Visible words only", 0)
    assert rows["/"][1] == "Welcome /birds /other /scripted /boats /nets /doc.pdf"
    assert len(rows["/long"][1]) == TEXT_LIMIT and rows["/long"][2] == 1


async def test_hostile_bytes_cost_no_page_its_row(db: DB, site: Site) -> None:
    host = await site.host()
    body = (
        b"<html><head><title>Odd\x00 \xff bytes</title></head><body><p>nul\x00here "
        b"surrogate\xed\xa0\x80there \xc3 lone <b>\xf0\x9f\x90</b> tail</p></body></html>"
    )
    host.page("/", body=body)
    await run(db.url, [host.url("/")], text=True)
    assert await db.rows("SELECT error FROM page_rows") == [(None,)]
    ((text,),) = await db.rows("SELECT text FROM page_text")
    assert "\x00" not in text and text.startswith("nul") and text.endswith("tail")
    db.origin = host.origin
    assert db.path(await db.search("tail")) == ["/"]


async def test_resume_adds_to_the_index_without_rebuilding_it(db: DB, site: Site) -> None:
    host = await site.host()
    build(host)
    first = await run(db.url, [host.url("/")], text=True, max_pages=3, concurrency=1)
    assert first.pages == 3
    before = await db.rows("SELECT page_id FROM page_text ORDER BY page_id")
    assert before  # the home page at least
    # Count what the resume writes: a trigger of our own on the text table.
    if db.kind == "sqlite":
        await db.execute(
            "CREATE TABLE audit (n INTEGER); INSERT INTO audit VALUES (0);"
            "CREATE TRIGGER count_text AFTER INSERT ON page_text "
            "BEGIN UPDATE audit SET n = n + 1; END;"
            # Taken out of the index by hand: a rebuild would put the home page back.
            "INSERT INTO page_text_fts (page_text_fts, rowid, title, text) "
            "SELECT 'delete', page_id, title, text FROM page_text "
            "WHERE page_id = (SELECT id FROM page_rows WHERE url LIKE '%/');"
        )
    else:
        await db.execute(
            "CREATE TABLE audit (n integer); INSERT INTO audit VALUES (0);"
            "CREATE FUNCTION count_text() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN UPDATE audit SET n = n + 1; RETURN NULL; END $$;"
            "CREATE TRIGGER count_text AFTER INSERT ON page_text "
            "FOR EACH ROW EXECUTE FUNCTION count_text();"
        )
    await run_resume(db.url, max_pages=0)
    after = await db.rows("SELECT page_id FROM page_text ORDER BY page_id")
    assert len(after) == 1 + len(PAGES)  # every HTML page (not the PDF), once
    assert set(before) < set(after)
    # Only the new pages' rows were written: nothing of the first run's again.
    assert await db.rows("SELECT n FROM audit") == [(len(after) - len(before),)]
    db.origin = host.origin
    assert db.path(await db.search("pelican")) == ["/birds", "/other"]
    if db.kind == "sqlite":
        assert (await db.search("welcome")).exit_code == 1  # still out: nothing rebuilt


# ---------------------------------------------------------------------- the parser


@pytest.mark.parametrize(
    ("body", "text"),
    [
        pytest.param("<p>a\n\n  b</p>\t<div>c</div>", "a b c", id="whitespace"),
        pytest.param("<p>x</p><script>s()</script><style>p{}</style>", "x", id="script-style"),
        pytest.param("<noscript>n</noscript><template>t</template>y", "y", id="noscript"),
        pytest.param("<p>caf&eacute; &amp; <b>bar</b></p>", "café & bar", id="entities"),
        pytest.param("", "", id="empty"),
    ],
)
def test_visible_text(body: str, text: str) -> None:
    page = f"<html><head><title>T</title></head><body>{body}</body></html>".encode()
    assert page_text(page, "text/html") == ("T", text, False)


async def test_hooks_see_the_page_whole_before_its_text_is_taken(db: DB, site: Site) -> None:
    host = await site.host()
    build(host)
    # --extract reads the parsed tree as hooks do: the <script> is still in it.
    await run(db.url, [host.url("/scripted")], text=True, extract=("code=script",))
    ((data, text),) = await db.rows(
        "SELECT p.data, t.text FROM page_rows AS p JOIN page_text AS t ON t.page_id = p.id"
    )
    assert "zebra" in json.loads(data)["code"] and text == "Visible words only"


# ---------------------------------------------------------------------- docs/schema.md


def search_blocks() -> list[tuple[str, str, str]]:
    """(heading, dialect, sql) of every block in the Full-text search section."""
    text = SCHEMA_MD.read_text()
    section = text.split("## Full-text search", 1)[1].split("\n## ", 1)[0]
    heading = ""
    out = []
    pattern = r"^### ([^\n]+)$|^```(sqlite|postgresql|sql)\n(.*?)^```"
    for m in re.finditer(pattern, section, re.M | re.S):
        if m.group(1):
            heading = m.group(1)
        else:
            out.append((heading, m.group(2), m.group(3)))
    return out


BLOCKS = search_blocks()
EXPECTED = {  # heading fragment -> paths found, in order when the query orders them
    "ranked": ["/birds", "/other"],
    "phrase": ["/birds"],
    "prefix": ["/birds", "/other"],
    "titles only": ["/birds"],
    "without text": ["/nets"],
}


def test_every_search_block_is_checked_on_both_backends() -> None:
    for key in EXPECTED:
        dialects = sorted(d for h, d, _ in BLOCKS if key in h.lower())
        assert dialects in (["postgresql", "sqlite"], ["sql"]), key


async def test_schema_doc_search_queries_run(crawled: DB) -> None:
    dialect = "sqlite" if crawled.kind == "sqlite" else "postgresql"
    # One HTML page stored without text: what the last query finds.
    await crawled.execute(
        "DELETE FROM page_text WHERE page_id = (SELECT id FROM page_rows WHERE url LIKE '%/nets')"
    )
    for heading, kind, sql in BLOCKS:
        if kind not in (dialect, "sql"):
            continue
        (key,) = [k for k in EXPECTED if k in heading.lower()]
        found = [row[0].removeprefix(crawled.origin) for row in await crawled.rows(sql)]
        assert found == EXPECTED[key], (heading, kind)
