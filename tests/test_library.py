"""The Python API (`crawler.crawl`, `acrawl`, `resume`, `aresume`, `open_crawl`), hooks and
`--extract`: real crawls of local sites, on SQLite and PostgreSQL, asserting on what is
stored and what a user reads back."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import hookfns
import pytest
from support import Site, assert_one_line_error, invoke, rows, threaded_site

import crawler
from crawler import Page, SettingError, Summary


@pytest.fixture(params=["sqlite", "postgres"])
def any_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "crawl.db")
    return str(request.getfixturevalue("pg_dsn"))


FAST: dict[str, Any] = {"concurrency": 4, "timeout": 5.0, "retries": 0}


async def small_site(site: Site) -> str:
    """/ -> /a, /b (a 404), /keep/c; /a -> /; every page has an <h1>."""
    host = await site.host()
    host.page("/", body=_html("Home", ["/a", "/b", "/keep/c"]))
    host.page("/a", body=_html("Page A", ["/"]))
    host.page("/b", status=404, body=_html("Missing", []))
    host.page("/keep/c", body=_html("Kept", []))
    return host.url("/")


def _html(h1: str, links: list[str]) -> str:
    anchors = "".join(f'<a href="{href}">{href}</a>' for href in links)
    return f"<html><head><title>{h1}</title></head><body><h1> {h1} </h1>{anchors}</body></html>"


# ---------------------------------------------------------------------- crawl, resume


def test_import_crawler_is_cheap() -> None:
    code = "import sys, crawler; print(sorted(m for m in sys.modules if m.startswith('aiohttp')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_crawl_and_resume_block_and_return_summaries(tmp_path: Path) -> None:
    db = str(tmp_path / "crawl.db")
    with threaded_site() as (site, thread):
        home = thread.call(small_site(site))
        first = crawler.crawl(home, db=db, max_pages=2, **FAST)
        assert isinstance(first, Summary)
        assert (first.pages, first.total_pages, first.finished) == (2, 2, True)
        second = crawler.resume(db, max_pages=0)
    assert isinstance(second, Summary)
    assert (second.pages, second.total_pages, second.finished) == (2, 4, True)
    assert rows(db, "SELECT count(*) FROM pages") == [(4,)]


def test_crawl_inside_an_event_loop_points_to_acrawl(tmp_path: Path) -> None:
    import asyncio

    async def inside() -> None:
        crawler.crawl("http://127.0.0.2:9/", db=str(tmp_path / "x.db"))

    with pytest.raises(RuntimeError, match=r"await crawler\.acrawl"):
        asyncio.run(inside())
    assert not (tmp_path / "x.db").exists()


async def test_acrawl_and_aresume_return_summaries(site: Site, any_db: str) -> None:
    home = await small_site(site)
    first = await crawler.acrawl([home], db=any_db, max_pages=1, **FAST)
    assert (first.pages, first.total_pages, first.http_errors) == (1, 1, 0)
    second = await crawler.aresume(any_db, max_pages=0)
    assert (second.pages, second.total_pages, second.http_errors) == (3, 4, 1)
    assert second.finished


async def test_aresume_adds_seeds(site: Site, db: str) -> None:
    home = await small_site(site)
    other = await site.host()
    other.page("/", body=_html("Other", []))
    await crawler.acrawl(home, db=db, **FAST)
    summary = await crawler.aresume(db, seeds=[other.url("/")])
    assert summary.pages == 1
    assert rows(db, "SELECT url FROM pages WHERE depth = 0 ORDER BY id") == [
        (home,),
        (other.url("/"),),
    ]


async def test_arecrawl_fetches_stored_pages_again_and_crawls_new_links(
    site: Site, any_db: str
) -> None:
    host = await site.host()
    host.page("/", body=_html("Home", ["/a", "/keep/c"]))
    host.page("/a", body=_html("Page A", []))
    host.page("/keep/c", body=_html("Kept", []))
    await crawler.acrawl(host.url("/"), db=any_db, **FAST)

    kept = await crawler.arecrawl(any_db, where="url LIKE '%/keep/%'")
    assert (kept.pages, kept.errors) == (1, 0)
    assert host.requests_for("/keep/c") == 2 and host.requests_for("/a") == 1

    host.page("/a", body=_html("Page A, changed", ["/new"]))
    host.page("/new", body=_html("New", []))
    everything = await crawler.arecrawl(any_db, older_than="0s", per_host=1)
    assert everything.pages == 4  # three stored pages again, and the new one
    with crawler.open_crawl(any_db) as c:
        assert {p.url: p.title for p in c.pages()}[host.url("/a")] == "Page A, changed"
        assert host.url("/new") in {p.url for p in c.pages()}
        assert c.settings.per_host == 1  # settings given replace stored ones, as in resume
    with pytest.raises(crawler.UsageError, match="invalid duration"):
        await crawler.arecrawl(any_db, older_than="soon")
    with pytest.raises(crawler.SettingError, match="per_host"):
        await crawler.arecrawl(any_db, per_host=0)


# ---------------------------------------------------------------------- open_crawl


async def test_open_crawl_reads_pages_links_stats_and_why(site: Site, any_db: str) -> None:
    home = await small_site(site)
    await crawler.acrawl(home, db=any_db, on_page=[hookfns.fields], **FAST)
    base = home.rstrip("/")
    with crawler.open_crawl(any_db) as c:
        assert c.seeds == [home]
        assert c.settings.hooks == ("hookfns:fields",)
        pages = {p.url: p for p in c.pages()}
        assert set(pages) == {home, base + "/a", base + "/b", base + "/keep/c"}
        page = pages[base + "/a"]
        assert (page.status, page.depth, page.title, page.truncated) == (200, 1, "Page A", False)
        assert page.data == {"h1": " Page A ", "status": 200, "links": 1, "server": True}
        assert page.headers is None and page.body is None
        broken = list(c.pages("status >= 400", body=True, headers=True))
        assert [(p.url, p.status) for p in broken] == [(base + "/b", 404)]
        assert broken[0].body is not None and b"Missing" in broken[0].body
        assert ("Content-Type", "text/html; charset=utf-8") in (broken[0].headers or [])
        assert [(x.dst_url, x.nofollow) for x in c.links(home)] == [
            (base + "/a", False),
            (base + "/b", False),
            (base + "/keep/c", False),
        ]
        assert [x.src_url for x in c.linked_from(home)] == [base + "/a"]
        stats = c.stats()
        assert (stats["pages"], stats["http_errors"]) == (4, 1)
        assert c.why(base + "/b")["fate"] == "stored"
        assert c.why(base + "/b")["page"]["status"] == 404
        assert c.why(base + "/nowhere")["fate"] == "unknown"


def test_open_crawl_of_a_file_without_a_crawl_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(crawler.CrawlerError):
        crawler.open_crawl(str(tmp_path / "missing.db"))


# ---------------------------------------------------------------------- Settings


@pytest.mark.parametrize(
    ("values", "setting"),
    [
        pytest.param({"per_host": 0}, "per_host", id="per_host-zero"),
        pytest.param({"delay": "abc"}, "delay", id="delay-str"),
        pytest.param({"delay": float("nan")}, "delay", id="delay-nan"),
        pytest.param({"timeout": float("inf")}, "timeout", id="timeout-inf"),
        pytest.param({"timeout": 0}, "timeout", id="timeout-zero"),
        pytest.param({"concurrency": 2.5}, "concurrency", id="concurrency-float"),
        pytest.param({"concurrency": True}, "concurrency", id="concurrency-bool"),
        pytest.param({"processes": 65}, "processes", id="processes-65"),
        pytest.param({"max_depth": -2}, "max_depth", id="max_depth"),
        pytest.param({"scope": "planet"}, "scope", id="scope"),
        pytest.param({"scope": None}, "scope", id="scope-none"),
        pytest.param({"allow": ["("]}, "allow", id="allow-regex"),
        pytest.param({"deny": "[a-"}, "deny", id="deny-regex"),
        pytest.param({"deny": [1]}, "deny", id="deny-int"),
        pytest.param({"compress": "yes"}, "compress", id="compress-str"),
        pytest.param({"user_agent": ""}, "user_agent", id="ua-empty"),
        pytest.param({"user_agent": "bot\r\nX-Evil: 1"}, "user_agent", id="ua-crlf"),
        pytest.param({"hooks": ["no_colon"]}, "hooks", id="hooks-format"),
        pytest.param({"hooks": ["a:b c"]}, "hooks", id="hooks-space"),
        pytest.param({"extract": ["title"]}, "extract", id="extract-no-css"),
        pytest.param({"extract": ["t=h1["]}, "extract", id="extract-css"),
        pytest.param({"extract": ["1x=h1"]}, "extract", id="extract-name"),
        pytest.param({"extract": ["t=h1", "t=h2"]}, "extract", id="extract-twice"),
        pytest.param({"extract": ["hook_error=h1"]}, "extract", id="extract-reserved"),
        pytest.param({"lease": 0.5}, "lease", id="lease"),
        pytest.param({"max_url_length": 15}, "max_url_length", id="max_url_length"),
        pytest.param({"per_hots": 1}, "per_hots", id="unknown"),
    ],
)
def test_bad_settings_are_a_value_error_at_once(
    values: dict[str, Any], setting: str, tmp_path: Path
) -> None:
    known = set(crawler.Settings.__dataclass_fields__)
    if set(values) <= known:
        with pytest.raises(ValueError, match=setting) as err:
            crawler.Settings(**values)
        assert isinstance(err.value, SettingError)
    db = tmp_path / "crawl.db"
    # Refused before the store is opened or a request sent (the address has no server).
    with pytest.raises(ValueError, match=setting):
        crawler.crawl("http://127.0.0.2:9/", db=str(db), **values)
    assert not db.exists()


def test_settings_dataclass_replace_is_checked_too() -> None:
    import dataclasses

    with pytest.raises(ValueError, match="per_host must be at least 1"):
        dataclasses.replace(crawler.Settings(), per_host=0)
    assert crawler.Settings(allow=["a"], delay=1).allow == ("a",)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- hooks


async def test_hook_fields_are_queryable_in_sql(site: Site, any_db: str) -> None:
    home = await small_site(site)
    await crawler.acrawl(home, db=any_db, hooks=["hookfns:fields"], **FAST)
    json_h1 = "json_extract(data, '$.h1')" if "://" not in any_db else "data ->> 'h1'"
    with crawler.open_crawl(any_db) as c:
        found = [p.url for p in c.pages(f"{json_h1} = ' Kept '")]
        assert found == [home + "keep/c"]
        missing = [p.data for p in c.pages("status = 404")]
        assert missing == [{"status": 404}]  # not parsed: no document, the hook still ran


async def test_extract_fields_are_queryable(site: Site, any_db: str) -> None:
    home = await small_site(site)
    await crawler.acrawl(home, db=any_db, extract=["h1=h1", "nothing=p.none"], **FAST)
    sql = "json_extract(data, '$.h1')" if "://" not in any_db else "data ->> 'h1'"
    with crawler.open_crawl(any_db) as c:
        got = {p.url.rsplit("/", 1)[1]: p.data for p in c.pages(f"{sql} LIKE 'Page%'")}
        assert got == {"a": {"h1": "Page A", "nothing": None}}
        assert [p.data for p in c.pages("status = 404")] == [None]


async def test_a_raising_hook_costs_its_page_a_note_not_the_crawl(site: Site, any_db: str) -> None:
    host = await site.host()
    host.page("/", ["/bad", "/good"])
    host.page("/bad", ["/after"])
    host.page("/good")
    host.page("/after")
    summary = await crawler.acrawl(host.url("/"), db=any_db, hooks=["hookfns:boom"], **FAST)
    assert summary.pages == 4 and summary.finished
    with crawler.open_crawl(any_db) as c:
        got = {p.url: p for p in c.pages()}
        bad = got.pop(host.url("/bad"))
        assert bad.data == {"hook_error": "hookfns:boom: ValueError: no good at all"}
        assert {p.url: p.data for p in got.values()} == {key: {"ok": True} for key in got}
        # The page is stored as fetched, its links followed; stats count the note.
        assert (bad.status, bad.error) == (200, None)
        assert c.stats()["hook_errors"] == 1
    assert host.requests_for("/after") == 1


async def test_a_hook_removes_links_from_the_crawl(site: Site, any_db: str) -> None:
    home = await small_site(site)
    summary = await crawler.acrawl(home, db=any_db, hooks=["hookfns:keep_only_keep"], **FAST)
    assert summary.pages == 2
    with crawler.open_crawl(any_db) as c:
        assert sorted(p.url for p in c.pages()) == [home, home + "keep/c"]
        assert len(c.links(home)) == 3  # recorded, not followed
        assert {"reason": "hook", "links": 2} in c.stats()["skipped"]
        why = c.why(home + "a")
        assert (why["fate"], why["reason"].split()[0]) == ("not followed", "hook")


@pytest.mark.parametrize(
    ("hook", "note"),
    [
        pytest.param(hookfns.adds_a_link, "a hook added URLs", id="added"),
        pytest.param(hookfns.unhashable_links, "values that are not URLs", id="not-urls"),
    ],
)
async def test_a_hook_that_adds_to_links_gets_a_note(
    site: Site, db: str, hook: Any, note: str
) -> None:
    home = await small_site(site)
    await crawler.acrawl(home, db=db, on_page=hook, **FAST)
    assert rows(db, "SELECT count(*) FROM pages") == [(4,)]  # what the page offered: followed
    notes = rows(db, "SELECT json_extract(data, '$.hook_error') FROM pages WHERE url = ?", home)
    assert note in notes[0][0]
    assert rows(db, "SELECT count(*) FROM pages WHERE url LIKE '%invented%'") == [(0,)]


async def test_python_callables_async_and_unnamed(site: Site, db: str) -> None:
    home = await small_site(site)
    seen: list[Page] = []

    def local(page: Page) -> dict[str, Any]:
        seen.append(page)
        return {"local": page.depth}

    summary = await crawler.acrawl(home, db=db, on_page=[local, hookfns.async_fields], **FAST)
    assert summary.pages == 4
    assert sorted(p.url for p in seen) == sorted(r[0] for r in rows(db, "SELECT url FROM pages"))
    assert rows(db, "SELECT data FROM pages WHERE url = ?", home) == [
        ('{"async": "' + home + '", "local": 0}',)  # named hooks first, then the others
    ]
    # Only the importable one is stored with the crawl: `resume` loads it again.
    with crawler.open_crawl(db) as c:
        assert c.settings.hooks == ("hookfns:async_fields",)


async def test_an_unnamed_callable_with_processes_is_refused(site: Site, db: str) -> None:
    with pytest.raises(crawler.UsageError, match="cannot run in other processes"):
        await crawler.acrawl("http://127.0.0.2:9/", db=db, processes=2, on_page=lambda p: None)
    assert not os.path.exists(db)


def test_hook_loads_in_every_process(tmp_path: Path, in_tmp: Path) -> None:
    db = str(tmp_path / "crawl.db")
    with threaded_site() as (site, thread):
        hosts = [thread.call(site.host()) for _ in range(4)]
        for h in hosts:
            h.page("/", [x.url("/") for x in hosts])
        result = invoke(
            "crawl", hosts[0].url("/"), "--db", db, "--processes", "2", "--hook",
            "hookfns:pid", "--scope", "any", "-q",
        )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    pids = {r[0] for r in rows(db, "SELECT json_extract(data, '$.pid') FROM pages")}
    # Every page went through a hook, and none in this process: children loaded it by name.
    assert pids and None not in pids and os.getpid() not in pids
    assert rows(db, "SELECT count(*) FROM pages") == [(4,)]


@pytest.mark.parametrize(
    ("hook", "fragment"),
    [
        pytest.param("no_such_module:f", "cannot import hook 'no_such_module:f'", id="module"),
        pytest.param("hookfns:nope", "cannot import hook 'hookfns:nope'", id="function"),
        pytest.param("hookfns:not_callable", "is not callable", id="not-callable"),
        pytest.param("no colon", "hooks: 'no colon' is not module:function", id="format"),
    ],
)
def test_a_hook_that_cannot_be_imported_exits_2_before_any_fetch(
    in_tmp: Path, hook: str, fragment: str
) -> None:
    with threaded_site() as (site, thread):
        host = thread.call(site.host())
        host.page("/")
        result = invoke("crawl", host.url("/"), "--hook", hook, "--db", "x.db")
        assert host.hits == []
    assert_one_line_error(result, fragment)
    assert not (in_tmp / "x.db").exists()


def test_cli_extract_stores_fields_and_rejects_a_bad_selector(in_tmp: Path) -> None:
    with threaded_site() as (site, thread):
        host = thread.call(site.host())
        host.page("/", body=_html("Home", ["/a"]))
        host.page("/a", body=_html("A", []))
        bad = invoke("crawl", host.url("/"), "--extract", "t=h1[", "--db", "bad.db")
        assert host.hits == []
        ok = invoke("crawl", host.url("/"), "--extract", "t=h1", "--extract", "title=title",
                    "--db", "ok.db", "-q")  # fmt: skip
    assert_one_line_error(bad, "extract: invalid CSS selector 'h1['")
    assert ok.exit_code == 0, ok.stderr
    assert rows(
        "ok.db", "SELECT json_extract(data, '$.t'), json_extract(data, '$.title') FROM pages "
        "ORDER BY id"
    ) == [("Home", "Home"), ("A", "A")]  # fmt: skip
    exported = invoke("export", "--db", "ok.db", "--format", "jsonl")
    assert [json.loads(line)["data"] for line in exported.stdout.splitlines()] == [
        {"t": "Home", "title": "Home"},
        {"t": "A", "title": "A"},
    ]


# ---------------------------------------------------------------------- README


README = Path(__file__).resolve().parent.parent / "README.md"
EXAMPLE = "https://example.com"


def readme_python_blocks() -> list[str]:
    text = README.read_text(encoding="utf-8")
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.S | re.M)


def test_readme_python_examples_run(tmp_path: Path) -> None:
    blocks = readme_python_blocks()
    assert len(blocks) >= 4
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    outputs = []
    with threaded_site() as (site, thread):
        host = thread.call(site.host())
        host.robots("User-agent: *\nDisallow: /private/\n")
        host.page("/", ["/about", "/shop/", "/shop/a", "/private/x", "/missing"])
        host.page("/about", ["/"])
        host.page("/shop/", ["/shop/a", "/shop/b", "/about"])
        host.page("/shop/a", body="<title>A</title><h1>Blue mug</h1><p class=price> 9.50 </p>")
        host.page("/shop/b", body="<title>B</title><h1>Red mug</h1>")
        host.page("/missing", status=404)
        for block in blocks:
            code = block.replace(EXAMPLE, host.origin)
            first = code.splitlines()[0]
            if first.startswith("# ") and first.endswith(".py"):  # a module the others import
                (tmp_path / first[2:]).write_text(code, encoding="utf-8")
                continue
            done = subprocess.run(
                [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True,
                text=True, timeout=120,
            )  # fmt: skip
            assert done.returncode == 0, (code, done.stderr)
            outputs.append(done.stdout)
    out = "\n".join(outputs)
    assert f"404 {host.origin}/missing ['{host.origin}/']" in out
    assert "disallowed" in out
    assert "per_host must be at least 1" in out
    assert f"{host.origin}/shop/a {{'title': 'Blue mug', 'price': '9.50'}}" in out
    assert out.splitlines()[-1] == "6 5"  # 6 pages, 5 of them HTML with a title
