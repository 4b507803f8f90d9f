"""A transport failure as the one line a row keeps: `kind: detail`, bounded, escaped,
and whether trying again may help."""

from __future__ import annotations

import ssl

import aiohttp
from aiohttp.http_exceptions import HttpProcessingError, PayloadEncodingError

from crawler.guard import PrivateAddress
from crawler.netbytes import safe_text

MAX_REASON = 300  # characters of an error reason kept on the row


def bounded(reason: str) -> str:
    """`reason` escaped by `safe_text`, cut to MAX_REASON characters between two escapes."""
    text = safe_text(reason)
    if len(text) <= MAX_REASON:
        return text
    # An escape is 1 to 6 characters: add whole ones until the next would not fit.
    kept: list[str] = []
    room = MAX_REASON - 3
    for char in reason:
        escaped = safe_text(char)
        room -= len(escaped)
        if room < 0:
            break
        kept.append(escaped)
    return "".join(kept) + "..."


def describe(exc: aiohttp.ClientError) -> tuple[str, bool]:
    """A readable one-line reason for a transport failure, and whether a retry may help."""
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ClientConnectorError) and isinstance(exc.os_error, PrivateAddress):
        return str(exc.os_error), False
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
        if _in_body_framing(exc):
            return f"payload: broken body ({exc.message or detail})", True
        return f"http: invalid response ({exc.message or detail})", True
    if isinstance(exc, aiohttp.InvalidURL):
        return f"invalid url: {detail}", False
    if isinstance(exc, aiohttp.TooManyRedirects):  # pragma: no cover - redirects are ours
        return f"redirects: {detail}", False
    if isinstance(exc.__cause__, ssl.SSLError):
        return f"tls: {exc.__cause__}", False
    return f"{type(exc).__name__}: {detail}", True


def _in_body_framing(exc: BaseException) -> bool:
    """Whether aiohttp's parser failed in the body's framing, after a complete head.

    A broken chunk that arrives with the head fails the whole response before aiohttp
    hands the head over, so the parser's own error says where it failed: the pure-Python
    parser raises a `PayloadEncodingError`, the C parser (llhttp) a `BadHttpMessage`
    whose reason, before the first colon, names the chunk ("Invalid character in chunk
    size", "Expected LF after chunk data", ...); the head's reasons never do.
    """
    cause = exc.__cause__
    while cause is not None:
        if isinstance(cause, PayloadEncodingError):
            return True
        if isinstance(cause, HttpProcessingError) and not isinstance(
            cause.__cause__, HttpProcessingError
        ):
            return "chunk" in cause.message.partition(":")[0].lower()
        cause = cause.__cause__
    return False
