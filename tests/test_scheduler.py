"""The scheduler on its own: no network, no database; jobs in, jobs and outcomes out."""

from __future__ import annotations

import asyncio
from typing import Any

from crawler.config import Settings
from crawler.partition import PageBudget
from crawler.reasons import Reason
from crawler.records import Job, Outcome, QueuedURL, URLState
from crawler.robots import RobotsCache, parse
from crawler.scheduler import Scheduler

A, B = "http://a.example", "http://b.example"


def make(**overrides: Any) -> tuple[Scheduler, list[Outcome]]:
    base: dict[str, Any] = {"ignore_robots": True, "per_host": 1, "delay": 0.0}
    settings = Settings(**(base | overrides))
    emitted: list[Outcome] = []
    budget = PageBudget(settings.max_pages)
    return Scheduler(settings, budget, RobotsCache(), emit=emitted.append), emitted


def queue(s: Scheduler, host: str, *paths: str) -> None:
    for path in paths:
        s.enqueue(QueuedURL(0, host + path, host, 1, 0, None))


def url(job: Job | None) -> str | None:
    return job.item.url if job is not None and job.item is not None else None


async def test_per_host_limit_holds_until_a_job_finishes() -> None:
    s, _ = make(per_host=1)
    queue(s, A, "/1", "/2")
    first = s.next_job()
    assert url(first) == A + "/1"
    assert s.next_job() is None  # the host is busy
    assert first is not None
    s.finish(first, stored=True)
    assert url(s.next_job()) == A + "/2"


async def test_hosts_take_turns() -> None:
    s, _ = make(per_host=1)
    queue(s, A, "/1", "/2", "/3")
    queue(s, B, "/1")
    got = [url(s.next_job()), url(s.next_job())]
    assert got == [A + "/1", B + "/1"]  # B is not stuck behind A's queue


async def test_delay_is_kept_between_starts() -> None:
    s, _ = make(per_host=2, delay=0.05)
    queue(s, A, "/1", "/2")
    loop = asyncio.get_running_loop()
    started = loop.time()  # before the start: the delay runs from a moment after this
    first = s.next_job()
    assert first is not None
    assert s.next_job() is None  # a slot is free, but the delay is not over
    while (second := s.next_job()) is None:
        await s.wait()  # woken by the host's timer, not by polling
    assert url(second) == A + "/2"
    assert loop.time() - started >= 0.05 - 0.005


async def test_robots_first_then_its_rules() -> None:
    s, emitted = make(ignore_robots=False)
    queue(s, A, "/private/x", "/open")
    robots_job = s.next_job()
    assert robots_job is not None and robots_job.robots
    assert s.next_job() is None  # nothing of the host before its rules
    s.robots_loaded(robots_job, parse("User-agent: *\nDisallow: /private\n", "crawler"))
    assert url(s.next_job()) == A + "/open"
    (given_up,) = emitted
    assert (given_up.url, given_up.state, given_up.skipped) == (
        A + "/private/x",
        URLState.DISALLOWED,
        ((Reason.ROBOTS, 1),),
    )


async def test_host_budget_drops_the_rest() -> None:
    s, emitted = make(host_budget=1, per_host=2)
    queue(s, A, "/1", "/2")
    assert url(s.next_job()) == A + "/1"
    assert s.next_job() is None
    assert [(o.url, o.state) for o in emitted] == [(A + "/2", URLState.DROPPED)]


async def test_failures_in_a_row_drop_the_host_with_error_rows() -> None:
    s, emitted = make(host_failures=2, per_host=1)
    queue(s, A, "/1", "/2", "/3")
    for _ in range(2):
        job = s.next_job()
        assert job is not None
        s.finish(job, stored=True, failed="connect: refused")
    assert s.next_job() is None
    rows = [o.page for o in emitted]
    assert [p.url for p in rows if p] == [A + "/3"]
    assert all(p and p.error and p.error.startswith("host dropped after 2 failures") for p in rows)
    queue(s, A, "/4")  # found later: costs a row at once, never a request
    assert s.next_job() is None
    assert emitted[-1].url == A + "/4"


async def test_retry_goes_first_with_the_next_attempt() -> None:
    s, _ = make(per_host=1)
    queue(s, A, "/1", "/2")
    job = s.next_job()
    assert job is not None
    s.retry(job, 0.0)
    again = s.next_job()
    assert again is not None
    assert (url(again), again.attempt) == (A + "/1", 2)


async def test_max_pages_budget() -> None:
    s, _ = make(max_pages=2, per_host=5)
    queue(s, A, "/1", "/2", "/3")
    jobs = [s.next_job(), s.next_job(), s.next_job()]
    assert [url(j) for j in jobs] == [A + "/1", A + "/2", None]
    first = jobs[0]
    assert first is not None
    s.finish(first, stored=False)  # not stored after all: its page goes back to the budget
    assert url(s.next_job()) == A + "/3"


async def test_robots_unreachable_holds_then_gives_up() -> None:
    s, emitted = make(ignore_robots=False)
    queue(s, A, "/1")
    job = s.next_job()
    assert job is not None and job.robots
    s.robots_retry(job, 0.0)
    assert s.robots_failures(job) == 1
    again = s.next_job()
    assert again is not None and again.robots  # asked again, no page in between
    s.robots_failed(again, "robots.txt unreachable: HTTP 503")
    (row,) = [o.page for o in emitted]
    assert row is not None and (row.url, row.status, row.error) == (
        A + "/1",
        None,
        "robots.txt unreachable: HTTP 503",
    )


HTTP, HTTPS, OTHER_PORT = "http://a.example:80", "https://a.example:443", "https://a.example:8443"


async def test_http_and_https_of_one_name_share_a_slot() -> None:
    s, _ = make(per_host=1)
    queue(s, HTTP, "/1")
    queue(s, HTTPS, "/1")
    queue(s, OTHER_PORT, "/1")  # another port is another server
    first, second = s.next_job(), s.next_job()
    assert [url(first), url(second)] == [HTTP + "/1", OTHER_PORT + "/1"]
    assert s.next_job() is None  # https://a.example waits for http://a.example's request
    assert first is not None
    s.finish(first, stored=True)
    assert url(s.next_job()) == HTTPS + "/1"


async def test_http_and_https_of_one_name_share_the_delay() -> None:
    s, _ = make(per_host=2, delay=0.05)
    queue(s, HTTP, "/1")
    queue(s, HTTPS, "/1")
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert url(s.next_job()) == HTTP + "/1"
    assert s.next_job() is None  # a slot is free on the server, its delay is not over
    while (second := s.next_job()) is None:
        await s.wait()
    assert url(second) == HTTPS + "/1"
    assert loop.time() - started >= 0.05 - 0.005


async def test_a_full_server_wakes_its_waiting_origin_when_a_request_ends() -> None:
    s, _ = make(per_host=1)
    queue(s, HTTP, "/1", "/2")
    queue(s, HTTPS, "/1")
    first = s.next_job()
    assert first is not None and s.next_job() is None
    waiting = asyncio.ensure_future(s.wait())
    await asyncio.sleep(0)  # one turn of the loop: the worker is now waiting
    s.finish(first, stored=True)  # frees the server: a waiting worker is woken
    await waiting
    assert [url(s.next_job()), url(s.next_job())] == [HTTPS + "/1", None]
    assert len(s.gates) == 1


def test_one_process_owns_both_schemes_of_a_server() -> None:
    from crawler.partition import owner

    for name in ("a.example", "b.example", "127.0.0.9", "x.test"):
        assert owner(f"http://{name}:80", 7) == owner(f"https://{name}:443", 7)


async def test_per_ip_waits_for_the_lookup_then_shares_the_address() -> None:
    answers: dict[str, str] = {}
    asked: list[str] = []
    settings = Settings(ignore_robots=True, per_host=2, delay=0.0, per_ip=1)
    s = Scheduler(
        settings, PageBudget(0), RobotsCache(), emit=lambda o: None,
        address=answers.get, resolve=asked.append,
    )  # fmt: skip
    queue(s, A, "/1")
    queue(s, B, "/1")
    assert asked == ["a.example", "b.example"]
    assert s.next_job() is None  # nothing starts before its address is known
    answers.update({"a.example": "192.0.2.1", "b.example": "192.0.2.1"})
    s.resolved("a.example")
    s.resolved("b.example")
    first = s.next_job()
    assert url(first) == A + "/1"
    assert s.next_job() is None  # b.example is on the same address
    assert first is not None
    s.finish(first, stored=True)
    assert url(s.next_job()) == B + "/1"
