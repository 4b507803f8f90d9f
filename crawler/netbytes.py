r"""Lossless text for values from the network: any bytes in, valid UTF-8 text out, and back.

aiohttp decodes header names and values as UTF-8 with `surrogateescape` (both its C and
its pure-Python parser), so a byte that is not UTF-8 arrives as a lone surrogate
U+DC80..U+DCFF. SQLite refuses such a string, and PostgreSQL's `text` refuses it and NUL
as well. `safe_text` turns any string into valid UTF-8 without NUL or surrogates, with a
backslash escaping that is injective, so `original_bytes` gives back exactly what the
server sent:

    in the string                 stored as   why
    \                             \\          keeps the escaping injective
    U+DC80..U+DCFF (byte 0xHH)    \xHH        a byte that was not UTF-8
    NUL                           \x00        PostgreSQL text refuses NUL
    any other lone surrogate      \udXXX      e.g. from an exception message

Valid UTF-8 (`café`) is kept as it is. For example, `Content-Type: text/html;
charset=<byte 0xE9>`:

    >>> safe_text("text/html; charset=\udce9")
    'text/html; charset=\\xe9'
    >>> original_bytes('text/html; charset=\\xe9')
    b'text/html; charset=\xe9'

Hex digits are written in lower case. A backslash sequence `safe_text` never writes
(text stored before this escaping existed) reads back literally.
"""

from __future__ import annotations

import re

_ESCAPE = re.compile("[\\\\\x00\ud800-\udfff]")
_UNESCAPE = re.compile(r"\\(\\|x[0-9a-f]{2}|ud[89a-f][0-9a-f]{2})")


def safe_text(s: str) -> str:
    """`s` as valid UTF-8 text without NUL or lone surrogates, reversibly (see above)."""
    # The common case, a plain ASCII value, costs two scans in C and no copy.
    if s.isascii() and "\\" not in s and "\x00" not in s:
        return s
    return _ESCAPE.sub(_escape, s)


def _escape(m: re.Match[str]) -> str:
    c = m.group()
    if c == "\\":
        return "\\\\"
    code = ord(c)
    if code == 0:
        return "\\x00"
    if 0xDC80 <= code <= 0xDCFF:
        return f"\\x{code - 0xDC00:02x}"
    return f"\\u{code:04x}"


def original_text(s: str) -> str:
    """The string `safe_text` was given: the inverse of `safe_text`."""
    if "\\" not in s:
        return s
    return _UNESCAPE.sub(_unescape, s)


def _unescape(m: re.Match[str]) -> str:
    body = m.group(1)
    if body == "\\":
        return "\\"
    code = int(body[1:], 16)
    if body[0] == "x":
        if code == 0:
            return "\x00"
        if code >= 0x80:
            return chr(0xDC00 + code)
        return m.group()  # \x01..\x7f: never written by safe_text, so literal text
    if 0xDC80 <= code <= 0xDCFF:
        return m.group()  # written as \xHH, never as \udcHH: literal text
    return chr(code)


def original_bytes(s: str) -> bytes:
    """The bytes the server sent for a value `safe_text` stored as `s`.

    `original_bytes(safe_text(raw.decode("utf-8", "surrogateescape"))) == raw` for any
    `raw`. A surrogate outside U+DC80..U+DCFF, which no decoded bytes contain, comes back
    as its UTF-8-style three bytes (Python's `surrogatepass`).
    """
    text = original_text(s)
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return b"".join(
            c.encode("utf-8", "surrogateescape" if 0xDC80 <= ord(c) <= 0xDCFF else "surrogatepass")
            for c in text
        )


_RAW_BYTE = re.compile("[\udc80-\udcff]")


def location_url(value: str) -> str:
    """A stored Location header as a URL string: bytes that were not UTF-8 become %HH, as
    browsers send them.

    >>> location_url(safe_text("/caf\udce9"))
    '/caf%E9'
    """
    text = original_text(value)
    return _RAW_BYTE.sub(lambda m: f"%{ord(m.group()) - 0xDC00:02X}", text)
