"""`crawler report`: the HTML of a real crawl, rendered by headless Chromium (Debian's
`chromium` driven by Playwright): every chart and table is there, its numbers are the
database's, the tables sort, and the page makes no request but for its own file.

Locally these tests skip when /usr/bin/chromium is absent; under CI=true they fail instead.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from support import Site, broken_body, rows, run

from crawler.cli import cli

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
CHARTS = ("chart-rate", "chart-status", "chart-bytes", "chart-errors", "chart-depth", "chart-types")
TABLES = (
    "hosts", "errors", "depths", "content-types", "slowest", "largest", "broken", "skipped",
    "not-followed",
)  # fmt: skip


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    if not Path(CHROMIUM).exists():
        reason = f"no Chromium at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        # chromium_sandbox=False: --no-sandbox (we run as root); Playwright gives the
        # browser a fresh temporary profile.
        b = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, chromium_sandbox=False)
        try:
            yield b
        finally:
            await b.close()


async def crawl_a_site(site: Site, db: str) -> tuple[str, str]:
    a = await site.host()
    b = await site.host()
    a.robots("User-agent: *\nDisallow: /private/\n")
    a.page("/", ["/one", "/two", "/missing", "/moved", "/broken", "/private/x", b.url("/")])
    a.page("/one", ["/missing", "/deep"])
    a.page("/two", ["/missing", "/file.pdf"])
    a.page("/deep", ["/deeper"])
    a.page("/deeper", body="<html><title>d</title>" + "x" * 20_000 + "</html>")
    a.page("/file.pdf", body=b"%PDF-1.4 tiny", content_type="application/pdf")
    a.redirect("/moved", "/gone")  # ends at a 404: final_status 404
    a.handle("/broken", broken_body)
    b.page("/", ["/", "/nofollow"])
    await run(db, [a.url("/"), b.url("/")], scope="any")
    return a.origin, b.origin


def write_report(db: str, out: Path) -> None:
    result = CliRunner().invoke(cli, ["report", "--db", db, "-o", str(out)])
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert "written to" in result.stderr


async def test_report_in_chromium_matches_the_database(
    site: Site, db: str, tmp_path: Path, browser: Any
) -> None:
    a, b = await crawl_a_site(site, db)
    out = tmp_path / "report.html"
    write_report(db, out)

    page = await browser.new_page()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    await page.goto(out.as_uri(), wait_until="load")
    assert requests == [out.as_uri()]  # no script, style, font or image fetched

    for chart in CHARTS:
        assert await page.locator(f"figure#{chart} svg").count() == 1, chart
    for table in TABLES:
        assert await page.locator(f"table#{table}").count() == 1, table

    async def headline(key: str) -> str:
        return str(await page.get_attribute(f'#headline dd[data-key="{key}"]', "data-value"))

    pages = rows(db, "SELECT count(*) FROM pages")[0][0]
    assert await headline("pages") == str(pages)
    assert await headline("bytes") == str(rows(db, "SELECT sum(size) FROM pages")[0][0])
    assert await headline("links") == str(rows(db, "SELECT count(*) FROM links")[0][0])

    # Hosts: pages and errors per host, as the database has them.
    hosts = await table_rows(page, "hosts")
    want = rows(
        db,
        "SELECT host, count(*), sum(error IS NOT NULL OR status >= 400) FROM pages "
        "GROUP BY host ORDER BY host",
    )
    assert sorted((r[0], int(r[1]), int(r[2])) for r in hosts) == want
    assert all(r[3] and r[4] for r in hosts)  # median and p95 response times shown

    depths = [(int(r[0]), int(r[1])) for r in await table_rows(page, "depths")]
    assert depths == rows(db, "SELECT depth, count(*) FROM pages GROUP BY depth ORDER BY depth")
    # The status-over-time chart holds every page once.
    values = await page.locator("figure#chart-status desc.value").all_text_contents()
    assert sum(int(v.replace(",", "")) for v in values) == pages

    # Broken links: /missing (3 links), /moved (a redirect that ends at a 404), /broken
    # (no response), and b's /nofollow (a 404 too).
    broken = {r[0]: r for r in await table_rows(page, "broken")}
    assert set(broken) == {a + "/missing", a + "/moved", a + "/broken", b + "/nofollow"}
    assert int(broken[a + "/missing"][3]) == 3
    assert broken[a + "/moved"][1] == "404"
    assert set(broken[a + "/missing"][4].split()) == {a + "/", a + "/one", a + "/two"}

    not_followed = await table_rows(page, "not-followed")
    assert [(r[0], int(r[2])) for r in not_followed] == [("disallowed", 1)]
    assert not_followed[0][3] == a + "/private/x"
    skipped = {r[0]: int(r[1]) for r in await table_rows(page, "skipped")}
    assert skipped == dict(rows(db, "SELECT reason, count FROM skipped"))


async def test_tables_sort_on_a_click(site: Site, db: str, tmp_path: Path, browser: Any) -> None:
    await crawl_a_site(site, db)
    out = tmp_path / "report.html"
    write_report(db, out)
    page = await browser.new_page()
    await page.goto(out.as_uri())
    header = page.locator("table#depths thead th", has_text="depth")
    await header.click()
    assert await header.get_attribute("aria-sort") == "descending"
    first = [int(r[0]) for r in await table_rows(page, "depths")]
    assert first == sorted(first, reverse=True) and first[0] > first[-1]
    await header.click()
    assert [int(r[0]) for r in await table_rows(page, "depths")] == sorted(first)


async def test_an_empty_crawl_still_makes_a_report(db: str, tmp_path: Path) -> None:
    site = Site()
    try:
        host = await site.host()
        await run(db, [host.url("/")])  # the seed is a 404: one page, nothing else
    finally:
        await site.close()
    out = tmp_path / "report.html"
    write_report(db, out)
    html = out.read_text()
    assert 'data-key="pages" data-value="1"' in html
    assert "<script src" not in html and "<link" not in html


def test_a_missing_database_is_a_one_line_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["report", "--db", str(tmp_path / "no.db")])
    assert result.exit_code == 2
    assert "no crawl database" in result.stderr


async def table_rows(page: Any, ident: str) -> list[list[str]]:
    """The cells' text of a table's body rows (data-value for numbers: no separators)."""
    return list(
        await page.eval_on_selector_all(
            f"table#{ident} tbody tr",
            """rows => rows.filter(r => !r.querySelector('td.empty')).map(r =>
                Array.from(r.cells).map(c => c.dataset.value ?? c.innerText.trim()))""",
        )
    )
