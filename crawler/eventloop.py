"""How a crawl runs in its thread: on uvloop when installed, with the cyclic GC spaced out."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import Callable, Iterator

# A page allocates hundreds of objects that refcounting frees, but 64 requests in flight
# keep thousands alive: at the default 700 each young collection rescans them, about 5%
# of the crawl's CPU on the benchmark site; at 50,000, 0.3%. Cycles wait a little longer.
GC_YOUNG = 50_000


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed: its event loop is markedly cheaper per request."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


@contextlib.contextmanager
def crawl_runner() -> Iterator[asyncio.Runner]:
    """An asyncio.Runner on `loop_factory()`'s loop, with the young GC generation at
    `GC_YOUNG` until it closes (then the process' own thresholds again)."""
    before = gc.get_threshold()
    gc.set_threshold(max(before[0], GC_YOUNG), *before[1:])
    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            yield runner
    finally:
        gc.set_threshold(*before)
