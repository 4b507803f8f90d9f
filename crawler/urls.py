"""Pure URL functions: one canonical spelling per resource, its politeness key, trap tests.

Every link the parser finds passes through `canonical_url` (tens of thousands a second),
so the common case (a plain ASCII href on a host we have seen) takes a fast path: the
join is hand-rolled from RFC 3986 5.2 (faster than `urljoin` or `yarl`), the parsed base
and each normalised authority are cached, and the percent-encoding and dot-segment passes
run only when a cheap scan says they could change something.

The canonical form is both the dedup key and the URL we request. aiohttp re-quotes a str
URL through yarl, which leaves everything we escape alone but decodes escaped sub-delims
(`%21` -> `!`, RFC 3986 says they may differ): pass `yarl.URL(url, encoded=True)` to
send exactly the stored URL.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache
from urllib.parse import unquote

import idna

DEFAULT_PORTS = {"http": 80, "https": 443}

# WHATWG URL parsing: C0 controls and space are stripped from both ends of an href, and
# tab, CR and LF anywhere are removed (so a link wrapped across lines still works).
_STRIP = "".join(map(chr, range(0x21)))
_TAB_NL = str.maketrans("", "", "\t\n\r")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*")
# What may stand unescaped in a path or query: RFC 3986 unreserved, sub-delims, ":", "@",
# "/" and "?". Anything else, "%" included, sends the part through _ESCAPE.
_SAFE = r"A-Za-z0-9\-._~!$&'()*+,;=:@/?"
_UNSAFE = re.compile(f"[^{_SAFE}]")
_ESCAPE = re.compile(f"%[0-9A-Fa-f]{{2}}|[^{_SAFE}]")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PCT = [f"%{b:02X}" for b in range(256)]
# A DNS name or dotted IPv4 after lower-casing and IDNA; "_" occurs in real host names.
_HOSTNAME = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*")


def canonical_url(url: str, base: str | None = None, *, max_length: int = 2048) -> str | None:
    """Resolve `url` against `base` and return its canonical absolute form, or None.

    None means "not a URL we can crawl": not http(s), no usable host, a bad port, or
    longer than `max_length` once canonical. User info (`user:pass@`) is dropped, as
    a crawler must not store credentials; so is the fragment, which never reaches
    the server. The query keeps its order: `?b=1&a=2` and `?a=2&b=1` may differ.
    A backslash is escaped (`%5C`) as RFC 3986 has it, where a browser reads `/`.

    >>> canonical_url("../b/./c.html#top", "http://example.com/a/x/")
    'http://example.com/a/b/c.html'
    >>> canonical_url("HTTP://User:pw@Bücher.example:80/%7euser/a b?q=%e2%82%ac")
    'http://xn--bcher-kva.example/~user/a%20b?q=%E2%82%AC'
    >>> canonical_url("mailto:someone@example.com") is None
    True
    """
    ref = url.strip(_STRIP)
    if "\t" in ref or "\n" in ref or "\r" in ref:
        ref = ref.translate(_TAB_NL)
    hash_at = ref.find("#")
    if hash_at >= 0:
        ref = ref[:hash_at]

    scheme: str | None = None
    rest = ref
    colon = ref.find(":")
    if colon > 0:
        head = ref[:colon]
        lowered = head.lower()
        if lowered in DEFAULT_PORTS:
            scheme, rest = lowered, ref[colon + 1 :]
        elif _SCHEME.fullmatch(head):
            return None  # mailto:, javascript:, tel:, data:, ftp:...

    if rest.startswith("//"):
        if scheme is None:  # scheme-relative: the base decides
            if base is None or (parts := _base(base)) is None:
                return None
            scheme = parts[0]
        end = _authority_end(rest)
        authority = _authority(scheme, rest[2:end])
        if authority is None:
            return None
        path, _, query = rest[end:].partition("?")
        if not path:
            path = "/"
    else:
        if base is None or (parts := _base(base)) is None:
            return None
        base_scheme, authority, base_path, base_query = parts
        # "http:page.html" is relative to an http base (RFC 3986 5.2.2, non-strict, as
        # browsers do); "https:page.html" against an http base names no host at all.
        if scheme is not None and scheme != base_scheme:
            return None
        scheme = base_scheme
        path, has_query, query = rest.partition("?")
        if not path:
            path = base_path
            if not has_query:
                query = base_query
        elif path[0] != "/":
            path = base_path[: base_path.rfind("/") + 1] + path

    try:
        if _UNSAFE.search(path) is not None:
            path = _ESCAPE.sub(_escape, path)
        if query and _UNSAFE.search(query) is not None:
            query = _ESCAPE.sub(_escape, query)
    except UnicodeEncodeError:  # a lone surrogate cannot be UTF-8: not a real link
        return None
    # After unescaping, since "%2E%2E" is a dot segment too (RFC 3986 6.2.2 order).
    if "/." in path:
        path = _remove_dot_segments(path)
    canonical = (
        f"{scheme}://{authority}{path}?{query}" if query else f"{scheme}://{authority}{path}"
    )
    return canonical if len(canonical) <= max_length else None


def host_key(url: str) -> str:
    """The politeness key of a canonical URL: scheme, host and an explicit port.

    >>> host_key("http://127.0.0.2/x")
    'http://127.0.0.2:80'
    >>> host_key("https://[::1]:8443/")
    'https://[::1]:8443'
    """
    scheme, _, rest = url.partition("://")
    authority = rest[: _authority_end(rest, 0)]
    if ":" not in authority or authority.endswith("]"):
        return f"{scheme}://{authority}:{DEFAULT_PORTS[scheme]}"
    return f"{scheme}://{authority}"


def url_host(url: str) -> str:
    """The host of a canonical URL, without the port; IPv6 stays bracketed, as in the URL.

    >>> url_host("http://a.example.com:8080/x")
    'a.example.com'
    """
    rest = url.partition("://")[2]
    authority = rest[: _authority_end(rest, 0)]
    if authority.startswith("["):
        return authority[: authority.find("]") + 1]
    return authority.partition(":")[0]


def has_repeated_segments(url: str, limit: int) -> bool:
    """Whether a path segment occurs more than `limit` times: a crawler trap's signature.

    Calendars and broken relative links grow paths like `/a/b/a/b/a/b/...` for ever;
    a real site rarely repeats one directory name more than a couple of times.

    >>> has_repeated_segments("http://h/cal/cal/cal/cal", 3)
    True
    """
    rest = url.partition("://")[2]
    start = rest.find("/")
    if start < 0:
        return False
    end = rest.find("?", start)
    segments = (rest[start:end] if end >= 0 else rest[start:]).split("/")
    if len(segments) <= limit:
        return False
    counts: dict[str, int] = {}
    for segment in segments:
        if segment:
            n = counts.get(segment, 0) + 1
            if n > limit:
                return True
            counts[segment] = n
    return False


def _authority_end(rest: str, start: int = 2) -> int:
    """Index where the authority starting at `start` ends (at "/", "?" or the end)."""
    slash = rest.find("/", start)
    question = rest.find("?", start)
    if question >= 0 and (slash < 0 or question < slash):
        return question
    return slash if slash >= 0 else len(rest)


@lru_cache(maxsize=1024)
def _base(base: str) -> tuple[str, str, str, str] | None:
    """(scheme, authority, path, query) of a base URL, canonicalised once per page.

    Canonicalising makes a base like robots.txt's `http://host:80/robots.txt` safe too.
    """
    canonical = canonical_url(base, max_length=1 << 62)
    if canonical is None:
        return None
    scheme, _, rest = canonical.partition("://")
    slash = rest.find("/")
    path, _, query = rest[slash:].partition("?")
    return scheme, rest[:slash], path, query


@lru_cache(maxsize=4096)
def _authority(scheme: str, netloc: str) -> str | None:
    """Canonical `host[:port]` for a raw authority, or None when it is unusable."""
    netloc = netloc.rpartition("@")[2]  # credentials are dropped, never stored
    if netloc.startswith("["):
        close = netloc.find("]")
        host = _ipv6(netloc[1:close]) if close > 0 else None
        after = netloc[close + 1 :]
        if after and after[0] != ":":
            return None
        port = after[1:]
    else:
        name, _, port = netloc.partition(":")
        host = _hostname(name)
    if host is None:
        return None
    if not port:  # "http://host:/" means the default port (WHATWG)
        return host
    if not (port.isascii() and port.isdigit()):
        return None
    number = int(port)
    if not 0 < number <= 65535:  # port 0 parses but nothing can be fetched from it
        return None
    return host if number == DEFAULT_PORTS[scheme] else f"{host}:{number}"


def _hostname(host: str) -> str | None:
    """Lower-case ASCII (punycode) form of a DNS name or IPv4 address, or None."""
    if "%" in host:
        try:
            host = unquote(host, errors="strict")
        except UnicodeDecodeError:
            return None
    if not host.isascii():
        try:
            # UTS 46 non-transitional, as browsers do ("faß.de" keeps its ß).
            host = idna.encode(host, uts46=True).decode("ascii")
        except idna.IDNAError:
            try:
                # IDNA2008 refuses symbols (☃.net) that browsers and IDNA2003 accept.
                host = host.encode("idna").decode("ascii")
            except UnicodeError:
                return None
    host = host.lower()
    if host.endswith("."):  # "example.com." is the same host, fully qualified
        host = host[:-1]
    return host if _HOSTNAME.fullmatch(host) else None


def _ipv6(literal: str) -> str | None:
    """Bracketed, compressed form of an IPv6 literal; zone IDs are refused, as browsers do."""
    if "%" in literal:
        return None
    try:
        return f"[{ipaddress.IPv6Address(literal).compressed}]"
    except ValueError:
        return None


def _escape(match: re.Match[str]) -> str:
    """Normalise one escape (RFC 3986 6.2.2.2) or escape one character that needs it."""
    text = match.group()
    if len(text) == 3:  # %XX: the only match longer than one character
        char = chr(int(text[1:], 16))
        return char if char in _UNRESERVED else text.upper()
    return "".join([_PCT[b] for b in text.encode()])  # "%" alone becomes %25


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 5.2.4 for an absolute path: `/a/b/../c/./d` -> `/a/c/d`."""
    segments = path.split("/")
    out: list[str] = []
    for segment in segments[1:]:
        if segment == "..":
            if out:
                out.pop()
        elif segment != ".":
            out.append(segment)
    if segments[-1] in (".", ".."):  # "/a/b/.." names the directory "/a/"
        out.append("")
    return "/" + "/".join(out)
