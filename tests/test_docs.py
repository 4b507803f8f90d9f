"""The docs stay true: schema.md's queries run on a real crawl, help and README cover
every command, option and setting, and `crawler config` shows where each value came from."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import pytest
from aiohttp import web
from click.testing import CliRunner
from support import Site, broken_body, run

from crawler.cli import cli
from crawler.config import SETTING_NAMES, Settings

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_MD = ROOT / "docs" / "schema.md"
README = ROOT / "README.md"
CONFIG_TOML = ROOT / "config.toml"
EXTERNAL = "http://127.0.0.9:9/elsewhere"
DUPLICATE = (
    '<html><head><title>About</title><link rel="canonical" href="/about"></head>'
    '<body><a href="/new">new</a></body></html>'
)


# ---------------------------------------------------------------- a real crawl to query


@dataclass(frozen=True)
class Crawled:
    db: str
    a: str  # origin of the main host
    b: str  # origin of the slow host

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.db) as conn:
            return conn.execute(sql).fetchall()

    @property
    def pages(self) -> int:
        return int(self.query("SELECT count(*) FROM pages")[0][0])


async def _crawl(db: str) -> Crawled:
    site = Site()
    try:
        a = await site.host()
        b = await site.host()
        a.robots("User-agent: *\nDisallow: /private/\nSitemap: /sitemap.xml\nSitemap: /gone.xml\n")
        listed = "".join(f"<url><loc>{a.url(p)}</loc></url>" for p in ("/about", "/new"))
        a.page("/sitemap.xml", body=f"<urlset>{listed}</urlset>", content_type="application/xml")
        home = (
            *("/about", "/copy", "/old", "/missing", "/report.pdf", "/private/secret"),
            *("/moved", "/big", b.url("/"), EXTERNAL),
        )
        anchors = "".join(f'<a href="{href}">{href}</a>' for href in home)
        # An image that is also a link: fetched (as the link) without --assets.
        # Its text is what the documented search queries look for (the crawl keeps text).
        birds = "<p>The brown pelican dives for fish.</p><script>var pelican = 1;</script>"
        page = f"<title>Pelican notes</title><body>{birds}{anchors}<img src='/missing'></body>"
        a.page("/", body=f"<html>{page}</html>")
        a.page("/about", body=DUPLICATE)
        a.page("/copy", body=DUPLICATE)  # the same bytes at another URL
        a.redirect("/old", "/new")
        a.redirect("/moved", "/missing")  # a link that looks like a redirect, ends broken
        a.page("/new", body='<meta name="robots" content="noindex"><a href="/missing">m</a>')
        a.page("/big", ["/new"], body="<html><a href='/new'>new</a>" + "x" * 50_000 + "</html>")
        a.page("/report.pdf", body=b"%PDF-1.4\n%%EOF\n", content_type="application/pdf")
        b.page("/", ["/slow", "/broken"])

        async def slow(request: web.Request) -> web.StreamResponse:
            await asyncio.sleep(0.3)  # server behaviour: a slow page
            return web.Response(text="<html>slow</html>", content_type="text/html")

        b.handle("/slow", slow)
        b.handle("/broken", broken_body)
        await run(db, [a.url("/"), b.url("/")], text=True)
        return Crawled(db, a.origin, b.origin)
    finally:
        await site.close()


@pytest.fixture(scope="module")
def crawled(tmp_path_factory: pytest.TempPathFactory) -> Crawled:
    db = str(tmp_path_factory.mktemp("docs") / "crawl.db")
    return asyncio.run(_crawl(db))


def sql_blocks() -> list[tuple[str, str]]:
    """(heading, sql) for every ```sql or ```sqlite block in docs/schema.md (the
    ```postgresql variants run in tests/test_schema_docs.py)."""
    heading = ""
    out = []
    blocks = r"^### ([^\n]+)$|^```(?:sql|sqlite)\n(.*?)^```"
    for m in re.finditer(blocks, SCHEMA_MD.read_text(), re.M | re.S):
        if m.group(1):
            heading = m.group(1)
        else:
            out.append((heading, m.group(2)))
    return out


QUERIES = sql_blocks()


def checked() -> list[tuple[str, str]]:
    """The queries whose answer is checked here: those under a heading of CHECKS (the
    others, e.g. of hooks, which this crawl runs none of, are run by test_schema_docs)."""
    return [(h, sql) for h, sql in QUERIES if any(key in h for key in CHECKS)]


def test_schema_doc_has_at_least_ten_queries() -> None:
    assert len(checked()) >= 10
    assert len({h for h, _ in checked()}) == len(checked())  # one query per heading


def check_broken_links(c: Crawled, result: list[tuple[Any, ...]]) -> None:
    assert (f"{c.a}/missing", "404", f"{c.a}/") in result
    assert (f"{c.a}/missing", "404", f"{c.a}/new") in result
    (broken,) = [r for r in result if r[0] == f"{c.b}/broken"]
    assert broken[1].startswith("payload:") and broken[2] == f"{c.b}/"


def check_final_status(c: Crawled, result: list[tuple[Any, ...]]) -> None:
    found = {(r[0], r[5]): r[1:5] for r in result}
    assert found[(f"{c.a}/moved", f"{c.a}/")] == (301, 404, f"{c.a}/missing", None)
    assert found[(f"{c.a}/missing", f"{c.a}/new")] == (404, 404, f"{c.a}/missing", None)
    assert found[(f"{c.b}/broken", f"{c.b}/")][:3] == (None, None, None)
    assert f"{c.a}/old" not in {r[0] for r in result}  # a redirect to a good page


def check_skipped(c: Crawled, result: list[tuple[Any, ...]]) -> None:
    counts = dict(result)
    assert counts["robots"] == 1 and counts["out of scope"] == 1  # /private/secret; EXTERNAL


def check_in_degree(c: Crawled, result: list[tuple[Any, ...]]) -> None:
    assert result[0] == (f"{c.a}/new", 3)  # from /about, /copy and /big


def check_slowest_hosts(c: Crawled, result: list[tuple[Any, ...]]) -> None:
    assert [r[0] for r in result] == [c.b, c.a]
    assert result[0][3] >= 0.3  # max_seconds: the slow page


def check_redirects(c: Crawled, result: list[tuple[Any, ...]]) -> None:
    assert result == [
        (f"{c.a}/moved", 301, f"{c.a}/missing", f"{c.a}/missing"),
        (f"{c.a}/old", 301, f"{c.a}/new", f"{c.a}/new"),
    ]


def check_depths(c: Crawled, result: list[tuple[Any, ...]]) -> None:
    assert result[0] == (0, 2)  # the two seeds
    assert sum(n for _, n in result) == c.pages


def check_content_types(c: Crawled, result: list[tuple[Any, ...]]) -> None:
    types = {t: n for t, n, _ in result}
    # The redirect has no body and the network error no response: no content type.
    assert types == {"text/html": 7, "application/pdf": 1, "text/plain": 1, "(none)": 3}
    assert result[0][0] == "text/html"  # most pages first


def check_duplicates(c: Crawled, result: list[tuple[Any, ...]]) -> None:
    assert len(result) == 1
    _, copies, urls = result[0]
    assert copies == 2 and set(urls.split()) == {f"{c.a}/about", f"{c.a}/copy"}


def check_errors(c: Crawled, result: list[tuple[Any, ...]]) -> None:
    assert dict(result) == {"HTTP 404": 1, "payload": 1}


def check_largest(c: Crawled, result: list[tuple[Any, ...]]) -> None:
    assert result[0][0] == f"{c.a}/big" and result[0][1] > 50_000


def check_disallowed(c: Crawled, result: list[tuple[Any, ...]]) -> None:
    assert result == [(f"{c.a}/private/secret", "robots.txt", f"{c.a}/")]


def check_external(c: Crawled, result: list[tuple[Any, ...]]) -> None:
    assert result == [(EXTERNAL, 1)]


def check_per_minute(c: Crawled, result: list[tuple[Any, ...]]) -> None:
    assert sum(n for _, n in result) == c.pages


def check_left_to_do(c: Crawled, result: list[tuple[Any, ...]]) -> None:
    assert result == [("disallowed", c.a, 1)]  # a finished crawl: nothing queued


def check_sitemaps(c: Crawled, result: list[tuple[Any, ...]]) -> None:
    assert result == [
        (f"{c.a}/gone.xml", None, 404, "sitemap: HTTP 404", 0, 0, 0),  # failures first
        (f"{c.a}/sitemap.xml", "urlset", 200, None, 2, 2, 2),
    ]


def check_broken_images(c: Crawled, result: list[tuple[Any, ...]]) -> None:
    assert result == [(f"{c.a}/missing", "404", f"{c.a}/")]


def check_indexing(c: Crawled, result: list[tuple[Any, ...]]) -> None:
    assert result == [(f"{c.a}/copy", 0, f"{c.a}/about"), (f"{c.a}/new", 1, None)]


def check_changes(c: Crawled, result: list[tuple[Any, ...]]) -> None:
    # One crawl, no recrawl yet: every page fetched once, as new.
    assert len(result) == c.pages
    assert {r[1:4] for r in result} == {(1, 0, 0)}


def check_per_run(c: Crawled, result: list[tuple[Any, ...]]) -> None:
    assert result == [(1, "crawl", c.pages, c.pages, 0, 0, 0)]


def check_servers(c: Crawled, result: list[tuple[Any, ...]]) -> None:
    assert sorted({r[0] for r in result}) == sorted([c.a, c.b])
    assert all("aiohttp" in r[1] for r in result)


CHECKS = {
    "Sitemaps:": check_sitemaps,
    "Broken images": check_broken_images,
    "not to be indexed": check_indexing,
    "How often each page changes": check_changes,
    "Fetches per run": check_per_run,
    "Broken links and": check_broken_links,
    "with their final status": check_final_status,
    "Links not followed": check_skipped,
    "in-degree": check_in_degree,
    "Slowest hosts": check_slowest_hosts,
    "Redirects": check_redirects,
    "per depth": check_depths,
    "Content types": check_content_types,
    "Duplicate content": check_duplicates,
    "Errors by reason": check_errors,
    "Largest pages": check_largest,
    "robots.txt": check_disallowed,
    "leaving the crawl": check_external,
    "per minute": check_per_minute,
    "left to do": check_left_to_do,
    "Server software": check_servers,
}


@pytest.mark.parametrize(("heading", "sql"), [pytest.param(h, s, id=h) for h, s in checked()])
def test_schema_doc_query_runs_on_a_real_crawl(crawled: Crawled, heading: str, sql: str) -> None:
    result = crawled.query(sql)
    assert result, "every documented query finds something in the test crawl"
    (check,) = [f for key, f in CHECKS.items() if key in heading]
    check(crawled, result)


def test_every_documented_query_is_checked() -> None:
    for key in CHECKS:
        assert sum(key in heading for heading, _ in QUERIES) == 1, key


def schema_sections() -> dict[str, str]:
    """`name` -> text of its "### `name`" section in docs/schema.md."""
    text = SCHEMA_MD.read_text()
    parts = re.split(r"^### `(\w+)`.*$", text, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


def test_schema_doc_describes_every_table_view_and_column(crawled: Crawled) -> None:
    sections = schema_sections()
    objects = crawled.query(
        "SELECT name, type FROM sqlite_master WHERE type IN ('table', 'view') "
        "AND name NOT LIKE 'sqlite_%' "
        # A full-text index's own tables (page_text_fts_data...) are FTS5's, not ours.
        "AND name NOT IN (SELECT name FROM pragma_table_list WHERE type = 'shadow')"
    )
    assert {"pages", "links", "urls", "frontier", "robots", "crawl"} <= {n for n, _ in objects}
    for name, kind in objects:
        assert name in sections, f"{kind} {name} is not documented"
        if kind == "view":
            continue  # documented by its SELECT
        for _, column, *_ in crawled.query(f"PRAGMA table_info({name})"):
            assert f"| `{column}` |" in sections[name], f"{name}.{column} is not documented"


# ---------------------------------------------------------------- help and README


def walk(group: click.Group) -> Iterator[tuple[str, click.Command]]:
    yield "crawler", group
    for name, command in sorted(group.commands.items()):
        yield f"crawler {name}", command


@pytest.mark.parametrize(("name", "command"), [pytest.param(n, c, id=n) for n, c in walk(cli)])
def test_every_command_and_option_has_help(name: str, command: click.Command) -> None:
    assert command.help and command.help.strip(), f"{name} has no help"
    for param in command.params:
        if isinstance(param, click.Option):
            assert param.help and param.help.strip(), f"{name} {param.opts} has no help"
    result = CliRunner().invoke(cli, [*name.split()[1:], "--help"], prog_name="crawler")
    assert result.exit_code == 0
    assert "Usage: crawler" in result.output


def test_readme_mentions_every_command_and_setting() -> None:
    readme = README.read_text()
    for name in cli.commands:
        assert f"`crawler {name}" in readme, f"command {name} is missing from README.md"
    for key in ("db", *SETTING_NAMES):
        flag = "--" + key.replace("_", "-")
        assert f"| `{key}` / `{flag}` |" in readme, f"setting {key} is missing from README.md"
    for flag in ("--quiet", "--verbose", "--log-format", "--json", "--where", "--since"):
        assert flag in readme, flag


def readme_defaults() -> dict[str, str]:
    rows = re.findall(r"^\| `(\w+)` / `--[\w-]+` \| `([^`]*)` \|", README.read_text(), re.M)
    return dict(rows)


@pytest.mark.parametrize("key", SETTING_NAMES)
def test_readme_default_is_the_real_default(key: str) -> None:
    shown = readme_defaults()[key]
    if "..." in shown:  # abbreviated (the user agent)
        return
    default = getattr(Settings(), key)
    if isinstance(default, str):
        assert shown == default or (shown == '""' and default == "")
    else:
        expected = list(default) if isinstance(default, tuple) else default
        assert tomllib.loads(f"x = {shown}")["x"] == expected


def test_config_toml_documents_every_key_with_its_default() -> None:
    lines = CONFIG_TOML.read_text().splitlines()
    data = tomllib.loads(CONFIG_TOML.read_text())
    assert set(data) == {"db", *SETTING_NAMES}
    defaults = Settings()
    for key in SETTING_NAMES:
        default = getattr(defaults, key)
        assert data[key] == (list(default) if isinstance(default, tuple) else default), key
    for i, line in enumerate(lines):
        if re.match(r"^\w+ = ", line):
            assert lines[i - 1].startswith("# "), f"config.toml: {line!r} has no comment above it"


# ---------------------------------------------------------------- crawler config


def show_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> Any:
    monkeypatch.chdir(tmp_path)
    return CliRunner().invoke(cli, ["config", *args])


def test_config_flags_beat_file_beat_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "site.toml"
    cfg.write_text('per_host = 5\ndelay = 1.5\nscope = "domain"\ndb = "site.db"\n')
    result = show_config(tmp_path, monkeypatch, "--config", str(cfg), "--delay", "2", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["per_host"] == {"value": 5, "source": str(cfg)}
    assert data["scope"] == {"value": "domain", "source": str(cfg)}
    assert data["delay"] == {"value": 2.0, "source": "command line"}
    assert data["db"] == {"value": "site.db", "source": str(cfg)}
    assert data["concurrency"] == {"value": 64, "source": "default"}
    assert set(data) == {"db", *SETTING_NAMES}


def test_config_text_names_each_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "config.toml").write_text("retries = 7\nallow = ['^https://a/']\n")
    result = show_config(tmp_path, monkeypatch, "--db", "x.db", "--deny", "logout")
    assert result.exit_code == 0, result.output
    lines = {ln.split()[0]: ln for ln in result.output.splitlines()}
    assert lines["retries"].split() == ["retries", "7", "#", "config.toml"]
    assert lines["allow"].split() == ["allow", '["^https://a/"]', "#", "config.toml"]
    assert lines["deny"].split() == ["deny", '["logout"]', "#", "command", "line"]
    assert lines["db"].split() == ["db", '"x.db"', "#", "command", "line"]
    assert lines["per_host"].split() == ["per_host", "2", "#", "default"]


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        pytest.param("per_hots = 3\n", "unknown setting 'per_hots'", id="unknown-key"),
        pytest.param('per_host = "3"\n', "setting 'per_host' must be an integer", id="type"),
        pytest.param("per_host = \n", "invalid TOML", id="syntax"),
        pytest.param("per_host = 0\n", "per_host must be at least 1", id="range"),
    ],
)
def test_config_errors_are_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, toml: str, message: str
) -> None:
    (tmp_path / "config.toml").write_text(toml)
    result = show_config(tmp_path, monkeypatch)
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1
    assert result.output.startswith("crawler: error: ") and message in result.output
