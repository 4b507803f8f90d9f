"""The event loop a crawl runs on: uvloop when installed, asyncio's own otherwise."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed: its event loop is markedly cheaper per request."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
