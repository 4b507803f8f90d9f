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
        refusal = self._refusal(url)
        if refusal is not None:
            return refusal
        self.seen.add(url)
        return NewURL(url, host_key(url), depth, hops, origin)

    def _refusal(self, url: str) -> Reason | None:
        """Why a URL not seen yet does not enter: out of scope or a trap."""
        verdict = self.scope.verdict(url)
        if verdict is not None:
            return verdict
        if has_repeated_segments(url, self.settings.repeat_segments):
            return Reason.TRAP
        return None

    def links(self, links: Iterable[str], depth: int, skipped: dict[str, int]) -> list[NewURL]:
        """The new URLs among a page's followable links at `depth`; refusals counted into
        `skipped` (a link already seen is no refusal; one out of scope is, every time)."""
        urls = links if isinstance(links, list) else list(links)
        unseen = self.seen.unseen(urls)  # one vectorised look-up for the whole page
        if 0 <= self.settings.max_depth < depth:
            if unseen:
                skipped[Reason.DEPTH] = skipped.get(Reason.DEPTH, 0) + len(unseen)
            return []
        # No merge happens before the next `unseen`, so a hash added here stays in `recent`
        # for the rest of the page: a second link to a URL admitted above is seen.
        recent = self.seen.recent
        new: list[NewURL] = []
        for url in unseen:
            h = hash(url)
            if h in recent:
                continue
            refusal = self._refusal(url)
            if refusal is None:
                recent.add(h)
                new.append(NewURL(url, host_key(url), depth, 0, None))
            else:
                skipped[refusal] = skipped.get(refusal, 0) + 1
        return new

    def redirect(self, item: QueuedURL, target: str) -> NewURL | Reason | None:
        """A redirect target as the next hop of `item`'s chain (same depth)."""
        origin = item.origin or item.url
        return self.admit(target, item.depth, hops=item.hops + 1, origin=origin)
