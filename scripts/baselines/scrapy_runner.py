"""Scrapy on the benchmark site, storing nothing or every page into SQLite.

Runs in Scrapy's own venv (scripts/.bench/venv). Settings: ROBOTSTXT_OBEY=True,
CONCURRENT_REQUESTS=--concurrency, CONCURRENT_REQUESTS_PER_DOMAIN=--per-host,
DOWNLOAD_DELAY=0, everything else Scrapy's default (asyncio reactor, its
DownloaderAwarePriorityQueue, fragment-blind dupefilter). Links are
`response.css("a::attr(href)")` joined by `response.urljoin`, kept when on a seed's host.

`--db FILE` yields `{url, status, body}` per response into a pipeline that writes them
with `executemany`, one transaction per 500 rows (WAL, synchronous=NORMAL).
`--max-pages N` is CLOSESPIDER_PAGECOUNT: Scrapy is slow, so the bench stops it early.
`--delay S` is DOWNLOAD_DELAY (not randomized); `--follow-prefix P` also follows links to
URLs starting with P on hosts that are no seed's (the broad benchmark's hidden hosts).
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any
from urllib.parse import urlsplit

import scrapy
from common import arg_parser, expected_file, read_lines, report
from scrapy.crawler import CrawlerProcess


class SiteSpider(scrapy.Spider):
    name = "bench"

    def __init__(
        self, seeds: list[str], store: bool, follow: tuple[str, ...] = (), **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.seeds = seeds
        self.hosts = {urlsplit(s).netloc for s in seeds}
        self.follow = follow
        self.store = store
        self.fetched: list[str] = []

    async def start(self) -> Any:
        for url in self.seeds:
            yield scrapy.Request(url, callback=self.parse)

    def parse(self, response: Any) -> Any:
        if response.status == 200:
            self.fetched.append(response.url)
        if self.store:
            yield {"url": response.url, "status": response.status, "body": response.body}
        for href in response.css("a::attr(href)").getall():
            url = response.urljoin(href)
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https"):
                continue
            if parts.netloc in self.hosts or (self.follow and url.startswith(self.follow)):
                yield scrapy.Request(url, callback=self.parse)


class SQLitePipeline:
    BATCH = 500

    def __init__(self, path: str) -> None:
        self.path = path
        self.rows: list[tuple[str, int, bytes]] = []
        self.db: sqlite3.Connection | None = None

    @classmethod
    def from_crawler(cls, crawler: Any) -> SQLitePipeline:
        return cls(crawler.settings.get("BENCH_DB"))

    def open_spider(self, spider: Any = None) -> None:
        self.db = sqlite3.connect(self.path)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS pages (url TEXT PRIMARY KEY, status INTEGER, body BLOB)"
        )

    def process_item(self, item: dict[str, Any], spider: Any = None) -> dict[str, Any]:
        self.rows.append((item["url"], item["status"], item["body"]))
        if len(self.rows) >= self.BATCH:
            self.flush()
        return item

    def flush(self) -> None:
        assert self.db is not None
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO pages VALUES (?, ?, ?)", self.rows)
        self.rows.clear()

    def close_spider(self, spider: Any = None) -> None:
        self.flush()
        assert self.db is not None
        self.db.close()


def main() -> None:
    ap = arg_parser(__doc__.splitlines()[0])
    ap.add_argument("--db", help="store pages into this SQLite file")
    ap.add_argument("--max-pages", type=int, default=0, help="stop after N responses (0: all)")
    ap.add_argument("--delay", type=float, default=0, help="DOWNLOAD_DELAY, not randomized")
    ap.add_argument("--follow-prefix", action="append", default=[], help="also follow these")
    args = ap.parse_args()
    settings: dict[str, Any] = {
        "ROBOTSTXT_OBEY": True,
        "CONCURRENT_REQUESTS": args.concurrency,
        "CONCURRENT_REQUESTS_PER_DOMAIN": args.per_host,
        "DOWNLOAD_DELAY": args.delay,
        "RANDOMIZE_DOWNLOAD_DELAY": False,
        "LOG_LEVEL": "WARNING",
        "TELNETCONSOLE_ENABLED": False,  # no listening port besides the site's
        "HTTPPROXY_ENABLED": False,  # loopback only, whatever the environment says
    }
    if args.max_pages:
        settings["CLOSESPIDER_PAGECOUNT"] = args.max_pages
    if args.db:
        settings["BENCH_DB"] = args.db
        settings["ITEM_PIPELINES"] = {SQLitePipeline: 300}
    process = CrawlerProcess(settings)
    crawler = process.create_crawler(SiteSpider)
    start = time.perf_counter()
    seeds = read_lines(args.seeds)
    process.crawl(crawler, seeds=seeds, store=bool(args.db), follow=tuple(args.follow_prefix))
    process.start()
    seconds = time.perf_counter() - start
    spider = crawler.spider
    stats = crawler.stats.get_stats()
    report(
        "scrapy-sqlite" if args.db else "scrapy",
        seconds,
        spider.fetched,
        expected_file(args),
        scrapy=scrapy.__version__,
        robots_forbidden=stats.get("robotstxt/forbidden", 0),
        errors=stats.get("log_count/ERROR", 0),
    )


if __name__ == "__main__":
    main()
