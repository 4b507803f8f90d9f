"""Tables for the pure URL functions: each row is one canonicalisation rule."""

from __future__ import annotations

import doctest

import pytest
from yarl import URL

import crawler.urls
from crawler.urls import canonical_url, has_repeated_segments, host_key, url_host

BASE = "http://example.com/dir/page.html?x=1"

JOIN = [
    # resolution (RFC 3986 5.2)
    pytest.param("page-12.html", BASE, "http://example.com/dir/page-12.html", id="relative"),
    pytest.param("/x/y.html", BASE, "http://example.com/x/y.html", id="root-relative"),
    pytest.param("http://example.com/a", BASE, "http://example.com/a", id="absolute"),
    pytest.param("sub/", BASE, "http://example.com/dir/sub/", id="relative-dir"),
    pytest.param("", BASE, BASE, id="empty-is-base"),
    pytest.param("?y=2", BASE, "http://example.com/dir/page.html?y=2", id="query-only"),
    pytest.param("//Other.org/p", BASE, "http://other.org/p", id="scheme-relative"),
    pytest.param(
        "//other.org/p", "https://example.com/", "https://other.org/p", id="scheme-relative-https"
    ),
    pytest.param("//other.org", BASE, "http://other.org/", id="scheme-relative-no-path"),
    pytest.param("//other.org?q", BASE, "http://other.org/?q", id="scheme-relative-query"),
    pytest.param("http:next.html", BASE, "http://example.com/dir/next.html", id="same-scheme"),
    pytest.param("https:next.html", BASE, None, id="other-scheme-no-host"),
    pytest.param("x.html", "http://h:80/robots.txt", "http://h/x.html", id="non-canonical-base"),
    pytest.param("x.html", None, None, id="relative-without-base"),
    pytest.param("//h/x", None, None, id="scheme-relative-without-base"),
    pytest.param("x.html", "page.html", None, id="relative-base"),
    # case
    pytest.param("HTTP://EXAMPLE.COM/A/B", None, "http://example.com/A/B", id="case-path-kept"),
    pytest.param("HtTpS://Example.Com", None, "https://example.com/", id="case-scheme-host"),
    # IDNA
    pytest.param("http://Bücher.example/", None, "http://xn--bcher-kva.example/", id="idna"),
    pytest.param("http://faß.de/", None, "http://xn--fa-hia.de/", id="idna-uts46-eszett"),
    pytest.param("http://☃.net/", None, "http://xn--n3h.net/", id="idna-symbol"),
    pytest.param("http://bücher。de/", None, "http://xn--bcher-kva.de/", id="idna-ideographic-dot"),
    pytest.param("http://" + "ü" * 64 + ".de/", None, None, id="idna-label-too-long"),
    pytest.param("http://xn--ü.de/", None, None, id="idna-invalid"),
    pytest.param("http://%65xample.com/", None, "http://example.com/", id="host-escaped"),
    # ports
    pytest.param("http://a.com:80/", None, "http://a.com/", id="port-default-http"),
    pytest.param("https://a.com:443/", None, "https://a.com/", id="port-default-https"),
    pytest.param("http://a.com:443/", None, "http://a.com:443/", id="port-443-on-http"),
    pytest.param("https://a.com:80/", None, "https://a.com:80/", id="port-80-on-https"),
    pytest.param("http://a.com:0080/", None, "http://a.com/", id="port-leading-zeros"),
    pytest.param("http://a.com:8080/", None, "http://a.com:8080/", id="port-kept"),
    pytest.param("http://a.com:/", None, "http://a.com/", id="port-empty"),
    pytest.param("http://a.com:0/", None, None, id="port-zero"),
    pytest.param("http://a.com:65536/", None, None, id="port-too-big"),
    pytest.param("http://a.com:8o/", None, None, id="port-not-digits"),
    pytest.param("http://a.com:８０/", None, None, id="port-unicode-digits"),
    pytest.param("http://a.com:1:2/", None, None, id="port-two-colons"),
    # hosts
    pytest.param("http:///p", None, None, id="host-empty"),
    pytest.param("http://", None, None, id="host-missing"),
    pytest.param("http://a b.com/", None, None, id="host-space"),
    pytest.param("http://a\x01b.com/", None, None, id="host-control"),
    pytest.param("http://a..b/", None, None, id="host-empty-label"),
    pytest.param("http://a.com./x", None, "http://a.com/x", id="host-trailing-dot"),
    pytest.param("http://./", None, None, id="host-only-dot"),
    pytest.param("http://my_host.lan/", None, "http://my_host.lan/", id="host-underscore"),
    pytest.param("http://127.0.0.2:80/x", None, "http://127.0.0.2/x", id="host-ipv4"),
    pytest.param("http://[::1]/", None, "http://[::1]/", id="ipv6"),
    pytest.param("http://[::1]:8080/", None, "http://[::1]:8080/", id="ipv6-port"),
    pytest.param("https://[::1]:443/", None, "https://[::1]/", id="ipv6-default-port"),
    pytest.param("http://[2001:DB8:0:0::1]/", None, "http://[2001:db8::1]/", id="ipv6-compress"),
    pytest.param("http://[::1%25eth0]/", None, None, id="ipv6-zone"),
    pytest.param("http://[::g]/", None, None, id="ipv6-invalid"),
    pytest.param("http://[::1/", None, None, id="ipv6-unclosed"),
    pytest.param("http://[::1]x/", None, None, id="ipv6-junk-after"),
    # userinfo
    pytest.param("http://user:pw@a.com/", None, "http://a.com/", id="userinfo-dropped"),
    pytest.param("http://a@b@c.com/", None, "http://c.com/", id="userinfo-last-at"),
    pytest.param("http://user@/", None, None, id="userinfo-no-host"),
    # dot segments (RFC 3986 5.2.4)
    pytest.param("http://a/b/../c", None, "http://a/c", id="dots-absolute"),
    pytest.param("../up.html", BASE, "http://example.com/up.html", id="dots-relative"),
    pytest.param("./here.html", BASE, "http://example.com/dir/here.html", id="dots-current"),
    pytest.param("..", BASE, "http://example.com/", id="dots-parent-dir"),
    pytest.param(".", BASE, "http://example.com/dir/", id="dots-current-dir"),
    pytest.param("../../../x", BASE, "http://example.com/x", id="dots-above-root"),
    pytest.param("http://a/b/c/./../../g", None, "http://a/g", id="dots-rfc-example"),
    pytest.param("http://a/b/..", None, "http://a/", id="dots-trailing"),
    pytest.param("http://a/%2E%2e/b", None, "http://a/b", id="dots-escaped"),
    pytest.param("http://a/.hidden/..x", None, "http://a/.hidden/..x", id="dots-not-segments"),
    pytest.param("http://a/b//../c", None, "http://a/b/c", id="dots-empty-segment"),
    pytest.param("http://a/b?x=/../y", None, "http://a/b?x=/../y", id="dots-in-query-kept"),
    # percent-encoding
    pytest.param("http://a/%7euser/%41", None, "http://a/~user/A", id="pct-unreserved-decoded"),
    pytest.param("http://a/a%2fb%3d", None, "http://a/a%2Fb%3D", id="pct-reserved-upper"),
    pytest.param("http://a/?q=%e2%82%ac", None, "http://a/?q=%E2%82%AC", id="pct-query-upper"),
    pytest.param("http://a/100%", None, "http://a/100%25", id="pct-lone"),
    pytest.param("http://a/%zz%4", None, "http://a/%25zz%254", id="pct-bad-hex"),
    pytest.param("http://a/a b", None, "http://a/a%20b", id="pct-space"),
    pytest.param("http://a/é?é", None, "http://a/%C3%A9?%C3%A9", id="pct-non-ascii"),
    pytest.param("http://a/€", None, "http://a/%E2%82%AC", id="pct-multibyte"),
    pytest.param("http://a/x\x01y\x7f", None, "http://a/x%01y%7F", id="pct-control"),
    pytest.param(
        'http://a/"<>\\^`{|}[]', None, "http://a/%22%3C%3E%5C%5E%60%7B%7C%7D%5B%5D", id="pct-unsafe"
    ),
    pytest.param(
        "http://a/p;x=1,y!$&'()*+:@", None, "http://a/p;x=1,y!$&'()*+:@", id="pct-sub-delims-kept"
    ),
    pytest.param("http://a/\ud800", None, None, id="pct-lone-surrogate"),
    # fragments
    pytest.param("http://a/b#frag", None, "http://a/b", id="fragment"),
    pytest.param("#top", BASE, BASE, id="fragment-only"),
    pytest.param("http://a/b?q#f?g", None, "http://a/b?q", id="fragment-after-query"),
    # whitespace (WHATWG)
    pytest.param("  /x.html \n", BASE, "http://example.com/x.html", id="ws-ends"),
    pytest.param("\x00\x1f/x\x01", BASE, "http://example.com/x", id="ws-c0-ends"),
    pytest.param("/a\tb\nc\rd", BASE, "http://example.com/abcd", id="ws-tab-newline"),
    pytest.param("ht\ntp://a.com/", None, "http://a.com/", id="ws-in-scheme"),
    # schemes
    pytest.param("mailto:a@b.com", BASE, None, id="mailto"),
    pytest.param("javascript:void(0)", BASE, None, id="javascript"),
    pytest.param("JavaScript:alert(1)", BASE, None, id="javascript-case"),
    pytest.param("tel:+15551234", BASE, None, id="tel"),
    pytest.param("data:text/html,hi", BASE, None, id="data"),
    pytest.param("ftp://a.com/f", BASE, None, id="ftp"),
    pytest.param("a/b:c", BASE, "http://example.com/dir/a/b:c", id="colon-in-path"),
    pytest.param(
        "?next=http://x",
        BASE,
        "http://example.com/dir/page.html?next=http://x",
        id="colon-in-query",
    ),
    # query
    pytest.param("http://a/?b=2&a=1&b=1", None, "http://a/?b=2&a=1&b=1", id="query-order-kept"),
    pytest.param("http://a/p?", None, "http://a/p", id="query-empty-dropped"),
    pytest.param("?", BASE, "http://example.com/dir/page.html", id="query-empty-relative"),
    pytest.param("http://a/?a+b=%2B&c=", None, "http://a/?a+b=%2B&c=", id="query-plus-kept"),
    pytest.param("http://a/?q=[1]|", None, "http://a/?q=%5B1%5D%7C", id="query-unsafe"),
    pytest.param("http://a?q", None, "http://a/?q", id="query-no-path"),
]


@pytest.mark.parametrize(("url", "base", "expected"), JOIN)
def test_canonical_url(url: str, base: str | None, expected: str | None) -> None:
    assert canonical_url(url, base) == expected


@pytest.mark.parametrize(("url", "base", "expected"), JOIN)
def test_canonical_url_is_idempotent(url: str, base: str | None, expected: str | None) -> None:
    if expected is not None:
        assert canonical_url(expected) == expected
        assert canonical_url(expected, BASE) == expected


@pytest.mark.parametrize(
    ("length", "expected"),
    [
        pytest.param(32, "http://a.com/" + "x" * 19, id="at-cap"),
        pytest.param(33, None, id="over-cap"),
    ],
)
def test_max_length_counts_the_canonical_form(length: int, expected: str | None) -> None:
    # 46 characters as written, 32 once the port, fragment and userinfo are gone.
    url = "http://u:p@A.com:80/" + "x" * (length - 13) + "#fragment"
    assert canonical_url(url, max_length=32) == expected


def test_default_max_length() -> None:
    prefix = "http://a.com/"
    assert canonical_url(prefix + "x" * (2048 - len(prefix))) is not None
    assert canonical_url(prefix + "x" * (2049 - len(prefix))) is None


@pytest.mark.parametrize(
    "char",
    [pytest.param(chr(c), id=f"0x{c:02x}") for c in range(1, 0x7F)]
    + [pytest.param(c, id=c) for c in ("é", "€", "☃", "😀")],
)
def test_escaped_output_survives_yarl(char: str) -> None:
    # aiohttp re-quotes request URLs through yarl: what we escape, it must leave alone.
    for url in (f"http://a/p{char}q", f"http://a/p?k={char}v"):
        canonical = canonical_url(url)
        if canonical is not None:
            assert str(URL(canonical)) == canonical
            assert str(URL(canonical, encoded=True)) == canonical


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param("http://127.0.0.2/x", "http://127.0.0.2:80", id="http-default"),
        pytest.param("https://a.com/", "https://a.com:443", id="https-default"),
        pytest.param("http://a.com:8080/x?y", "http://a.com:8080", id="explicit"),
        pytest.param("http://[::1]/", "http://[::1]:80", id="ipv6-default"),
        pytest.param("https://[::1]:8443/", "https://[::1]:8443", id="ipv6-explicit"),
        pytest.param("http://a.com?q", "http://a.com:80", id="no-path"),
    ],
)
def test_host_key(url: str, expected: str) -> None:
    assert host_key(url) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param("http://a.com/x", "a.com", id="plain"),
        pytest.param("http://a.com:8080/x", "a.com", id="port"),
        pytest.param("http://127.0.0.2/", "127.0.0.2", id="ipv4"),
        pytest.param("http://[::1]:8080/", "[::1]", id="ipv6"),
        pytest.param("http://[::1]/", "[::1]", id="ipv6-no-port"),
    ],
)
def test_url_host(url: str, expected: str) -> None:
    assert url_host(url) == expected


@pytest.mark.parametrize(
    ("url", "limit", "expected"),
    [
        pytest.param("http://h/cal/cal/cal", 3, False, id="at-limit"),
        pytest.param("http://h/cal/cal/cal/cal", 3, True, id="over-limit"),
        pytest.param("http://h/a/b/a/b/a/b/a/b", 3, True, id="cycle"),
        pytest.param("http://h/a/b/a/b/a/b", 3, False, id="cycle-at-limit"),
        pytest.param("http://h/a/b/c/d/e/f/g", 1, False, id="all-distinct"),
        pytest.param("http://h/a//////", 1, False, id="empty-segments-ignored"),
        pytest.param("http://h/a/x?/a/a/a/a", 1, False, id="query-ignored"),
        pytest.param("http://h/a/a", 1, True, id="limit-one"),
        pytest.param("http://h:8080/", 1, False, id="root"),
    ],
)
def test_has_repeated_segments(url: str, limit: int, expected: bool) -> None:
    assert has_repeated_segments(url, limit) is expected


def test_docstring_examples() -> None:
    failed, tried = doctest.testmod(crawler.urls)
    assert tried > 0
    assert failed == 0
