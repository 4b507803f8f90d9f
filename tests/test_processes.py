"""One crawl in several processes (`--processes`): the same result as one process, every
URL fetched once, politeness per host intact, one page budget, and every way of stopping
(Ctrl-C, kill -9 of the parent, a child that dies) leaves a file that `resume` finishes.

The subprocess tests reuse test_resume's demo site and crawler runner.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from support import Site, rows, run, run_resume, urls
from test_resume import (
    DEADLINE,
    Crawls,
    DemoSite,
    assert_complete,
    assert_mid_crawl,
    crawls,
    demo,
    snapshot,
    stored,
)

from crawler.partition import PageBudget, owner

__all__ = ["crawls", "demo"]  # fixtures, imported for pytest


def children(pid: int) -> list[int]:
    """The crawling children of `pid` (Linux /proc): spawned ones, not the resource tracker
    that multiprocessing also starts."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid and b"spawn_main" in cmdline:
                found.append(int(entry.name))
    return found


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def await_children(proc_pid: int, n: int) -> list[int]:
    """Wait (with a deadline) until the crawler has started its `n` children."""
    end = time.monotonic() + DEADLINE
    while len(kids := children(proc_pid)) < n:
        assert time.monotonic() < end, f"{len(kids)} of {n} children started"
        time.sleep(0.01)
    return kids


# ---------------------------------------------------------------------- in-process crawls


async def cross_linked_site(n_hosts: int, pages: int) -> tuple[Site, list[str]]:
    """Hosts whose pages link within the host and to the next host: work crosses processes."""
    site = Site()
    hosts = [await site.host() for _ in range(n_hosts)]
    for k, host in enumerate(hosts):
        other = hosts[(k + 1) % n_hosts]
        host.hold = 0.005  # requests overlap, so per-host limits are exercised
        for i in range(pages):
            host.page(f"/p{i}", links=[f"/p{(i + 1) % pages}", f"/p{(i * 7) % pages}",
                                       other.url(f"/p{(i + 3) % pages}")])  # fmt: skip
        host.page("/", links=["/p0", other.url("/")])
    return site, [h.url("/") for h in hosts]  # scope: every host is a seed's host


async def test_processes_store_what_one_process_stores(tmp_path: Path) -> None:
    site, seeds = await cross_linked_site(6, 20)
    try:
        await run(str(tmp_path / "one.db"), seeds, per_host=2)
        for host in site.hosts:
            host.hits.clear()
            host.max_open = 0
        summary = await run(str(tmp_path / "three.db"), seeds, per_host=2, processes=3)
    finally:
        await site.close()
    one, three = str(tmp_path / "one.db"), str(tmp_path / "three.db")
    assert urls(three) == urls(one) and len(urls(one)) == 6 * 21
    query = "SELECT src_url, dst_url, nofollow FROM links ORDER BY 1, 2, 3"
    assert rows(three, query) == rows(one, query)
    assert rows(three, "SELECT url, state FROM urls ORDER BY url") == rows(
        one, "SELECT url, state FROM urls ORDER BY url"
    )
    assert summary.pages == summary.total_pages == 6 * 21 and summary.finished
    assert summary.by_status_class == {"2xx": 6 * 21}
    for host in site.hosts:
        # Each URL and each robots.txt requested once, by one process, within the host's limit.
        assert Counter(host.paths).most_common(1)[0][1] == 1, host.paths
        assert host.requests_for("/robots.txt") == 1
        assert host.max_open <= 2
    assert rows(three, "SELECT finished_at IS NOT NULL FROM crawl") == [(1,)]
    # The index left out while the processes wrote is back.
    assert rows(three, "SELECT name FROM sqlite_master WHERE name = 'links_dst'") == [
        ("links_dst",)
    ]


@pytest.mark.parametrize("processes", [2, 3])
async def test_max_pages_is_one_budget_across_processes(tmp_path: Path, processes: int) -> None:
    site, seeds = await cross_linked_site(6, 20)
    db = str(tmp_path / "c.db")
    try:
        summary = await run(db, seeds, max_pages=25, processes=processes)
        assert len(urls(db)) == 25 == summary.total_pages
        await run_resume(db, max_pages=40)
        assert len(urls(db)) == 40
        requested = sum(len(h.paths) - h.requests_for("/robots.txt") for h in site.hosts)
        assert requested == 40  # no page was fetched past the budget and thrown away
    finally:
        await site.close()


def test_hosts_are_split_stably() -> None:
    hosts = [f"http://127.0.0.{i}:80" for i in range(2, 202)]
    shares = Counter(owner(h, 4) for h in hosts)
    assert set(shares) == {0, 1, 2, 3} and min(shares.values()) > 20
    # Every process must agree on the owner: not Python's hash(), which is salted per process.
    script = f"from crawler.partition import owner; print([owner(h, 4) for h in {hosts!r}])"
    elsewhere = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "PYTHONHASHSEED": "12345"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert elsewhere.strip() == str([owner(h, 4) for h in hosts])


def test_page_budget() -> None:
    budget = PageBudget(3)
    budget.start(1)
    assert budget.take() and budget.take() and not budget.take()
    budget.add(-1)
    assert budget.left() == 1 and budget.take()
    unlimited = PageBudget(0)
    assert all(unlimited.take() for _ in range(1000))


def test_a_child_killed_holding_the_budget_lock_blocks_no_one(tmp_path: Path) -> None:
    """The budget's lock is a flock: the kernel drops it with a holder killed by -9."""
    lock = str(tmp_path / "budget.lock")
    ctx = multiprocessing.get_context("spawn")
    shared = ctx.RawValue("q", 0)
    ready = ctx.Event()
    holder = ctx.Process(target=_hold_budget_lock, args=(shared, lock, ready))
    holder.start()
    try:
        assert ready.wait(DEADLINE)
        os.kill(holder.pid or 0, signal.SIGKILL)
    finally:
        holder.join(DEADLINE)
    budget = PageBudget(5, shared=shared, lock_path=lock)
    assert budget.take()  # blocks for ever with a lock that outlives its holder
    assert shared.value == 2
    budget.close()


def _hold_budget_lock(shared: Any, lock: str, ready: Any) -> None:
    budget = PageBudget(5, shared=shared, lock_path=lock)
    with budget._locked():
        shared.value += 1
        ready.set()
        time.sleep(60)


# ---------------------------------------------------------------------- stops and crashes


def test_processes_crawl_is_exact(crawls: Crawls, demo: DemoSite) -> None:
    crawls.run("crawl", "--processes", "3")
    assert_complete(crawls.db, demo)
    assert Counter(demo.answered()) == Counter(demo.expected)  # each page fetched once


def test_sigint_stops_every_process_gracefully(crawls: Crawls, demo: DemoSite) -> None:
    proc = crawls.start("crawl", "--processes", "2")
    kids = await_children(proc.pid, 2)
    crawls.wait_for_pages(proc, 40)
    assert crawls.kill(proc, signal.SIGINT) == 0, crawls.output(proc)
    assert "Traceback" not in crawls.output(proc)
    assert not any(running(pid) for pid in kids)
    count = assert_mid_crawl(crawls.db, demo)
    assert sorted(urls(crawls.db)) == sorted(demo.answered())  # nothing answered was lost
    assert count == len(demo.answered())
    crawls.run("resume")  # with the stored --processes 2
    assert_complete(crawls.db, demo)
    assert Counter(demo.answered()) == Counter(demo.expected)


def test_ctrl_c_while_the_children_start_is_a_graceful_stop(crawls: Crawls, demo: DemoSite) -> None:
    # As a terminal does: SIGINT to the parent and its children, while the children are
    # still importing (before they could install a handler, it killed them).
    proc = crawls.start("crawl", "--processes", "2")
    kids = await_children(proc.pid, 2)
    for pid in kids:
        os.kill(pid, signal.SIGINT)
    assert crawls.kill(proc, signal.SIGINT) == 0, crawls.output(proc)
    out = crawls.output(proc)
    assert "Traceback" not in out and "failed" not in out, out
    assert not any(running(pid) for pid in kids)
    crawls.run("resume")
    assert_complete(crawls.db, demo)


def test_kill_9_of_the_parent_stops_the_children(crawls: Crawls, demo: DemoSite) -> None:
    proc = crawls.start("crawl", "--processes", "2")
    kids = await_children(proc.pid, 2)
    crawls.wait_for_pages(proc, 40)
    assert crawls.kill(proc) == -signal.SIGKILL
    # Orphans notice the closed pipe and stop; nothing polls for them but the test.
    end = time.monotonic() + DEADLINE
    while any(running(pid) for pid in kids):
        assert time.monotonic() < end, "children outlived their parent"
        time.sleep(0.01)
    assert "Traceback" not in crawls.output(proc)  # orphans stop quietly
    assert_mid_crawl(crawls.db, demo)
    before = snapshot(crawls.db)
    crawls.run("resume", "--processes", "3")  # a different split works as well
    assert_complete(crawls.db, demo)
    assert before <= snapshot(crawls.db)


def test_a_dead_child_fails_the_run_and_resume_finishes(crawls: Crawls, demo: DemoSite) -> None:
    proc = crawls.start("crawl", "--processes", "2")
    kids = await_children(proc.pid, 2)
    crawls.wait_for_pages(proc, 40)
    os.kill(kids[0], signal.SIGKILL)
    assert crawls.wait(proc) == 1
    output = crawls.output(proc)
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if line.startswith("crawler: error:")]
    assert len(errors) == 1 and "of 2 failed" in errors[0] and "resume" in errors[0], output
    assert not any(running(pid) for pid in kids)
    assert stored(crawls.db) >= 40
    crawls.run("resume")
    assert_complete(crawls.db, demo)
