"""Hosts as the WHATWG URL standard parses them: names (IDNA, UTS 46), IPv4 in every
legacy spelling, IPv6; each to its one canonical spelling, or None when it is no host."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import unquote

import idna

_FORBIDDEN_HOST = re.compile(r"[\x00-\x20#%/:<>?@\[\\\]^|\x7f]")


def hostname(host: str) -> str | None:
    """The WHATWG host parser for a non-IPv6 host: a lower-case ASCII name or IPv4, or None.

    A name that ends in a number is an IPv4 address in one of its legacy spellings
    (`0x7f.1`, `2130706433`, `0177.0.0.1`) or nothing: never a name that would reach
    127.0.0.1 under another politeness key or slip past a --deny pattern.
    """
    if "%" in host:
        try:
            host = unquote(host, errors="strict")
        except UnicodeDecodeError:
            return None
    if not host.isascii():
        ascii_host = _to_ascii(host)
        if ascii_host is None:
            return None
        host = ascii_host
    else:
        host = host.lower()
        if "xn--" in host and not all(
            _to_ascii(_from_punycode(label)) == label
            for label in host.split(".")
            if label.startswith("xn--")
        ):
            return None
    if not host or _FORBIDDEN_HOST.search(host) is not None:
        return None
    if _ends_in_number(host):
        return _ipv4(host)
    return host


def _to_ascii(domain: str | None) -> str | None:
    """UTS 46 ToASCII of a non-ASCII name (non-transitional, as browsers), lower case, or None."""
    if not domain:
        return None
    try:
        # "faß.de" keeps its ß (non-transitional); fullwidth dots are mapped to ".".
        return idna.encode(domain, uts46=True).decode("ascii").lower()
    except idna.IDNAError:
        pass
    # IDNA2008 refuses what UTS 46 as browsers run it accepts: symbols (☃.net), hyphens at a
    # label's ends, empty labels. Map as UTS 46 does (refusing disallowed code points), then
    # punycode each non-ASCII label.
    try:
        mapped = idna.uts46_remap(domain, std3_rules=False, transitional=False)
    except idna.IDNAError:
        return None
    labels = mapped.split(".")
    if any(label.startswith("xn--") and not label.isascii() for label in labels):
        return None  # "xn--" promises punycode (UTS 46 4.1)
    return ".".join(
        [
            label if label.isascii() else "xn--" + label.encode("punycode").decode()
            for label in labels
        ]
    ).lower()


def _from_punycode(label: str) -> str | None:
    """The Unicode form of an `xn--` label, or None when it is no punycode of a non-ASCII name."""
    try:
        text = label[4:].encode("ascii").decode("punycode")
    except UnicodeError:
        return None
    return None if text.isascii() else text


def _ends_in_number(host: str) -> bool:
    """Whether the WHATWG host parser reads `host` as IPv4 (its last label is a number)."""
    labels = host.split(".")
    if labels[-1] == "" and len(labels) > 1:
        labels.pop()
    last = labels[-1]
    if last.isdigit():
        return True
    return last[:2] == "0x" and all(c in "0123456789abcdef" for c in last[2:])


def _ipv4(host: str) -> str | None:
    """Dotted-decimal form of a WHATWG IPv4 host (1-4 parts, hex, octal), or None.

    >>> _ipv4("0x7f.1"), _ipv4("0300.0250.1"), _ipv4("3232235777"), _ipv4("1.256.0.0")
    ('127.0.0.1', '192.168.0.1', '192.168.1.1', None)
    """
    labels = host.split(".")
    if labels[-1] == "" and len(labels) > 1:
        labels.pop()
    if len(labels) > 4:
        return None
    numbers = []
    for label in labels:
        if label[:2] == "0x":
            digits, radix = label[2:], 16
        elif len(label) > 1 and label[0] == "0":
            digits, radix = label[1:], 8
        else:
            digits, radix = label, 10
        if not digits:
            if radix != 16:  # "0x" alone is zero; an empty label is no number
                return None
            digits = "0"
        try:
            numbers.append(int(digits, radix))
        except ValueError:  # "09", "0xg", "1e3"...
            return None
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (5 - len(numbers)):
        return None
    address = last
    for i, n in enumerate(head):
        address += n << (8 * (3 - i))
    return str(ipaddress.IPv4Address(address))


def ipv6(literal: str) -> str | None:
    """Bracketed WHATWG serialisation of an IPv6 literal; zone IDs are refused, as browsers do.

    >>> ipv6("0:0:0:0:0:FFFF:1.2.3.4"), ipv6("1:0:0:2:0:0:0:3")
    ('[::ffff:102:304]', '[1:0:0:2::3]')
    """
    if "%" in literal:
        return None
    try:
        packed = ipaddress.IPv6Address(literal).packed
    except ValueError:
        return None
    pieces = [(packed[i] << 8) | packed[i + 1] for i in range(0, 16, 2)]
    # The first longest run of two or more zero pieces becomes "::" (WHATWG IPv6 serializer;
    # Python 3.13 would write an IPv4-mapped address as dotted decimal instead).
    best_start, best_len, start = -1, 1, -1
    for i, piece in enumerate([*pieces, 1]):
        if piece == 0:
            if start < 0:
                start = i
        elif start >= 0:
            if i - start > best_len:
                best_start, best_len = start, i - start
            start = -1
    if best_start < 0:
        return "[" + ":".join(f"{p:x}" for p in pieces) + "]"
    left = ":".join(f"{p:x}" for p in pieces[:best_start])
    right = ":".join(f"{p:x}" for p in pieces[best_start + best_len :])
    return f"[{left}::{right}]"
