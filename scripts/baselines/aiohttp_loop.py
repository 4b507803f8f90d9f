"""The ceiling of the stack: a bare aiohttp + selectolax crawl loop, nothing persisted.

One session whose connector holds the global and per-host limits, a queue, N workers, a
seen-set of URLs, Lexbor's `a[href]`, `urljoin` and a fragment strip. robots.txt is not
read (/private/ is skipped by rule) and nothing is stored. uvloop runs the loop when it is
installed, as it does for the crawler (`--loop asyncio` to compare).

`--list` fetches every URL of expected.txt instead, parsing nothing: the most an aiohttp
client gets out of the server on this machine (the server's ceiling, as a crawler sees it).

`--db PATH` (runner aiohttp-sqlite) also keeps what the crawler's contract tables keep at
the least: every response's URL, status, type, time and body, and every link as a
(source, destination) row with an index on the destination, written to SQLite in WAL mode
(synchronous NORMAL) by a thread, 500 pages to a commit. Not kept: the frontier, headers,
hashes, titles, text. The price of keeping the bytes, apart from the crawler's other work.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import queue
import sqlite3
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from urllib.parse import urldefrag, urljoin, urlsplit

import aiohttp
from common import arg_parser, expected_file, read_lines, report
from selectolax.lexbor import LexborHTMLParser

Page = tuple[str, int, str, float, bytes]  # url, status, content type, fetched at, body
Links = tuple[str, list[str]]  # a page's URL, the URLs its links point to


class Keeper:
    """Pages and links into SQLite, a batch at a time on a writer thread (the event loop
    only appends tuples), as a bare crawler that keeps everything would."""

    BATCH = 500

    def __init__(self, path: str) -> None:
        self.pages: list[Page] = []
        self.links: list[Links] = []
        self._batches: queue.SimpleQueue[tuple[list[Page], list[Links]] | None]
        self._batches = queue.SimpleQueue()
        self.error: BaseException | None = None  # the writer's, raised by `close`
        self._thread = threading.Thread(target=self._write, args=(path,))
        self._thread.start()

    def add(self, url: str, status: int, ctype: str, body: bytes, links: list[str]) -> None:
        self.pages.append((url, status, ctype, time.time(), body))
        self.links.append((url, links))
        if len(self.pages) >= self.BATCH:
            self._batches.put((self.pages, self.links))
            self.pages, self.links = [], []

    def close(self) -> None:
        self._batches.put((self.pages, self.links))
        self._batches.put(None)
        self._thread.join()
        if self.error is not None:
            raise self.error  # a run whose pages were not kept is no aiohttp-sqlite run

    def _write(self, path: str) -> None:
        try:
            self._write_all(path)
        except BaseException as exc:
            self.error = exc

    def _write_all(self, path: str) -> None:
        db = sqlite3.connect(path)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(
            "CREATE TABLE IF NOT EXISTS pages (id INTEGER PRIMARY KEY, url TEXT UNIQUE, "
            "status INTEGER, content_type TEXT, fetched_at REAL, body BLOB);"
            "CREATE TABLE IF NOT EXISTS links (src TEXT, dst TEXT);"
            "CREATE INDEX IF NOT EXISTS links_dst ON links (dst);"
        )
        while (batch := self._batches.get()) is not None:
            pages, links = batch
            with db:
                db.executemany(
                    "INSERT OR REPLACE INTO pages (url, status, content_type, fetched_at, body) "
                    "VALUES (?, ?, ?, ?, ?)",
                    pages,
                )
                # One statement a page, its links a JSON array: one row bound at a time
                # takes the GIL back from the event loop for each of them.
                db.executemany(
                    "INSERT INTO links SELECT ?, value FROM json_each(?)",
                    [(src, json.dumps(dst)) for src, dst in links],
                )
        db.close()


async def crawl(
    seeds: list[str], concurrency: int, per_host: int, keeper: Keeper | None = None
) -> tuple[list[str], int]:
    """The crawl; with `keeper`, every response and every link is also kept."""
    hosts = {urlsplit(s).netloc for s in seeds}
    seen = set(seeds)
    queue: asyncio.Queue[str] = asyncio.Queue()
    for seed in seeds:
        queue.put_nowait(seed)
    fetched: list[str] = []
    errors = 0

    def follow(base: str, body: bytes, links: list[str] | None = None) -> None:
        for node in LexborHTMLParser(body).css("a[href]"):
            href = node.attributes.get("href")
            if not href:
                continue
            url = urldefrag(urljoin(base, href.strip()))[0]
            if links is not None:
                links.append(url)
            if url in seen:
                continue
            seen.add(url)
            parts = urlsplit(url)
            if (
                parts.scheme in ("http", "https")
                and parts.netloc in hosts
                and not parts.path.startswith("/private/")
            ):
                queue.put_nowait(url)

    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=per_host)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def work() -> None:
            nonlocal errors
            while True:
                url = await queue.get()
                try:
                    async with session.get(url) as resp:
                        body = await resp.read()
                        html = resp.content_type == "text/html"
                        ok = resp.status == 200
                    if ok:
                        fetched.append(url)
                    else:
                        errors += 1
                    links: list[str] = []
                    if html:
                        follow(url, body, links if keeper is not None else None)
                    if keeper is not None:
                        keeper.add(url, resp.status, resp.content_type, body, links)
                except (aiohttp.ClientError, TimeoutError):
                    errors += 1
                finally:
                    queue.task_done()  # in finally: a lost task_done() hangs join() forever

        workers = [asyncio.create_task(work()) for _ in range(concurrency)]
        await queue.join()
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
    return fetched, errors


async def fetch_list(urls: list[str], concurrency: int, per_host: int) -> tuple[list[str], int]:
    fetched: list[str] = []
    errors = 0
    todo = iter(urls)  # shared by the workers: the loop is single-threaded
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=per_host)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def work() -> None:
            nonlocal errors
            for url in todo:
                try:
                    async with session.get(url) as resp:
                        await resp.read()
                        ok = resp.status == 200
                    if ok:
                        fetched.append(url)
                    else:
                        errors += 1
                except (aiohttp.ClientError, TimeoutError):
                    errors += 1

        await asyncio.gather(*(work() for _ in range(concurrency)))
    return fetched, errors


def round_robin(urls: list[str]) -> list[str]:
    """URLs interleaved host by host, so consecutive requests go to different hosts."""
    by_host: dict[str, list[str]] = defaultdict(list)
    for url in urls:
        by_host[urlsplit(url).netloc].append(url)
    return [u for group in itertools.zip_longest(*by_host.values()) for u in group if u]


def runner(loop: str) -> Callable[..., tuple[list[str], int]]:
    if loop == "uvloop":
        try:
            import uvloop
        except ImportError:
            loop = "asyncio"
        else:
            return uvloop.run
    return asyncio.run


def main() -> None:
    ap = arg_parser(__doc__.splitlines()[0])
    ap.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    ap.add_argument("--list", action="store_true", help="fetch expected.txt, parse nothing")
    ap.add_argument("--db", help="keep pages and links in this SQLite file (aiohttp-sqlite)")
    args = ap.parse_args()
    expected = expected_file(args)
    run = runner(args.loop)
    loop = "uvloop" if run is not asyncio.run else "asyncio"
    start = time.perf_counter()
    if args.list:
        urls = round_robin(read_lines(expected))
        fetched, errors = run(fetch_list(urls, args.concurrency, args.per_host))
        name = "fetch-only"
    else:
        seeds = read_lines(args.seeds)
        keeper = Keeper(args.db) if args.db else None
        try:
            fetched, errors = run(crawl(seeds, args.concurrency, args.per_host, keeper))
        finally:
            if keeper is not None:
                keeper.close()  # the last batch committed: part of the run's time
        name = "aiohttp-sqlite" if keeper is not None else "aiohttp-loop"
    seconds = time.perf_counter() - start
    report(name, seconds, fetched, expected, errors=errors, loop=loop)


if __name__ == "__main__":
    main()
