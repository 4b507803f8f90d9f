"""The seen-set against a plain Python set, across merges, and the admission loop that reads it."""

from __future__ import annotations

import random

import pytest
from support import settings

from crawler.admission import Admission
from crawler.reasons import Reason
from crawler.scope import Scope
from crawler.seen import SeenSet

A = "http://127.0.0.2:8080"
B = "http://127.0.0.3:8080"  # out of scope: the seeds are on A


def url(i: int) -> str:
    return f"{A}/d{i // 100}/{i}.html"


@pytest.mark.parametrize("min_recent", [1, 7, 64, 1 << 16], ids=lambda n: f"merge-at-{n}")
def test_membership_matches_a_set(min_recent: int) -> None:
    rng = random.Random(11)
    seen, ref = SeenSet(min_recent=min_recent), set()
    for step in range(3000):
        u = url(rng.randrange(4000))  # about half the adds repeat a URL: merges drop them
        seen.add(u)
        ref.add(u)
        if step % 97 == 0:
            probe = [url(rng.randrange(5000)) for _ in range(60)]
            assert seen.unseen(probe) == [p for p in probe if p not in ref]
            assert [p in seen for p in probe] == [p in ref for p in probe]
    assert len(seen) == len(ref)
    assert all(u in seen for u in ref)
    assert not any(url(i) in seen for i in range(4000, 5000))


def test_unseen_keeps_order_and_repeats() -> None:
    seen = SeenSet(min_recent=2)
    for i in range(5):  # two merges, one URL left in `recent`
        seen.add(url(i))
    assert seen.recent
    batch = [url(7), url(1), url(7), url(4), url(8), url(2), url(8)]
    assert seen.unseen(batch) == [url(7), url(7), url(8), url(8)]
    assert seen.unseen([]) == []


def test_adding_while_walking_a_batch() -> None:
    seen = SeenSet(min_recent=3)
    for i in range(10):
        seen.add(url(i))
    batch = [url(i) for i in range(5, 30)]
    walked = []
    for u in seen.unseen(batch):  # a list, not a view: adds (and merges) do not disturb it
        walked.append(u)
        seen.add(u)
    assert walked == batch[5:]
    assert seen.unseen(batch) == []
    assert len(seen) == 30


def admission(seen: SeenSet, **overrides: object) -> Admission:
    scope = Scope.from_settings([f"{A}/"], "host", [], [])
    return Admission(settings(**overrides), scope, seen)


@pytest.mark.parametrize("min_recent", [1, 4, 1 << 16], ids=lambda n: f"merge-at-{n}")
def test_links_admits_a_repeated_link_once_and_counts_refusals_each_time(min_recent: int) -> None:
    seen = SeenSet(min_recent=min_recent)
    adm = admission(seen)
    for i in range(6):
        seen.add(url(i))
    skipped: dict[str, int] = {}
    page = [url(1), url(10), f"{B}/x", url(10), url(2), url(11), f"{B}/x", url(10)]
    new = adm.links(page, 2, skipped)
    assert [(n.url, n.depth, n.hops, n.origin) for n in new] == [
        (url(10), 2, 0, None),
        (url(11), 2, 0, None),
    ]
    assert skipped == {Reason.OUT_OF_SCOPE: 2}
    # the next page: what the first admitted is seen now, merged or not
    assert adm.links([url(11), url(12), url(10)], 3, skipped) != []
    assert [url(i) in seen for i in (10, 11, 12)] == [True, True, True]
    assert adm.links([url(10), url(11), url(12)], 3, skipped) == []
    assert len(seen) == 9


def test_links_traps_and_depth() -> None:
    seen = SeenSet(min_recent=2)
    adm = admission(seen, max_depth=2, repeat_segments=1)
    for i in range(5):
        seen.add(url(i))
    skipped: dict[str, int] = {}
    trap = f"{A}/a/a/x.html"
    assert [n.url for n in adm.links([trap, url(20), trap], 2, skipped)] == [url(20)]
    assert skipped == {Reason.TRAP: 2}
    # too deep: every unseen occurrence counted, nothing admitted, seen ones not counted
    assert adm.links([url(1), url(30), url(30), url(20), f"{B}/y"], 3, skipped) == []
    assert skipped == {Reason.TRAP: 2, Reason.DEPTH: 3}
    assert url(30) not in seen


def test_redirect_and_seed_admission_use_the_whole_set() -> None:
    seen = SeenSet(min_recent=2)
    adm = admission(seen)
    for i in range(7):
        seen.add(url(i))
    assert adm.admit(url(0), 0) is None  # in the sorted array
    assert adm.admit(url(6), 0) is None  # in `recent`
    assert adm.admit(f"{B}/z", 0) is Reason.OUT_OF_SCOPE
    n = adm.admit(url(50), 0)
    assert n is not None and not isinstance(n, Reason) and n.url == url(50)
    assert adm.admit(url(50), 1) is None
