"""Revisiting stored pages (`crawler recrawl`): conditional requests, what changed, and
the adaptive revisit interval. Pure functions; the store and the outcome apply them.

The schedule is Nutch's AdaptiveFetchSchedule (and StormCrawler's AdaptiveScheduler): a
page found changed is revisited sooner (its interval x`SHRINK`), one found unchanged later
(x`GROW`), within `recrawl_min_interval` and `recrawl_max_interval`; a page gone waits the
longest interval, a failed fetch keeps its interval.
"""

from __future__ import annotations

import json
import re

from crawler.config import Settings
from crawler.errors import UsageError
from crawler.records import Change, Outcome, PageRow, QueuedURL, Stored, URLState

SHRINK = 0.8  # Nutch's db.fetch.schedule.adaptive.dec_rate 0.2
GROW = 1.4  # Nutch's db.fetch.schedule.adaptive.inc_rate 0.4
GONE_STATUSES = (404, 410)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def duration_seconds(text: str) -> float:
    """Seconds in a duration: "90s" -> 90.0, "15m" -> 900.0, "2h", "7d", "1w"; a bare
    number is seconds. UsageError otherwise."""
    match = _DURATION.match(text.lower())
    if match is None:
        raise UsageError(
            f"invalid duration {text!r}: expected a number and s, m, h, d or w (90s, 7d)"
        )
    return float(match.group(1)) * _UNITS[match.group(2)]


def stored_page(
    status: int | None, content_hash: str | None, headers: str | None, interval: float | None
) -> Stored:
    """A stored page's row as a recrawl needs it: its validators read from its headers."""
    etag = last_modified = None
    if headers and status is not None and 200 <= status < 300:
        # Validators belong to the body they came with: a 2xx's only.
        try:
            pairs = json.loads(headers)
        except ValueError:
            pairs = []
        for pair in pairs if isinstance(pairs, list) else []:
            if not (isinstance(pair, list) and len(pair) == 2):
                continue
            name, value = pair
            if not isinstance(name, str) or not _sendable(value):
                continue
            if name.lower() == "etag" and etag is None:
                etag = value
            elif name.lower() == "last-modified" and last_modified is None:
                last_modified = value
    return Stored(status, content_hash, etag, last_modified, interval)


def _sendable(value: object) -> bool:
    # Stored header text escapes bytes that were not UTF-8 (`\xHH`): such a value is not
    # what the server sent, so it is not sent back.
    return isinstance(value, str) and value.isascii() and value.isprintable() and "\\" not in value


def conditional_headers(stored: Stored | None) -> dict[str, str] | None:
    """RFC 9110 13.1: If-None-Match from the stored ETag, If-Modified-Since from the
    stored Last-Modified (a server that knows both answers by the ETag)."""
    if stored is None:
        return None
    out = {}
    if stored.etag:
        out["If-None-Match"] = stored.etag
    if stored.last_modified:
        out["If-Modified-Since"] = stored.last_modified
    return out or None


def is_failure(status: int | None) -> bool:
    """No usable answer: a network error, 429 or 5xx (the ones a crawl retries)."""
    return status is None or status == 429 or status >= 500


def change_of(stored: Stored, status: int | None, digest: str | None) -> Change:
    """What a fetch found against the stored page: 304, or the same status and body hash,
    is unchanged; 404/410 is gone; no usable answer is failed; anything else changed."""
    if status == 304:
        return Change.UNCHANGED
    if is_failure(status):
        return Change.FAILED
    if status in GONE_STATUSES:
        return Change.GONE
    if status == stored.status and digest == stored.content_hash:
        return Change.UNCHANGED
    return Change.CHANGED


def next_interval(settings: Settings, change: Change, current: float | None) -> float:
    """The page's revisit interval after a fetch that found `change`."""
    interval = current if current is not None else settings.recrawl_interval
    if change is Change.CHANGED:
        interval *= SHRINK
    elif change is Change.UNCHANGED:
        interval *= GROW
    elif change is Change.GONE:
        interval = settings.recrawl_max_interval
    return min(max(interval, settings.recrawl_min_interval), settings.recrawl_max_interval)


def error_outcome(item: QueuedURL, row: PageRow) -> Outcome:
    """The outcome of an error row made without a response (a dropped host, an internal
    error): for a stored page, a failed fetch that keeps the page, not a second row."""
    if item.stored is None:
        return Outcome(url=item.url, state=URLState.DONE, page=row)
    return Outcome(
        url=item.url,
        state=URLState.DONE,
        page=row,
        change=Change.FAILED,
        interval=item.stored.interval,
    )
