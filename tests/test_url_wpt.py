"""canonical_url against browsers: the web-platform-tests URL data, then the ada-url parser.

A browser's `href` and our canonical form may differ only by the deliberate normalisations
listed in crawler/urls.py's docstring (user info, fragment and empty query dropped, escapes
normalised, RFC-illegal characters escaped); `canonical` below applies exactly those to the
browser's answer and nothing else, so host, port and IP address must match byte for byte.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import ada_url
import pytest

import crawler.urls
from crawler.urls import canonical_url

DATA = Path(__file__).parent / "data" / "urltestdata.json"  # provenance: tests/data/README.md
_UNRESERVED = re.compile(r"[A-Za-z0-9\-._~]")
# Normalisations 4 and 5: each escape normalised, and what RFC 3986 allows nowhere escaped.
_NORMALISE = re.compile(r"%[0-9A-Fa-f]{2}|[%\[\]\\^`{|}]")


def _normalised(match: re.Match[str]) -> str:
    text = match.group()
    if len(text) == 3:
        char = chr(int(text[1:], 16))
        return char if _UNRESERVED.fullmatch(char) else text.upper()
    return f"%{ord(text):02X}"


def canonical(protocol: str, host: str, pathname: str, search: str) -> str | None:
    """The canonical form of a browser's parse; None unless http(s) (urls.py normalisations)."""
    if protocol not in ("http:", "https:"):
        return None
    url = f"{protocol}//{host}{_NORMALISE.sub(_normalised, pathname)}"
    query = search[1:]  # "?" alone is an empty query: dropped (normalisation 3)
    return f"{url}?{_NORMALISE.sub(_normalised, query)}" if query else url


def _wpt_cases() -> list[Any]:
    cases = [case for case in json.loads(DATA.read_text("utf-8")) if isinstance(case, dict)]
    params = []
    for i, case in enumerate(cases):
        expected = None
        if not case.get("failure"):
            expected = canonical(case["protocol"], case["host"], case["pathname"], case["search"])
        name = f"{i}-{case['input']!r}"[:60]
        params.append(pytest.param(case["input"], case["base"], expected, id=name))
    return params


WPT = _wpt_cases()


def test_wpt_data_is_the_documented_copy() -> None:
    # The README's provenance holds for this file: 820 cases, many of them http(s).
    assert len(WPT) == 820
    assert sum(param.values[2] is not None for param in WPT) == 220


@pytest.mark.parametrize(("url", "base", "expected"), WPT)
def test_web_platform_tests(url: str, base: str | None, expected: str | None) -> None:
    assert canonical_url(url, base, max_length=1 << 20) == expected


def test_canonical_urls_are_ascii() -> None:
    # The SQLite store sends a page's links as one JSON array: an ASCII URL (no lone
    # surrogate, which json_each would store as invalid UTF-8) is what makes that safe.
    hostile = ["/a\udc80b", "/\ud800", "/x\x00y", "http://exämple.com/ü?q=ß", "/é\u2028"]
    for url, base in [*((p.values[0], p.values[1]) for p in WPT), *((h, BASE) for h in hostile)]:
        canonical = canonical_url(url, base, max_length=1 << 20)
        assert canonical is None or canonical.isascii(), (url, canonical)


@pytest.mark.parametrize(
    ("href", "expected"),
    [
        pytest.param("http://u:p@h/p?#f", "http://h/p", id="userinfo-fragment-empty-query"),
        pytest.param("http://h/%7e%41%2e%2F%c3%a9", "http://h/~A.%2F%C3%A9", id="escapes"),
        pytest.param("http://h/%[]\\^`{|}?%[]\\^`{|}", None, id="rfc-illegal"),
        pytest.param("http://h/100%?%zz", "http://h/100%25?%25zz", id="stray-percent"),
        pytest.param("mailto:x@h", None, id="not-http"),
    ],
)
def test_canonical_applies_only_the_documented_normalisations(
    href: str, expected: str | None
) -> None:
    # The helper the two suites trust: checked here against hand-written answers.
    if expected is None and href.startswith("http"):
        pathname, _, search = href[8:].partition("?")
        expected = "http://h/%25%5B%5D%5C%5E%60%7B%7C%7D?%25%5B%5D%5C%5E%60%7B%7C%7D"
        assert canonical("http:", "h", pathname, "?" + search) == expected
        return
    url = ada_url.URL(href)
    assert canonical(url.protocol, url.host, url.pathname, url.search) == expected


@pytest.fixture(autouse=True)
def _clear_caches() -> None:
    """Each case computes its hosts afresh: a cached answer from an earlier case hides a bug."""
    crawler.urls._base.cache_clear()
    crawler.urls._authority.cache_clear()


BASE = "http://example.com/dir/page.html?x=1"
# Inputs by class, resolved by ada-url (a WHATWG-conformant parser) as the reference.
ADA = [
    # IPv4 in every WHATWG spelling: hex, octal, 1-4 parts, overflow, trailing dot
    "http://0x7f.1/",
    "http://0x7F.0.0.1/",
    "http://0177.0.0.1/",
    "http://0177.1/",
    "http://2130706433/",
    "http://017700000001/",
    "http://0x7f000001/",
    "http://127.1/",
    "http://127.0.1/",
    "http://192.168.257/",
    "http://127.0.0.1./",
    "http://0x/",
    "http://0/",
    "http://00/",
    "http://4294967295/",
    "http://4294967296/",
    "http://0x100000000/",
    "http://1.2.3.256/",
    "http://1.2.65536/",
    "http://1.16777216/",
    "http://256.1.1.1/",
    "http://1.2.3.4.5/",
    "http://08.1.1.1/",
    "http://0x1g.1/",
    "http://1..1/",
    "http://.1/",
    "http://a.1/",
    "http://1.a/",
    "http://a.0x1/",
    "http://0x.a/",
    "http://1e3/",
    "http://%31%32%37.1/",
    "http://127。0。0。1/",
    "http://１２７.0.0.1/",
    "http://[::1]/",
    "http://[0:0:0:0:0:0:0:1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[1:0:0:2:0:0:0:3]/",
    "http://[1:0:0:0:2:0:0:3]/",
    "http://[1::]/",
    "http://[::1.2.3]/",
    "http://[::1]:8080/",
    # names
    "http://Example.COM./x",
    "http://a..b/",
    "http://a_b-c.d/",
    "http://-a-.b/",
    "http://a~b!c$d/",
    "http://a%20b/",
    "http://a%25b/",
    "http://a<b/",
    "http://a^b/",
    "http://a|b/",
    "http://Bücher.de/",
    "http://faß.de/",
    "http://☃.net/",
    "http://xn--bcher-kva.de/",
    "http://XN--BCHER-KVA.de/",
    "http://Ｅｘａｍｐｌｅ.com/",
    "http://example.com:/",
    "http://example.com:0/",
    "http://example.com:080/",
    "http://example.com:65535/",
    "http://example.com:65536/",
    "http://example.com:8a/",
    "http://example.com: 80/",
    "https://example.com:443/",
    "https://example.com:80/",
    "http://user@/",
    "http://@example.com/",
    "http://a:b@c:d@example.com/",
    "http://ex ample.com/",
    # slashes and backslashes
    "///other.example/p",
    "////other.example/p",
    "\\\\other.example\\p\\q?a\\b",
    "/\\other.example/p",
    "\\p\\q",
    "http:other.example/p",
    "http:/p",
    "http:\\\\other.example/",
    "https:other.example/",
    "https:/other.example/",
    "http:///other.example/",
    "//other.example",
    "//other.example?q",
    "?y=2",
    "",
    "p?",
    # whitespace
    " \t http://example.com/a\tb\nc\rd \x00",
    "http://exa\nmple.com/",
    "ht\ttp://example.com/",
    # dot segments, including ".." last (RFC 3986 5.4.1) and escaped dots
    "..",
    "../..",
    "./",
    ".",
    "a/..",
    "a/../b",
    "/a/b/c/./../../g",
    "/a/%2e%2E/b",
    "/a/.%2e",
    "/a/%2e",
    "/a/..b/.c/",
    "/a//../b",
    "../../../../x",
    # percent-encoding per component
    '/a b"<>`{}|^[]\\é€😀?q',
    "/p?q=a b\"<>`{}|^[]'é€😀",
    "/p'q?k='v'",
    "/%41%7e%7E%2f%2F%00%zz%",
    "/p?%41%7e%2f%zz%",
    "/p;a=1,b!$&()*+:@?a=1&b=2;c",
    "/\x01\x1f\x7f?\x01\x1f\x7f",
    # schemes
    "HTTPS://EXAMPLE.COM/A",
    "mailto:a@b.c",
    "javascript:void(0)",
    "ftp://example.com/",
    "a:b",
    "a/b:c",
    # "://" inside the query or path is data, never a second authority
    "http://evil.example/r?u=http://a.example/",
    "http://evil.example/http://a.example/",
    "/go?to=https://a.example:8443/x",
]


@pytest.mark.parametrize("href", ADA)
@pytest.mark.parametrize("base", [BASE, "https://h.example:8443/a/b/", None])
def test_agrees_with_ada_url(href: str, base: str | None) -> None:
    try:
        url = ada_url.URL(href, base)
    except ValueError:
        expected = None
    else:
        expected = canonical(url.protocol, url.host, url.pathname, url.search)
    assert canonical_url(href, base) == expected


def test_the_fast_path_agrees_with_the_full_parse() -> None:
    """`canonical_url` answers the commonest hrefs without the full parse: on thousands of
    generated hrefs of those shapes (and near misses) both give the same URL, and ada-url
    agrees with it."""
    rng = random.Random(7)
    pieces = [*"aB0-._~!$&(*+,;=@:?\\é/ ", "..", "%41", "%zz", "?q=1", "#f", "//"]
    hosts = ["h.example", "H.Example:80", "127.0.0.1:8080", "[::1]", "0x7f.1", "u:p@h", "h:0080"]
    bases = ["http://example.com/dir/page.html?x=1", "https://h/a/b/", "http://h:81/"]
    checked = 0
    for _ in range(4000):
        path = "".join(rng.choice(pieces) + rng.choice("/-") for _ in range(rng.randrange(1, 7)))
        host = rng.choice(hosts)
        slash = "/" if rng.random() < 0.7 else ""
        href = rng.choice(
            [path, "/" + path, f"http://{host}/{path}", f"https://{host}{slash}{path}"]
        )
        base = rng.choice(bases)
        fast = canonical_url(href, base, max_length=1 << 20)
        assert fast == crawler.urls._canonical(href, base, 1 << 20), (href, base)
        if crawler.urls._plain(href, base) is not None:
            checked += 1
            try:
                url = ada_url.URL(href, base)
            except ValueError:
                assert fast is None, (href, base)
                continue
            assert fast == canonical(url.protocol, url.host, url.pathname, url.search), href
    assert checked > 1000  # the fast path was taken, not only the full one
