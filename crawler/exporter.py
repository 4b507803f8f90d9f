"""Streaming exports of stored pages: JSON lines, CSV and WARC (via warcio).

Each format reads pages one at a time from the store's reader, so memory stays flat
however large the database is. The query runs before the output is opened: a bad
`--where` leaves no half-written file behind.

Values from the network are stored escaped by `netbytes.safe_text`. JSON lines and CSV
print them as stored (valid UTF-8, whatever the locale); WARC writes the bytes the server
sent (`netbytes.original_bytes`), as an archive should.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import datetime as dt
import io
import json
import sys
from collections.abc import Generator, Iterable, Iterator
from http import HTTPStatus
from typing import IO, Any, Protocol
from urllib.parse import urlsplit

from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from crawler import __version__
from crawler.errors import UsageError
from crawler.netbytes import original_bytes
from crawler.store.protocol import LINK_FIELDS, PAGE_FIELDS, Reader

FORMATS = ("jsonl", "csv", "warc")
# The body is stored decoded and whole (or cut at max_bytes): these headers would lie about it.
_FRAMING = frozenset({"content-encoding", "transfer-encoding", "content-length"})


def export(
    reader: Reader,
    fmt: str,
    output: str,
    *,
    where: str | None = None,
    since: float | None = None,
    body: bool = False,
    links: bool = False,
) -> int:
    """Write the pages matching `where`/`since` to `output` ('-': stdout); the count written.
    With `links`, the `links` rows matching `where` instead (jsonl or csv)."""
    warc = fmt == "warc"
    if links and (warc or body or since is not None):
        raise UsageError("--links writes jsonl or csv, without --body or --since")
    # The query runs now: errors surface before the output exists.
    pages = (
        reader.links(where=where)
        if links
        else reader.pages(
            where=where,
            since=since,
            with_body=body or warc,
            with_headers=warc,
            with_data=fmt == "jsonl",  # the fields hooks and --extract stored, as an object
        )
    )
    try:
        with _open(output, binary=warc) as fh:
            if fmt == "jsonl":
                return write_jsonl(pages, fh, body=body)
            if fmt == "csv":
                return write_csv(pages, fh, LINK_FIELDS if links else PAGE_FIELDS)
            if warc:
                return write_warc(pages, fh, user_agent=reader.user_agent())
    finally:
        # Left half-read (the reader of a pipe went away, say), the generator would close
        # its cursor only when collected, after the caller has closed the connection.
        if isinstance(pages, Generator):
            pages.close()
    raise ValueError(f"unknown export format {fmt!r}")


class TextOut(Protocol):
    def write(self, s: str, /) -> int: ...


class _Utf8(TextOut):
    """Text written as UTF-8 to a binary stream, whatever encoding the locale gives stdout."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw

    def write(self, s: str, /) -> int:
        self.raw.write(s.encode("utf-8"))
        return len(s)


@contextlib.contextmanager
def _open(path: str, *, binary: bool) -> Iterator[Any]:
    if path == "-":
        sys.stdout.flush()
        out = sys.stdout.buffer
        yield out if binary else _Utf8(out)
        out.flush()
        return
    with contextlib.ExitStack() as stack:
        try:
            text = None if binary else "utf-8"
            fh = stack.enter_context(
                open(path, "wb" if binary else "w", encoding=text, newline=text and "")
            )
        except OSError as exc:  # a missing directory, a directory, no permission...
            raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
        yield fh


def write_jsonl(pages: Iterable[dict[str, Any]], out: TextOut, *, body: bool = False) -> int:
    """One JSON object per page; with `body`, `body` as text or `body_base64` when not UTF-8."""
    n = 0
    for rec in pages:
        if body:
            raw = rec.pop("body")
            if raw is not None:
                try:
                    rec["body"] = raw.decode("utf-8")
                except UnicodeDecodeError:
                    rec["body_base64"] = base64.b64encode(raw).decode("ascii")
        out.write(json.dumps(rec, ensure_ascii=False) + "\n")
        n += 1
    return n


def write_csv(
    pages: Iterable[dict[str, Any]], out: TextOut, fields: tuple[str, ...] = PAGE_FIELDS
) -> int:
    """A header row, then one row per page (no bodies)."""
    writer = csv.DictWriter(out, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    n = 0
    for rec in pages:
        writer.writerow(rec)
        n += 1
    return n


def write_warc(
    pages: Iterable[dict[str, Any]], out: IO[bytes], *, user_agent: str | None = None
) -> int:
    """A warcinfo record, then a response and a request record per page with an HTTP status.

    Pages without a status (network errors) had no HTTP exchange to record and are
    skipped. Records are gzipped one by one (`.warc.gz`), as replay tools expect.
    """
    writer = WARCWriter(out, gzip=True, warc_version="1.1")
    writer.write_record(
        writer.create_warcinfo_record(
            "",
            {
                "software": f"crawler/{__version__}",
                "format": "WARC File Format 1.1",
                "description": "pages exported from a crawler SQLite database",
            },
        )
    )
    n = 0
    for rec in pages:
        if rec["status"] is not None:
            _write_exchange(writer, rec, user_agent)
            n += 1
    return n


def _write_exchange(writer: WARCWriter, rec: dict[str, Any], user_agent: str | None) -> None:
    url = rec["url"]
    date = dt.datetime.fromtimestamp(rec["fetched_at"], dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = rec["body"] or b""
    headers = [
        (_latin1(k), _latin1(v)) for k, v in rec.get("headers") or [] if k.lower() not in _FRAMING
    ]
    headers.append(("Content-Length", str(len(body))))
    warc_headers = {"WARC-Date": date}
    if rec["truncated"]:
        warc_headers["WARC-Truncated"] = "length"  # cut at max_bytes
    response = writer.create_warc_record(
        url,
        "response",
        payload=io.BytesIO(body),
        length=len(body),  # known: warcio then streams it instead of spooling a copy
        http_headers=_RawHeaders(
            f"{rec['status']} {_reason(rec['status'])}", headers, protocol="HTTP/1.1"
        ),
        warc_headers_dict=warc_headers,
    )
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    request_headers = [("Host", parts.netloc)]
    if user_agent:
        request_headers.append(("User-Agent", user_agent))
    request = writer.create_warc_record(
        url,
        "request",
        payload=io.BytesIO(b""),
        length=0,
        http_headers=StatusAndHeaders(
            f"GET {target} HTTP/1.1", request_headers, is_http_request=True
        ),
        warc_headers_dict={"WARC-Date": date},
    )
    # Written response first, the request pointing at it with WARC-Concurrent-To.
    writer.write_request_response_pair(request, response)


class _RawHeaders(StatusAndHeaders):  # type: ignore[misc]  # warcio is untyped
    """An HTTP header block written byte for byte: each character stands for one byte.

    warcio would %-encode every non-ASCII header value (`café` would come out as
    `caf%C3%A9`), and cannot encode a byte that is not UTF-8 at all; this keeps what the
    server sent. Holds its names and values as `_latin1` strings. `compute_headers_buffer`
    is the one place warcio turns headers into the bytes it digests and writes.
    """

    def compute_headers_buffer(self, header_filter: Any = None) -> None:
        self.headers_buff = self.to_str(header_filter).encode("latin-1") + b"\r\n"


def _latin1(value: str) -> str:
    """A stored (escaped) header name or value as one character per original byte."""
    return original_bytes(value).decode("latin-1")


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def parse_time(text: str) -> float:
    """Unix time from seconds or ISO 8601 (local time unless it carries an offset).

    >>> parse_time("1700000000.5")
    1700000000.5
    """
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"invalid time {text!r}: expected unix seconds or ISO 8601 (2024-05-01T12:00)"
        ) from None
    return when.timestamp()  # naive: local time, like the times `crawler stats` prints
