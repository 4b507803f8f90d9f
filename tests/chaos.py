"""The chaos site: a seeded catalogue of hostile behaviour served on several loopback hosts.

`start_chaos(seed)` starts `HOSTS` raw servers (`hostile.RawHost`, so any byte can be
sent) and draws, reproducibly from `seed`, at least `ROWS` URLs, each answered by one
behaviour of `KINDS`: raw latin-1 / invalid UTF-8 bytes in header values, invalid status
lines, broken chunking, wrong Content-Length, resets mid-body, stalls shorter and longer
than the timeout, huge headers, redirects to malformed or non-UTF-8 Locations, bodies in
assorted charsets and content encodings, statuses that fail once and then recover. One
host's robots.txt answers 503 once, then 200.

Each host's `/` links to every catalogue URL of the host, so a crawl from the seeds
reaches all of them. `Chaos.entries` says, per URL, what a careful crawler stores for it
(`Expected`): the settings it assumes are `CRAWL_FLAGS`. Where the right record is a
judgement call, the kind's comment says what was decided and why.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import random
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import quote

import brotli
from hostile import Behaviour, Exchange, RawHost, sequence

SEED = 20_240_917
HOSTS = 6
FIRST_IP = 150  # hosts on 127.0.0.150 .. 127.0.0.155
ROWS = 2_100  # at least this many catalogue URLs (pages rows)
TIMEOUT = 1.0
RETRIES = 1  # robots.txt that fails once must be retried (RFC 9309 2.3.1.4), so pages are too
STALL_CAP = 2.5  # a "longer than the timeout" stall answers after this, if still connected
SHORT_STALL = 0.2  # a stall well inside the timeout

CRAWL_FLAGS = [
    "--timeout", str(TIMEOUT),
    "--retries", str(RETRIES),
    "--concurrency", "64",
    "--per-host", "8",
    "--delay", "0",
    "--host-failures", "1000000",  # the catalogue has long runs of failures on purpose
]  # fmt: skip

UNCHECKED = "<unchecked>"  # an Expected.final_url that the test does not pin


@dataclass(frozen=True, slots=True)
class Expected:
    """What the URL's one `pages` row must hold."""

    status: int | None
    error: str | None = None  # a prefix of pages.error; None: error IS NULL
    body: bytes | None = None  # the stored (content-decoded) body, when checked
    redirect_to: str | None = None  # pages.redirect_to (canonical)
    final_url: str | None = UNCHECKED
    final_status: int | str | None = UNCHECKED  # where the redirect chain ended (None: failed)
    header: str | None = None  # a header name that `pages.headers` (JSON) must still hold


@dataclass(frozen=True, slots=True)
class Entry:
    url: str
    kind: str
    expected: Expected


@dataclass
class Chaos:
    seed: int
    hosts: list[RawHost]
    robots_host: RawHost  # robots.txt: 503 once, then 200
    entries: dict[str, Entry] = field(default_factory=dict)

    @property
    def seeds(self) -> list[str]:
        return [host.url("/") for host in self.hosts]

    def of_kind(self, kind: str) -> list[Entry]:
        return [e for e in self.entries.values() if e.kind == kind]

    async def close(self) -> None:
        for host in self.hosts:
            await host.close()


# ---------------------------------------------------------------------- raw responses


def send(data: bytes, *, keep_alive: bool = False) -> Behaviour:
    """Write exactly `data`, then close (or read the next request on the connection)."""

    async def behaviour(ex: Exchange) -> None:
        await ex.send(data)
        ex.keep_alive = keep_alive

    return behaviour


def response(
    body: bytes,
    *,
    status: bytes = b"200 OK",
    content_type: bytes = b"text/html; charset=utf-8",
    extra: bytes = b"",
    keep_alive: bool = False,
) -> bytes:
    """A well-framed response. Every response that ends well says truthfully whether the
    connection stays open, so no innocent URL ever meets a connection we closed."""
    connection = b"keep-alive" if keep_alive else b"close"
    return (
        b"HTTP/1.1 " + status + b"\r\nContent-Type: " + content_type + b"\r\n" + extra
        + b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: " + connection
        + b"\r\n\r\n" + body
    )  # fmt: skip


def sends_then_resets(data: bytes) -> Behaviour:
    async def behaviour(ex: Exchange) -> None:
        if data:
            await ex.send(data)
        ex.reset()

    return behaviour


def stalls(first: bytes, rest: bytes) -> Behaviour:
    """Send `first`, stall until the client gives up (or STALL_CAP), then send `rest`."""

    async def behaviour(ex: Exchange) -> None:
        if first:
            await ex.send(first)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ex.client_gone(), STALL_CAP)
        await ex.send(rest)  # a crawler that waited this long gets a good response

    return behaviour


def late(data: bytes, seconds: float) -> Behaviour:
    async def behaviour(ex: Exchange) -> None:
        await asyncio.sleep(seconds)  # the server's behaviour: it answers slowly
        await ex.send(data)

    return behaviour


WORDS = ["alpha", "beta", "chaos", "crawl", "fetch", "parse", "store", "lorem", "ipsum"]


def html(rng: random.Random, title: str, *links: str) -> bytes:
    text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 600)))
    anchors = "".join(f'<a href="{href}">{href}</a>' for href in ("/", *links))
    return (
        f"<html><head><title>{title}</title></head><body><p>{text}</p>{anchors}</body></html>"
    ).encode()


# ---------------------------------------------------------------------- the catalogue


@dataclass
class Ctx:
    """Where a kind registers its routes and expected rows for one catalogue slot."""

    rng: random.Random
    host: RawHost
    path: str  # the linked URL's path (the index links to it)
    entries: dict[str, Entry]
    kind: str = ""

    @property
    def url(self) -> str:
        return self.host.url(self.path)

    def expect(self, url: str, expected: Expected) -> None:
        assert url not in self.entries, url
        self.entries[url] = Entry(url, self.kind, expected)

    def route(self, path: str, behaviour: Behaviour) -> None:
        assert path not in self.host.routes, path
        self.host.route(path, behaviour)

    def page(self, path: str, *, keep_alive: bool = False) -> None:
        """A good HTML page at `path`, expected as 200 with its body."""
        body = html(self.rng, path)
        self.route(path, send(response(body, keep_alive=keep_alive), keep_alive=keep_alive))
        url = self.host.url(path)
        self.expect(url, Expected(200, body=body, final_url=url, final_status=200))

    def fails(self, behaviour: Behaviour, error: str) -> None:
        self.route(self.path, behaviour)
        self.expect(self.url, Expected(None, error=error, final_url=None, final_status=None))

    def answers(self, behaviour: Behaviour, body: bytes, *, header: str | None = None) -> None:
        self.route(self.path, behaviour)
        expected = Expected(200, body=body, final_url=self.url, final_status=200, header=header)
        self.expect(self.url, expected)


Kind = Callable[[Ctx], None]
KINDS: dict[str, tuple[int, Kind]] = {}  # name -> (how many, builder)


def kind(count: int) -> Callable[[Kind], Kind]:
    def register(build: Kind) -> Kind:
        KINDS[build.__name__] = (count, build)
        return build

    return register


# -- good pages (the bulk; `ok` fills the catalogue up to ROWS)


@kind(0)
def ok(c: Ctx) -> None:
    c.page(c.path, keep_alive=c.rng.random() < 0.5)


@kind(12)
def ok_binary(c: Ctx) -> None:
    body = c.rng.randbytes(c.rng.randint(1, 5000))
    c.answers(send(response(body, content_type=b"application/octet-stream")), body)


@kind(12)
def ok_no_reason_phrase(c: Ctx) -> None:
    body = html(c.rng, c.path)  # "HTTP/1.1 200" with no reason: valid (RFC 9112 4)
    c.answers(send(response(body, status=b"200")), body)


@kind(12)
def ok_http10(c: Ctx) -> None:
    body = html(c.rng, c.path)
    c.answers(send(response(body).replace(b"HTTP/1.1", b"HTTP/1.0", 1)), body)


@kind(12)
def ok_short_stall(c: Ctx) -> None:
    body = html(c.rng, c.path)
    c.answers(late(response(body), SHORT_STALL), body)


@kind(12)
def ok_chunked(c: Ctx) -> None:
    body = html(c.rng, c.path)
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (body[:100], body[100:]) if p)
    data = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\n"
    c.answers(send(data + b"Connection: close\r\n\r\n" + chunks + b"0\r\n\r\n"), body)


# -- bodies in assorted encodings: each page links to a non-ASCII path written in its
# charset; the target's row proves the link was decoded right (a misread link would be
# a URL outside the catalogue).

CHARSETS = [
    # (how the charset is declared, codec, word)
    ("header:Shift_JIS", "cp932", "日本語"),
    ("header:windows-1251", "cp1251", "ключ"),
    ("header:ISO-8859-1", "latin-1", "café"),
    ("meta:windows-1251", "cp1251", "дом"),
    ("meta:gbk", "gbk", "中文"),
    ("meta:euc-kr", "euc-kr", "한국어"),
    ("bom:utf-16le", "utf-16-le", "ünïcode"),
    ("bom:utf-8", "utf-8", "ñandú"),
]


@kind(24)
def charset_page(c: Ctx) -> None:
    where, codec, word = CHARSETS[c.rng.randrange(len(CHARSETS))]
    how, _, label = where.partition(":")
    target = f"/t{c.path}/{word}"
    markup = f'<html><head><title>x</title></head><body><a href="{target}">{word}</a></body></html>'
    content_type = b"text/html"
    if how == "header":
        content_type += b"; charset=" + label.encode()
    elif how == "meta":
        markup = f'<meta charset="{label}">' + markup
    body = markup.encode(codec)
    if how == "bom":
        body = {"utf-16le": b"\xff\xfe", "utf-8": b"\xef\xbb\xbf"}[label] + body
    c.answers(send(response(body, content_type=content_type)), body)
    c.page(quote(target.encode()))


@kind(12)
def unknown_charset_label(c: Ctx) -> None:
    # A label no decoder knows, with raw latin-1 bytes in it: the page is still stored.
    body = html(c.rng, c.path)
    c.answers(send(response(body, content_type=b"text/html; charset=\xe9t\xe9")), body)


@kind(12)
def gzip_body(c: Ctx) -> None:
    body = html(c.rng, c.path)
    packed = gzip.compress(body)
    c.answers(send(response(packed, extra=b"Content-Encoding: gzip\r\n")), body)


@kind(12)
def deflate_body(c: Ctx) -> None:
    body = html(c.rng, c.path)
    packed = zlib.compress(body)  # HTTP "deflate" is the zlib format (RFC 9110 8.4.1.2)
    c.answers(send(response(packed, extra=b"Content-Encoding: deflate\r\n")), body)


@kind(12)
def br_body(c: Ctx) -> None:
    body = html(c.rng, c.path)
    packed = brotli.compress(body)
    c.answers(send(response(packed, extra=b"Content-Encoding: br\r\n")), body)


@kind(12)
def corrupt_gzip(c: Ctx) -> None:
    packed = gzip.compress(html(c.rng, c.path))
    broken = packed[:10] + bytes(c.rng.randrange(256) for _ in range(200)) + packed[-8:]
    c.fails(send(response(broken, extra=b"Content-Encoding: gzip\r\n")), "payload:")


@kind(12)
def truncated_gzip(c: Ctx) -> None:
    # Content-Length matches what was sent, but the gzip stream stops halfway: the body
    # cannot be decoded to its end, so it is a broken body, not a complete page.
    packed = gzip.compress(html(c.rng, c.path))
    c.fails(
        send(response(packed[: len(packed) // 2], extra=b"Content-Encoding: gzip\r\n")), "payload:"
    )


# -- header values with bytes that are not UTF-8 (RFC 9110 5.5: obs-text is allowed; the
# page is stored and the header kept in `headers`).


@kind(12)
def latin1_header(c: Ctx) -> None:
    body = html(c.rng, c.path)
    extra = b"X-Note: caf\xe9 cr\xe8me br\xfbl\xe9e\r\n"
    c.answers(send(response(body, extra=extra)), body, header="X-Note")


@kind(12)
def invalid_utf8_header(c: Ctx) -> None:
    body = html(c.rng, c.path)
    extra = (
        b"X-Junk: \xff\xfe\xc3\x28\x80\xbf"
        + c.rng.randbytes(8).replace(b"\r", b"").replace(b"\n", b"").replace(b"\0", b"")
        + b"\r\n"
    )
    c.answers(send(response(body, extra=extra)), body, header="X-Junk")


@kind(12)
def latin1_set_cookie_and_disposition(c: Ctx) -> None:
    body = html(c.rng, c.path)
    extra = b"Set-Cookie: name=J\xf6rg; Path=/\r\n"
    extra += b'Content-Disposition: inline; filename="r\xe9sum\xe9.html"\r\n'
    c.answers(send(response(body, extra=extra)), body, header="Content-Disposition")


@kind(12)
def control_bytes_header(c: Ctx) -> None:
    body = html(c.rng, c.path)
    c.answers(send(response(body, extra=b"X-Ctl: a\x01b\x1fc\x7fd\r\n")), body, header="X-Ctl")


@kind(12)
def nul_in_header(c: Ctx) -> None:
    # RFC 9110 5.5: a recipient of NUL in a field value MUST reject the message or replace
    # it with SP. We chose reject (aiohttp's choice): an invalid response.
    body = html(c.rng, c.path)
    c.fails(send(response(body, extra=b"X-Nul: a\x00b\r\n")), "http:")


@kind(12)
def big_header(c: Ctx) -> None:
    # 6 KB in one field is large but within what servers send (long cookies, CSPs).
    body = html(c.rng, c.path)
    c.answers(send(response(body, extra=b"X-Big: " + b"b" * 6000 + b"\r\n")), body, header="X-Big")


@kind(12)
def huge_header(c: Ctx) -> None:
    # One 64 KiB field: past every common limit (nginx, aiohttp: 8 KiB); refusing it keeps
    # a hostile server from making us buffer without bound. An invalid response.
    body = html(c.rng, c.path)
    c.fails(send(response(body, extra=b"X-Huge: " + b"h" * 65_536 + b"\r\n")), "http:")


# -- invalid responses: the head is not HTTP


BAD_STATUS_LINES = [
    b"HTTP/1.1 OK-ish whatever",
    b"HTTP/1.1 20x OK",
    b"HTTP/1.1 99 Too Low",
    b"HTTP/1.1  200 OK",
    b"HTTP/1.1 2000 OK",
    b"ICY 200 OK",
    b"http/1.1 200 OK",
    b"garbage garbage garbage",
]


@kind(24)
def bad_status_line(c: Ctx) -> None:
    line = BAD_STATUS_LINES[c.rng.randrange(len(BAD_STATUS_LINES))]
    data = response(html(c.rng, c.path)).replace(b"HTTP/1.1 200 OK", line, 1)
    c.fails(send(data), "http:")


@kind(12)
def header_without_colon(c: Ctx) -> None:
    c.fails(send(response(b"hi", extra=b"this is no header\r\n")), "http:")


@kind(12)
def conflicting_content_lengths(c: Ctx) -> None:
    # RFC 9112 6.3: differing Content-Length values are an unrecoverable error.
    c.fails(send(response(b"hello", extra=b"Content-Length: 7\r\n")), "http:")


@kind(12)
def non_numeric_content_length(c: Ctx) -> None:
    data = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: twelve\r\n"
    c.fails(send(data + b"Connection: close\r\n\r\nhello world!"), "http:")


@kind(12)
def content_length_and_chunked(c: Ctx) -> None:
    # RFC 9112 6.3: both framings at once "ought to be handled as an error" (smuggling).
    data = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\n"
    data += b"Content-Length: 3\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    c.fails(send(data), "http:")


# -- wrong Content-Length


@kind(12)
def content_length_too_long(c: Ctx) -> None:
    body = html(c.rng, c.path)
    data = response(body).replace(
        b"Content-Length: %d" % len(body), b"Content-Length: %d" % (len(body) * 2)
    )
    c.fails(send(data), "payload:")


@kind(12)
def content_length_too_short(c: Ctx) -> None:
    # Judgement call: more bytes than Content-Length arrive. RFC 9112 6.3 lets a client
    # discard the excess, but the excess proves the length wrong: the stored body would be
    # silently cut. An error row is the honest record (and the excess must never be read
    # as the next response on the connection).
    body = html(c.rng, c.path)
    data = response(body).replace(
        b"Content-Length: %d" % len(body), b"Content-Length: %d" % (len(body) // 2)
    )
    c.fails(send(data), "http:")


@kind(12)
def empty_response(c: Ctx) -> None:
    c.fails(send(b""), "disconnected:")


@kind(12)
def reset_before_response(c: Ctx) -> None:
    c.fails(sends_then_resets(b""), "disconnected:")


@kind(12)
def reset_in_headers(c: Ctx) -> None:
    c.fails(sends_then_resets(b"HTTP/1.1 200 OK\r\nContent-Ty"), "disconnected:")


@kind(12)
def reset_mid_body(c: Ctx) -> None:
    body = html(c.rng, c.path) * 4
    c.fails(sends_then_resets(response(body)[: -len(body) // 2]), "payload:")


@kind(12)
def reset_mid_chunk(c: Ctx) -> None:
    data = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\n\r\n"
    c.fails(sends_then_resets(data + b"1000\r\n" + b"a" * 2000), "payload:")


# -- broken chunking: the head was fine, the body's framing broke: a broken body.


@kind(12)
def bad_chunk_size(c: Ctx) -> None:
    data = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\n"
    c.fails(
        send(data + b"Connection: close\r\n\r\n5\r\nhello\r\nzz-not-hex\r\nboom\r\n"), "payload:"
    )


@kind(12)
def chunk_without_crlf(c: Ctx) -> None:
    data = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\n"
    c.fails(send(data + b"Connection: close\r\n\r\n5\r\nhelloXX0\r\n\r\n"), "payload:")


@kind(12)
def chunked_without_last_chunk(c: Ctx) -> None:
    data = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\n"
    c.fails(send(data + b"Connection: close\r\n\r\n5\r\nhello\r\n"), "payload:")


# -- stalls longer than the timeout (few: each costs TIMEOUT per attempt)


@kind(8)
def stall_before_head(c: Ctx) -> None:
    c.fails(stalls(b"", response(html(c.rng, c.path))), "timeout:")


@kind(8)
def stall_mid_body(c: Ctx) -> None:
    data = response(html(c.rng, c.path) * 3)
    c.fails(stalls(data[: len(data) // 2], data[len(data) // 2 :]), "timeout:")


# -- statuses; fails once, then recovers (RETRIES = 1)


@kind(12)
def not_found(c: Ctx) -> None:
    body = b"not found"
    c.route(c.path, send(response(body, status=b"404 Not Found", content_type=b"text/plain")))
    c.expect(c.url, Expected(404, body=body, final_url=c.url, final_status=404))


@kind(12)
def server_error(c: Ctx) -> None:
    body = b"oops"
    c.route(c.path, send(response(body, status=b"500 Oops", content_type=b"text/plain")))
    c.expect(c.url, Expected(500, body=body, final_url=c.url, final_status=500))


@kind(12)
def unavailable_then_ok(c: Ctx) -> None:
    body = html(c.rng, c.path)
    busy = send(response(b"busy", status=b"503 Service Unavailable", content_type=b"text/plain"))
    c.answers(sequence(busy, send(response(body))), body)


@kind(12)
def reset_then_ok(c: Ctx) -> None:
    body = html(c.rng, c.path)
    c.answers(sequence(sends_then_resets(b""), send(response(body))), body)


# -- redirects: the origin's row says 30x and where to; the target has its own row


def redirect(location: bytes, code: int = 301) -> bytes:
    return response(b"", status=b"%d Moved" % code, extra=b"Location: " + location + b"\r\n")


def redirects_to(c: Ctx, location: bytes, target_path: str, *, code: int | None = None) -> None:
    code = code or c.rng.choice([301, 302, 303, 307, 308])
    target = c.host.url(target_path)
    c.route(c.path, send(redirect(location, code)))
    c.expect(
        c.url, Expected(code, body=b"", redirect_to=target, final_url=target, final_status=200)
    )
    c.page(target_path)


@kind(24)
def redirect_ok(c: Ctx) -> None:
    target = f"/r{c.path}/dest"
    redirects_to(
        c, target.encode() if c.rng.random() < 0.5 else c.host.url(target).encode(), target
    )


@kind(12)
def redirect_chain(c: Ctx) -> None:
    hop, final = f"/r{c.path}/hop", f"/r{c.path}/end"
    c.route(c.path, send(redirect(hop.encode(), 302)))
    c.route(hop, send(redirect(final.encode(), 301)))
    url = c.host.url
    c.expect(c.url, Expected(302, redirect_to=url(hop), final_url=url(final), final_status=200))
    c.expect(
        url(hop), Expected(301, redirect_to=url(final), final_url=url(final), final_status=200)
    )
    c.page(final)


@kind(12)
def redirect_latin1_location(c: Ctx) -> None:
    # Raw non-UTF-8 bytes in Location: each is percent-encoded as the octet it is, as curl
    # and Firefox do, so the server gets back exactly the bytes it sent.
    redirects_to(c, f"/r{c.path}/caf".encode() + b"\xe9-cr\xe8me", f"/r{c.path}/caf%E9-cr%E8me")


@kind(12)
def redirect_invalid_utf8_location(c: Ctx) -> None:
    redirects_to(c, f"/r{c.path}/".encode() + b"\xff\xfe\xc3(", f"/r{c.path}/%FF%FE%C3(")


@kind(12)
def redirect_utf8_location(c: Ctx) -> None:
    redirects_to(c, f"/r{c.path}/ü/日本".encode(), f"/r{c.path}/" + quote("ü/日本".encode()))


@kind(12)
def redirect_location_with_spaces(c: Ctx) -> None:
    redirects_to(c, f"  /r{c.path}/a b c  ".encode(), f"/r{c.path}/a%20b%20c")


MALFORMED_LOCATIONS = [b"http://[oops/", b"http://:99999/x", b"http://exa mple.test/", b"http://"]


@kind(12)
def redirect_malformed_location(c: Ctx) -> None:
    location = MALFORMED_LOCATIONS[c.rng.randrange(len(MALFORMED_LOCATIONS))]
    c.route(c.path, send(redirect(location, 302)))
    c.expect(c.url, Expected(302, error="redirect to an unusable URL", body=b"", final_status=None))


@kind(12)
def redirect_without_location(c: Ctx) -> None:
    c.route(c.path, send(response(b"", status=b"302 Found")))
    c.expect(c.url, Expected(302, body=b"", final_url=c.url, final_status=302))


@kind(12)
def redirect_loop(c: Ctx) -> None:
    c.route(c.path, send(redirect(c.path.encode(), 301)))
    c.expect(
        c.url, Expected(301, error="redirect loop", body=b"", final_url=None, final_status=None)
    )


@kind(12)
def redirect_out_of_scope(c: Ctx) -> None:
    # The target is on no seed's host: the origin's row, and no fetch of the target. The
    # chain failed, so (docs/schema.md) its row says why and has no final status.
    target = "http://127.0.0.9:1/elsewhere"
    c.route(c.path, send(redirect(target.encode(), 301)))
    expected = Expected(
        301,
        error="redirect target not followed: out of scope",
        body=b"",
        redirect_to=target,
        final_url=target,
        final_status=None,
    )
    c.expect(c.url, expected)


# ---------------------------------------------------------------------- building it


async def start_chaos(seed: int = SEED, rows: int = ROWS) -> Chaos:
    """Start the hosts and draw the catalogue (the same for the same seed)."""
    rng = random.Random(seed)
    hosts = []
    try:
        for i in range(HOSTS):
            host = RawHost(f"127.0.0.{FIRST_IP + i}")
            await host.start()
            hosts.append(host)
    except BaseException:
        for host in hosts:
            await host.close()
        raise
    chaos = Chaos(seed, hosts, robots_host=hosts[-1])
    # RFC 9309 2.3.1.4: a 5xx robots.txt holds the host; this one recovers on the retry.
    rules = b"User-agent: *\nAllow: /\n"
    chaos.robots_host.route(
        "/robots.txt",
        sequence(
            send(response(b"down", status=b"503 Service Unavailable", content_type=b"text/plain")),
            send(response(rules, content_type=b"text/plain")),
        ),
    )

    slots = [name for name, (count, _) in KINDS.items() for _ in range(count)]
    rng.shuffle(slots)
    links: dict[str, list[str]] = {host.ip: [] for host in hosts}
    n = 0

    def build(name: str) -> None:
        nonlocal n
        host = hosts[n % HOSTS]
        ctx = Ctx(rng, host, f"/{name}/{n}", chaos.entries, name)
        KINDS[name][1](ctx)
        links[host.ip].append(ctx.path)
        n += 1

    for name in slots:
        build(name)
    while len(chaos.entries) + HOSTS < rows:
        build("ok")
    for host in hosts:
        ctx = Ctx(rng, host, "/", chaos.entries, "index")
        body = html(rng, "index", *links[host.ip])
        ctx.answers(send(response(body)), body)
    return chaos


def digest(body: bytes | None) -> str | None:
    return None if body is None else hashlib.sha1(body).hexdigest()[:12]
