"""The status server inside a crawl: /metrics, /status and the live report, scraped while a
real crawl runs (one page held open by the test) and compared with the database after."""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from support import Site, broken_body, rows, settings

from crawler.engine import Engine
from crawler.latency import BOUNDS, Latency, merged
from crawler.status import CrawlCollector, serve_status
from crawler.store import open_store


def metrics(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text exposition: (name, labels) -> value."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def get(session: aiohttp.ClientSession, url: str) -> tuple[int, str, str]:
    async with session.get(url) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), await resp.text()


async def test_metrics_during_a_crawl_agree_with_the_database(site: Site, db: str) -> None:
    host = await site.host()
    held = asyncio.Event()  # the crawl is inside /slow
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.StreamResponse:
        held.set()
        await release.wait()
        return web.Response(text="<html>slow</html>", content_type="text/html")

    host.page("/", ["/a", "/b", "/missing", "/broken", "/slow"])
    host.page("/a", ["/b"])
    host.page("/b", body="x" * 5000)
    host.handle("/broken", broken_body)
    host.handle("/slow", slow)

    store = await open_store(db, create=True)
    try:
        conf = settings(concurrency=4)
        seeds = [host.url("/")]
        await store.save_crawl(conf, seeds)
        engine = Engine(store, conf, seeds)
        async with (
            serve_status("127.0.0.1", 0, engine.status, db, cache_seconds=60) as server,
            aiohttp.ClientSession() as http,
        ):
            crawl = asyncio.create_task(engine.run(seeds))
            await held.wait()
            status, ctype, text = await get(http, server.url + "/metrics")
            assert status == 200 and ctype.startswith("text/plain")
            during = metrics(text)
            assert during[("crawler_in_flight", ())] >= 1
            assert during[("crawler_pages_total", ())] <= 5
            code, _, body = await get(http, server.url + "/status")
            live = json.loads(body)
            assert code == 200 and live["in_flight"] >= 1
            # The live report while the crawl runs: the deferred links index may be absent.
            code, ctype, page = await get(http, server.url + "/")
            assert code == 200 and ctype.startswith("text/html")
            assert 'http-equiv="refresh"' in page and 'id="hosts"' in page
            _, _, again = await get(http, server.url + "/")
            assert again == page  # cached, not rebuilt per request
            release.set()
            await crawl
            _, _, text = await get(http, server.url + "/metrics")
    finally:
        await store.close()

    after = metrics(text)
    assert after[("crawler_pages_total", ())] == rows(db, "SELECT count(*) FROM pages")[0][0] == 6
    assert after[("crawler_bytes_total", ())] == rows(db, "SELECT sum(size) FROM pages")[0][0]
    assert after[("crawler_http_errors_total", ())] == 1  # /missing
    assert after[("crawler_in_flight", ())] == 0
    for kind, n in rows(
        db,
        "SELECT substr(error, 1, instr(error, ':') - 1), count(*) FROM pages "
        "WHERE status IS NULL GROUP BY 1",
    ):
        assert after[("crawler_errors_total", (("kind", kind),))] == n
    for code, n in rows(db, "SELECT coalesce(status, 'error'), count(*) FROM pages GROUP BY 1"):
        assert after[("crawler_responses_total", (("status", str(code)),))] == n
    fetched = rows(db, "SELECT count(*), sum(elapsed) FROM pages WHERE elapsed IS NOT NULL")[0]
    assert after[("crawler_fetch_seconds_count", ())] == fetched[0]
    assert math.isclose(after[("crawler_fetch_seconds_sum", ())], fetched[1], rel_tol=1e-3)


def test_latency_histogram_in_prometheus_format() -> None:
    latency = Latency()
    for seconds in (0.001, 0.005, 0.02, 0.3, 0.3, 45.0):
        latency.observe(seconds)
    two = merged([latency.data(), None, latency.data()])
    data = {
        "pages": 12, "bytes": 0, "errors_by_kind": {}, "http_errors": 0, "retries": 0,
        "in_flight": 0, "queued": 0, "hosts_active": 0, "pages_per_s": 0.0, "elapsed_s": 1.0,
        "latency": two,
    }  # fmt: skip
    from prometheus_client import generate_latest
    from prometheus_client.registry import CollectorRegistry

    registry = CollectorRegistry()
    registry.register(CrawlCollector(lambda: data))
    got = metrics(generate_latest(registry).decode())

    def bucket(le: str) -> float:
        return got[("crawler_fetch_seconds_bucket", (("le", le),))]

    assert bucket("0.005") == 4  # bounds are inclusive, as Prometheus' le
    assert bucket("0.01") == 4
    assert bucket("0.025") == 6
    assert bucket("0.5") == 10
    assert bucket(repr(float(BOUNDS[-1]))) == 10
    assert bucket("+Inf") == got[("crawler_fetch_seconds_count", ())] == 12
    assert math.isclose(got[("crawler_fetch_seconds_sum", ())], 2 * 45.626)


async def test_report_page_says_when_there_is_no_database(tmp_path: Any) -> None:
    async with (
        serve_status("127.0.0.1", 0, lambda: {}, str(tmp_path / "none.db")) as server,
        aiohttp.ClientSession() as http,
    ):
        code, _, body = await get(http, server.url + "/")
    assert code == 503 and "no crawl database" in body


@pytest.mark.parametrize("path", ["/nothing", "/metrics/x"])
async def test_unknown_paths_are_404(path: str, db: str) -> None:
    async with (
        serve_status("127.0.0.1", 0, lambda: {}, db) as server,
        aiohttp.ClientSession() as http,
    ):
        code, _, _ = await get(http, server.url + path)
    assert code == 404
