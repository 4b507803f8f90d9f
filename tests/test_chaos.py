"""The chaos test: a crawl of 2,000+ hostile URLs stores exactly what the catalogue says.

The crawler runs as a CLI subprocess against `chaos.py`'s servers (in this test's event
loop). Every catalogue URL must have exactly one `pages` row with its expected outcome,
no other URL may have one, the run must exit 0, and `stats`, `export` (every format)
and `why` must succeed on the result. The second test kills the crawl with SIGKILL after
seeded numbers of committed pages and resumes it: the same rows.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import random
import signal
import sqlite3
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from chaos import CRAWL_FLAGS, SEED, UNCHECKED, Chaos, Entry, digest, start_chaos
from warcio.archiveiterator import ArchiveIterator

SEED_NOW = int(os.environ.get("CHAOS_SEED", SEED))  # CHAOS_SEED=n draws another catalogue
DEADLINE = 90.0  # seconds one crawler run may take before the test fails
KILLS = 3

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
async def chaos() -> AsyncIterator[Chaos]:
    site = await start_chaos(SEED_NOW)
    try:
        yield site
    finally:
        await site.close()


class Runs:
    """Crawler subprocesses of one test, each with its stdout and stderr in files."""

    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path
        self.db = str(tmp_path / "chaos.db")
        self.procs: list[asyncio.subprocess.Process] = []
        self.files: dict[int, tuple[Path, Path]] = {}

    async def start(self, *args: str) -> asyncio.subprocess.Process:
        name = self.dir / f"run{len(self.procs)}-{args[0]}"
        out, err = name.with_suffix(".out"), name.with_suffix(".err")
        with out.open("wb") as stdout, err.open("wb") as stderr:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "crawler", *args,
                cwd=self.dir, stdout=stdout, stderr=stderr,
            )  # fmt: skip
        self.files[proc.pid] = (out, err)
        self.procs.append(proc)
        return proc

    def output(self, proc: asyncio.subprocess.Process) -> tuple[str, str]:
        out, err = self.files[proc.pid]
        return out.read_text(errors="replace"), err.read_text(errors="replace")

    async def run(self, *args: str) -> tuple[int, str, str]:
        """Run `crawler ARGS` to its end: exit code, stdout, stderr."""
        proc = await self.start(*args)
        try:
            code = await asyncio.wait_for(proc.wait(), DEADLINE)
        except TimeoutError:
            pytest.fail(f"`crawler {' '.join(args[:2])}` still running after {DEADLINE}s")
        return (code, *self.output(proc))

    async def close(self) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


@pytest.fixture
async def runs(tmp_path: Path) -> AsyncIterator[Runs]:
    r = Runs(tmp_path)
    try:
        yield r
    finally:
        await r.close()


def readonly(db: str) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True)


def query(db: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    conn = readonly(db)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def stored(db: str) -> int:
    if not os.path.exists(db):
        return 0
    try:
        return int(query(db, "SELECT count(*) FROM pages")[0][0])
    except sqlite3.OperationalError:  # not created yet, or still migrating
        return 0


def snapshot(db: str) -> set[tuple[Any, ...]]:
    return set(query(db, "SELECT url, fetched_at, status FROM pages"))


# ---------------------------------------------------------------------- the rows


def wrong(entry: Entry, row: tuple[Any, ...] | None) -> str | None:
    """How the stored row differs from the entry's expectation (None: it does not)."""
    exp = entry.expected
    if row is None:
        return "no pages row"
    status, error, body, codec, redirect_to, final_url, final_status, headers = row
    problems = []
    if status != exp.status:
        problems.append(f"status {status!r}, expected {exp.status!r}")
    if exp.error is None and error is not None:
        problems.append(f"error {error!r}, expected none")
    if exp.error is not None and not (error or "").startswith(exp.error):
        problems.append(f"error {error!r}, expected {exp.error!r}...")
    if exp.body is not None and codec is None and bytes(body or b"") != exp.body:
        got = bytes(body) if body is not None else None
        problems.append(
            f"body sha1 {digest(got)} ({len(got or b'')} B), expected {digest(exp.body)}"
        )
    if exp.redirect_to is not None and redirect_to != exp.redirect_to:
        problems.append(f"redirect_to {redirect_to!r}, expected {exp.redirect_to!r}")
    if exp.final_url != UNCHECKED and final_url != exp.final_url:
        problems.append(f"final_url {final_url!r}, expected {exp.final_url!r}")
    if exp.final_status != UNCHECKED and final_status != exp.final_status:
        problems.append(f"final_status {final_status!r}, expected {exp.final_status!r}")
    if exp.header is not None:
        problems.extend(header_problems(headers, exp.header))
    return "; ".join(problems) or None


def header_problems(headers: str | None, name: str) -> list[str]:
    """`headers` must be I-JSON (RFC 7493: no unpaired surrogates, which other tools reject)
    and keep the header `name`; its value's decoding is not pinned here."""
    try:
        fields = json.loads(headers or "[]")
        json.dumps(fields, ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError) as exc:  # UnicodeEncodeError is a ValueError
        return [f"headers column is not valid I-JSON ({exc})"]
    if name.lower() not in {field[0].lower() for field in fields}:
        return [f"header {name} not kept in headers"]
    return []


def mismatches(db: str, chaos: Chaos) -> list[str]:
    """Every way the database differs from the catalogue, grouped by behaviour."""
    found: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for url, *rest in query(
        db,
        "SELECT url, status, error, body, body_codec, redirect_to, final_url, final_status, headers"
        " FROM pages",
    ):
        found[url].append(tuple(rest))
    by_kind: dict[str, list[str]] = defaultdict(list)
    unfetched_on_robots_host = 0
    for url, entry in chaos.entries.items():
        rows = found.get(url, [])
        if len(rows) > 1:
            problem: str | None = "more than one pages row"
        else:
            problem = wrong(entry, rows[0] if rows else None)
        if problem == "no pages row" and url.startswith(chaos.robots_host.origin + "/"):
            unfetched_on_robots_host += 1  # one line for them all, below
        elif problem:
            by_kind[entry.kind].append(f"{url}: {problem}")
    out = [
        f"{kind}: {len(bad)} of {len(chaos.of_kind(kind))} wrong, e.g. {bad[0]}"
        for kind, bad in sorted(by_kind.items())
    ]
    if unfetched_on_robots_host:
        out.append(
            f"robots.txt 503-then-200 host {chaos.robots_host.origin}: {unfetched_on_robots_host}"
            " catalogue URLs have no pages row"
        )
    extra = sorted(set(found) - set(chaos.entries))
    if extra:
        out.append(f"{len(extra)} rows for URLs outside the catalogue, e.g. {extra[:3]}")
    return out


def assert_catalogue(db: str, chaos: Chaos) -> None:
    problems = mismatches(db, chaos)
    assert not problems, f"seed {chaos.seed}:\n" + "\n".join(problems)
    assert query(db, "SELECT count(*) FROM frontier WHERE state = 'queued'") == [(0,)]
    assert query(db, "SELECT finished_at IS NOT NULL FROM crawl") == [(1,)]
    assert query(db, "PRAGMA integrity_check") == [("ok",)]


def assert_robots_recovered(db: str, chaos: Chaos) -> None:
    host = chaos.robots_host
    assert len(host.requests_for("/robots.txt")) >= 2  # the 503, then the retry
    assert query(db, "SELECT status FROM robots WHERE host = ?", host.origin) == [(200,)]


# ---------------------------------------------------------------------- the tools


async def assert_tools_work(runs: Runs, chaos: Chaos) -> None:
    """`stats`, `export` in every format and `why` exit 0 on the chaos database."""
    db = runs.db
    pages = {url for (url,) in query(db, "SELECT url FROM pages")}
    answered = {url for (url,) in query(db, "SELECT url FROM pages WHERE status IS NOT NULL")}
    here = runs.dir
    code, out, err = await runs.run("stats", "--db", db, "--json")
    assert code == 0, err
    assert json.loads(out)["pages"] == len(pages)

    code, _, err = await runs.run(
        "export", "--db", db, "--format", "jsonl", "-o", str(here / "p.jsonl")
    )
    assert code == 0, err
    lines = (here / "p.jsonl").read_text(encoding="utf-8").splitlines()
    assert {json.loads(line)["url"] for line in lines} == pages

    code, _, err = await runs.run(
        "export", "--db", db, "--format", "csv", "-o", str(here / "p.csv")
    )
    assert code == 0, err
    with (here / "p.csv").open(newline="", encoding="utf-8") as f:
        assert {r["url"] for r in csv.DictReader(f)} == pages

    code, _, err = await runs.run(
        "export", "--db", db, "--format", "warc", "-o", str(here / "p.warc.gz")
    )
    assert code == 0, err
    with (here / "p.warc.gz").open("rb") as f:
        responses = [
            r.rec_headers.get_header("WARC-Target-URI")
            for r in ArchiveIterator(f)
            if r.rec_type == "response"
        ]
    assert sorted(responses) == sorted(answered)

    # `why` on one URL of each sort: a page, an error row, a redirect and its target, a URL
    # of the host whose robots.txt failed first. Concurrently: each is a Python start-up.
    sample = [
        chaos.seeds[0],
        chaos.of_kind("reset_mid_body")[0].url,
        chaos.of_kind("huge_header")[0].url,
        *(e.url for e in chaos.of_kind("redirect_latin1_location")[:2]),
        next(
            e.url
            for e in chaos.entries.values()
            if e.url.startswith(chaos.robots_host.origin + "/ok/")
        ),
    ]
    results = await asyncio.gather(*(runs.run("why", url, "--db", db) for url in sample))
    failed = [
        f"why {url}: exit {code}: {err.strip()[-300:]}"
        for url, (code, _, err) in zip(sample, results, strict=True)
        if code
    ]
    assert not failed, "\n".join(failed)


# ---------------------------------------------------------------------- the tests


async def test_chaos_crawl_stores_exactly_what_the_catalogue_says(chaos: Chaos, runs: Runs) -> None:
    assert len(chaos.entries) >= 2_000
    code, _, err = await runs.run("crawl", *chaos.seeds, "--db", runs.db, *CRAWL_FLAGS, "-q")
    assert code == 0, err
    assert_catalogue(runs.db, chaos)
    assert "Traceback" not in err, err  # a hostile page cost a logged internal error
    assert_robots_recovered(runs.db, chaos)
    await assert_tools_work(runs, chaos)


async def test_chaos_kill_9_then_resume_stores_the_same_rows(chaos: Chaos, runs: Runs) -> None:
    rng = random.Random(SEED_NOW + 1)
    total = len(chaos.entries)
    # Seeded kill points: after these many committed pages (so after varying numbers of
    # committed batches), each one later than the one before.
    points = sorted(rng.sample(range(total // 12, total * 3 // 4), KILLS))
    args = ["crawl", *chaos.seeds, *CRAWL_FLAGS]
    kept: set[tuple[Any, ...]] = set()
    for point in points:
        proc = await runs.start(*args, "--db", runs.db, "-q")
        end = time.monotonic() + DEADLINE
        # Polling the file: SQLite tells another process nothing of its commits.
        while (count := stored(runs.db)) < point:
            if proc.returncode is not None:
                err = runs.output(proc)[1][-3000:]
                pytest.fail(f"the crawl ended at {count} pages, before the kill at {point}: {err}")
            if time.monotonic() > end:
                pytest.fail(f"{point} pages not stored within {DEADLINE}s (have {count})")
            await asyncio.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        assert await proc.wait() == -signal.SIGKILL
        now = snapshot(runs.db)
        assert len(now) < total, "killed after the crawl had stored everything"
        assert kept <= now  # every run kept what the runs before it committed
        kept = now
        args = ["resume"]
    code, _, err = await runs.run("resume", "--db", runs.db, "-q")
    assert code == 0, err
    assert_catalogue(runs.db, chaos)
    assert kept <= snapshot(runs.db)  # committed rows were kept, not fetched again
    assert "Traceback" not in err, err
    assert_robots_recovered(runs.db, chaos)
    await assert_tools_work(runs, chaos)
