"""A server process for politeness tests: many loopback hosts, each with robots.txt, `/`
linking `/a` and `/b`; it records when each request's head arrived (the kernel's receive
stamp, `stamps.arrival`, not when its handler ran), on its own event loop and its own
core, as a real server would, and how many connections were open then (all hosts').

    python gap_server.py 127.0.3. 200 LOG   # prints "PORT\\n" when ready; SIGTERM: writes LOG
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import weakref

from aiohttp import web
from stamps import Conns, arrival, listener


async def main(prefix: str, count: int, log_path: str) -> None:
    hits: list[tuple[str, str, float, int]] = []
    conns: Conns = weakref.WeakValueDictionary()  # every host's connections

    async def handle(request: web.Request) -> web.StreamResponse:
        hits.append((request.host, request.path, arrival(request, conns), len(conns)))
        if request.path == "/robots.txt":
            return web.Response(text="User-agent: *\nAllow: /\n")
        body = '<a href="/a">a</a><a href="/b">b</a>' if request.path == "/" else "leaf"
        return web.Response(text=f"<html><body>{body}</body></html>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    port = 0
    for i in range(1, count + 1):
        sock = listener(f"{prefix}{i}", port, conns)
        await web.SockSite(runner, sock).start()
        port = sock.getsockname()[1]
    print(port, flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await runner.cleanup()
    with open(log_path, "w") as fh:  # noqa: ASYNC230 (at exit, nothing else runs)
        json.dump(hits, fh)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
