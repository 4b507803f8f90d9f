"""Sitemaps (sitemaps.org protocol 0.9): a body fed chunk by chunk in, its entries out.

`SitemapReader.feed` takes the body as it arrives and keeps only what a sitemap says:
one `Entry` per `<url>` (or `<sitemap>` of an index, or line of a plain-text sitemap),
never the document. A body that starts with the gzip magic (a `.xml.gz` file served
as it is) is inflated here, bounded by `decoding.Inflate`; a gzip Content-Encoding has
been taken off by the fetcher already.

Limits are the protocol's, whatever --max-bytes says: `MAX_URLS` entries and `MAX_BYTES`
uncompressed bytes per file; past either, `SitemapError` says so and the entries read
up to there are kept. Every failure is a `SitemapError` with a one-line message: the
crawl stores it on the sitemap's row and goes on.

The parser: the standard library's expat parser behind `defusedxml.ElementTree.
DefusedXMLParser`, fed through its public `feed()` with a *target* object that sees
start/end/data events. That is streaming in constant memory (no tree is built; text is
kept only inside the fields we want, and only `MAX_FIELD` characters of it), and
defusedxml refuses any entity declaration (a "billion laughs" bomb fails on its first
`<!ENTITY`, before anything expands) and every external entity or DTD fetch. defusedxml's
own `iterparse` needs a file to read; lxml's `iterparse(resolve_entities=False,
no_network=True)` would do as well but adds a compiled dependency for no gain here.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

import aiohttp
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser

from crawler.decoding import Inflate
from crawler.errors import CrawlerError

MAX_URLS = 50_000  # protocol: at most 50,000 URLs per sitemap (and per index)
MAX_BYTES = 52_428_800  # protocol: at most 50 MiB per file, uncompressed
MAX_LEVEL = 3  # a sitemap named in robots.txt is level 0; index children 1, 2, 3
MAX_FIELD = 4_096  # characters kept of one <loc>, <lastmod>...: a URL is at most 2,048
_GZIP = b"\x1f\x8b"
_FIELDS = frozenset({"loc", "lastmod", "changefreq", "priority"})


class SitemapError(CrawlerError):
    """A sitemap that cannot be read (to its end): the message goes on its row."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One `<url>` (or `<sitemap>`) of a sitemap, its fields as written (stripped)."""

    loc: str
    lastmod: str | None = None
    changefreq: str | None = None
    priority: float | None = None


class SitemapReader:
    """One sitemap body: `feed` its chunks, `close` at the end, read `kind` and `entries`."""

    def __init__(self) -> None:
        self.kind: str | None = None  # "urlset", "sitemapindex" or "text" once known
        self.entries: list[Entry] = []
        self.size = 0  # uncompressed bytes read
        self.error: str | None = None  # why reading stopped early (`take`, `finish`)
        self._inflate: Inflate | None = None
        self._head = b""  # bytes before we know gzip or not, XML or text
        self._xml: DefusedXMLParser | None = None
        self._line = bytearray()  # a plain-text sitemap's current line
        self._line_cut = False  # the current line passed MAX_FIELD: it is dropped
        self._started = False

    # ------------------------------------------------------------------ input

    def take(self, chunk: bytes) -> bool:
        """`feed` for the fetcher: False (stop reading) once the sitemap failed."""
        if self.error is not None:
            return False
        try:
            self.feed(chunk)
        except SitemapError as exc:
            self.error = str(exc)
            return False
        return True

    def finish(self, *, truncated: bool = False) -> None:
        """`close` for the fetcher: the failure, if any, goes to `error`."""
        if self.error is not None:
            return
        if truncated:
            self.error = f"sitemap: larger than {MAX_BYTES:,} bytes"
            return
        try:
            self.close()
        except SitemapError as exc:
            self.error = str(exc)

    def feed(self, chunk: bytes) -> None:
        """The next bytes of the body as received (gzip or not)."""
        if not self._started:
            self._head += chunk
            if len(self._head) < 2 and self._head == _GZIP[: len(self._head)]:
                return  # one byte: not yet known whether gzip
            self._started = True
            if self._head.startswith(_GZIP):
                self._inflate = Inflate("gzip")
            chunk, self._head = self._head, b""
        if self._inflate is not None:
            room = MAX_BYTES - self.size
            try:
                chunk = self._inflate.decode(chunk, room + 1)
            except aiohttp.ClientPayloadError as exc:
                raise SitemapError(f"sitemap: {exc}") from None
        self._plain(chunk)

    def close(self) -> None:
        """The body ended: check that it ended well (a whole gzip stream, whole XML)."""
        if not self._started and self._head:
            self._started = True
            self._plain(self._head)
        if self._inflate is not None and not self._inflate.complete:
            raise SitemapError("sitemap: gzip stream cut short")
        if self._xml is not None:
            try:
                self._xml.close()
            except (ET.ParseError, DefusedXmlException) as exc:
                raise _xml_error(exc) from None
        elif self.kind == "text":
            self._text_line()
        elif self.kind is None:
            raise SitemapError("sitemap: empty")

    # ------------------------------------------------------------------ plain bytes

    def _plain(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > MAX_BYTES:
            raise SitemapError(f"sitemap: larger than {MAX_BYTES:,} bytes uncompressed")
        if self.kind is None and self._xml is None:
            stripped = data.lstrip(b"\xef\xbb\xbf \t\r\n")
            if not stripped:
                return  # only a BOM and blanks so far
            if stripped.startswith(b"<"):
                self._xml = DefusedXMLParser(target=_Target(self))
            else:
                self.kind = "text"
        if self._xml is not None:
            try:
                self._xml.feed(data)
            except (ET.ParseError, DefusedXmlException) as exc:
                raise _xml_error(exc) from None
        else:
            self._text(data)

    def _text(self, data: bytes) -> None:
        """A plain-text sitemap: one URL a line (protocol: UTF-8, nothing else)."""
        while data:
            end = data.find(b"\n")
            part = data if end < 0 else data[:end]
            if not self._line_cut:
                self._line += part
                if len(self._line) > MAX_FIELD:
                    self._line_cut = True
                    self._line.clear()
            if end < 0:
                return
            self._text_line()
            data = data[end + 1 :]

    def _text_line(self) -> None:
        line = self._line.decode("utf-8", errors="replace").lstrip("\ufeff").strip()
        cut = self._line_cut
        self._line.clear()
        self._line_cut = False
        if line and not cut:
            self.add(Entry(line))

    def add(self, entry: Entry) -> None:
        if len(self.entries) >= MAX_URLS:
            raise SitemapError(f"sitemap: more than {MAX_URLS:,} URLs; the rest ignored")
        self.entries.append(entry)


class _Target:
    """expat's events -> entries; the state of one open `<url>` and one open field."""

    def __init__(self, reader: SitemapReader) -> None:
        self.reader = reader
        self.depth = 0
        self.fields: dict[str, str] | None = None  # the open <url>/<sitemap>
        self.field: str | None = None  # the open <loc>, <lastmod>...
        self.text: list[str] = []
        self.length = 0

    def start(self, tag: str, attrib: dict[str, str]) -> None:
        name = tag.rpartition("}")[2]  # any namespace, or none: servers get it wrong
        self.depth += 1
        if self.depth == 1:
            if name not in ("urlset", "sitemapindex"):
                raise SitemapError(f"sitemap: not a sitemap (root element <{name[:40]}>)")
            self.reader.kind = name
        elif self.depth == 2 and name in ("url", "sitemap"):
            self.fields = {}
        elif self.depth == 3 and self.fields is not None and name in _FIELDS:
            self.field, self.text, self.length = name, [], 0

    def data(self, text: str) -> None:
        if self.field is not None and self.length < MAX_FIELD:
            self.text.append(text)
            self.length += len(text)

    def end(self, tag: str) -> None:
        if self.depth == 3 and self.field is not None and self.fields is not None:
            if self.length <= MAX_FIELD:
                self.fields[self.field] = "".join(self.text).strip()
            self.field = None
        elif self.depth == 2 and self.fields is not None:
            fields, self.fields = self.fields, None
            if fields.get("loc"):
                self.reader.add(
                    Entry(
                        fields["loc"],
                        fields.get("lastmod") or None,
                        fields.get("changefreq") or None,
                        _priority(fields.get("priority")),
                    )
                )
        self.depth -= 1

    def close(self) -> None:
        return None


def _priority(text: str | None) -> float | None:
    """0.0 to 1.0 as the protocol says; anything else is no priority."""
    try:
        value = float(text) if text else None
    except ValueError:
        return None
    return value if value is not None and 0.0 <= value <= 1.0 else None


def _xml_error(exc: Exception) -> SitemapError:
    if isinstance(exc, DefusedXmlException):
        return SitemapError(f"sitemap: unsafe XML refused ({type(exc).__name__})")
    return SitemapError(f"sitemap: invalid XML ({' '.join(str(exc).split())[:200]})")
