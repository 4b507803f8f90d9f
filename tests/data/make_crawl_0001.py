"""The site behind tests/data/crawl_0001.db, and the script that wrote that file.

`crawl_0001.db` is a real crawl file written by the 0001 schema (the code at the commit
before migration 0002), stopped by --max-pages so that URLs stay queued. The upgrade test
(tests/test_migrations.py) serves `SITE` again on the same address and resumes it.

To write it again, from the repository root, with the code of a 0001-schema commit:

    rm -rf /tmp/head && mkdir /tmp/head && git archive COMMIT | tar -x -C /tmp/head
    cp -r /tmp/head/migrations /tmp/head/crawler/migrations  # not the work tree's
    PYTHONPATH=/tmp/head .venv/bin/python tests/data/make_crawl_0001.py tests/data/crawl_0001.db
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from pathlib import Path

from aiohttp import web

IP = "127.0.0.201"  # an address no other test uses: the stored URLs name it and the port
PORT = 48201
ORIGIN = f"http://{IP}:{PORT}"
OUTSIDE = "http://127.0.0.202:48202/elsewhere"  # out of scope: a link, never fetched
MAX_PAGES = 14


def _html(title: str, links: list[str]) -> bytes:
    anchors = "".join(f'<a href="{href}">{href}</a>\n' for href in links)
    return f"<html><head><title>{title}</title></head><body>{anchors}</body></html>".encode()


def site() -> dict[str, tuple[int, dict[str, str], bytes]]:
    """path -> (status, headers, body): the same bytes every time."""
    pages: dict[str, tuple[int, dict[str, str], bytes]] = {}
    html = {"Content-Type": "text/html; charset=utf-8"}
    sections = ["/a", "/b", "/c"]
    root = ["/old", "/missing", "/bin", "/private/x", "/loop", OUTSIDE, *sections]
    pages["/"] = (200, html, _html("home", root))
    pages["/robots.txt"] = (
        200,
        {"Content-Type": "text/plain"},
        b"User-agent: *\nDisallow: /private/\n",
    )
    pages["/old"] = (301, {"Location": "/mid"}, b"")
    pages["/mid"] = (302, {"Location": "/end"}, b"")
    pages["/end"] = (200, html, _html("end", ["/"]))
    pages["/loop"] = (301, {"Location": "/loop"}, b"")
    pages["/bin"] = (200, {"Content-Type": "application/octet-stream"}, bytes(range(256)) * 4)
    for s in sections:
        children = [f"{s}/{i}" for i in range(6)]
        pages[s] = (200, html, _html(s, children))
        for i, child in enumerate(children):
            pages[child] = (200, html, _html(child, [s, f"{s}/{(i + 1) % 6}", "/missing"]))
    return pages


async def serve(ip: str = IP, port: int = PORT) -> web.AppRunner:
    """Serve `site()` on ip:port; 404 for any other path. Clean up the returned runner."""
    pages = site()

    async def handle(request: web.Request) -> web.StreamResponse:
        found = pages.get(request.path)
        if found is None:
            return web.Response(status=404, text="not found")
        status, headers, body = found
        return web.Response(status=status, headers=headers, body=body)

    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, ip, port).start()
    return runner


async def main(db: str) -> None:
    import crawler
    from crawler.config import Settings
    from crawler.run import crawl

    here = Path(__file__).resolve().parents[2]
    if Path(crawler.__file__).resolve().is_relative_to(here):
        sys.exit("run with PYTHONPATH pointing at a checkout of the 0001 schema, not the work tree")
    runner = await serve()
    try:
        settings = Settings(concurrency=1, per_host=1, retries=0, timeout=5.0, max_pages=MAX_PAGES)
        await crawl(db, settings, [ORIGIN + "/"])
    finally:
        await runner.cleanup()
    with sqlite3.connect(db) as conn:
        versions = [v for (v,) in conn.execute("SELECT version FROM schema_migrations")]
        assert versions == [1], versions
        conn.execute("VACUUM")
    conn.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
