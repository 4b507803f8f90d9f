"""Tables for the pure URL functions: each row is one canonicalisation rule."""

from __future__ import annotations

import doctest

import pytest
from yarl import URL

import crawler.urls
from crawler.urls import canonical_url, has_repeated_segments, host_key, url_host


@pytest.fixture(autouse=True)
def _clear_caches() -> None:
    """Each case computes its hosts afresh: a cached answer from an earlier case hides a bug."""
    crawler.urls._base.cache_clear()
    crawler.urls._authority.cache_clear()


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
    pytest.param("https:next.html", BASE, "https://next.html/", id="other-scheme-is-host"),
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
    pytest.param(
        "http://" + "ü" * 64 + ".de/",
        None,
        "http://xn--tda" + "a" * 63 + ".de/",
        id="idna-long-label-as-browsers",  # no DNS length check (UTS 46 VerifyDnsLength=false)
    ),
    pytest.param("http://xn--ü.de/", None, None, id="idna-invalid"),
    pytest.param("http://Faß.de/", None, "http://xn--fa-hia.de/", id="idna-upper-eszett"),
    pytest.param("http://ü-.de/", None, "http://xn----dha.de/", id="idna-hyphen-end"),
    pytest.param("http://a..ü/", None, "http://a..xn--tda/", id="idna-empty-label"),
    pytest.param("http://☃\ufffd.net/", None, None, id="idna-disallowed"),
    pytest.param("http://Xy.example/", None, "http://xy.example/", id="host-starts-with-x"),
    pytest.param("http://h?a?b", None, "http://h/?a?b", id="two-question-marks"),
    pytest.param("http://h/p?a\\b?c", None, "http://h/p?a%5Cb?c", id="backslash-after-2nd-?"),
    pytest.param(
        "?a\\b", BASE, "http://example.com/dir/page.html?a%5Cb", id="backslash-query-only"
    ),
    pytest.param("/\ud800", BASE, "http://example.com/%EF%BF%BD", id="lone-surrogate-relative"),
    pytest.param("http://1.2.3.4.0/", None, None, id="ipv4-five-parts-zero"),
    pytest.param("http://%65xample.com/", None, "http://example.com/", id="host-escaped"),
    # ports
    pytest.param("http://a.com:80/", None, "http://a.com/", id="port-default-http"),
    pytest.param("https://a.com:443/", None, "https://a.com/", id="port-default-https"),
    pytest.param("http://a.com:443/", None, "http://a.com:443/", id="port-443-on-http"),
    pytest.param("https://a.com:80/", None, "https://a.com:80/", id="port-80-on-https"),
    pytest.param("http://a.com:0080/", None, "http://a.com/", id="port-leading-zeros"),
    pytest.param("http://a.com:8080/", None, "http://a.com:8080/", id="port-kept"),
    pytest.param("http://a.com:/", None, "http://a.com/", id="port-empty"),
    pytest.param("http://a.com:0/", None, "http://a.com:0/", id="port-zero"),
    pytest.param(
        "http://a.com:" + "0" * 5000 + "81/", None, "http://a.com:81/", id="port-long-zeros"
    ),
    pytest.param("http://a.com:1" + "0" * 5000 + "/", None, None, id="port-long"),
    pytest.param("http://a.com:065535/", None, "http://a.com:65535/", id="port-max"),
    pytest.param("http://a.com:65536/", None, None, id="port-too-big"),
    pytest.param("http://a.com:8o/", None, None, id="port-not-digits"),
    pytest.param("http://a.com:８０/", None, None, id="port-unicode-digits"),
    pytest.param("http://a.com:1:2/", None, None, id="port-two-colons"),
    # hosts
    pytest.param("http:///p", None, "http://p/", id="host-after-three-slashes"),
    pytest.param("http://?q", None, None, id="host-empty"),
    pytest.param("http:", None, None, id="scheme-only"),
    pytest.param("http://", None, None, id="host-missing"),
    pytest.param("http://a b.com/", None, None, id="host-space"),
    pytest.param("http://a\x01b.com/", None, None, id="host-control"),
    pytest.param("http://a..b/", None, "http://a..b/", id="host-empty-label"),
    pytest.param("http://a.com./x", None, "http://a.com./x", id="host-trailing-dot-kept"),
    pytest.param("http://./", None, "http://./", id="host-only-dot"),
    pytest.param("http://a%2Fb/", None, None, id="host-escaped-slash"),
    pytest.param("http://%ff/", None, None, id="host-escaped-not-utf8"),
    pytest.param("http://a^b/", None, None, id="host-forbidden"),
    pytest.param("http://a~b!c/", None, "http://a~b!c/", id="host-odd-but-allowed"),
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
        'http://a/"<>^`{|}[]', None, "http://a/%22%3C%3E%5E%60%7B%7C%7D%5B%5D", id="pct-unsafe"
    ),
    pytest.param(
        "http://a/p;x=1,y!$&'()*+:@", None, "http://a/p;x=1,y!$&'()*+:@", id="pct-sub-delims-kept"
    ),
    pytest.param("http://a/\ud800", None, "http://a/%EF%BF%BD", id="pct-lone-surrogate"),
    pytest.param("http://\ud800/", None, None, id="host-lone-surrogate"),
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
    pytest.param("http://a/?it's", None, "http://a/?it%27s", id="query-quote-escaped"),
    pytest.param("http://a/it's", None, "http://a/it's", id="path-quote-kept"),
    # IPv4 in its legacy spellings (WHATWG): one address, one politeness key, one --deny
    pytest.param("http://0x7f.1/", None, "http://127.0.0.1/", id="ipv4-hex-two-parts"),
    pytest.param("http://2130706433/", None, "http://127.0.0.1/", id="ipv4-one-number"),
    pytest.param("http://0177.0.0.01/", None, "http://127.0.0.1/", id="ipv4-octal"),
    pytest.param("http://0X7F.0x0.0.1/", None, "http://127.0.0.1/", id="ipv4-hex-upper"),
    pytest.param("http://192.168.257/", None, "http://192.168.1.1/", id="ipv4-three-parts"),
    pytest.param("http://127.0.0.1./", None, "http://127.0.0.1/", id="ipv4-trailing-dot"),
    pytest.param("http://0x/", None, "http://0.0.0.0/", id="ipv4-bare-0x"),
    pytest.param("http://%30x7f.1/", None, "http://127.0.0.1/", id="ipv4-escaped"),
    pytest.param("http://１２７.0.0.1/", None, "http://127.0.0.1/", id="ipv4-fullwidth"),
    pytest.param("http://4294967295/", None, "http://255.255.255.255/", id="ipv4-max"),
    pytest.param("http://4294967296/", None, None, id="ipv4-overflow"),
    pytest.param("http://1.16777215/", None, "http://1.255.255.255/", id="ipv4-two-parts-max"),
    pytest.param("http://1.16777216/", None, None, id="ipv4-two-parts-overflow"),
    pytest.param("http://1.2.65536/", None, None, id="ipv4-three-parts-overflow"),
    pytest.param("http://256.1.1.1/", None, None, id="ipv4-part-overflow"),
    pytest.param("http://1.2.3.4.5/", None, None, id="ipv4-five-parts"),
    pytest.param("http://09.1.1.1/", None, None, id="ipv4-bad-octal"),
    pytest.param("http://1..1/", None, None, id="ipv4-empty-part"),
    pytest.param("http://foo.1/", None, None, id="ends-in-number-not-ipv4"),
    pytest.param("http://foo.0x1f/", None, None, id="ends-in-hex-not-ipv4"),
    pytest.param("http://1.foo/", None, "http://1.foo/", id="starts-with-number-is-name"),
    pytest.param("http://0xg/", None, "http://0xg/", id="not-hex-is-name"),
    pytest.param("http://1e3/", None, "http://1e3/", id="not-decimal-is-name"),
    pytest.param("http://[::ffff:127.0.0.1]/", None, "http://[::ffff:7f00:1]/", id="ipv6-v4"),
    pytest.param("http://[1:0:0:2:0:0:0:3]/", None, "http://[1:0:0:2::3]/", id="ipv6-longest-run"),
    pytest.param("http://[1:0:0:2:0:0:3:4]/", None, "http://[1::2:0:0:3:4]/", id="ipv6-first-run"),
    pytest.param("http://[1:0:2:0:3:0:4:0]/", None, "http://[1:0:2:0:3:0:4:0]/", id="ipv6-no-run"),
    pytest.param("http://[0:0:0:0:0:0:0:0]/", None, "http://[::]/", id="ipv6-all-zero"),
    pytest.param("http://[1::]/", None, "http://[1::]/", id="ipv6-trailing-run"),
    # IDNA labels written in ASCII are checked as browsers check them
    pytest.param("http://XN--Bcher-kva.de/", None, "http://xn--bcher-kva.de/", id="ace-upper"),
    pytest.param("http://xn--/", None, None, id="ace-empty"),
    pytest.param("http://xn--abc-/", None, None, id="ace-ascii-only"),
    pytest.param("http://a.xn--pokxncvks/", None, None, id="ace-not-canonical"),
    pytest.param("http://xn--zz-zz%/", None, None, id="ace-not-punycode"),
    # slashes: any run of / or \ before a host, \ as / before the query (WHATWG)
    pytest.param("///other.org/p", BASE, "http://other.org/p", id="three-slashes"),
    pytest.param("\\\\other.org\\p", BASE, "http://other.org/p", id="backslashes-host"),
    pytest.param("/\\other.org/p", BASE, "http://other.org/p", id="slash-backslash"),
    pytest.param("\\p\\q", BASE, "http://example.com/p/q", id="backslash-path"),
    pytest.param("a\\b?c\\d", BASE, "http://example.com/dir/a/b?c%5Cd", id="backslash-query"),
    pytest.param("http:\\\\h\\x", None, "http://h/x", id="backslash-absolute"),
    pytest.param("http:/p", BASE, "http://example.com/p", id="same-scheme-one-slash"),
    pytest.param("http:/h/p", None, "http://h/p", id="one-slash-no-base"),
    pytest.param("http:h/p", None, "http://h/p", id="no-slash-no-base"),
    pytest.param("https:/h/p", BASE, "https://h/p", id="other-scheme-one-slash"),
    pytest.param("http:///h/p", BASE, "http://h/p", id="same-scheme-three-slashes"),
    pytest.param("http://h?\\", None, "http://h/?%5C", id="backslash-only-in-query"),
    pytest.param("http://h#\\x", None, "http://h/", id="backslash-only-in-fragment"),
    # "://" inside a query or path is data, never a second scheme or authority
    pytest.param(
        "http://evil.example/r?u=http://a.example/x",
        None,
        "http://evil.example/r?u=http://a.example/x",
        id="url-in-query",
    ),
    pytest.param("x", "http://a/p?u=http://b/q", "http://a/x", id="base-with-url-in-query"),
    pytest.param("?z", "http://a/p?u=http://b/q", "http://a/p?z", id="base-query-replaced"),
    pytest.param("", "http://a/p?u=http://b/q", "http://a/p?u=http://b/q", id="base-query-kept"),
]

# RFC 3986 5.4.1's table, base "http://a/b/c/d;p?q", as a browser resolves it ("//g" gains
# its path "/", "g:h" is no http(s) URL).
RFC_BASE = "http://a/b/c/d;p?q"
RFC_3986 = {
    "g:h": None,
    "g": "http://a/b/c/g",
    "./g": "http://a/b/c/g",
    "g/": "http://a/b/c/g/",
    "/g": "http://a/g",
    "//g": "http://g/",
    "?y": "http://a/b/c/d;p?y",
    "g?y": "http://a/b/c/g?y",
    "#s": "http://a/b/c/d;p?q",
    "g#s": "http://a/b/c/g",
    "g?y#s": "http://a/b/c/g?y",
    ";x": "http://a/b/c/;x",
    "g;x": "http://a/b/c/g;x",
    "g;x?y#s": "http://a/b/c/g;x?y",
    "": "http://a/b/c/d;p?q",
    ".": "http://a/b/c/",
    "./": "http://a/b/c/",
    "..": "http://a/b/",
    "../": "http://a/b/",
    "../g": "http://a/b/g",
    "../..": "http://a/",
    "../../": "http://a/",
    "../../g": "http://a/g",
    # abnormal examples (5.4.2)
    "../../../g": "http://a/g",
    "../../../../g": "http://a/g",
    "/./g": "http://a/g",
    "/../g": "http://a/g",
    "g.": "http://a/b/c/g.",
    ".g": "http://a/b/c/.g",
    "g..": "http://a/b/c/g..",
    "..g": "http://a/b/c/..g",
    "./../g": "http://a/b/g",
    "./g/.": "http://a/b/c/g/",
    "g/./h": "http://a/b/c/g/h",
    "g/../h": "http://a/b/c/h",
    "g;x=1/./y": "http://a/b/c/g;x=1/y",
    "g;x=1/../y": "http://a/b/c/y",
    "g?y/./x": "http://a/b/c/g?y/./x",
    "g?y/../x": "http://a/b/c/g?y/../x",
    "g#s/./x": "http://a/b/c/g",
    "g#s/../x": "http://a/b/c/g",
    "http:g": "http://a/b/c/g",
}


@pytest.mark.parametrize(("ref", "expected"), RFC_3986.items(), ids=list(RFC_3986))
def test_rfc_3986_examples(ref: str, expected: str | None) -> None:
    assert canonical_url(ref, RFC_BASE) == expected


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
    # The fetcher sends URL(canonical, encoded=True): it must keep the URL byte for byte.
    # Plain URL() re-quotes, and decodes an escaped sub-delim: only "'" in a query (%27).
    for url in (f"http://a/p{char}q", f"http://a/p?k={char}v"):
        canonical = canonical_url(url)
        if canonical is not None:
            assert str(URL(canonical, encoded=True)) == canonical
            if "%27" not in canonical:
                assert str(URL(canonical)) == canonical


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param("http://127.0.0.2/x", "http://127.0.0.2:80", id="http-default"),
        pytest.param("https://a.com/", "https://a.com:443", id="https-default"),
        pytest.param("http://a.com:8080/x?y", "http://a.com:8080", id="explicit"),
        pytest.param("http://[::1]/", "http://[::1]:80", id="ipv6-default"),
        pytest.param("https://[::1]:8443/", "https://[::1]:8443", id="ipv6-explicit"),
        pytest.param("http://a.com?q", "http://a.com:80", id="no-path"),
        pytest.param("http://h/x", "http://h:80", id="one-letter-host"),
        pytest.param("http://h:81/x", "http://h:81", id="one-letter-host-port"),
        pytest.param("http://a.com/r?u=https://b.com:8443/", "http://a.com:80", id="url-in-query"),
    ],
)
def test_host_key(url: str, expected: str) -> None:
    assert host_key(url) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param("http://a.com/x", "a.com", id="plain"),
        pytest.param("http://a.com:8080/x", "a.com", id="port"),
        pytest.param("http://h/x", "h", id="one-letter"),
        pytest.param("http://h?q", "h", id="no-path-query"),
        pytest.param("http://127.0.0.2/", "127.0.0.2", id="ipv4"),
        pytest.param("http://[::1]:8080/", "[::1]", id="ipv6"),
        pytest.param("http://[::1]/", "[::1]", id="ipv6-no-port"),
        pytest.param("http://a.com/r?u=http://b.com/", "a.com", id="url-in-query"),
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
        pytest.param("http://h/a/b", 3, False, id="fewer-segments-than-limit"),
        pytest.param("http://h/x?u=http://g/a/a/a", 1, False, id="url-in-query"),
        pytest.param("http://h/?u=http://g/a/a", 1, False, id="url-in-query-root"),
    ],
)
def test_has_repeated_segments(url: str, limit: int, expected: bool) -> None:
    assert has_repeated_segments(url, limit) is expected


def test_docstring_examples() -> None:
    failed, tried = doctest.testmod(crawler.urls)
    assert tried > 0
    assert failed == 0
