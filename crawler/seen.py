"""The seen-set: every URL the crawl has admitted, kept as 64-bit hashes, not strings."""

from __future__ import annotations


class SeenSet:
    """Membership by `hash(url)`: about an eighth of the URLs' own size in RAM.

    Python's string hash is salted per process, so the set is rebuilt from the store at
    every start (`Store.seen_urls`), never saved. Two URLs with one hash (odds ~n²/2⁶⁵)
    would make the second look seen: at 10 million URLs, about one in 370,000 crawls.
    """

    __slots__ = ("hashes",)

    def __init__(self) -> None:
        self.hashes: set[int] = set()  # the hot loop (Admission.links) reads it directly

    def __contains__(self, url: str) -> bool:
        return hash(url) in self.hashes

    def add(self, url: str) -> None:
        self.hashes.add(hash(url))

    def __len__(self) -> int:
        return len(self.hashes)
