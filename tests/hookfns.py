"""Hooks the tests name as `hookfns:NAME`: importable in every process of a crawl."""

from __future__ import annotations

import os
import time
from typing import Any

from crawler import Page


def fields(page: Page) -> dict[str, Any] | None:
    """The first <h1>, read from the tree the crawler parsed, and what the page offered."""
    if page.document is None:
        return {"status": page.status}
    h1 = page.document.css_first("h1")
    return {
        "h1": h1.text() if h1 is not None else None,
        "status": page.status,
        "links": len(page.links),
        "server": page.header("server") is not None,
    }


def pid(page: Page) -> dict[str, Any]:
    return {"pid": os.getpid()}


def boom(page: Page) -> dict[str, Any]:
    if page.url.endswith("/bad"):
        raise ValueError("no good\nat all")
    return {"ok": True}


def keep_only_keep(page: Page) -> None:
    """Follow only links whose path holds /keep: the others are recorded, not fetched."""
    page.links[:] = [url for url in page.links if "/keep" in url]


def adds_a_link(page: Page) -> dict[str, Any]:
    page.links.append("http://127.0.0.99/invented")
    return {"seen": True}


async def async_fields(page: Page) -> dict[str, Any]:
    return {"async": page.url}


not_callable = 42


def unhashable_links(page: Page) -> None:
    page.links.append([page.url])  # type: ignore[arg-type]


_stalled = False


def stall(page: Page) -> None:
    """Block the crawler's event loop for $STALL_SECONDS on the first page past the seeds,
    once per process (a slow synchronous hook); no-op where the variable is unset."""
    global _stalled
    seconds = float(os.environ.get("STALL_SECONDS", "0"))
    if seconds and page.depth > 0 and not _stalled:
        _stalled = True
        time.sleep(seconds)
