"""`fetch` at the network boundary: whatever bytes a server sends, the `Response` holds valid
UTF-8 text (escaped by `netbytes.safe_text`), and the server's bytes can be had back.

Each test runs with both of aiohttp's response parsers (the C one and the pure-Python one
it falls back to), since they decode and report differently.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import aiohttp
import aiohttp.client_proto
import aiohttp.http_parser
import pytest
from hostile import Exchange, RawHost

from crawler.config import Settings
from crawler.fetcher import Response, fetch, make_session
from crawler.netbytes import original_bytes, original_text, safe_text

# name, raw value bytes, stored (escaped) value
HEADERS = [
    (b"Content-Type", b"text/html; charset=\xe9", r"text/html; charset=\xe9"),
    (b"Location", b"/caf\xe9?q=\xff", r"/caf\xe9?q=\xff"),
    (b"X-Utf8", "café ☃".encode(), "café ☃"),
    (b"X-Backslash", b"a\\b", r"a\\b"),
    (b"X-Control", b"a\x01b", "a\x01b"),
]


@pytest.fixture(params=["c", "py"])
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    if request.param == "py":
        monkeypatch.setattr(
            aiohttp.client_proto, "HttpResponseParser", aiohttp.http_parser.HttpResponseParserPy
        )
    else:
        c_parser = getattr(aiohttp.http_parser, "HttpResponseParserC", None)
        if c_parser is None:  # pragma: no cover - aiohttp installed without its extension
            pytest.skip("aiohttp's C parser is not built here")
        monkeypatch.setattr(aiohttp.client_proto, "HttpResponseParser", c_parser)
    yield request.param


@pytest.fixture
async def host() -> AsyncIterator[RawHost]:
    h = RawHost("127.0.0.70")
    await h.start()
    try:
        yield h
    finally:
        await h.close()


async def get(url: str) -> Response:
    session = make_session(Settings())
    try:
        return await fetch(session, url, timeout=5.0, max_bytes=10_000)
    finally:
        await session.close()


def assert_storable(text: str) -> None:
    text.encode("utf-8")  # no lone surrogates: SQLite takes it
    assert "\x00" not in text  # PostgreSQL text takes it


async def test_header_bytes_are_escaped_and_recoverable(parser: str, host: RawHost) -> None:
    async def behaviour(ex: Exchange) -> None:
        fields = b"".join(name + b": " + value + b"\r\n" for name, value, _ in HEADERS)
        await ex.send(
            b"HTTP/1.1 200 OK\r\n" + fields + b"Content-Length: 2\r\nConnection: close\r\n\r\nhi"
        )

    host.route("/", behaviour)
    resp = await get(host.url("/"))
    assert resp.error is None and resp.status == 200 and resp.body == b"hi"
    for name, raw, stored in HEADERS:
        value = resp.header(name.decode().lower())  # lookups ignore case as before
        assert value == stored, name
        assert original_bytes(value) == raw, name
    assert resp.content_type == r"text/html; charset=\xe9"
    for name, value in resp.headers:
        assert_storable(name)
        assert_storable(value)


async def test_server_bytes_in_an_error_text_are_escaped(parser: str, host: RawHost) -> None:
    """A broken chunk size: the pure-Python parser puts the raw bytes (0xE9, NUL) in its
    message, the C parser their repr; either way the error text can be stored."""

    async def behaviour(ex: Exchange) -> None:
        await ex.send(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            b"\xe9\x00zz\r\n"
        )

    host.route("/", behaviour)
    resp = await get(host.url("/"))
    assert resp.status is None and resp.error is not None
    assert resp.error.startswith("http: invalid response")
    assert_storable(resp.error)
    server_said = "\udce9\x00zz" if parser == "py" else r"b'\xe9\x00zz'"
    assert server_said in original_text(resp.error)


async def test_a_long_error_text_is_cut_between_escapes(parser: str, host: RawHost) -> None:
    """300 characters at most, and no escape cut in half, however many bytes needed one."""

    async def behaviour(ex: Exchange) -> None:
        await ex.send(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            + b"\xe9" * 400
            + b"\r\n"
        )

    host.route("/", behaviour)
    resp = await get(host.url("/"))
    assert resp.error is not None
    assert resp.error.startswith("http: invalid response")
    assert 300 - 6 < len(resp.error) <= 300 and resp.error.endswith("...")
    assert_storable(resp.error)
    kept = resp.error[:-3]
    assert safe_text(original_text(kept)) == kept  # no escape cut in half
