"""robots.txt per RFC 9309: fetch once per host, parse with protego, cache with an expiry.

Status handling (RFC 9309 2.3.1): 2xx -> the rules; 3xx -> followed up to 5 hops;
4xx but 429 -> no rules, everything allowed; 5xx, 429 or unreachable -> `unreachable`
rules that allow nothing: the frontier holds the host (fetches none of its pages) and
asks again on the page retry schedule (RFC 9309 2.3.1.4), and after the last retry
gives the host's URLs up with an error row each. A body over `MAX_BYTES` is cut at
its last whole line.
"""

from __future__ import annotations

import dataclasses
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
from protego import Protego

from crawler.fetcher import fetch
from crawler.netbytes import location_url
from crawler.network import Network
from crawler.records import ErrorKind
from crawler.urls import canonical_url

MAX_BYTES = 512_000  # RFC 9309 2.5: parse at least 500 KiB; we keep exactly that much
MAX_HOPS = 5  # RFC 9309 2.3.1.2
TTL = 24 * 3600.0  # RFC 9309 2.4: do not use a cached copy for more than 24 hours
UNREACHABLE_TTL = 60.0  # how long a 5xx/unreachable robots.txt keeps a host closed


@dataclass(frozen=True, slots=True)
class Rules:
    """A host's robots.txt as we will obey it."""

    parser: Protego | None  # None: no rules (everything allowed or everything disallowed)
    allow_all: bool
    crawl_delay: float | None
    status: int | None
    error: str | None
    body: str | None
    expires: float
    retry_after: float | None = None  # seconds the server asked us to wait (429, 503)
    retryable: bool = True  # False: asking again cannot help (a refused private address)

    @property
    def unreachable(self) -> bool:
        """5xx, 429 or no answer: the host is held and robots.txt asked for again."""
        return self.parser is None and not self.allow_all

    def allows(self, url: str, user_agent: str) -> bool:
        if self.parser is None:
            return self.allow_all
        return bool(self.parser.can_fetch(url, user_agent))


def parse(body: str, user_agent: str, *, status: int | None = 200) -> Rules:
    parser = Protego.parse(body)
    delay = parser.crawl_delay(user_agent)
    return Rules(
        parser=parser,
        allow_all=True,
        crawl_delay=float(delay) if delay is not None else None,
        status=status,
        error=None,
        body=body,
        expires=time.monotonic() + TTL,
    )


def restored(status: int, body: str | None, user_agent: str, fetched_at: float) -> Rules:
    """Rules from a robots.txt stored by an earlier run, expiring 24 h after its fetch."""
    rules = (
        parse(body or "", user_agent, status=status) if 200 <= status < 300 else _open(status, None)
    )
    left = fetched_at + TTL - time.time()
    return dataclasses.replace(rules, expires=time.monotonic() + left)


async def fetch_rules(
    session: aiohttp.ClientSession,
    origin: str,
    user_agent: str,
    *,
    timeout: float,
    on_sent: Callable[[float], None] | None = None,
    network: Network | None = None,
) -> Rules:
    """Fetch and interpret `origin`/robots.txt (origin is scheme://host[:port]).

    Through the run's `network` (its proxy and private-address guard), but never
    limited by --accept-type: robots.txt is read whatever its type.
    """
    url = origin + "/robots.txt"
    for _ in range(MAX_HOPS + 1):
        resp = await fetch(
            session, url, timeout=timeout, max_bytes=MAX_BYTES, on_sent=on_sent, network=network
        )
        status = resp.status
        if status is None:
            if (resp.error or "").startswith(ErrorKind.PRIVATE):
                # Not the host's failure but our refusal: its URLs get that reason as is.
                return _closed(None, resp.error or "", retryable=False)
            return _closed(None, f"robots.txt unreachable: {resp.error}", retryable=resp.retryable)
        if status == 429 or status >= 500:
            return _closed(status, f"robots.txt unreachable: HTTP {status}", resp.retry_after)
        if 300 <= status < 400:
            location = resp.header("Location")
            target = canonical_url(location_url(location), url) if location else None
            if target is None:
                return _open(status, "robots.txt redirect to an unusable URL")
            url = target
            continue
        if 200 <= status < 300:
            body = resp.body
            if resp.truncated:
                # RFC 9309 2.5: parse what fits; a rule cut in half ("Disallow: /" from
                # "Disallow: /private") must not count, so the partial last line goes.
                body = body[: body.rfind(b"\n") + 1]
            text = body.decode("utf-8-sig", errors="replace")
            return parse(text, user_agent, status=status)
        if 400 <= status < 500:
            return _open(status, None)
        return _closed(status, f"robots.txt unreachable: HTTP {status}")  # 1xx and the like
    # RFC 9309 2.3.1.2: past 5 redirects, treat as unavailable (4xx): allow all.
    return _open(None, "robots.txt redirected too often")


def _open(status: int | None, error: str | None) -> Rules:
    return Rules(None, True, None, status, error, None, time.monotonic() + TTL)


def _closed(
    status: int | None, error: str, retry_after: float | None = None, *, retryable: bool = True
) -> Rules:
    return Rules(
        None,
        False,
        None,
        status,
        error,
        None,
        time.monotonic() + UNREACHABLE_TTL,
        retry_after,
        retryable,
    )


class RobotsCache:
    """Rules per origin, least recently used dropped first so memory stays bounded."""

    def __init__(self, max_hosts: int = 10_000) -> None:
        self.max_hosts = max_hosts
        self._rules: OrderedDict[str, Rules] = OrderedDict()

    def get(self, origin: str) -> Rules | None:
        rules = self._rules.get(origin)
        if rules is None:
            return None
        if rules.expires < time.monotonic():
            del self._rules[origin]
            return None
        self._rules.move_to_end(origin)
        return rules

    def put(self, origin: str, rules: Rules) -> None:
        self._rules[origin] = rules
        self._rules.move_to_end(origin)
        while len(self._rules) > self.max_hosts:
            self._rules.popitem(last=False)
