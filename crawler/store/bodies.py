"""Bodies as both stores keep them (plain, or zlib with --compress), read back in one place."""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from typing import Any

from crawler.records import TextOf


def plain(body: bytes, codec: str | None) -> bytes:
    """The body as fetched (content-decoded); zlib.error when a stored one is corrupt."""
    return zlib.decompress(body) if codec == "zlib" else bytes(body)


def page_texts(rows: Iterable[Any], text_of: TextOf) -> list[tuple[int, str | None, str, int]]:
    """(page_id, title, text, truncated) for the rows (page_id, content_type, body, codec)
    that have text; a body that no longer decompresses has none to give."""
    out = []
    for page_id, content_type, body, codec in rows:
        try:
            found = text_of(plain(body, codec), content_type)
        except zlib.error:
            continue
        if found is not None:
            title, text, truncated = found
            out.append((page_id, title, text, int(truncated)))
    return out
