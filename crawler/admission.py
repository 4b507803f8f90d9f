"""Admission: which discovered URLs enter the frontier, and why the others do not.

A URL is admitted once (the seen-set), when in scope (seeds' hosts or domains, --allow,
--deny), not a trap (a repeated path segment) and within --max-depth. Every refusal has
a `Reason`, counted per link occurrence into the page's `skipped` counts.
"""

from __future__ import annotations

from collections.abc import Iterable

from crawler.config import Settings
from crawler.reasons import Reason
from crawler.records import NewURL, QueuedURL
from crawler.scope import Scope
from crawler.seen import SeenSet
from crawler.urls import has_repeated_segments, host_key


class Admission:
    def __init__(self, settings: Settings, scope: Scope, seen: SeenSet) -> None:
        self.settings = settings
        self.scope = scope
        self.seen = seen

    def admit(
        self, url: str, depth: int, *, hops: int = 0, origin: str | None = None
    ) -> NewURL | Reason | None:
        """The row for a new URL; None when already seen, a Reason when refused."""
        if url in self.seen:
            return None
        verdict = self.scope.verdict(url)
        if verdict is not None:
            return verdict
        if has_repeated_segments(url, self.settings.repeat_segments):
            return Reason.TRAP
        self.seen.add(url)
        return NewURL(url, host_key(url), depth, hops, origin)

    def links(self, links: Iterable[str], depth: int, skipped: dict[str, int]) -> list[NewURL]:
        """The new URLs among a page's followable links at `depth`; refusals counted into
        `skipped` (a link already seen is no refusal; one out of scope is, every time)."""
        seen = self.seen.hashes
        if 0 <= self.settings.max_depth < depth:
            if deep := sum(1 for url in links if hash(url) not in seen):
                skipped[Reason.DEPTH] = skipped.get(Reason.DEPTH, 0) + deep
            return []
        new: list[NewURL] = []
        for url in links:
            if hash(url) in seen:
                continue
            n = self.admit(url, depth)
            if isinstance(n, NewURL):
                new.append(n)
            elif n is not None:
                skipped[n] = skipped.get(n, 0) + 1
        return new

    def redirect(self, item: QueuedURL, target: str) -> NewURL | Reason | None:
        """A redirect target as the next hop of `item`'s chain (same depth)."""
        origin = item.origin or item.url
        return self.admit(target, item.depth, hops=item.hops + 1, origin=origin)
