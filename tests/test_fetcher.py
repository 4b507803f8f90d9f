"""`fetch` at the network boundary: whatever bytes a server sends, the `Response` holds valid
UTF-8 text (escaped by `netbytes.safe_text`), and the server's bytes can be had back; a body
is stored only when it was decoded to its end; a pooled connection the server had dropped
costs a second request, not an error row.

Each test runs with both of aiohttp's response parsers (the C one and the pure-Python one
it falls back to), since they decode and report differently.
"""

from __future__ import annotations

import asyncio
import gzip
import zlib
from collections.abc import AsyncIterator, Callable, Iterator

import aiohttp
import aiohttp.client_proto
import aiohttp.http_parser
import brotli
import pytest
from hostile import Behaviour, Exchange, RawHost, bomb, slams

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


async def get(url: str, max_bytes: int = 10_000) -> Response:
    session = make_session(Settings())
    try:
        return await fetch(session, url, timeout=5.0, max_bytes=max_bytes)
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
    assert resp.error.startswith("payload: broken body")
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
    assert resp.error.startswith("payload: broken body")
    assert 300 - 6 < len(resp.error) <= 300 and resp.error.endswith("...")
    assert_storable(resp.error)
    kept = resp.error[:-3]
    assert safe_text(original_text(kept)) == kept  # no escape cut in half


# ---------------------------------------------------------------------- content encodings

PAGE = b"<html><body>" + b"<p>lorem ipsum dolor</p>" * 800 + b"</body></html>"  # 19 KB

ENCODE: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "deflate": zlib.compress,  # HTTP "deflate" is the zlib format (RFC 9110 8.4.1.2)
    "raw-deflate": lambda data: zlib.compress(data, wbits=-15),  # sent by some servers
    "br": brotli.compress,
}


def encoded(packed: bytes, encoding: str) -> Behaviour:
    """`packed` with a Content-Length that matches it, whatever it decodes to."""

    async def behaviour(ex: Exchange) -> None:
        await ex.send(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Encoding: "
            + encoding.encode()
            + b"\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(packed)
            + packed
        )

    return behaviour


def wire_name(encoding: str) -> str:
    return "deflate" if encoding == "raw-deflate" else encoding


@pytest.mark.parametrize("encoding", list(ENCODE))
async def test_an_encoded_body_is_stored_decoded(parser: str, host: RawHost, encoding: str) -> None:
    host.route("/", encoded(ENCODE[encoding](PAGE), wire_name(encoding)))
    resp = await get(host.url("/"), max_bytes=100_000)
    assert (resp.status, resp.error, resp.truncated) == (200, None, False)
    assert resp.body == PAGE


@pytest.mark.parametrize("encoding", list(ENCODE))
async def test_an_encoded_body_cut_short_is_a_broken_body(
    parser: str, host: RawHost, encoding: str
) -> None:
    """Content-Length matches what was sent; the compressed stream stops halfway."""
    packed = ENCODE[encoding](PAGE)
    host.route("/", encoded(packed[: len(packed) // 2], wire_name(encoding)))
    resp = await get(host.url("/"), max_bytes=100_000)
    assert resp.status is None and resp.body == b""
    assert resp.error == f"payload: broken body ({wire_name(encoding)} stream cut short)"


@pytest.mark.parametrize("encoding", list(ENCODE))
async def test_a_corrupt_encoded_body_is_a_broken_body(
    parser: str, host: RawHost, encoding: str
) -> None:
    packed = ENCODE[encoding](PAGE)
    corrupt = packed[:10] + bytes(range(256)) * 2 + packed[-8:]
    host.route("/", encoded(corrupt, wire_name(encoding)))
    resp = await get(host.url("/"), max_bytes=100_000)
    assert resp.status is None and resp.error is not None
    assert resp.error.startswith(f"payload: broken body (invalid {wire_name(encoding)} stream")


async def test_concatenated_gzip_members_are_one_body(parser: str, host: RawHost) -> None:
    """RFC 1952 2.2: a gzip body may hold several members, decoded one after the other."""
    host.route("/", encoded(gzip.compress(PAGE[:5000]) + gzip.compress(PAGE[5000:]), "gzip"))
    resp = await get(host.url("/"), max_bytes=100_000)
    assert (resp.status, resp.error, resp.body) == (200, None, PAGE)


async def test_an_empty_body_needs_no_encoded_stream(parser: str, host: RawHost) -> None:
    host.route("/", encoded(b"", "gzip"))
    resp = await get(host.url("/"))
    assert (resp.status, resp.error, resp.body) == (200, None, b"")


async def test_an_unknown_encoding_is_stored_as_sent(parser: str, host: RawHost) -> None:
    packed = gzip.compress(PAGE)
    host.route("/", encoded(packed, "gzip, gzip"))  # two codings: not decoded, as aiohttp did
    resp = await get(host.url("/"), max_bytes=100_000)
    assert (resp.status, resp.error, resp.body) == (200, None, packed)


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br"])
async def test_max_bytes_counts_decoded_bytes(parser: str, host: RawHost, encoding: str) -> None:
    """An 8 MiB bomb: 10,000 decoded bytes are kept, the rest never decoded."""
    host.route("/", bomb(encoding, 8))
    resp = await get(host.url("/"), max_bytes=10_000)
    assert (resp.status, resp.error, resp.truncated) == (200, None, True)
    assert resp.body == b"\0" * 10_000


async def test_we_ask_only_for_encodings_we_decode(parser: str, host: RawHost) -> None:
    async def echo(ex: Exchange) -> None:
        said = ex.headers.get("accept-encoding", "").encode()
        await ex.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(said), said))

    host.route("/", echo)
    resp = await get(host.url("/"))
    assert resp.body == b"gzip, deflate, br"


# ---------------------------------------------------------------------- body framing

CHUNKED_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\n"
    b"Connection: close\r\n\r\n"
)
BROKEN_CHUNKS = [
    pytest.param(b"5\r\nhello\r\nzz-not-hex\r\nboom\r\n", id="bad-chunk-size"),
    pytest.param(b"5\r\nhelloXX0\r\n\r\n", id="chunk-without-crlf"),
]


@pytest.mark.parametrize("chunks", BROKEN_CHUNKS)
@pytest.mark.parametrize("apart", [False, True], ids=["with-head", "after-head"])
async def test_broken_chunk_framing_is_a_broken_body(
    parser: str, host: RawHost, chunks: bytes, apart: bool
) -> None:
    """The head was fine: a broken body, whether the chunks come with the head (aiohttp
    then fails before handing the head over) or after it (the C parser then tells only
    the connection: without care the read waits for the timeout)."""

    async def behaviour(ex: Exchange) -> None:
        if apart:
            await ex.send(CHUNKED_HEAD)
            await asyncio.sleep(0.05)  # the server's behaviour: the body comes later
            await ex.send(chunks)
        else:
            await ex.send(CHUNKED_HEAD + chunks)

    host.route("/", behaviour)
    resp = await get(host.url("/"))
    assert resp.status is None and resp.error is not None
    assert resp.error.startswith("payload: broken body ("), resp.error


async def test_a_broken_head_is_still_an_invalid_response(parser: str, host: RawHost) -> None:
    async def behaviour(ex: Exchange) -> None:
        await ex.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Bad chunk\r\n\r\n")

    host.route("/", behaviour)
    resp = await get(host.url("/"))
    assert resp.status is None and resp.error is not None
    assert resp.error.startswith("http: invalid response ("), resp.error


# ---------------------------------------------------------------------- pooled connections


def drops_reused_connections(*, reset: bool) -> tuple[Behaviour, set[asyncio.StreamWriter]]:
    """Answer the first request on each connection (keep-alive, without saying so), then
    drop the connection when the next request comes on it, as a server does that closed
    an idle connection just as the client reused it: a FIN, or a RST."""
    served: set[asyncio.StreamWriter] = set()

    async def behaviour(ex: Exchange) -> None:
        if ex.writer in served:
            if reset:
                ex.reset()
            return  # not keep_alive: the host closes the connection
        served.add(ex.writer)
        body = ex.path.encode()
        await ex.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        ex.keep_alive = True

    return behaviour, served


@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
async def test_a_dropped_pooled_connection_is_retried_once_on_a_new_one(
    parser: str, host: RawHost, reset: bool
) -> None:
    host.fallback, served = drops_reused_connections(reset=reset)
    paths = [f"/p{i}" for i in range(6)]
    session = make_session(Settings(per_host=1))
    try:
        got = [await fetch(session, host.url(p), timeout=5.0, max_bytes=1000) for p in paths]
    finally:
        await session.close()
    assert [(r.status, r.error, r.body) for r in got] == [(200, None, p.encode()) for p in paths]
    answered = [hit.path for hit in host.hits if hit.sent]
    assert answered == paths  # each exactly once
    assert len(host.hits) - len(answered) == len(paths) - 1  # every later one was dropped once
    assert len(served) == len(paths)  # a new connection for each


async def test_a_failure_on_a_fresh_connection_is_not_retried(parser: str, host: RawHost) -> None:
    host.route("/", slams)
    resp = await get(host.url("/"))
    assert resp.status is None and resp.error is not None
    assert resp.error.startswith("disconnected:")
    assert len(host.requests_for("/")) == 1
