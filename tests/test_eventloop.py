"""The runner a crawl runs in: the young GC generation spaced out while it runs, and the
process' own thresholds back afterwards (an embedding application keeps its settings)."""

from __future__ import annotations

import gc

from crawler.eventloop import GC_YOUNG, crawl_runner


async def _threshold() -> tuple[int, int, int]:
    return gc.get_threshold()


def test_the_gc_is_spaced_out_during_a_crawl_and_restored_after() -> None:
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 11, 12)
        with crawl_runner() as runner:
            assert runner.run(_threshold()) == (GC_YOUNG, 11, 12)
        assert gc.get_threshold() == (700, 11, 12)
        gc.set_threshold(GC_YOUNG * 2, 11, 12)  # an application's own, larger: kept
        with crawl_runner() as runner:
            assert runner.run(_threshold()) == (GC_YOUNG * 2, 11, 12)
    finally:
        gc.set_threshold(*before)
