"""Which discovered URLs the crawl follows: the seeds' hosts or domains, then allow/deny.

`in_scope` (and `verdict`, which says why not) runs once per discovered link, so the host
decision is cached per netloc and the regexes are compiled once. Registered domains come from
tldextract's bundled Public Suffix List snapshot only: building a scope never touches the
network or writes a cache.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING

from crawler.reasons import Reason
from crawler.urls import canonical_url, url_host

if TYPE_CHECKING:
    import tldextract

MODES = ("host", "domain", "any")
_CACHE_SIZE = 4096  # netlocs remembered; a crawl of many hosts just recomputes


@dataclass(frozen=True, slots=True)
class Scope:
    """A crawl's boundary; build it with `Scope.from_settings`."""

    mode: str  # host: the seeds' netlocs; domain: their registered domains; any
    keys: frozenset[str]  # netlocs (mode host) or registered domains (mode domain)
    allow: tuple[re.Pattern[str], ...] = ()
    deny: tuple[re.Pattern[str], ...] = ()
    # netloc -> in scope by mode; mutated behind the frozen front, which only guards fields.
    _seen: dict[str, bool] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_settings(
        cls, seeds: Sequence[str], mode: str, allow: Sequence[str], deny: Sequence[str]
    ) -> Scope:
        """Build the scope; ValueError names a bad mode, seed or regex.

        Host means netloc (host and port) regardless of scheme, so a site that moves
        from http to https stays in scope; with default ports dropped from canonical
        URLs, `http://a/` and `https://a/` share the netloc `a`.
        """
        if mode not in MODES:
            raise ValueError(f"scope must be one of {', '.join(MODES)}, got {mode!r}")
        keys: set[str] = set()
        for seed in seeds:
            url = canonical_url(seed)
            if url is None:
                raise ValueError(f"seed is not a usable http(s) URL: {seed!r}")
            keys.add(_netloc(url) if mode == "host" else registered_domain(url_host(url)))
        return cls(mode, frozenset(keys), _compile(allow), _compile(deny))

    def in_scope(self, url: str) -> bool:
        """Whether the crawl follows canonical `url`: `verdict(url) is None`, no reason not to.

        >>> scope = Scope.from_settings(["http://a.example/"], "host", [], [r"\\.pdf$"])
        >>> scope.in_scope("https://a.example/x.html"), scope.in_scope("http://a.example/x.pdf")
        (True, False)
        """
        return self.verdict(url) is None

    def host_in_scope(self, url: str) -> bool:
        """Whether canonical `url`'s host is one the crawl covers (--allow/--deny aside):
        a host whose robots.txt sitemaps are worth reading."""
        if self.mode == "any":
            return True
        netloc = _netloc(url)
        ok = self._seen.get(netloc)
        if ok is None:
            if self.mode == "host":
                ok = netloc in self.keys
            else:
                ok = registered_domain(url_host(url)) in self.keys
            if len(self._seen) >= _CACHE_SIZE:
                self._seen.clear()
            self._seen[netloc] = ok
        return ok

    def verdict(self, url: str) -> Reason | None:
        """Why the crawl does not follow canonical `url`, or None when it does.

        Off the seeds' hosts or domains, or matching no --allow pattern, is OUT_OF_SCOPE;
        matching a --deny pattern is DENY (checked last: deny is news only about in-scope URLs).

        >>> scope = Scope.from_settings(["http://a.example/"], "host", [], [r"\\.pdf$"])
        >>> scope.verdict("http://b.example/"), scope.verdict("http://a.example/x.pdf")
        (<Reason.OUT_OF_SCOPE: 'out of scope'>, <Reason.DENY: 'deny'>)
        """
        if not self.host_in_scope(url):
            return Reason.OUT_OF_SCOPE
        if self.allow:
            for pattern in self.allow:
                if pattern.search(url):
                    break
            else:
                return Reason.OUT_OF_SCOPE
        for pattern in self.deny:
            if pattern.search(url):
                return Reason.DENY
        return None


def registered_domain(host: str) -> str:
    """The registrable domain of `host` (`a.example.co.uk` -> `example.co.uk`).

    A host that has none (an IP literal, `localhost`, a bare public suffix) is its
    own domain. Private suffixes count (`alice.github.io` is not `bob.github.io`),
    since their owners are different people.
    """
    parts = _extractor()(host)
    if parts.suffix:
        return f"{parts.domain}.{parts.suffix}" if parts.domain else host
    if host.startswith("[") or parts.ipv4 or "." not in host:
        return host
    # An unlisted TLD (.test, .lan): the PSL's default rule "*" makes the last label the
    # suffix, which tldextract does not apply for us.
    return ".".join(host.rsplit(".", 2)[-2:])


@cache
def _extractor() -> tldextract.TLDExtract:
    """The one tldextract instance, built on first use: only mode "domain" needs it.

    No suffix-list URLs, so it never fetches the live list; no cache_dir, so it never
    writes one; it reads the snapshot bundled with the package.
    """
    import tldextract  # deferred: it pulls in requests, which mode "host" never needs

    return tldextract.TLDExtract(
        cache_dir=None,
        suffix_list_urls=(),
        fallback_to_snapshot=True,
        include_psl_private_domains=True,
    )


def _compile(patterns: Sequence[str]) -> tuple[re.Pattern[str], ...]:
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern))
        except re.error as exc:
            raise ValueError(f"invalid regex {pattern!r}: {exc}") from exc
    return tuple(compiled)


def _netloc(url: str) -> str:
    rest = url.partition("://")[2]
    end = rest.find("/")
    return rest if end < 0 else rest[:end]
