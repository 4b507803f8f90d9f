"""Pure HTML-to-links extraction: the crawl's hot path, so every page costs one parse and few walks.

The body is decoded as a browser decodes it (`crawler.charsets`); a ``<meta>`` charset found
late (after a long ``<head>``) makes the page parse again in its encoding, as browsers re-parse
when the tree builder meets one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from selectolax.lexbor import LexborHTMLParser

from crawler.charsets import declared_charset, sniff
from crawler.directives import NONE, meta_directives
from crawler.urls import canonical_url

__all__ = ["KINDS", "ParsedPage", "extract_links", "is_html", "srcset_urls"]


@dataclass(frozen=True, slots=True)
class ParsedPage:
    """What one page links to and says about itself; the caller decides what is in scope."""

    links: tuple[str, ...]  # canonical absolute URLs to follow: unique, document order
    nofollow: tuple[str, ...]  # canonical URLs only ever linked with nofollow: unique, in order
    truncated: bool  # a link (or subresource) was dropped because max_links was reached
    title: str | None  # <title> text with whitespace collapsed, None when absent or blank
    too_long: int = 0  # distinct URLs dropped: canonical URL longer than max_url_length
    # Subresources (img, script, style, icon, preload, iframe): (canonical URL, kind), unique
    # per pair, in document order. Recorded, fetched only with --assets.
    resources: tuple[tuple[str, str], ...] = ()
    canonical: str | None = None  # the first <link rel=canonical> target, canonical
    noindex: bool = False  # meta robots noindex (or none)
    robots_nofollow: bool = False  # meta robots nofollow (or none), or the caller said so
    # The parsed tree, for hooks (crawler.hooks): a page is parsed once.
    document: LexborHTMLParser | None = field(default=None, compare=False, repr=False)


_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})


def is_html(content_type: str | None) -> bool:
    """Whether a Content-Type names a document we parse for links.

    >>> is_html("Text/HTML; charset=UTF-8")
    True
    """
    if not content_type:
        return False
    return content_type.partition(";")[0].strip().lower() in _HTML_TYPES


def _parse(body: bytes, charset: str) -> LexborHTMLParser:
    html: bytes | str
    if charset == "utf-8":
        # Bytes go to Lexbor as they are: a str is re-encoded to UTF-8 first, so decoding would
        # cost 3 µs a page, 15 µs on non-ASCII text. Lexbor does not skip a BOM, though: left
        # in, it becomes a text node that drops the doctype and ends <head> early.
        html = body[3:] if body.startswith(b"\xef\xbb\xbf") else body
    else:
        html = body.decode(charset, "replace").removeprefix("\ufeff")
    return LexborHTMLParser(html)


# Elements a page names other URLs with. Lexbor's tag ids are learnt from a tiny document at
# import, so the one walk below compares ints and builds no tag name per element.
_WANTED = ("a", "area", "img", "script", "link", "iframe", "frame", "base", "meta", "title")


def _tag_ids() -> dict[int, str]:
    ids: dict[int, str] = {}
    docs = (
        "<title></title><base><meta><link><script></script><a></a><area><img><iframe></iframe>",
        "<frameset><frame></frameset>",
    )
    for doc in docs:
        root = LexborHTMLParser(doc).root
        for node in root.traverse(include_text=False) if root is not None else ():
            if node.tag in _WANTED:
                ids[node.tag_id] = str(node.tag)
    assert set(ids.values()) == set(_WANTED), ids  # a selectolax upgrade that renames a tag
    # <area href> is a link as <a href> is: one name, one comparison per element below.
    return {tag_id: "a" if name == "area" else name for tag_id, name in ids.items()}


_TAG_IDS = _tag_ids()
# <link rel> tokens that name a subresource, and its `links.kind`. Not here, so not recorded:
# canonical (a page signal: ParsedPage.canonical), alternate, next, prev, manifest, author...
_LINK_KINDS = {
    "stylesheet": "style",
    "icon": "icon",  # also "shortcut icon"
    "apple-touch-icon": "icon",
    "apple-touch-icon-precomposed": "icon",
    "mask-icon": "icon",
    "preload": "preload",
    "modulepreload": "preload",
    "prefetch": "preload",
}
_SRC_KINDS = {"img": "img", "script": "script", "iframe": "iframe", "frame": "iframe"}
KINDS = ("a", "img", "script", "style", "icon", "preload", "iframe")  # every links.kind
_SRCSET_URL = re.compile(r"[\s,]*(\S+)")


def srcset_urls(value: str) -> list[str]:
    """The URLs of a srcset, as the HTML Standard splits its candidates (descriptors skipped).

    >>> srcset_urls("a.png 1x, b.png 2x,c.png")
    ['a.png', 'b.png', 'c.png']
    """
    urls = []
    pos = 0
    while (m := _SRCSET_URL.match(value, pos)) is not None:
        url = m[1]
        pos = m.end()
        if url.endswith(","):  # a candidate with no descriptors
            url = url.rstrip(",")
        else:
            comma = value.find(",", pos)
            pos = len(value) if comma < 0 else comma + 1
        if url:
            urls.append(url)
    return urls


@dataclass(slots=True)
class _Scan:
    """The raw references of one tree, from one walk."""

    anchors: list[tuple[str, str | None]] = field(default_factory=list)  # (href, rel)
    resources: list[tuple[str, str]] = field(default_factory=list)  # (href, kind)
    metas: list[dict[str, str | None]] = field(default_factory=list)
    base: str | None = None
    canonical: str | None = None
    title: str | None = None


def _scan(tree: LexborHTMLParser) -> _Scan:
    # One walk over the elements (Python iteration over Lexbor nodes): on the bench site's
    # pages it costs less than one CSS selector list or one tags() walk per element name.
    found = _Scan()
    root = tree.root
    if root is None:
        return found
    wanted = _TAG_IDS
    anchors = found.anchors
    titled = False
    for node in root.traverse(include_text=False):
        tag = wanted.get(node.tag_id)
        if tag is None:
            continue
        if tag == "a":  # or <area>
            attrs = node.attributes
            href = attrs.get("href")
            if href is not None:  # a bare <a href> only names this page again
                anchors.append((href, attrs.get("rel")))
        elif tag == "img":
            attrs = node.attributes
            if (src := attrs.get("src")) is not None:
                found.resources.append((src, "img"))
            if srcset := attrs.get("srcset"):
                found.resources.extend((u, "img") for u in srcset_urls(srcset))
        elif tag == "link":
            attrs = node.attributes
            href, rel = attrs.get("href"), attrs.get("rel")
            if href is None or not rel:
                continue
            for token in rel.lower().split():
                if token == "canonical":
                    if found.canonical is None:
                        found.canonical = href
                elif (kind := _LINK_KINDS.get(token)) is not None:
                    found.resources.append((href, kind))
                    break
        elif tag == "meta":
            found.metas.append(node.attributes)
        elif tag == "title":
            if not titled:  # the first <title>, even when blank
                titled = True
                found.title = " ".join(node.text().split()) or None
        elif tag == "base":
            href = node.attributes.get("href")
            if found.base is None and href is not None:  # only the first counts
                found.base = href
        elif (src := node.attributes.get("src")) is not None:  # script, iframe, frame
            found.resources.append((src, _SRC_KINDS[tag]))
    return found


def extract_links(
    body: bytes,
    url: str,
    content_type: str | None = None,
    *,
    max_links: int = 10_000,
    max_url_length: int = 2048,
    follow: bool = True,
    agent: str = "",
) -> ParsedPage:
    """The links of an HTML page, canonical and deduplicated, split into follow and nofollow,
    its subresources, and what it says about itself (canonical URL, meta robots).

    Each list holds at most ``max_links`` URLs; links past the cap are not even resolved, and
    ``truncated`` says one was lost. A URL linked both ways is followed: one rel=nofollow link
    does not hide a page that the same document also links to plainly. A URL whose canonical
    form is longer than ``max_url_length`` is dropped and counted. ``follow=False`` (an
    X-Robots-Tag nofollow) makes every link nofollow, as a meta robots nofollow does.
    ``agent`` (our product token, lower case) makes ``<meta name="AGENT">`` count as robots.
    """
    charset, certain = sniff(body, content_type)
    tree = _parse(body, charset)
    found = _scan(tree)
    if not certain:
        # The tree builder's rule: a <meta> met while the encoding is only a guess (past the
        # prescan's 2 KB, say, after inline styles) changes it, and the page parses again.
        declared = declared_charset(found.metas)
        if declared is not None and declared != charset:
            tree = _parse(body, declared)
            found = _scan(tree)

    base = url
    if found.base is not None:
        base = canonical_url(found.base, url, max_length=max_url_length) or url
    robots = NONE
    for attrs in found.metas:
        name = (attrs.get("name") or "").strip().lower()
        if name == "robots" or (name == agent and agent):
            robots |= meta_directives(attrs.get("content"))
    follow = follow and not robots.nofollow

    links: dict[str, None] = {}  # dicts, not sets: insertion order is document order
    nofollow: dict[str, None] = {}
    truncated = False
    # Navigation repeats hrefs within a page: each distinct one is canonicalised once.
    # (A cache across pages saved ~8 µs a page on the benchmark site but held ~30 MB.)
    resolved: dict[str, str | None] = {}
    too_long: dict[str, None] = {}
    for href, rel in found.anchors:
        if href in resolved:
            canonical = resolved[href]
        else:
            canonical = resolved[href] = canonical_url(href, base, max_length=1 << 62)
        if not canonical:
            continue
        if len(canonical) > max_url_length:
            too_long[canonical] = None
            continue
        kept = nofollow if not follow or (rel and "nofollow" in rel.lower().split()) else links
        if canonical in kept:
            continue
        if len(kept) >= max_links:
            truncated = True
            break
        kept[canonical] = None
    resources: dict[tuple[str, str], None] = {}
    for href, kind in found.resources:
        if href in resolved:
            canonical = resolved[href]
        else:
            canonical = resolved[href] = canonical_url(href, base, max_length=1 << 62)
        if not canonical:
            continue
        if len(canonical) > max_url_length:
            too_long[canonical] = None
        elif (canonical, kind) not in resources:
            if len(resources) >= max_links:
                truncated = True
                break
            resources[canonical, kind] = None
    return ParsedPage(
        links=tuple(links),
        nofollow=tuple(link for link in nofollow if link not in links),
        truncated=truncated,
        title=found.title,
        too_long=len(too_long),
        resources=tuple(resources),
        canonical=canonical_url(found.canonical, base, max_length=max_url_length)
        if found.canonical is not None
        else None,
        noindex=robots.noindex,
        robots_nofollow=not follow,
        document=tree,
    )
