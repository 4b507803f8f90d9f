"""Run `crawler ARGS...` under cProfile for bench.py's profile summary.

    python scripts/bench_profile.py OUT.prof crawl SEED... --db ...

Writes the cProfile stats to OUT.prof and, to OUT.prof.json, the CPU seconds of the
process and of its main thread: cProfile sees only the event loop's thread, SQLite's work
runs in aiosqlite's, so the split says how much of the CPU the profile covers.
"""

from __future__ import annotations

import cProfile
import json
import resource
import sys
import time
from pathlib import Path


def cpu_split() -> dict[str, float]:
    """CPU seconds of the whole process and of this (the event loop's) thread.

    RUSAGE_SELF counts threads that already ended too, such as aiosqlite's.
    """
    both = resource.getrusage(resource.RUSAGE_SELF)
    mine = resource.getrusage(resource.RUSAGE_THREAD)
    total = both.ru_utime + both.ru_stime
    main = mine.ru_utime + mine.ru_stime
    return {"process_cpu_s": round(total, 3), "main_thread_cpu_s": round(main, 3)}


def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    out, argv = sys.argv[1], sys.argv[2:]
    from crawler.cli import cli

    # The main thread's CPU time, not wall time: time spent waiting in the event loop's
    # poll (C code under uvloop, invisible to cProfile) must not be charged to whatever
    # Python frame happens to be on top, nor may aiosqlite's thread's CPU.
    profile = cProfile.Profile(time.thread_time)
    code: int | str | None = 0
    profile.enable()
    try:
        cli.main(args=argv, prog_name="crawler")
    except SystemExit as exc:
        code = exc.code
    finally:
        profile.disable()
        profile.dump_stats(out)
        Path(out + ".json").write_text(json.dumps(cpu_split()))
    return code if isinstance(code, int) else 1


if __name__ == "__main__":
    sys.exit(main())
