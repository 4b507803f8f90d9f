"""Tables for crawler.parser: which links a page yields, how it is decoded, and what it costs."""

from __future__ import annotations

import random
from collections.abc import Callable
from urllib.parse import quote, urldefrag, urljoin

import pytest

from crawler import charsets, parser
from crawler.charsets import charset_of
from crawler.parser import ParsedPage, extract_links, is_html

PAGE = "https://example.com/docs/guide/intro.html"


def html(body: str, head: str = "") -> bytes:
    return f"<!DOCTYPE html><html><head>{head}</head><body>{body}</body></html>".encode()


def realistic_page(seed: int = 1, size: int = 15_000) -> tuple[bytes, list[str]]:
    """A page shaped like the bench site's (nav, prose, link lists, footer): ~15 KB, 31 links.

    Returns the page and the URLs a browser would follow from it, in document order, so the
    same page serves as a correctness check here and as the timing fixture for the hot path.
    """
    rng = random.Random(seed)
    words = ["lorem", "ipsum", "dolor", "sit", "amet", "elit", "sed", "do", "tempor"]

    def text(n: int) -> str:
        return " ".join(rng.choice(words) for _ in range(n))

    url = "http://127.0.0.2:18080/s0/p7.html"
    nav = ["/", "/s0/p1.html", "/s1/p51.html", "/s2/p101.html", "/s3/p151.html", "p8.html"]
    body = []
    for _ in range(17):
        target = f"/s{rng.randrange(10)}/p{rng.randrange(500)}.html"
        form = rng.random()
        href = (
            target
            if form < 0.3
            else f"../s1/p{rng.randrange(500)}.html"
            if form < 0.8
            else ("http://127.0.0.2:18080" + target)
        )
        body.append(href + ("#sec-2" if rng.random() < 0.15 else ""))
    body += ["/s0/p3.html?ref=related"]
    body += [
        f"http://127.0.0.{rng.randrange(3, 40)}:18080/s1/p{rng.randrange(500)}.html"
        for _ in range(6)
    ]
    footer = ["/?ref=footer", "mailto:webmaster@example.com", "javascript:void(0)"]

    out = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f'<title>Page 7 of host 0</title><meta name="description" content="{text(12)}">',
        '</head><body><header><a class="logo" href="/">Host 0</a><nav><ul>',
        *(f'<li><a href="{href}">{text(2)}</a></li>' for href in nav),
        "</ul></nav></header><main><article><h1>Page 7</h1>",
    ]
    blocks = [body[i : i + 6] for i in range(0, len(body), 6)]
    while sum(map(len, out)) < size - 250 or blocks:
        out.append(f'<h2 id="sec-{len(out)}">{text(4)}</h2><p>{text(rng.randint(40, 120))}.</p>')
        if blocks:
            items = "".join(f'<li><a href="{href}">{text(3)}</a></li>' for href in blocks.pop(0))
            out.append(f'<ul class="related">{items}</ul>')
    out.append("</article></main><footer><p>")
    out.append(" | ".join(f'<a href="{href}">{text(2)}</a>' for href in footer))
    out.append("</p></footer></body></html>")

    hrefs = ["/", *nav, *body, *footer[:1]]
    expected = list(dict.fromkeys(urldefrag(urljoin(url, href)).url for href in hrefs))
    return "\n".join(out).encode(), expected


def many_links(n: int) -> bytes:
    return html("".join(f'<a href="/p{i}">{i}</a>' for i in range(n)))


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        pytest.param("text/html", True, id="html"),
        pytest.param("text/html; charset=utf-8", True, id="params-ignored"),
        pytest.param("Text/HTML ;charset=UTF-8", True, id="case-and-spaces"),
        pytest.param("application/xhtml+xml", True, id="xhtml"),
        pytest.param("text/plain", False, id="plain"),
        pytest.param("application/json", False, id="json"),
        pytest.param("text/htmlx", False, id="prefix-is-not-enough"),
        pytest.param("", False, id="empty"),
        pytest.param(None, False, id="missing"),
    ],
)
def test_is_html(content_type: str | None, expected: bool) -> None:
    assert is_html(content_type) is expected


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        pytest.param(b"<p>x", None, "utf-8", id="nothing-declared"),
        pytest.param(b"", "text/html", "utf-8", id="empty-body"),
        pytest.param(b"<p>x", "text/html; charset=windows-1251", "windows-1251", id="header"),
        pytest.param(b"<p>x", 'text/html; charset="KOI8-R"', "koi8-r", id="header-quoted"),
        pytest.param(b"<p>x", "text/html;CHARSET=Shift_JIS", "cp932", id="header-shift-jis"),
        pytest.param(b"<p>x", "text/html; charset=x-sjis", "cp932", id="header-x-sjis"),
        pytest.param(b"<p>x", "text/html; charset=iso-8859-1", "windows-1252", id="latin1-is-1252"),
        pytest.param(b"<p>x", "text/html; charset=latin-1", "windows-1252", id="python-alias"),
        pytest.param(b"<p>x", "text/html; charset=us-ascii", "windows-1252", id="ascii-is-1252"),
        pytest.param(b"<p>x", "text/html; charset=gb2312", "gb18030", id="gb2312-is-gb18030"),
        pytest.param(b"<p>x", "text/html; charset=euc-kr", "cp949", id="euc-kr-is-cp949"),
        pytest.param(b"<p>x", "text/html; charset=utf-16", "utf-16le", id="header-utf-16"),
        pytest.param(b"<p>x", "text/html; charset=bogus", "utf-8", id="unknown-header-label"),
        pytest.param(b"<p>x", "text/html; charset=rot13", "utf-8", id="python-transform-rejected"),
        pytest.param(b"<p>x", "text/html; charset=utf-7", "utf-8", id="utf-7-rejected"),
        pytest.param(b"\xef\xbb\xbf<p>x", None, "utf-8", id="bom-utf-8"),
        pytest.param(b"\xff\xfe<\x00p\x00", None, "utf-16le", id="bom-utf-16le"),
        pytest.param(b"\xfe\xff\x00<\x00p", None, "utf-16be", id="bom-utf-16be"),
        pytest.param(
            b"\xef\xbb\xbf<p>x", "text/html; charset=iso-8859-1", "utf-8", id="bom-beats-header"
        ),
        pytest.param(b'<meta charset="windows-1251">', None, "windows-1251", id="meta-charset"),
        pytest.param(b"<META CHARSET=Shift_JIS>", None, "cp932", id="meta-uppercase"),
        pytest.param(
            b'<meta http-equiv="Content-Type" content="text/html; charset=euc-jp">',
            None,
            "euc-jp",
            id="meta-http-equiv",
        ),
        pytest.param(
            b'<meta charset="windows-1251">',
            "text/html; charset=koi8-r",
            "koi8-r",
            id="header-beats-meta",
        ),
        pytest.param(
            b'<meta charset="windows-1251">',
            "text/html; charset=bogus",
            "windows-1251",
            id="bad-header-then-meta",
        ),
        pytest.param(b'<meta charset="utf-16le">', None, "utf-8", id="meta-utf-16-means-utf-8"),
        pytest.param(b'<meta charset="no-such-thing">', None, "utf-8", id="unknown-meta-label"),
        pytest.param(b'<meta charset="base64">', None, "utf-8", id="meta-binary-codec-rejected"),
        pytest.param(
            b" " * 2100 + b'<meta charset="windows-1251">',
            None,
            "windows-1251",
            id="meta-past-2kb",
        ),
        pytest.param(
            b"<meta charset=bogus>" + b" " * 2100 + b"<meta charset=koi8-r>",
            None,
            "koi8-r",
            id="unknown-meta-then-late-meta",
        ),
        pytest.param(
            b" " * 2100 + b"<meta charset=utf-16be>", None, "utf-8", id="late-meta-utf-16"
        ),
        pytest.param(b" " * 2100 + b"<meta charset=bogus>", None, "utf-8", id="late-unknown"),
        pytest.param(
            b" " * 2100 + b"<meta charset=koi8-r>",
            "text/html; charset=windows-1251",
            "windows-1251",
            id="header-beats-late-meta",
        ),
        pytest.param(
            b"<meta charset=windows-1251>" + b" " * 2100 + b"<meta charset=koi8-r>",
            None,
            "windows-1251",
            id="first-meta-wins",
        ),
    ],
)
def test_charset_of(body: bytes, content_type: str | None, expected: str) -> None:
    assert charset_of(body, content_type) == expected


@pytest.mark.parametrize(
    ("body", "links", "nofollow"),
    [
        pytest.param(
            html('<a href="next.html">n</a><a href="/top">t</a><a href="../up/">u</a>'),
            [
                "https://example.com/docs/guide/next.html",
                "https://example.com/top",
                "https://example.com/docs/up/",
            ],
            [],
            id="relative-forms",
        ),
        pytest.param(
            html('<a href="a.html">a</a>', '<base href="https://cdn.example.org/v2/">'),
            ["https://cdn.example.org/v2/a.html"],
            [],
            id="base-absolute",
        ),
        pytest.param(
            html('<a href="a.html">a</a>', '<base href="/shared/">'),
            ["https://example.com/shared/a.html"],
            [],
            id="base-relative-to-page",
        ),
        pytest.param(
            html('<a href="a.html">a</a><base href="/late/">'),
            ["https://example.com/late/a.html"],
            [],
            id="base-applies-to-earlier-links",
        ),
        pytest.param(
            html(
                '<a href="a.html">a</a>',
                '<base target="_top"><base href="/one/"><base href="/two/">',
            ),
            ["https://example.com/one/a.html"],
            [],
            id="first-base-with-href-wins",
        ),
        pytest.param(
            html('<a href="a.html">a</a>', '<base href="javascript:alert(1)">'),
            ["https://example.com/docs/guide/a.html"],
            [],
            id="unusable-base-ignored",
        ),
        pytest.param(
            html(
                '<a href="/f">f</a><a rel="NoFollow" href="/n">n</a>'
                '<a rel="noopener  NOFOLLOW ugc" href="/m">m</a>'
            ),
            ["https://example.com/f"],
            ["https://example.com/n", "https://example.com/m"],
            id="rel-nofollow-tokens",
        ),
        pytest.param(
            html('<a rel="nofollowme" href="/a">a</a><a rel="external" href="/b">b</a>'),
            ["https://example.com/a", "https://example.com/b"],
            [],
            id="rel-without-nofollow-token",
        ),
        pytest.param(
            html(
                '<a rel="nofollow" href="/x">1</a><a href="/x">2</a>'
                '<a rel="nofollow" href="/y">3</a>'
            ),
            ["https://example.com/x"],
            ["https://example.com/y"],
            id="followed-anywhere-is-followed",
        ),
        pytest.param(
            html(
                '<a href="/a">a</a><a href="/b">b</a>',
                '<meta name="robots" content="noindex, nofollow">',
            ),
            [],
            ["https://example.com/a", "https://example.com/b"],
            id="meta-robots-nofollow",
        ),
        pytest.param(
            html('<a href="/a">a</a>', '<META NAME="Robots" CONTENT="NONE">'),
            [],
            ["https://example.com/a"],
            id="meta-robots-none",
        ),
        pytest.param(
            html('<a href="/a">a</a>', '<meta name="robots" content="noindex,follow">'),
            ["https://example.com/a"],
            [],
            id="meta-robots-follow",
        ),
        pytest.param(
            html('<a href="/a">a</a>', '<meta name="description" content="nofollow"><meta name>'),
            ["https://example.com/a"],
            [],
            id="other-meta-ignored",
        ),
        pytest.param(
            html(
                '<a href="/1">1</a><map><area href="/2" alt=""><area alt="no href"></map>'
                '<a href="/3">3</a>'
            ),
            ["https://example.com/1", "https://example.com/2", "https://example.com/3"],
            [],
            id="area-in-document-order",
        ),
        pytest.param(
            html(
                '<a href="/b">b</a><a href="/a">a</a><a href="/b">b</a><a href="https://EXAMPLE.com/a">a</a>'
            ),
            ["https://example.com/b", "https://example.com/a"],
            [],
            id="dedupe-first-wins",
        ),
        pytest.param(
            html('<a href="/a#one">1</a><a href="/a#two">2</a><a href="#top">3</a>'),
            ["https://example.com/a", PAGE],
            [],
            id="fragments-collapse",
        ),
        pytest.param(
            html(
                '<a href="mailto:a@example.com">m</a><a href="javascript:void(0)">j</a>'
                '<a href="tel:+100">t</a><a href="ftp://example.com/f">f</a>'
                '<a href="data:text/plain,x">d</a><a>no href</a><a href>bare</a>'
                '<a href="/ok">ok</a>'
            ),
            ["https://example.com/ok"],
            [],
            id="non-http-dropped",
        ),
        pytest.param(
            html('<a href="/' + "x" * 3000 + '">long</a><a href="/short">s</a>'),
            ["https://example.com/short"],
            [],
            id="too-long-dropped",
        ),
        pytest.param(
            b'<a href="/one">1<p>< stray <a href=/two class="x>broken"<div><a href=\'/three\'>3'
            b'<a href="/four"',
            ["https://example.com/one", "https://example.com/two", "https://example.com/three"],
            [],
            id="malformed-html",
        ),
        pytest.param(b"", [], [], id="empty-body"),
        pytest.param(b"\x00\xff\xfe garbage", [], [], id="binary-garbage"),
    ],
)
def test_extract_links(body: bytes, links: list[str], nofollow: list[str]) -> None:
    page = extract_links(body, PAGE)
    assert (list(page.links), list(page.nofollow)) == (links, nofollow)
    assert not page.truncated


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        pytest.param(
            '<meta charset="Shift_JIS"><a href="/ページ①.html">p</a>'.encode("cp932"),
            None,
            "https://example.jp/%E3%83%9A%E3%83%BC%E3%82%B8%E2%91%A0.html",
            id="shift-jis-meta-with-nec-row",
        ),
        pytest.param(
            '<a href="wiki/東京">t</a>'.encode("shift_jis"),
            "text/html; charset=x-sjis",
            "https://example.jp/wiki/%E6%9D%B1%E4%BA%AC",
            id="shift-jis-header",
        ),
        pytest.param(
            '<meta http-equiv="content-type" content="text/html; charset=windows-1251">'
            '<a href="/статья">s</a>'.encode("cp1251"),
            None,
            "https://example.jp/%D1%81%D1%82%D0%B0%D1%82%D1%8C%D1%8F",
            id="windows-1251-meta",
        ),
        pytest.param(
            '<a href="/café">c</a>'.encode("cp1252"),
            "text/html; charset=ISO-8859-1",
            "https://example.jp/caf%C3%A9",
            id="latin1-header",
        ),
        pytest.param(
            '\ufeff<a href="/ü">u</a>'.encode("utf-16-le"),
            None,
            "https://example.jp/%C3%BC",
            id="utf-16le-bom",
        ),
        pytest.param(
            '\ufeff<title>t</title><a href="/ü">u</a>'.encode(),
            "text/html; charset=windows-1252",
            "https://example.jp/%C3%BC",
            id="utf-8-bom-beats-header",
        ),
        pytest.param(
            b"<p>\x81 \xff</p>" + '<a href="/東京">t</a>'.encode("cp932") + b"<p>\x82",
            "text/html; charset=shift_jis",
            "https://example.jp/%E6%9D%B1%E4%BA%AC",
            id="invalid-bytes-replaced",
        ),
        pytest.param(
            '<a href="/ü">u</a>'.encode(),
            "text/html; charset=klingon",
            "https://example.jp/%C3%BC",
            id="unknown-label-is-utf-8",
        ),
    ],
)
def test_non_ascii_hrefs_decode_like_a_browser(
    body: bytes, content_type: str | None, expected: str
) -> None:
    assert extract_links(body, "https://example.jp/", content_type).links == (expected,)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(html("", "<title>  Hello\n   world </title>"), "Hello world", id="collapsed"),
        pytest.param(html("", "<title>Fish &amp; Chips</title>"), "Fish & Chips", id="entities"),
        pytest.param(html("", "<title>   </title>"), None, id="blank"),
        pytest.param(html("<p>no title</p>"), None, id="missing"),
        pytest.param(
            html("", "<title>first</title><title>second</title>"), "first", id="first-wins"
        ),
        pytest.param(b"<title>unclosed", "unclosed", id="unclosed"),
        pytest.param(
            "<meta charset=windows-1251><title>Привет</title>".encode("cp1251"),
            "Привет",
            id="decoded",
        ),
    ],
)
def test_title(body: bytes, expected: str | None) -> None:
    assert extract_links(body, PAGE).title == expected


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every href handed to canonical_url, which is the expensive step per link."""
    seen: list[str] = []
    real: Callable[..., str | None] = parser.canonical_url

    def counting(href: str, base: str | None = None, *, max_length: int = 2048) -> str | None:
        seen.append(href)
        return real(href, base, max_length=max_length)

    monkeypatch.setattr(parser, "canonical_url", counting)
    return seen


def test_repeated_hrefs_are_canonicalised_once(calls: list[str]) -> None:
    body = html('<a href="/nav">n</a>' * 50 + '<a href="mailto:x@example.com">m</a>' * 5)
    assert extract_links(body, PAGE).links == ("https://example.com/nav",)
    assert calls == ["/nav", "mailto:x@example.com"]


def test_huge_page_stops_at_the_cap(calls: list[str]) -> None:
    page = extract_links(many_links(100_000), PAGE, max_links=10_000)
    assert page.truncated
    assert len(page.links) == 10_000
    assert page.links[0] == "https://example.com/p0"
    assert page.links[-1] == "https://example.com/p9999"
    assert len(calls) == 10_001  # the one that did not fit, then no more


def test_huge_nofollow_page_stops_at_the_cap() -> None:
    body = many_links(50_000).replace(b"<head>", b'<head><meta name="robots" content="nofollow">')
    page = extract_links(body, PAGE, max_links=1_000)
    assert (len(page.links), len(page.nofollow), page.truncated) == (0, 1_000, True)


@pytest.mark.parametrize(
    ("body", "truncated"),
    [
        pytest.param(many_links(5), False, id="exactly-the-cap"),
        pytest.param(
            many_links(5) + b'<a href="/p0">again</a><a href="/p4#x">again</a>',
            False,
            id="repeats-past-the-cap",
        ),
        pytest.param(
            many_links(5) + b'<a href="mailto:a@b.c">m</a>', False, id="dropped-past-the-cap"
        ),
        pytest.param(many_links(6), True, id="one-more"),
    ],
)
def test_truncated_only_when_a_link_is_lost(body: bytes, truncated: bool) -> None:
    page = extract_links(body, PAGE, max_links=5)
    assert (len(page.links), page.truncated) == (5, truncated)


def late_meta_page(
    meta: str, *, in_body: bool = False, href: str = "/статья", encoding: str = "cp1251"
) -> bytes:
    """A windows-1251 page whose <meta> stands past the prescan's 2 KB, as after inline CSS."""
    style = "<style>" + "p { margin: 0 auto; }\n" * 150 + "</style>"
    head = "<title>Статья</title>" + style + ("" if in_body else meta)
    body = ("<p>текст</p>" + meta if in_body else "<p>текст</p>") + f'<a href="{href}">a</a>'
    page = f"<!DOCTYPE html><html><head>{head}</head><body>{body}</body></html>".encode(encoding)
    assert page.find(b"<meta") > 2048
    return page


RU = "https://example.ru/%D1%81%D1%82%D0%B0%D1%82%D1%8C%D1%8F"


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        pytest.param(late_meta_page("<meta charset=windows-1251>"), None, RU, id="charset"),
        pytest.param(
            late_meta_page(
                '<meta http-equiv=" Content-TYPE " content="text/html; charset=cp1251">'
            ),
            None,
            RU,
            id="http-equiv",
        ),
        pytest.param(
            late_meta_page("<meta charset=windows-1251>", in_body=True), None, RU, id="in-body"
        ),
        pytest.param(
            late_meta_page('<meta name="x" content="charset=koi8-r"><meta charset=cp1251>'),
            None,
            RU,
            id="meta-without-charset-skipped",
        ),
        pytest.param(
            late_meta_page("<meta charset=bogus><meta charset=windows-1251>"),
            None,
            RU,
            id="unknown-label-skipped",
        ),
        pytest.param(
            late_meta_page('<meta http-equiv="refresh" content="0; charset=koi8-r">'),
            None,
            "https://example.ru/" + "%EF%BF%BD" * 6,
            id="only-content-type-http-equiv-counts",
        ),
        pytest.param(
            late_meta_page("<meta charset=windows-1251>"),
            "text/html; charset=koi8-r",
            "https://example.ru/" + quote("статья".encode("cp1251").decode("koi8-r")),
            id="header-is-certain",
        ),
        pytest.param(
            late_meta_page("<meta charset=utf-8>", href="/ü", encoding="utf-8"),
            None,
            "https://example.ru/%C3%BC",
            id="late-utf-8-no-reparse",
        ),
    ],
)
def test_late_meta_charset_is_honoured(
    body: bytes, content_type: str | None, expected: str
) -> None:
    page = extract_links(body, "https://example.ru/", content_type)
    assert page.links == (expected,)
    if expected == RU:
        assert page.title == "Статья"


def test_late_meta_reparses_title_and_robots() -> None:
    body = late_meta_page('<meta charset=windows-1251><meta name="robots" content="nofollow">')
    page = extract_links(body, "https://example.ru/")
    assert (page.title, page.links, page.nofollow) == ("Статья", (), (RU,))


@pytest.mark.parametrize(
    ("hrefs", "max_url_length", "links", "too_long"),
    [
        pytest.param(["/" + "x" * 20], 40, ["https://example.com/" + "x" * 20], 0, id="at-cap"),
        pytest.param(["/" + "x" * 21], 40, [], 1, id="over-cap"),
        pytest.param(
            ["/" + "x" * 30, "/" + "x" * 30 + "#f", "/a"],
            40,
            ["https://example.com/a"],
            1,
            id="one-url-counted-once",
        ),
        pytest.param(["/" + "x" * 30, "/" + "y" * 30], 40, [], 2, id="two-urls"),
        pytest.param(
            ["mailto:" + "x" * 50, "/" + "x" * 5],
            40,
            ["https://example.com/xxxxx"],
            0,
            id="invalid-is-not-too-long",
        ),
    ],
)
def test_too_long_links_are_counted(
    hrefs: list[str], max_url_length: int, links: list[str], too_long: int
) -> None:
    body = html("".join(f'<a href="{href}">l</a>' for href in hrefs))
    page = extract_links(body, PAGE, max_url_length=max_url_length)
    assert (list(page.links), page.too_long) == (links, too_long)


def test_too_long_base_falls_back_to_the_page() -> None:
    body = html('<a href="x">l</a>', '<base href="/' + "b" * 60 + '/">')
    page = extract_links(body, PAGE, max_url_length=60)
    assert page.links == ("https://example.com/docs/guide/x",)


def test_python_codec_names_map_onto_whatwg_names() -> None:
    names = charsets._python_names()
    assert names["utf-8"] == "utf-8"
    assert names["cp1251"] == "windows-1251"
    assert names["iso8859-1"] == "windows-1252"  # reached through the label "latin1"
    assert names["euc_kr"] == "cp949"  # a label late in the table
    assert names["utf-16"] == "utf-16le"
    assert "rot-13" not in names
    assert charsets._encoding("latin-1") == "windows-1252"  # Python's spelling, via this map


def test_content_type_meta_without_charset_is_skipped() -> None:
    body = late_meta_page(
        '<meta http-equiv="Content-Type" content="text/html"><meta charset=cp1251>'
    )
    assert extract_links(body, "https://example.ru/").links == (RU,)


def test_utf_8_bom_is_not_text() -> None:
    body = '\ufeff<a href="/ü">u</a>'.encode()
    assert extract_links(body, PAGE).links == ("https://example.com/%C3%BC",)


@pytest.mark.parametrize(
    ("content", "links", "nofollow"),
    [
        pytest.param("", 1, 0, id="empty"),
        pytest.param("noindex,nofollow", 0, 1, id="comma"),
        pytest.param("NOINDEX , NoFollow", 0, 1, id="case-spaces"),
        pytest.param("none", 0, 1, id="none"),
        pytest.param("noindex", 1, 0, id="noindex-only"),
    ],
)
def test_meta_robots_directives(content: str, links: int, nofollow: int) -> None:
    body = html('<a href="/x">x</a>', f'<meta name="Robots " content="{content}">')
    page = extract_links(body, PAGE)
    assert (len(page.links), len(page.nofollow)) == (links, nofollow)


def test_default_caps() -> None:
    long = "/" + "x" * (2048 - len("https://example.com/"))
    page = extract_links(html(f'<a href="{long}">a</a><a href="{long}y">b</a>'), PAGE)
    assert (len(page.links[0]), page.too_long) == (2048, 1)
    page = extract_links(many_links(10_001), PAGE)
    assert (len(page.links), page.truncated) == (10_000, True)


def test_realistic_page() -> None:
    body, expected = realistic_page()
    page = extract_links(body, "http://127.0.0.2:18080/s0/p7.html", "text/html")
    assert 14_000 < len(body) < 17_000
    assert page == ParsedPage(
        links=tuple(expected), nofollow=(), truncated=False, title="Page 7 of host 0", too_long=0
    )
