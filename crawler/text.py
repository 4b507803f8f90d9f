"""A parsed page's visible text, for full-text search (the `text` setting).

It comes from the tree `crawler.parser` built for the page's links: a page is parsed once.
"""

from __future__ import annotations

from selectolax.lexbor import LexborHTMLParser

from crawler.parser import extract_links

__all__ = ["TEXT_LIMIT", "page_text", "visible_text"]

# Most characters of a page's visible text kept for search (~15,000 words: any article, the
# start of a book-length page). PostgreSQL refuses a tsvector over 1 MB, which 250,000
# characters of distinct short words reach; 100,000 stay far below it on both backends.
TEXT_LIMIT = 100_000
# Elements whose content is never shown as text. A <template>'s content is a separate
# document fragment that Lexbor's text() already skips; <textarea> text is shown and kept.
_HIDDEN = ["script", "style", "noscript", "template"]


def page_text(body: bytes, content_type: str | None = None) -> tuple[str | None, str, bool]:
    """(title, visible text, truncated) of a stored page (for `crawler search --reindex`):
    the same decoding and extraction as a crawl's, without resolving its links.

    >>> page_text(b"<title>Hi</title><p>one <script>x()</script> two</p>")
    ('Hi', 'one two', False)
    """
    parsed = extract_links(body, "http://localhost/", content_type, max_links=0)
    assert parsed.document is not None
    return (parsed.title, *visible_text(parsed.document))


def visible_text(tree: LexborHTMLParser) -> tuple[str, bool]:
    """(text, truncated): the body's text as a reader sees it, scripts, styles and markup
    dropped, whitespace collapsed, cut at TEXT_LIMIT. It takes the hidden elements out of
    `tree`, so the crawl calls it last, after hooks have seen the page whole."""
    tree.strip_tags(_HIDDEN)
    node = tree.body or tree.root
    raw = node.text(deep=True, separator=" ") if node is not None else ""
    collapsed = " ".join(raw.split())
    if len(collapsed) <= TEXT_LIMIT:
        return collapsed, False
    return collapsed[:TEXT_LIMIT], True
