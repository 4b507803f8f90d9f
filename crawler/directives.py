"""Robots directives for one page: meta robots content and X-Robots-Tag headers, read alike.

Both carry comma-separated rules (``noindex, nofollow``; ``none`` means both). An
X-Robots-Tag value may open with a user agent (``googlebot: noindex``), which scopes the
rules after it to that agent, until the next agent in the same value; we apply the
generic rules and our own product token's, as robots.txt groups are matched (RFC 9309
§2.2.1: the product token, case-insensitively). Rules that take a value
(``unavailable_after: 25 Jun 2010``, ``max-snippet: 20``) are not agents.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Directives", "agent_token", "meta_directives", "x_robots_tag"]

# Rules whose value follows a colon: their name is not a user agent.
_VALUED = frozenset({"unavailable_after", "max-snippet", "max-image-preview", "max-video-preview"})


@dataclass(frozen=True, slots=True)
class Directives:
    """What the rules that apply to us say."""

    noindex: bool = False
    nofollow: bool = False

    def __or__(self, other: Directives) -> Directives:
        return Directives(self.noindex or other.noindex, self.nofollow or other.nofollow)


NONE = Directives()


def agent_token(user_agent: str) -> str:
    """The product token robots rules name us by.

    >>> agent_token("crawler/0.1 (+https://example.com/bot)")
    'crawler'
    """
    return user_agent.split("/", 1)[0].split(None, 1)[0].strip().lower() if user_agent else ""


def _rules(words: Iterable[str]) -> Directives:
    noindex = nofollow = False
    for word in words:
        if word in ("noindex", "none"):
            noindex = True
        if word in ("nofollow", "none"):
            nofollow = True
    return Directives(noindex, nofollow) if noindex or nofollow else NONE


def meta_directives(content: str | None) -> Directives:
    """The rules of a ``<meta name="robots">`` content (comma- or space-separated)."""
    if not content:
        return NONE
    return _rules(content.lower().replace(",", " ").split())


def x_robots_tag(values: Iterable[str], user_agent: str) -> Directives:
    """The rules of every X-Robots-Tag header value that apply to `user_agent`.

    >>> x_robots_tag(["googlebot: noindex", "nofollow"], "crawler/0.1")
    Directives(noindex=False, nofollow=True)
    """
    ours = agent_token(user_agent)
    words: list[str] = []
    for value in values:
        applies = True  # a value that names no agent is for every crawler
        for part in value.lower().split(","):
            name, colon, rest = part.partition(":")
            name = name.strip()
            if colon and name not in _VALUED and " " not in name:
                applies = name == ours
                part = rest
            if applies:
                words.extend(part.split())
    return _rules(words)
