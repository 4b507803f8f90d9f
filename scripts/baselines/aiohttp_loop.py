"""The ceiling of the stack: a bare aiohttp + selectolax crawl loop, nothing persisted.

One session whose connector holds the global and per-host limits, a queue, N workers, a
seen-set of URLs, Lexbor's `a[href]`, `urljoin` and a fragment strip. robots.txt is not
read (/private/ is skipped by rule) and nothing is stored. uvloop runs the loop when it is
installed, as it does for the crawler (`--loop asyncio` to compare).

`--list` fetches every URL of expected.txt instead, parsing nothing: the most an aiohttp
client gets out of the server on this machine (the server's ceiling, as a crawler sees it).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import defaultdict
from collections.abc import Callable
from urllib.parse import urldefrag, urljoin, urlsplit

import aiohttp
from common import arg_parser, expected_file, read_lines, report
from selectolax.lexbor import LexborHTMLParser


async def crawl(seeds: list[str], concurrency: int, per_host: int) -> tuple[list[str], int]:
    hosts = {urlsplit(s).netloc for s in seeds}
    seen = set(seeds)
    queue: asyncio.Queue[str] = asyncio.Queue()
    for seed in seeds:
        queue.put_nowait(seed)
    fetched: list[str] = []
    errors = 0

    def follow(base: str, body: bytes) -> None:
        for node in LexborHTMLParser(body).css("a[href]"):
            href = node.attributes.get("href")
            if not href:
                continue
            url = urldefrag(urljoin(base, href.strip()))[0]
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
                    if html:
                        follow(url, body)
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
        fetched, errors = run(crawl(seeds, args.concurrency, args.per_host))
        name = "aiohttp-loop"
    seconds = time.perf_counter() - start
    report(name, seconds, fetched, expected, errors=errors, loop=loop)


if __name__ == "__main__":
    main()
