"""The one pooled `ClientSession` and `fetch`: a request in, a `Response` record out.

`fetch` never raises for an HTTP status (statuses are data) nor for a network failure:
both come back as a `Response`, the latter with `status=None` and a readable `error`.
Everything on a `Response` that came from the network (header names and values, error
texts) has passed through `netbytes.safe_text`: valid UTF-8 whatever the server sent,
and `netbytes.original_bytes` gives the server's bytes back.
Redirects are not followed here: the engine sends every hop back through the frontier
so that scope, robots.txt, dedup and per-host politeness apply to each one.

Content-Encoding is decoded here, not by aiohttp: aiohttp does not check that a gzip or
brotli stream reached its end, so a body cut short (with a matching Content-Length)
would be stored as a complete page. `_read_body` decodes with a bound on the output
(`max_bytes` counts decoded bytes, so a decompression bomb stops there) and fails the
body when its stream did not end.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import email.utils
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import aiohttp
import yarl
from aiohttp.connector import Connection

from crawler import decoding, pool
from crawler.config import Settings
from crawler.failures import bounded, describe
from crawler.guard import PrivateAddress
from crawler.netbytes import safe_text
from crawler.network import Network, Proxy, accepts, ssl_setting

CHUNK = 65_536


@dataclass(frozen=True, slots=True)
class Response:
    """What one request produced; `status` is None when no HTTP response arrived."""

    url: str
    status: int | None
    headers: tuple[tuple[str, str], ...]  # escaped by `safe_text`, as `error`
    body: bytes
    truncated: bool
    elapsed: float
    error: str | None = None
    retryable: bool = False
    downloaded: bool = True  # False: the body was refused unread (--accept-type)

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
    settings: Settings,
    network: Network | None = None,
    *,
    resolver: aiohttp.abc.AbstractResolver | None = None,
    before_send: Callable[[], None] | None = None,
) -> aiohttp.ClientSession:
    """The crawl's only session: its connector carries the global and per-host socket caps.

    The connector's limits are a safety net under the frontier's own politeness, which
    never lets more than `per_host` requests to one host start. `limit_per_host` caps
    sockets, not rate: the delay between requests is the frontier's job. Names resolve
    through `network.resolver`, which refuses private addresses before any connection
    (and maps --resolve names; tests map their own names to loopback). TLS verification
    is `network.ssl` (--insecure, --ca-bundle). Bodies come back as sent
    (`auto_decompress=False`): `fetch` decodes them. Idle connections are kept within the
    process's open-file limit (`crawler.pool`). Without `network`: no extra
    headers, no proxy, no guard, names through `resolver` (aiohttp's own when None).
    `before_send` is called as each request is about to be written; what it raises (a
    lapsed lease's LeaseLost) the request raises, unsent.
    """
    if network is not None:
        resolver = network.resolver
    connector = pool.Connector(
        max_idle=pool.idle_room(settings.concurrency),
        limit=settings.concurrency,
        limit_per_host=settings.per_host,
        ttl_dns_cache=300,
        use_dns_cache=True,
        enable_cleanup_closed=False,
        resolver=resolver,
        ssl=network.ssl if network is not None else ssl_setting(settings),
    )
    jar: aiohttp.abc.AbstractCookieJar = (
        aiohttp.CookieJar(unsafe=True) if settings.cookies else aiohttp.DummyCookieJar()
    )
    session = aiohttp.ClientSession(
        connector=connector,
        cookie_jar=jar,
        headers=[
            *(network.headers if network is not None else ()),
            ("User-Agent", settings.user_agent),
            ("Accept-Encoding", decoding.ACCEPT_ENCODING),
        ],
        timeout=aiohttp.ClientTimeout(total=settings.timeout),
        raise_for_status=False,
        auto_decompress=False,
        trust_env=False,
        requote_redirect_url=False,
        request_class=_request_class(before_send),
    )
    # aiohttp sends a GET again, at once, whenever the server drops the connection before
    # answering, on a fresh connection too. Retries are ours (`--retries`, with backoff,
    # counted in `pages.attempts`): without this a server that resets every request gets
    # each one twice per attempt. `_send` keeps the one retry that is not ours to count.
    session._retry_connection = False
    return session


@dataclass(slots=True)
class _Attempt:
    """One request as it goes out: when it was written, and on what connection."""

    on_sent: Callable[[float], None] | None = None  # told the loop time of the writing
    reused: bool = False  # the pool handed it a connection that had served before


# The attempt of the request this task is sending: set by `_get`, read by `_Request.send`
# (aiohttp calls it in the same task), so no per-request trace machinery is needed.
_ATTEMPT: contextvars.ContextVar[_Attempt | None] = contextvars.ContextVar(
    "crawler_attempt", default=None
)


def _request_class(before_send: Callable[[], None] | None) -> type[aiohttp.ClientRequest]:
    """A ClientRequest that notes when it is written and whether its connection is reused;
    one class per session, so that its record of connections dies with the session."""
    served: weakref.WeakSet[object] = weakref.WeakSet()

    class _Request(aiohttp.ClientRequest):
        async def send(self, conn: Connection) -> aiohttp.ClientResponse:
            if before_send is not None:
                # aiohttp writes a bodiless GET within `send`, awaiting nothing before:
                # no other task can run (nor block the loop) between this and the write.
                before_send()
            attempt = _ATTEMPT.get()
            if attempt is None:
                return await super().send(conn)
            protocol = conn.protocol
            attempt.reused = protocol in served
            served.add(protocol)
            resp = await super().send(conn)
            if attempt.on_sent is not None:
                # The politeness clock starts here, as the server sees it: the request
                # has just been written to an open connection.
                attempt.on_sent(time.monotonic())
            return resp

    return _Request


async def fetch(
    session: aiohttp.ClientSession,
    url: str,
    *,
    timeout: float,
    max_bytes: int,
    on_sent: Callable[[float], None] | None = None,
    consume: Callable[[bytes], bool] | None = None,
    network: Network | None = None,
    accept: tuple[str, ...] = (),
    request_headers: Mapping[str, str] | None = None,
) -> Response:
    """GET `url` once, without following redirects, keeping at most `max_bytes` of body;
    `request_headers` are sent besides the session's (a recrawl's If-None-Match...).

    The timeout covers the whole exchange from the moment the request is sent: the
    frontier hands out a URL only when a connection slot is free, so no time is spent
    queued inside the connector. With `consume`, a 2xx body is streamed to it chunk by
    chunk instead of kept (a sitemap of 50 MB is never held whole); it returns False to
    stop reading (the body then counts as truncated). Other statuses' bodies are dropped.
    With `accept` (media types, `type/*` allowed), a response of another type (but a
    redirect) is not downloaded: its head is kept and the connection closed unread.
    """
    started = time.monotonic()
    try:
        target = yarl.URL(url, encoded=True)
        proxy = await network.route(target, timeout) if network is not None else None
        # aiohttp's own timer bounds the exchange, body included (cheaper per request
        # than an asyncio.timeout around it); a second attempt gets what is left.
        deadline = started + timeout
        resp = await _send(session, target, on_sent, proxy, request_headers, deadline)
        async with resp:
            headers = tuple((safe_text(k), safe_text(v)) for k, v in resp.headers.items())
            if accept and not 300 <= resp.status < 400 and not accepts(accept, resp):
                resp.close()  # the body stays unread: the connection is dropped
                shown = safe_text(resp.headers.get("Content-Type", "none"))[:100]
                return Response(
                    url=url,
                    status=resp.status,
                    headers=headers,
                    body=b"",
                    truncated=False,
                    elapsed=time.monotonic() - started,
                    error=f"not downloaded: content type {shown} is not an --accept-type",
                    downloaded=False,
                )
            try:
                with _failing_on_parser_error(resp):
                    if consume is not None and not 200 <= resp.status < 300:
                        body, truncated = b"", True
                    else:
                        body, truncated = await _read_body(resp, max_bytes, consume)
            except aiohttp.ClientPayloadError:
                resp.close()  # the rest of a broken body is of no use
                raise
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
    except PrivateAddress as exc:
        return _failure(url, started, str(exc), retryable=False)
    except aiohttp.ClientError as exc:
        reason, retryable = describe(exc)
        return _failure(url, started, reason, retryable=retryable)
    except (ValueError, UnicodeError) as exc:
        return _failure(url, started, f"invalid url: {exc}", retryable=False)
    except OSError as exc:
        return _failure(url, started, f"os error: {exc.strerror or exc}")


async def _send(
    session: aiohttp.ClientSession,
    url: yarl.URL,
    on_sent: Callable[[float], None] | None,
    proxy: Proxy | None,
    headers: Mapping[str, str] | None,
    deadline: float,
) -> aiohttp.ClientResponse:
    """Send the GET and wait for the response head; the exchange ends by `deadline`.

    A server may close an idle keep-alive connection just as we reuse it, without having
    said it would (RFC 9112 9.3.1, 9.6): then the request was never answered, and, as
    browsers and curl do, it goes out once more at once. Only then: a failure on a fresh
    connection is the server's answer, retried by the crawl's `--retries` with backoff.
    "Never answered" is as far as aiohttp can tell: it raised before a complete head.
    """
    attempt = _Attempt(on_sent)
    try:
        return await _get(session, url, attempt, proxy, headers, deadline)
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
        if not attempt.reused or isinstance(exc, aiohttp.ClientConnectorError):
            raise
    # The dead connection is closed: the pool opens a new one unless another idle
    # connection to the host is there; that one is not retried again if it fails.
    return await _get(session, url, _Attempt(on_sent), proxy, headers, deadline)


async def _get(
    session: aiohttp.ClientSession,
    url: yarl.URL,
    attempt: _Attempt,
    proxy: Proxy | None,
    headers: Mapping[str, str] | None,
    deadline: float,
) -> aiohttp.ClientResponse:
    token = _ATTEMPT.set(attempt)
    tunnel = url.scheme == "https"
    # Proxy credentials: on the request itself when the proxy forwards it (plain http),
    # on the CONNECT only when it tunnels (https): never to the site.
    if proxy is not None and not tunnel:
        headers = {**(proxy.headers or {}), **(headers or {})}
    try:
        # `url` is encoded=True: sent byte for byte; yarl would otherwise re-normalise
        # escapes (%21 -> !) and fetch a URL other than the one we store.
        return await session.get(
            url,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=max(deadline - time.monotonic(), 0.001)),
            proxy=proxy.url if proxy is not None else None,
            headers=headers,
            proxy_headers=proxy.headers if proxy is not None and tunnel else None,
        )
    finally:
        _ATTEMPT.reset(token)


@contextlib.contextmanager
def _failing_on_parser_error(resp: aiohttp.ClientResponse) -> Iterator[None]:
    """Fail the body read when aiohttp's parser gives up on the connection.

    When the C parser meets broken chunk framing after it has handed the head over, it
    closes the connection but tells only the connection, not the body stream: the read
    would wait for the timeout. (The pure-Python parser fails the stream itself.)
    """
    protocol = resp.connection.protocol if resp.connection is not None else None
    closed = protocol.closed if protocol is not None else None
    if protocol is None or closed is None:
        yield
        return

    def fail_body(_: asyncio.Future[None]) -> None:
        error = protocol.exception()
        if error is not None and resp.content.exception() is None and not resp.content.is_eof():
            message = getattr(error, "message", "") or str(error)
            resp.content.set_exception(aiohttp.ClientPayloadError(message), error)

    # Asking for `closed` made the future; nothing of aiohttp's awaits it until the session
    # closes, so one callback per connection takes its exception (asyncio would log it).
    closed.remove_done_callback(_retrieve)
    closed.add_done_callback(_retrieve)
    closed.add_done_callback(fail_body)
    try:
        yield
    finally:
        closed.remove_done_callback(fail_body)


def _retrieve(closed: asyncio.Future[None]) -> None:
    if not closed.cancelled():
        closed.exception()


async def _read_body(
    resp: aiohttp.ClientResponse,
    max_bytes: int,
    consume: Callable[[bytes], bool] | None = None,
) -> tuple[bytes, bool]:
    """Up to `max_bytes` of the decoded body (none when `consume` takes it), and whether
    more was there.

    Raises `aiohttp.ClientPayloadError` when the body cannot be decoded to its end.
    """
    decoder = decoding.decoder(resp.headers.get("Content-Encoding"))
    parts: list[bytes] = []
    size = 0
    while raw := await resp.content.read(CHUNK):
        # At most one byte past `max_bytes` is decoded: enough to know there was more.
        chunk = raw if decoder is None else decoder.decode(raw, max_bytes - size + 1)
        size += len(chunk)
        if size > max_bytes:
            chunk = chunk[: len(chunk) - (size - max_bytes)]
            if consume is not None:
                consume(chunk)
            else:
                parts.append(chunk)
            return b"".join(parts), True
        if consume is None:
            parts.append(chunk)
        elif not consume(chunk):
            return b"", True
    if decoder is not None and not decoder.complete:
        raise aiohttp.ClientPayloadError(f"{decoder.name} stream cut short")
    return b"".join(parts), False


def _failure(url: str, started: float, reason: str, *, retryable: bool = True) -> Response:
    # aiohttp's parser errors span several lines (the offending bytes, a caret under
    # them): the row keeps one line, and a bounded one, whatever the server sent.
    reason = bounded(" ".join(reason.split()))
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
