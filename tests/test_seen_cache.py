"""The bounded seen-cache in front of a store that deduplicates (PostgreSQL): memory stays
bounded, and repeated links stop costing the database work."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from support import Site, settings

from crawler import frontier
from crawler.engine import Engine
from crawler.seen import RecentSeen
from crawler.store import open_store


def test_the_cache_holds_at_most_its_capacity_and_keeps_what_comes_back() -> None:
    seen = RecentSeen(capacity=100)
    seen.add("http://a.test/menu")
    for i in range(1000):
        seen.add(f"http://a.test/{i}")
        if i % 10 == 0:
            assert seen.unseen(["http://a.test/menu"]) == []  # a link every page repeats
    assert len(seen.recent) + len(seen.older) <= 100
    assert "http://a.test/999" in seen and "http://a.test/menu" in seen
    assert "http://a.test/0" not in seen  # forgotten: the store will refuse it instead
    assert seen.unseen(["http://a.test/0", "http://a.test/998"]) == ["http://a.test/0"]


class NoCache(RecentSeen):
    """The store's dedup alone: nothing remembered from one page to the next."""

    def __contains__(self, url: str) -> bool:
        return False

    def unseen(self, urls: Sequence[str]) -> list[str]:
        self.recent.clear()
        return list(urls)


async def crawl_counting(site: Site, dsn: str) -> tuple[int, int, int]:
    """(new-URL rows sent to the database, rows it found new, pages stored) for a crawl
    of a site whose 40 pages all link to all 40, committed a page at a time (as on a
    large crawl, where a batch holds pages of many hosts)."""
    host = await site.host()
    paths = [f"/p{i}" for i in range(40)]
    host.page("/", paths)
    for path in paths:
        host.page(path, paths)
    store = await open_store(dsn, create=True)
    store.batch_size = 1  # type: ignore[attr-defined]  # a batch a page: none merges repeats
    try:
        s = settings(per_host=1, delay=0.05)  # pages apart: commits seldom share a batch
        await store.save_crawl(s, [host.url("/")])
        summary = await Engine(store, s, [host.url("/")]).run()
        return store.dedup_sent, store.dedup_new, summary.pages  # type: ignore[attr-defined]
    finally:
        await store.close()


async def test_repeated_links_do_not_reach_the_database(site: Site, pg_dsn: str) -> None:
    sent, new, pages = await crawl_counting(site, pg_dsn)
    assert pages == 41 and new == 41
    assert sent == new  # 1,640 links, each URL sent once


async def test_without_the_cache_every_repeated_link_is_a_row_to_refuse(
    site: Site, pg_cluster: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(frontier, "RecentSeen", NoCache)
    dsn = pg_cluster.dsn(pg_cluster.new_database())  # type: ignore[attr-defined]
    sent, new, pages = await crawl_counting(site, dsn)
    assert pages == 41 and new == 41  # the database still deduplicates: the same crawl
    assert sent > 10 * new  # but at the cost of a row per repeated link
