"""Pure URL functions: one canonical spelling per resource, its politeness key, trap tests.

`canonical_url` parses an href the way a browser does (the WHATWG URL Standard for the
special schemes http and https), then writes the result in one canonical spelling. It is
checked case by case against the web-platform-tests URL data (tests/data/urltestdata.json)
and against the `ada-url` parser. Where the canonical form differs from a browser's
`href`, it is one of these deliberate normalisations, none of which changes the host, the
port or an IP address (each is an equivalence of RFC 3986 6.2 or a crawler's choice):

1. The user info (`user:pass@`) is dropped: a crawler must not store credentials.
2. The fragment is dropped: it never reaches the server.
3. An empty query (`p?`) is dropped: `p?` and `p` are one request line for every server.
4. Percent-escapes are normalised (RFC 3986 6.2.2.1-2): hex digits in upper case, and an
   escaped unreserved character decoded (`%7e` -> `~`, `%41` -> `A`, `%2E` -> `.`).
5. What RFC 3986 allows nowhere is escaped where a browser sends it raw: a `%` that
   starts no escape (`%25`) and ``[ ] \\ ^ ` { | }`` in the path and query.

Every link the parser finds passes through `canonical_url` (tens of thousands a second),
so the commonest hrefs (a plain path, or an http(s) URL with a plain path) skip the full
parse (`_plain`, tested against it and against ada-url), and the rest take a fast path: the
join is hand-rolled (measured faster than `urljoin`, `yarl` or ada-url's `join_url`), the
parsed base and each normalised authority are cached, and the percent-encoding and
dot-segment passes run only when a cheap scan says they could change something.

The canonical form is both the dedup key and the URL we request. aiohttp re-quotes a str
URL through yarl, which leaves everything we escape alone but decodes escaped sub-delims
(`%21` -> `!`, RFC 3986 says they may differ): pass `yarl.URL(url, encoded=True)` to
send exactly the stored URL.
"""

from __future__ import annotations

import re
from functools import lru_cache

from crawler.urlhosts import hostname, ipv6

DEFAULT_PORTS = {"http": 80, "https": 443}

# WHATWG URL parsing: C0 controls and space are stripped from both ends of an href, and
# tab, CR and LF anywhere are removed (so a link wrapped across lines still works).
_STRIP = "".join(map(chr, range(0x21)))
_TAB_NL = str.maketrans("", "", "\t\n\r")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*")
# What may stand unescaped in a path: RFC 3986 unreserved, sub-delims, ":", "@", "/" and
# "?". Anything else, "%" included, sends the part through _ESCAPE. In a query "'" is
# escaped too, as browsers do for http(s) (the special-query percent-encode set).
_SAFE = r"A-Za-z0-9\-._~!$&()*+,;=:@/?"
_UNSAFE = re.compile(f"[^{_SAFE}']")
_ESCAPE = re.compile(f"%[0-9A-Fa-f]{{2}}|[^{_SAFE}']")
_UNSAFE_QUERY = re.compile(f"[^{_SAFE}]")
_ESCAPE_QUERY = re.compile(f"%[0-9A-Fa-f]{{2}}|[^{_SAFE}]")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PCT = [f"%{b:02X}" for b in range(256)]
# The fast path of `canonical_url`: an href (its fragment cut) made only of these needs
# nothing stripped, escaped or tested for a scheme. A path-only one (no ":", "%", "?",
# "\\", space or control) is joined to the base; an absolute one has a lower-case http(s)
# scheme and an authority that `_authority` normalises (and caches) as the full path does.
_PLAIN_PATH = re.compile(r"[A-Za-z0-9\-._~!$&()*+,;=@/]+")
_PLAIN_ABSOLUTE = re.compile(
    r"(https?)://([A-Za-z0-9\-._~:@\[\]]+)([A-Za-z0-9\-._~!$&()*+,;=:@/]*)"
)
# The WHATWG forbidden domain code points: a host holding one is not a host.


def canonical_url(url: str, base: str | None = None, *, max_length: int = 2048) -> str | None:
    """Resolve `url` against `base` as a browser does and return its canonical form, or None.

    None means "not a URL we can crawl": not http(s), no usable host, a bad port, or
    longer than `max_length` once canonical. The query keeps its order: `?b=1&a=2` and
    `?a=2&b=1` may differ. See the module docstring for how the result differs from
    a browser's `href`.

    >>> canonical_url("../b/./c.html#top", "http://example.com/a/x/")
    'http://example.com/a/b/c.html'
    >>> canonical_url("HTTP://User:pw@Bücher.example:80/%7euser/a b?q=%e2%82%ac")
    'http://xn--bcher-kva.example/~user/a%20b?q=%E2%82%AC'
    >>> canonical_url("http://0x7f.1/")  # an IPv4 address in another spelling
    'http://127.0.0.1/'
    >>> canonical_url("mailto:someone@example.com") is None
    True
    """
    plain = _plain(url, base)
    if plain is not None:
        return plain if plain and len(plain) <= max_length else None
    return _canonical(url, base, max_length)


def _canonical(url: str, base: str | None, max_length: int) -> str | None:
    """`canonical_url` of any href: the full WHATWG path (the fast path's reference)."""
    ref = url.strip(_STRIP)
    if "\t" in ref or "\n" in ref or "\r" in ref:
        ref = ref.translate(_TAB_NL)
    hash_at = ref.find("#")
    if hash_at >= 0:
        ref = ref[:hash_at]
    if "\\" in ref:  # before the query a backslash is a slash in http(s) (WHATWG)
        query_at = ref.find("?")
        if query_at < 0:
            ref = ref.replace("\\", "/")
        else:
            ref = ref[:query_at].replace("\\", "/") + ref[query_at:]

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

    # "http:page.html" and "http:/x" are relative to an http base (WHATWG, like RFC 3986
    # 5.2.2 non-strict); otherwise a scheme is followed by an authority, however many
    # slashes ("http:example.com", "http:///example.com" and "https:x" on an http page).
    # The base is looked up only when needed: most absolute links never need it.
    parts: tuple[str, str, str, str] | None = None
    authority_path: str | None = None
    if rest.startswith("//"):
        if scheme is None:  # scheme-relative: the base decides
            if base is None or (parts := _base(base)) is None:
                return None
            scheme = parts[0]
        authority_path = rest.lstrip("/")  # "///host/p" names the host, as in browsers
    elif scheme is not None and (
        base is None or (parts := _base(base)) is None or parts[0] != scheme
    ):
        authority_path = rest.lstrip("/")
    elif parts is None and base is not None:
        parts = _base(base)

    if authority_path is not None:
        end = _authority_end(authority_path)
        authority = _authority(scheme, authority_path[:end])
        if authority is None:
            return None
        path, _, query = authority_path[end:].partition("?")
        if not path:
            path = "/"
    else:
        if parts is None:
            return None
        scheme, authority, base_path, base_query = parts
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
        if query and _UNSAFE_QUERY.search(query) is not None:
            query = _ESCAPE_QUERY.sub(_escape, query)
    except UnicodeEncodeError:
        # A lone surrogate cannot be UTF-8: a browser reads it as U+FFFD.
        return canonical_url(_replace_surrogates(url), base, max_length=max_length)
    # After unescaping, since "%2E%2E" is a dot segment too (RFC 3986 6.2.2 order).
    if "/." in path:
        path = _remove_dot_segments(path)
    canonical = (
        f"{scheme}://{authority}{path}?{query}" if query else f"{scheme}://{authority}{path}"
    )
    return canonical if len(canonical) <= max_length else None


def _plain(url: str, base: str | None) -> str | None:
    """`canonical_url` of the commonest hrefs ("/a/b.html", "b.html", "http://host/a"),
    "" for one that is no URL, or None when the full path must decide."""
    hash_at = url.find("#")
    ref = url if hash_at < 0 else url[:hash_at]
    if base is not None and _PLAIN_PATH.fullmatch(ref) and not ref.startswith("//"):
        parts = _base(base)
        if parts is None:
            return None
        path = ref if ref[0] == "/" else parts[2][: parts[2].rfind("/") + 1] + ref
        if "/." in path:
            path = _remove_dot_segments(path)
        return f"{parts[0]}://{parts[1]}{path}"
    found = _PLAIN_ABSOLUTE.fullmatch(ref)
    if found is None:
        return None
    scheme, netloc, path = found.groups()
    if path and path[0] != "/":
        return None
    if "/." in path:
        path = _remove_dot_segments(path)
    authority = _authority(scheme, netloc)
    if authority is None:
        return ""
    return f"{scheme}://{authority}{path or '/'}"


def host_key(url: str) -> str:
    """The origin of a canonical URL: scheme, host and an explicit port (`pages.host`,
    robots.txt, the frontier's queues).

    >>> host_key("http://127.0.0.2/x")
    'http://127.0.0.2:80'
    >>> host_key("https://[::1]:8443/")
    'https://[::1]:8443'
    """
    scheme, _, rest = url.partition("://")
    authority = rest[: _authority_end(rest)]
    if ":" not in authority or authority.endswith("]"):
        return f"{scheme}://{authority}:{DEFAULT_PORTS[scheme]}"
    return f"{scheme}://{authority}"


def server_key(origin: str) -> str:
    """The politeness key of an origin (`host_key`): its host, plus the port when that is
    not the scheme's default, so http and https of one name are one server.

    >>> server_key("https://example.com:443")
    'example.com'
    >>> server_key("http://127.0.0.2:8080")
    '127.0.0.2:8080'
    """
    scheme, _, authority = origin.partition("://")
    host, _, port = authority.rpartition(":")
    if not host or not port.isdigit():
        return authority  # no port (an IPv6 literal's colons are not one)
    return host if str(DEFAULT_PORTS.get(scheme)) == port else authority


def url_host(url: str) -> str:
    """The host of a canonical URL, without the port; IPv6 stays bracketed, as in the URL.

    >>> url_host("http://a.example.com:8080/x")
    'a.example.com'
    """
    rest = url.partition("://")[2]
    authority = rest[: _authority_end(rest)]
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


def _authority_end(rest: str) -> int:
    """Index where the authority at the start of `rest` ends (at "/", "?" or the end)."""
    slash = rest.find("/")
    question = rest.find("?")
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
        host = ipv6(netloc[1:close]) if close > 0 else None
        after = netloc[close + 1 :]
        if after and after[0] != ":":
            return None
        port = after[1:]
    else:
        name, _, port = netloc.partition(":")
        host = hostname(name)
    if host is None:
        return None
    if not port:  # "http://host:/" means the default port (WHATWG)
        return host
    if not (port.isascii() and port.isdigit()):
        return None
    digits = port.lstrip("0")  # "0080" is 80; int() of 5,000 digits would raise
    number = int(digits) if 0 < len(digits) <= 5 else 0
    if number > 65535 or len(digits) > 5:
        return None
    return host if number == DEFAULT_PORTS[scheme] else f"{host}:{number}"


def _replace_surrogates(text: str) -> str:
    """`text` with each lone surrogate replaced by U+FFFD, as a browser's USVString does."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


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
