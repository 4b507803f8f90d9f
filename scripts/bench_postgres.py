"""bench.py --postgres: the standard site crawled by 1, 2 and 4 workers on PostgreSQL and by
one SQLite process, interleaved, in one run (issue 12's speed target).

A throwaway PostgreSQL cluster (tests/pg.py's: Debian's server binaries, the `postgres` OS
user when running as root, a free loopback port, fsync and synchronous_commit off) serves a
fresh database per run. A PostgreSQL run is this file run as a script, under measure():

    bench_postgres.py DSN WORKERS CONCURRENCY -- CRAWLER crawl ARGS...

which starts `crawler crawl ARGS --db DSN`, waits until the crawl's row exists, starts
WORKERS - 1 `crawler work --db DSN --concurrency C`, and waits for them all; so the CPU and
the RSS measured are the whole tree's (the few ms this wrapper polls included). The
server's CPU over the run (its live processes plus the backends it reaped) is the database
time per page.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WORKERS = (1, 2, 4)  # the runners pg-1, pg-2, pg-4
RUNNERS = ("sqlite", *(f"pg-{n}" for n in WORKERS))


def cluster_cpu_s(data: Path) -> float:
    """CPU seconds of the cluster: the postmaster with its reaped children, and the live ones."""
    pid = int((data / "postmaster.pid").read_text().split()[0])
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        fields = text[text.rfind(")") + 2 :].split()
        ppid, utime, stime = int(fields[1]), int(fields[11]), int(fields[12])
        if int(entry.name) == pid:
            total += (utime + stime + int(fields[13]) + int(fields[14])) / tick
        elif ppid == pid:
            total += (utime + stime) / tick
    return total


async def counts(dsn: str) -> dict[str, Any]:
    """Pages, pages 200, the crawl's span and what is left queued, from the database."""
    import asyncpg

    con = await asyncpg.connect(dsn)
    try:
        pages, ok = await con.fetchrow(
            "SELECT count(*), count(*) FILTER (WHERE status = 200) FROM pages"
        )
        fetched = {r[0] for r in await con.fetch("SELECT url FROM pages WHERE status = 200")}
        started, finished = await con.fetchrow("SELECT started_at, finished_at FROM crawl")
        queued = await con.fetchval("SELECT count(*) FROM urls WHERE state = 'queued'")
    finally:
        await con.close()
    out: dict[str, Any] = {"pages": pages, "pages_200": ok, "fetched": fetched}
    out["queued_left"] = queued
    if finished:
        out["seconds"] = round(finished - started, 3)
    return out


async def crawl_exists(dsn: str) -> bool:
    import asyncpg

    try:
        con = await asyncpg.connect(dsn)
    except (OSError, asyncpg.PostgresError):
        return False
    try:
        return bool(await con.fetchval("SELECT count(*) FROM crawl"))
    except asyncpg.PostgresError:  # the schema is not there yet
        return False
    finally:
        await con.close()


def run_workers(dsn: str, workers: int, concurrency: int, crawl: list[str]) -> int:
    """The script's job: the crawl, then the extra workers once it exists; the worst exit."""
    first = subprocess.Popen([*crawl, "--db", dsn])
    others: list[subprocess.Popen[bytes]] = []
    try:
        deadline = time.monotonic() + 60
        while workers > 1 and not asyncio.run(crawl_exists(dsn)):
            if first.poll() is not None or time.monotonic() > deadline:
                print("bench_postgres: the crawl never appeared", file=sys.stderr)
                return 1
            time.sleep(0.05)
        cmd = [*crawl[: crawl.index("crawl")], "work", "--db", dsn, "-q"]
        cmd += ["--concurrency", str(concurrency)]
        others = [subprocess.Popen(cmd) for _ in range(workers - 1)]
        codes = [p.wait() for p in (first, *others)]
    finally:
        for p in (first, *others):
            if p.poll() is None:
                p.kill()
                p.wait()
    return max(abs(c) for c in codes)


def main() -> int:
    ap = argparse.ArgumentParser(description="one PostgreSQL run of bench.py --postgres")
    ap.add_argument("dsn")
    ap.add_argument("workers", type=int)
    ap.add_argument("concurrency", type=int)
    ap.add_argument("crawl", nargs=argparse.REMAINDER, help="-- CRAWLER crawl ARGS")
    args = ap.parse_args()
    crawl = args.crawl[1:] if args.crawl[:1] == ["--"] else args.crawl
    return run_workers(args.dsn, args.workers, args.concurrency, crawl)


if __name__ == "__main__":
    sys.exit(main())
