"""Host names resolved once per crawl, so `--per-ip` groups hosts by the address the
connector really connects to (shared hosting and CDNs put many names on one address).

The connector asks `Addresses` (an aiohttp resolver) and so does the scheduler, through
`address()`; both see the one answer cached for the crawl. Failures are not cached: the
fetch that needed the name records its error, and a later URL of the host asks again.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import cast

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver


def literal(host: str) -> str | None:
    """`host` itself when it is an IP address (IPv6 with or without brackets)."""
    bare = host[1:-1] if host.startswith("[") else host
    try:
        return str(ipaddress.ip_address(bare))
    except ValueError:
        return None


def origin_host(origin: str) -> str:
    """The host of an origin key `scheme://host:port` (brackets kept for IPv6)."""
    authority = origin.partition("://")[2]
    host, colon, port = authority.rpartition(":")
    return host if colon and port.isdigit() else authority


class Addresses(AbstractResolver):
    def __init__(self, inner: AbstractResolver | None = None) -> None:
        self.inner = inner or DefaultResolver()
        self._answers: dict[str, list[ResolveResult]] = {}
        self._asking: dict[str, asyncio.Future[list[ResolveResult]]] = {}

    def address(self, host: str) -> str | None:
        """The address requests to `host` go to; None until it has been resolved."""
        found = literal(host)
        if found is not None:
            return found
        answers = self._answers.get(host)
        return answers[0]["host"] if answers else None

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        answers = self._answers.get(host)
        if answers is None:
            asking = self._asking.get(host)
            if asking is None:  # one question per name, however many ask at once
                asking = asyncio.ensure_future(self.inner.resolve(host, 0, family))
                self._asking[host] = asking
                asking.add_done_callback(lambda done: self._answered(host, done))
            answers = await asyncio.shield(asking)
        return [cast(ResolveResult, {**answer, "port": port}) for answer in answers]

    def _answered(self, host: str, done: asyncio.Future[list[ResolveResult]]) -> None:
        del self._asking[host]
        if not done.cancelled() and done.exception() is None:
            self._answers[host] = done.result()

    async def close(self) -> None:
        for asking in list(self._asking.values()):
            asking.cancel()
        await self.inner.close()
