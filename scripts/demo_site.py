"""A small, deterministic, multi-host demo website served on loopback, for offline crawls.

    python scripts/demo_site.py [--hosts 4] [--pages 25] [--port 8765] [--base-ip 127.0.0.2]

Host k listens on 127.0.0.(2+k):PORT (Linux routes all of 127.0.0.0/8 to lo, so no setup is
needed). The seed URLs are printed one per line, then the site serves until SIGINT/SIGTERM.
Every mistake a crawler can make here (following robots-disallowed, mailto: or javascript:
links, ignoring <base href>, not removing fragments or normalising case and dot segments)
shows up as an extra URL: a correct crawl fetches exactly `expected_urls(...)` per host.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import os
import random
import signal
import sys
from pathlib import Path

from aiohttp import web

TEXT = (
    "crawler frontier polite async queue host slot robots fetch parse link canonical fragment "
    "scheme redirect budget depth worker resume sqlite page body header status retry delay"
)
WORDS = TEXT.split()  # the vocabulary of the generated prose
# Linked from the home page and, one each, from the pages. /private/ is disallowed by robots.txt.
SPECIALS = ("/moved", "/missing", "/data.json", "/report.pdf", "/about/", "/private/report")
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def host_addr(base_ip: str, host_index: int) -> str:
    """The loopback address of host k, e.g. host_addr("127.0.0.2", 1) == "127.0.0.3"."""
    addr = ipaddress.IPv4Address(base_ip) + host_index
    if addr not in ipaddress.IPv4Network("127.0.0.0/8"):
        raise ValueError(f"{addr} is outside 127.0.0.0/8: the demo site serves only loopback")
    return str(addr)


def expected_urls(
    host_index: int, hosts: int, pages: int, port: int, base_ip: str = "127.0.0.2"
) -> list[str]:
    """The URLs a correct crawl (default options, all hosts seeded) fetches from one host."""
    root = f"http://{host_addr(base_ip, host_index)}:{port}"
    paths = ["/", *(f"/page/{i}" for i in range(max(pages, 1))), *SPECIALS[:-1]]
    return [root + p for p in paths]


def _html(title: str, body: str, head: str = "") -> web.Response:
    page = (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">{head}'
        f"<title>{title}</title></head>\n<body>\n<h1 id=top>{title}</h1>\n{body}\n</body></html>\n"
    )
    return web.Response(text=page, content_type="text/html", charset="utf-8")


def _prose(seed: int, paragraphs: int = 6) -> str:
    rng = random.Random(seed)  # seeded: the same text on every run
    return "\n".join(
        "<p>" + " ".join(rng.choice(WORDS) for _ in range(80)) + ".</p>" for _ in range(paragraphs)
    )


def build_app(
    host_index: int, hosts: int, pages: int, port: int, base_ip: str = "127.0.0.2"
) -> web.Application:
    """The site of host k; absolute links name the other hosts by their loopback address."""
    n = max(pages, 1)

    def other(step: int) -> str:
        return f"{host_addr(base_ip, (host_index + step) % hosts)}:{port}"

    me = other(0)

    async def home(request: web.Request) -> web.Response:
        links = [*(f"/page/{i}" for i in range(n)), *SPECIALS]
        items = "\n".join(f'<li><a href="{href}">{href}</a></li>' for href in links)
        return _html(f"Demo host {host_index}", f"<ul>\n{items}\n</ul>\n{_prose(host_index, 2)}")

    async def page(request: web.Request) -> web.Response:
        i = int(request.match_info["i"])
        if i >= n:
            raise web.HTTPNotFound()
        links = [
            (f"{(i + 1) % n}", "next (relative)"),
            (f"/page/{(i * 7 + 3) % n}", "root-relative"),
            (f"/page/{(i + 2) % n}#part-2", "with a fragment"),
            ("#top", "this page's top"),
            (f"HTTP://{me}/page/{(i + 5) % n}", "upper-case scheme"),
            (f"../page/./{(i + 4) % n}", "dot segments"),
            ("mailto:webmaster@example.invalid", "mail"),
            ("javascript:void(0)", "script"),
            (SPECIALS[i % len(SPECIALS)], "a special URL"),
        ]
        if hosts > 1:
            links.append((f"http://{other(1)}/page/{i}", "next host"))
            links.append((f"//{other(hosts - 1)}/page/{(i + 1) % n}#x", "previous host"))
        nav = "\n".join(f'<li><a href="{href}">{text}</a></li>' for href, text in links)
        body = f"{_prose(host_index * 100_003 + i)}\n<ul>\n{nav}\n</ul>"
        return _html(f"Host {host_index}, page {i}", body)

    async def about(request: web.Request) -> web.Response:
        # Relative links resolve against <base href>; a crawler that ignores it asks for /about/0.
        links = "\n".join(f'<li><a href="{i}">page {i}</a></li>' for i in range(min(n, 3)))
        nofollow = f'<a rel="nofollow" href="/page/{n - 1}">also linked without nofollow</a>'
        return _html("About", f"<ul>\n{links}\n</ul>\n<p>{nofollow}</p>", '<base href="/page/">')

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPMovedPermanently(location=f"/page/{n - 1}")

    async def private(request: web.Request) -> web.Response:
        return _html("Private", "<p>robots.txt disallows this page.</p>")

    async def robots(request: web.Request) -> web.Response:
        return web.Response(text="User-agent: *\nDisallow: /private/\n")

    async def data(request: web.Request) -> web.Response:
        return web.json_response({"host": host_index, "hosts": hosts, "pages": n})

    async def report(request: web.Request) -> web.Response:
        return web.Response(body=PDF, content_type="application/pdf")

    app = web.Application()
    app.router.add_get("/", home)
    app.router.add_get(r"/page/{i:0|[1-9]\d*}", page)  # no /page/007 aliases
    app.router.add_get("/about/", about)
    app.router.add_get("/moved", moved)
    app.router.add_get("/private/{name}", private)
    app.router.add_get("/robots.txt", robots)
    app.router.add_get("/data.json", data)
    app.router.add_get("/report.pdf", report)
    return app


def _write(path: str, text: str) -> None:
    # Write then rename, so a script polling for the file never reads half of it.
    tmp = Path(f"{path}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


async def serve(args: argparse.Namespace) -> None:
    addrs = [host_addr(args.base_ip, k) for k in range(args.hosts)]
    # One runner for every address: the Host header picks the site, as with real virtual hosts.
    root = web.Application()
    for k, addr in enumerate(addrs):
        root.add_domain(
            f"{addr}:{args.port}", build_app(k, args.hosts, args.pages, args.port, args.base_ip)
        )
    runner = web.AppRunner(root, access_log=None)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await runner.setup()
    try:
        for addr in addrs:
            await web.TCPSite(runner, addr, args.port).start()
        seeds = "".join(f"http://{addr}:{args.port}/\n" for addr in addrs)
        sys.stdout.write(seeds)
        sys.stdout.flush()
        if args.seeds_file:
            _write(args.seeds_file, seeds)
        if args.ready_file:
            _write(args.ready_file, seeds)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), args.duration)
    finally:
        await runner.cleanup()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=4, help="number of hosts (default 4)")
    parser.add_argument("--pages", type=int, default=25, help="pages per host (default 25)")
    parser.add_argument("--port", type=int, default=8765, help="port on every address")
    parser.add_argument("--base-ip", default="127.0.0.2", help="address of host 0")
    parser.add_argument("--seeds-file", help="also write the seed URLs here")
    parser.add_argument("--ready-file", help="write this file once every host is listening")
    parser.add_argument("--duration", type=float, help="stop by itself after S seconds")
    args = parser.parse_args()
    if args.hosts < 1 or args.pages < 1 or not 0 < args.port < 65536:
        parser.error("--hosts and --pages must be at least 1, --port between 1 and 65535")
    try:
        host_addr(args.base_ip, args.hosts - 1)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        asyncio.run(serve(args))
    except OSError as exc:
        print(f"demo_site: cannot listen: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
