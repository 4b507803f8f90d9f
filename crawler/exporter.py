"""Streaming exports of stored pages: JSON lines, CSV and WARC (via warcio)."""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
import json
import sqlite3
import sys
from typing import BinaryIO, TextIO

from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from crawler.queries import PAGE_FIELDS, iter_pages


def write_jsonl(
    db: sqlite3.Connection, out: TextIO, *, where: str | None, since: float | None, body: bool
) -> int:
    n = 0
    for rec in iter_pages(db, where=where, since=since, with_body=body):
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
    db: sqlite3.Connection, out: TextIO, *, where: str | None, since: float | None
) -> int:
    writer = csv.DictWriter(out, fieldnames=PAGE_FIELDS, extrasaction="ignore")
    writer.writeheader()
    n = 0
    for rec in iter_pages(db, where=where, since=since):
        writer.writerow(rec)
        n += 1
    return n


def write_warc(db: sqlite3.Connection, path: str, *, where: str | None, since: float | None) -> int:
    """One request and one response record per stored page with an HTTP status."""
    if path == "-":
        return _warc_to(db, sys.stdout.buffer, where=where, since=since)
    with open(path, "wb") as fh:
        return _warc_to(db, fh, where=where, since=since)


def _warc_to(
    db: sqlite3.Connection, fh: BinaryIO, *, where: str | None, since: float | None
) -> int:
    writer = WARCWriter(fh, gzip=True)
    n = 0
    for rec in iter_pages(db, where=where, since=since, with_body=True, with_headers=True):
        if rec["status"] is None:
            continue  # no HTTP exchange to record
        url = rec["url"]
        date = dt.datetime.fromtimestamp(rec["fetched_at"], dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        headers = [
            (k, v)
            for k, v in (rec.get("headers") or [])
            # The body is stored decoded: its framing headers would lie about it.
            if k.lower() not in ("content-encoding", "transfer-encoding", "content-length")
        ]
        body = rec["body"] or b""
        headers.append(("Content-Length", str(len(body))))
        http_headers = StatusAndHeaders(
            f"{rec['status']} {_reason(rec['status'])}", headers, protocol="HTTP/1.1"
        )
        response = writer.create_warc_record(
            url,
            "response",
            payload=io.BytesIO(body),
            http_headers=http_headers,
            warc_headers_dict={"WARC-Date": date},
        )
        target = url.split("://", 1)[1]
        path = "/" + target.split("/", 1)[1] if "/" in target else "/"
        host = target.split("/", 1)[0]
        request = writer.create_warc_record(
            url,
            "request",
            payload=io.BytesIO(b""),
            http_headers=StatusAndHeaders(
                f"GET {path} HTTP/1.1", [("Host", host)], is_http_request=True
            ),
            warc_headers_dict={"WARC-Date": date},
        )
        writer.write_request_response_pair(request, response)
        n += 1
    return n


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"
