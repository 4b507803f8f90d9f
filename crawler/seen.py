"""The seen-set: every URL the crawl has admitted, kept as 64-bit hashes, not strings."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import compress
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy.typing as npt

_TOP = (1 << 63) - 1  # closes the sorted array: every search lands on an element
_MIN_RECENT = 1 << 16  # hashes `recent` may hold before a merge, at least
_RECENT_SHARE = 32  # and at most 1/32 of the array: a merge copies it, so rarely


class SeenSet:
    """Membership by `hash(url)`: a sorted int64 array, 8 bytes a URL, plus a set of the
    latest hashes (`recent`), merged into the array when it passes 1/32 of it.

    Python's string hash is salted per process, so the set is rebuilt from the store at
    every start (`Store.seen_urls`), never saved. Two URLs with one hash (odds ~n²/2⁶⁵)
    would make the second look seen: at 10 million URLs, about one in 370,000 crawls.
    A URL whose hash is 2⁶³-1 (the array's end marker) looks seen too: odds n/2⁶⁴, far
    below those.

    A merge happens only in `add`, `unseen` and `len`, never between them, so a caller may
    add a hash straight to `recent` after `unseen` (Admission.links does, for speed) and
    still find it there until its next call.
    """

    __slots__ = ("_cap", "_min", "_sorted", "recent")

    def __init__(self, *, min_recent: int = _MIN_RECENT) -> None:
        self.recent: set[int] = set()
        # None until the first merge: a small crawl never imports numpy (its import
        # costs more CPU than such a crawl's whole seen-set).
        self._sorted: npt.NDArray[Any] | None = None
        self._min = min_recent
        self._cap = min_recent  # `recent` is merged when it holds this many

    def __contains__(self, url: str) -> bool:
        h = hash(url)
        if h in self.recent:
            return True
        a = self._sorted
        return a is not None and bool(a[a.searchsorted(h)] == h)

    def add(self, url: str) -> None:
        recent = self.recent
        recent.add(hash(url))
        if len(recent) >= self._cap:
            self._merge()

    def unseen(self, urls: Sequence[str]) -> list[str]:
        """The `urls` not seen yet, in order, a repeated one as often as it comes."""
        if len(self.recent) >= self._cap:
            self._merge()
        a = self._sorted
        recent = self.recent
        if a is None:  # no merge yet (a small crawl): a plain set, as fast as it gets
            return [url for url in urls if hash(url) not in recent]
        import numpy as np

        h = np.fromiter(map(hash, urls), np.int64, len(urls))
        out = list(compress(urls, (a[a.searchsorted(h)] != h).tolist()))
        if recent and out:
            return [url for url in out if hash(url) not in recent]
        return out

    def __len__(self) -> int:
        if self.recent:
            self._merge()  # `recent` may repeat hashes of the array: count once
        return 0 if self._sorted is None else len(self._sorted) - 1

    def _merge(self) -> None:
        """Move `recent` into the sorted array (one copy of it), dropping repeats."""
        import numpy as np  # here: only a crawl this large needs it

        new = np.fromiter(self.recent, np.int64, len(self.recent))
        new.sort()
        a = self._sorted
        if a is None:
            a = np.array([_TOP], dtype=np.int64)
        at = a.searchsorted(new)
        fresh = a[at] != new
        self._sorted = a = np.insert(a, at[fresh], new[fresh])
        self.recent.clear()
        self._cap = max(self._min, len(a) // _RECENT_SHARE)


class RecentSeen(SeenSet):
    """A bounded seen-set for a store that deduplicates itself (PostgreSQL): only the
    hashes of the last `capacity` URLs admitted or met, in two generations (`recent`, then
    `older`; when `recent` fills up it becomes `older` and the oldest are forgotten).

    It only saves round trips: a link to a URL it forgot is sent to the store again and
    refused there (`ON CONFLICT DO NOTHING`). Memory stays at `capacity` hashes (the
    default 100,000: about 7 MB) however large the crawl; the links a site repeats on
    every page (menus, footers) stay in it, as they keep coming back.
    """

    __slots__ = ("older",)

    def __init__(self, capacity: int = 100_000) -> None:
        super().__init__()
        self.older: set[int] = set()
        self._cap = max(1, capacity // 2)  # each generation's size

    def __contains__(self, url: str) -> bool:
        h = hash(url)
        return h in self.recent or h in self.older

    def add(self, url: str) -> None:
        self.recent.add(hash(url))
        if len(self.recent) >= self._cap:
            self._merge()

    def unseen(self, urls: Sequence[str]) -> list[str]:
        if len(self.recent) >= self._cap:
            self._merge()
        recent, older = self.recent, self.older
        out = []
        for url in urls:
            h = hash(url)
            if h in recent:
                continue
            if h in older:
                recent.add(h)  # met again: kept for another generation
                continue
            out.append(url)
        return out

    def __len__(self) -> int:
        return len(self.recent | self.older)

    def _merge(self) -> None:
        self.older = self.recent
        self.recent = set()
