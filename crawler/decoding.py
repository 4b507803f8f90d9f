"""Content-Encoding decoders for response bodies: gzip, deflate and br, bounded.

aiohttp's own decoding does not tell a gzip or br stream cut short from a whole one, so
the fetcher decodes bodies itself: at most about `limit` bytes come out of each call (a
decompression bomb stops at --max-bytes), and `complete` says whether the stream ended.
Errors are `aiohttp.ClientPayloadError`, as a broken body is anywhere else.
"""

from __future__ import annotations

import zlib

import aiohttp
import brotli  # type: ignore[import-untyped]

ACCEPT_ENCODING = "gzip, deflate, br"  # exactly what `decoder` decodes
MAX_MEMBERS = 1024  # concatenated gzip/deflate members decoded in one body (aiohttp's cap)


class Inflate:
    """gzip, or deflate (zlib format, or raw deflate as some servers send it), member
    after member (RFC 1952 2.2 allows several), with a bound on the output."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.wbits = 16 + zlib.MAX_WBITS if name == "gzip" else zlib.MAX_WBITS
        self.member: zlib._Decompress | None = None
        self.members = 0

    @property
    def complete(self) -> bool:
        """Every member that began has ended (true too when no byte came)."""
        return self.member is None

    def decode(self, data: bytes, limit: int) -> bytes:
        """At most `limit` bytes (> 0) from `data`; all of `data` is used when fewer come."""
        out: list[bytes] = []
        try:
            while data and limit > 0:
                if self.member is None:
                    self.members += 1
                    if self.members > MAX_MEMBERS:
                        raise aiohttp.ClientPayloadError(
                            f"{self.name} stream of more than {MAX_MEMBERS} members"
                        )
                    if self.members == 1 and self.name == "deflate" and data[0] & 0x0F != 8:
                        self.wbits = -zlib.MAX_WBITS  # no zlib header: raw deflate
                    self.member = zlib.decompressobj(self.wbits)
                piece = self.member.decompress(data, limit)
                out.append(piece)
                limit -= len(piece)
                if self.member.eof:
                    data, self.member = self.member.unused_data, None
                else:
                    data = self.member.unconsumed_tail
        except zlib.error as exc:
            raise aiohttp.ClientPayloadError(f"invalid {self.name} stream ({exc})") from exc
        return b"".join(out)


class Unbrotli:
    """br (RFC 7932), with a bound on the output."""

    name = "br"

    def __init__(self) -> None:
        self.decompressor = brotli.Decompressor()
        self.started = False

    @property
    def complete(self) -> bool:
        return not self.started or bool(self.decompressor.is_finished())

    def decode(self, data: bytes, limit: int) -> bytes:
        """At least `limit` bytes from `data` (brotli may give a little more), or all of it."""
        self.started = True
        try:
            return bytes(self.decompressor.process(data, output_buffer_limit=limit))
        except brotli.error as exc:
            raise aiohttp.ClientPayloadError(f"invalid br stream ({exc})") from exc


def decoder(encoding: str | None) -> Inflate | Unbrotli | None:
    """The decoder for a Content-Encoding; None (the body as sent) for any other value."""
    name = (encoding or "").strip().lower()
    if name in ("gzip", "deflate"):
        return Inflate(name)
    if name == "br":
        return Unbrotli()
    return None
