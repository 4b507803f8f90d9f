"""The one pooled `ClientSession` and `fetch`: a request in, a `Response` record out.

`fetch` never raises for an HTTP status (statuses are data) nor for a network failure:
both come back as a `Response`, the latter with `status=None` and a readable `error`.
Redirects are not followed here: the engine sends every hop back through the frontier
so that scope, robots.txt, dedup and per-host politeness apply to each one.
"""

from __future__ import annotations

import asyncio
import email.utils
import ssl
import time
from dataclasses import dataclass

import aiohttp
import yarl

from crawler.config import Settings

CHUNK = 65_536
MAX_REASON = 300  # characters of an error reason kept on the row


@dataclass(frozen=True, slots=True)
class Response:
    """What one request produced; `status` is None when no HTTP response arrived."""

    url: str
    status: int | None
    headers: tuple[tuple[str, str], ...]
    body: bytes
    truncated: bool
    elapsed: float
    error: str | None = None
    retryable: bool = False

    def header(self, name: str) -> str | None:
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    @property
    def content_type(self) -> str | None:
        return self.header("Content-Type")

    @property
    def retry_after(self) -> float | None:
        """Seconds to wait from now, from a Retry-After header (RFC 9110 10.2.3)."""
        value = self.header("Retry-After")
        if value is None:
            return None
        value = value.strip()
        if value.isdigit():
            return float(value)
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        return max(0.0, when.timestamp() - time.time())


def make_session(
    settings: Settings, *, resolver: aiohttp.abc.AbstractResolver | None = None
) -> aiohttp.ClientSession:
    """The crawl's only session: its connector carries the global and per-host socket caps.

    The connector's limits are a safety net under the frontier's own politeness, which
    never lets more than `per_host` requests to one host start. `limit_per_host` caps
    sockets, not rate: the delay between requests is the frontier's job. `resolver`
    replaces aiohttp's default name resolution (tests map their own names to loopback).
    """
    connector = aiohttp.TCPConnector(
        limit=settings.concurrency,
        limit_per_host=settings.per_host,
        ttl_dns_cache=300,
        use_dns_cache=True,
        enable_cleanup_closed=False,
        resolver=resolver,
    )
    jar: aiohttp.abc.AbstractCookieJar = (
        aiohttp.CookieJar(unsafe=True) if settings.cookies else aiohttp.DummyCookieJar()
    )
    session = aiohttp.ClientSession(
        connector=connector,
        cookie_jar=jar,
        headers={"User-Agent": settings.user_agent},
        timeout=aiohttp.ClientTimeout(total=settings.timeout),
        raise_for_status=False,
        auto_decompress=True,
        trust_env=False,
        requote_redirect_url=False,
    )
    # aiohttp silently sends a GET again, at once, when the server drops the connection
    # before answering. Retries are ours (`--retries`, with backoff, counted in
    # `pages.attempts`): without this a server that resets every request gets each one
    # twice per attempt.
    session._retry_connection = False
    return session


async def fetch(
    session: aiohttp.ClientSession, url: str, *, timeout: float, max_bytes: int
) -> Response:
    """GET `url` once, without following redirects, keeping at most `max_bytes` of body.

    The timeout covers the whole exchange from the moment the request is sent: the
    frontier hands out a URL only when a connection slot is free, so no time is spent
    queued inside the connector.
    """
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout):
            # encoded=True: send the canonical URL byte for byte; yarl would otherwise
            # re-normalise escapes (%21 -> !) and fetch a URL other than the one we store.
            async with session.get(
                yarl.URL(url, encoded=True),
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=None),
            ) as resp:
                headers = tuple(resp.headers.items())
                body, truncated = await _read_body(resp, max_bytes)
                if truncated:
                    # The rest of the body is unwanted: drop the connection rather than
                    # reading it to the end to reuse it.
                    resp.close()
                return Response(
                    url=url,
                    status=resp.status,
                    headers=headers,
                    body=body,
                    truncated=truncated,
                    elapsed=time.monotonic() - started,
                )
    except TimeoutError:
        return _failure(url, started, f"timeout: no complete response within {timeout:g}s")
    except aiohttp.ClientError as exc:
        reason, retryable = describe(exc)
        return _failure(url, started, reason, retryable=retryable)
    except (ValueError, UnicodeError) as exc:
        return _failure(url, started, f"invalid url: {exc}", retryable=False)
    except OSError as exc:
        return _failure(url, started, f"os error: {exc.strerror or exc}")


async def _read_body(resp: aiohttp.ClientResponse, max_bytes: int) -> tuple[bytes, bool]:
    """Up to `max_bytes` of the decoded body, and whether more was there."""
    parts: list[bytes] = []
    size = 0
    while True:
        chunk = await resp.content.read(CHUNK)
        if not chunk:
            return b"".join(parts), False
        size += len(chunk)
        if size > max_bytes:
            parts.append(chunk[: len(chunk) - (size - max_bytes)])
            return b"".join(parts), True
        parts.append(chunk)


def _failure(url: str, started: float, reason: str, *, retryable: bool = True) -> Response:
    # aiohttp's parser errors span several lines (the offending bytes, a caret under
    # them): the row keeps one line, and a bounded one, whatever the server sent.
    reason = " ".join(reason.split())
    if len(reason) > MAX_REASON:
        reason = reason[: MAX_REASON - 3] + "..."
    return Response(
        url=url,
        status=None,
        headers=(),
        body=b"",
        truncated=False,
        elapsed=time.monotonic() - started,
        error=reason,
        retryable=retryable,
    )


def describe(exc: aiohttp.ClientError) -> tuple[str, bool]:
    """A readable one-line reason for a transport failure, and whether a retry may help."""
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"dns: cannot resolve host ({detail})", True
    if isinstance(exc, aiohttp.ClientConnectorCertificateError | aiohttp.ClientSSLError):
        return f"tls: {detail}", False
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"connect: {detail}", True
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "disconnected: server closed the connection before a complete response", True
    if isinstance(exc, aiohttp.ClientOSError):  # after ClientConnectorError, its subclass
        return f"disconnected: {exc.strerror or detail}", True
    if isinstance(exc, aiohttp.ClientPayloadError):
        return f"payload: broken body ({detail})", True
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"http: invalid response ({exc.message or detail})", True
    if isinstance(exc, aiohttp.InvalidURL):
        return f"invalid url: {detail}", False
    if isinstance(exc, aiohttp.TooManyRedirects):  # pragma: no cover - redirects are ours
        return f"redirects: {detail}", False
    if isinstance(exc.__cause__, ssl.SSLError):
        return f"tls: {exc.__cause__}", False
    return f"{type(exc).__name__}: {detail}", True
