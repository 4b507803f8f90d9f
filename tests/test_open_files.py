"""Open files (crawler.pool): a crawl of more hosts than `ulimit -n` has room for keeps
its idle connections within the limit instead of running out of descriptors.

The crawls run as subprocesses under a lowered RLIMIT_NOFILE: the limit is per process,
and the test process' own must stay as it is.
"""

from __future__ import annotations

import json
import resource
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from support import rows

from crawler.pool import RESERVED_FILES

SERVER = str(Path(__file__).with_name("gap_server.py"))


def limited(soft: int, hard: int) -> Callable[[], None]:
    """A preexec_fn giving the child these limits on open files."""
    return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def crawl(argv: list[str], files: Callable[[], None]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crawler", "crawl", "-q", *argv],
        preexec_fn=files,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_crawl_of_more_hosts_than_open_files_keeps_its_idle_connections_within(
    tmp_path: Path,
) -> None:
    """200 hosts, each answering robots.txt, `/`, `/a` and `/b` on one kept-alive
    connection, under a limit of 160 open files: before, every host's idle connection
    stayed open (aiohttp keeps them 15 s, uncounted by its `limit`) and the crawl ran out
    of descriptors; now the pool closes the idle connection unused longest past
    160 - RESERVED_FILES - concurrency of them, and every page is stored."""
    count, limit, concurrency = 200, 160, 8
    log, db = tmp_path / "hits.json", str(tmp_path / "crawl.db")
    server = subprocess.Popen(
        [sys.executable, SERVER, "127.0.6.", str(count), str(log)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        seeds = tmp_path / "seeds.txt"
        seeds.write_text("".join(f"http://127.0.6.{i}:{port}/\n" for i in range(1, count + 1)))
        done = crawl(
            ["--seeds-file", str(seeds), "--db", db, "--concurrency", str(concurrency),
             "--per-host", "1", "--delay", "0"],
            limited(limit, limit),
        )  # fmt: skip
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=30)
    assert done.returncode == 0, done.stderr
    assert rows(db, "SELECT count(*) FROM pages WHERE status = 200") == [(3 * count,)]
    assert rows(db, "SELECT count(*) FROM pages WHERE error IS NOT NULL") == [(0,)]
    hits = json.loads(log.read_text())
    assert len(hits) == 4 * count
    # At most `concurrency` connections in use and the pool's idle ones (a few more: the
    # server counts a closed connection until it has read its end).
    most = max(open_ for *_, open_ in hits)
    assert most <= limit - RESERVED_FILES + 10


def test_concurrency_past_the_open_file_limit_is_refused_before_the_file_is_made(
    tmp_path: Path,
) -> None:
    db = tmp_path / "crawl.db"
    done = crawl(
        ["http://127.0.6.1:9/", "--db", str(db), "--concurrency", "100"], limited(150, 150)
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"crawler: error: --concurrency 100 needs {100 + RESERVED_FILES} open files and this "
        "process may open 150 (ulimit -n): raise the limit or lower --concurrency"
    ]
    assert not db.exists()


def test_a_resume_asking_for_more_connections_than_fit_changes_nothing(tmp_path: Path) -> None:
    db = str(tmp_path / "crawl.db")
    first = crawl(["http://127.0.6.1:9/", "--db", db, "--retries", "0"], limited(200, 200))
    assert first.returncode == 0, first.stderr  # one error row: nothing listens there
    stored = rows(db, "SELECT settings FROM crawl")
    again = subprocess.run(
        [sys.executable, "-m", "crawler", "resume", "--db", db, "--concurrency", "150"],
        preexec_fn=limited(200, 200),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 2
    assert again.stderr.strip().endswith("raise the limit or lower --concurrency")
    assert rows(db, "SELECT settings FROM crawl") == stored


def test_the_soft_limit_is_raised_to_the_hard_one() -> None:
    """A crawl uses the room the system gives it: `ulimit -n` is often 1024 with a hard
    limit far above."""
    code = "from crawler.pool import open_file_limit; print(open_file_limit())"
    done = subprocess.run(
        [sys.executable, "-c", code],
        preexec_fn=limited(128, 512),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == "512"
