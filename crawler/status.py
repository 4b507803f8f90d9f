"""`--status-port`: a small HTTP server inside a running crawl.

    /         the HTML report of the crawl so far, reloading itself (cached a few seconds)
    /status   the live display's numbers as JSON
    /metrics  the same numbers in Prometheus' text format (prometheus_client)

It runs on the crawl's own event loop. `source()` returns a progress snapshot
(`crawler.progress.snapshot`, or the parent's sum of its children under --processes):
/status and /metrics only read that dict, so a scrape costs the crawl well under a
millisecond. The report reads the database in a worker thread, through a read-only
connection, never more often than every `cache_seconds`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from crawler import htmlreport
from crawler.errors import CrawlerError
from crawler.store import open_reader

log = logging.getLogger(__name__)

Source = Callable[[], dict[str, Any]]

REFRESH = 10  # seconds between reloads of the live report page
CACHE_SECONDS = 5.0  # least time between two builds of the live report
CACHE_FACTOR = 5  # ... and at least this many times as long as the last build took


@dataclass(frozen=True, slots=True)
class StatusServer:
    host: str
    port: int  # the bound port (a requested 0 picks a free one)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


@contextlib.asynccontextmanager
async def serve_status(
    host: str,
    port: int,
    source: Source,
    db_path: str,
    *,
    refresh: int = REFRESH,
    cache_seconds: float = CACHE_SECONDS,
) -> AsyncIterator[StatusServer]:
    """Serve /, /status and /metrics on host:port for the duration of the block."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(CrawlCollector(source))
    page = _ReportCache(db_path, refresh, cache_seconds)

    async def status(request: web.Request) -> web.StreamResponse:
        return web.json_response(source())

    async def metrics(request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def report(request: web.Request) -> web.StreamResponse:
        try:
            text = await page.get()
        except CrawlerError as exc:  # no database yet, or not a crawl file
            return web.Response(status=503, text=f"report not available: {exc}\n")
        return web.Response(text=text, content_type="text/html", charset="utf-8")

    app = web.Application()
    app.router.add_get("/", report)
    app.router.add_get("/status", status)
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        server = site._server  # the port actually bound, when 0 asked for any
        bound = server.sockets[0].getsockname()[1] if isinstance(server, asyncio.Server) else port
        served = StatusServer(host, bound)
        log.info("status: %s/ (report), /status, /metrics", served.url)
        yield served
    finally:
        await runner.cleanup()


class _ReportCache:
    """The live report page, built in a thread at most every few seconds, one build at
    a time (concurrent requests wait for the same build)."""

    def __init__(self, db_path: str, refresh: int, cache_seconds: float) -> None:
        self.db_path = db_path
        self.refresh = refresh
        self.cache_seconds = cache_seconds
        self.text: str | None = None
        self.expires = 0.0
        self.lock = asyncio.Lock()

    async def get(self) -> str:
        async with self.lock:
            if self.text is None or time.monotonic() >= self.expires:
                started = time.monotonic()
                self.text = await asyncio.to_thread(self._build)
                took = time.monotonic() - started
                self.expires = time.monotonic() + max(self.cache_seconds, CACHE_FACTOR * took)
            return self.text

    def _build(self) -> str:
        reader = open_reader(self.db_path)
        try:
            data = reader.report()
        finally:
            reader.close()
        return htmlreport.render(data, refresh=self.refresh)


class CrawlCollector(Collector):
    """Prometheus metrics read from a progress snapshot at each scrape.

    Counters count this run (they start at 0 when the crawl or resume starts, as a
    process' counters do). Optional snapshot keys: `by_status` ({"200": n, "error": n})
    and `latency` (`crawler.latency.Latency.data()`).
    """

    def __init__(self, source: Source) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        d = self.source()
        yield CounterMetricFamily("crawler_pages", "Pages stored by this run.", value=d["pages"])
        yield CounterMetricFamily(
            "crawler_bytes", "Body bytes received by this run.", value=d["bytes"]
        )
        errors = CounterMetricFamily(
            "crawler_errors", "Fetches that got no HTTP response, by kind.", labels=["kind"]
        )
        for kind, n in d["errors_by_kind"].items():
            errors.add_metric([kind], n)
        yield errors
        yield CounterMetricFamily(
            "crawler_http_errors", "Responses with status >= 400.", value=d["http_errors"]
        )
        yield CounterMetricFamily("crawler_retries", "Fetches retried.", value=d["retries"])
        if "by_status" in d:
            responses = CounterMetricFamily(
                "crawler_responses",
                "Stored fetches by HTTP status ('error': no response).",
                labels=["status"],
            )
            for status, n in d["by_status"].items():
                responses.add_metric([str(status)], n)
            yield responses
        for name, key, text in (
            ("crawler_in_flight", "in_flight", "Requests in flight."),
            ("crawler_queued", "queued", "URLs waiting to be fetched."),
            ("crawler_hosts_active", "hosts_active", "Hosts with work in progress."),
            ("crawler_pages_per_second", "pages_per_s", "Pages stored per second, this run."),
            ("crawler_elapsed_seconds", "elapsed_s", "Seconds since this run started."),
        ):
            yield GaugeMetricFamily(name, text, value=d[key])
        if latency := d.get("latency"):
            yield _histogram(latency)


def _histogram(latency: dict[str, Any]) -> HistogramMetricFamily:
    buckets: list[tuple[str, float]] = []
    seen = 0
    for bound, n in zip([*latency["bounds"], float("inf")], latency["counts"], strict=True):
        seen += n
        buckets.append(("+Inf" if bound == float("inf") else repr(float(bound)), seen))
    return HistogramMetricFamily(
        "crawler_fetch_seconds",
        "Seconds from sending a request to its last body byte (pages.elapsed).",
        buckets=buckets,
        sum_value=latency["sum"],
    )
