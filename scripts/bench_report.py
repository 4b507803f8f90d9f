"""Tables for bench.py: medians, the results table, the targets, the profile, the machine."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import pstats
import statistics
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# The targets, checked against the medians of one run.
TARGET_VS_SCRAPY = 10.0  # crawler pages/s over scrapy-sqlite pages/s, at least
TARGET_VS_LOOP = 0.95  # crawler pages/s over aiohttp-loop pages/s, at least (issue 11)
TARGET_CPU_VS_LOOP = 1.05  # crawler CPU ms/page over aiohttp-loop's, at most (issue 11)
TARGET_VS_B = 0.97  # crawler pages/s over crawler-b's, at least; CPU/page at most 1/0.97 (issue 10)
TARGET_METRICS = 0.98  # crawler-metrics pages/s over crawler's, at least (issue 15)
TARGET_RSS_MB = 120.0  # crawler peak RSS on the site, at most
TARGET_FRONTIER_RSS_MB = 300.0  # crawler peak RSS with a frontier past 1M URLs, at most
TARGET_FRONTIER_10M_RSS_MB = 600.0  # the same past 10M URLs (issue 11)


# ---------------------------------------------------------------- tables


COLUMNS = [  # header, key, format
    ("runner", "name", "{}"),
    ("pages", "pages", "{:.0f}"),
    ("pages/s", "pages_per_s", "{:.0f}"),
    ("wall p/s", "wall_pages_per_s", "{:.0f}"),
    ("CPU s", "cpu_s", "{:.2f}"),
    ("CPU ms/page", "cpu_ms_per_page", "{:.3f}"),
    ("main ms/page", "main_ms_per_page", "{:.3f}"),
    ("RSS MB", "peak_rss_mb", "{:.0f}"),
    ("fetched/expected", "fetched_vs_expected", "{}"),
    ("private", "srv_private", "{:.0f}"),
    ("repeats", "srv_repeats", "{:.0f}"),
    ("srv CPU s", "server_cpu_s", "{:.2f}"),
]
MEDIAN_KEYS = (
    "pages", "pages_per_s", "wall_pages_per_s", "cpu_s", "cpu_ms_per_page", "main_ms_per_page",
    "peak_rss_mb",
    "fetched_expected", "expected", "unexpected", "private_fetched", "srv_private",
    "srv_repeats", "srv_requests", "server_cpu_s", "seconds", "wall_s", "metrics_scrapes",
)  # fmt: skip
NOTES = """\
pages/s: pages over the runner's own crawl time (start-up excluded; wall p/s includes it).
CPU: user + system of the runner's process tree; CPU ms/page = CPU s per 1000 pages;
main ms/page: the same for its processes' main threads (the event loops) alone.
private, repeats: requests the server saw for /private/ (robots.txt disallows it; the
aiohttp loop skips it by rule) and for a URL already requested in the same run.
srv CPU s: the server's CPU during the run."""


def medians(runs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    good = [r for r in runs if r["name"] == name and "error" not in r]
    row: dict[str, Any] = {"name": name, "runs": len(good)}
    row["failed"] = len([r for r in runs if r["name"] == name]) - len(good)
    for key in MEDIAN_KEYS:
        values = [r[key] for r in good if isinstance(r.get(key), int | float)]
        if values:
            row[key] = statistics.median(values)
    if "fetched_expected" in row:
        row["fetched_vs_expected"] = f"{row['fetched_expected']:.0f}/{row['expected']:.0f}"
    return row


def render(rows: list[dict[str, Any]]) -> str:
    """The medians as a Markdown table."""
    cells = [[header for header, _, _ in COLUMNS]]
    for row in rows:
        if not row.get("runs"):
            cells.append([row["name"], "FAILED", *[""] * (len(COLUMNS) - 2)])
        else:
            cells.append([fmt.format(row[key]) if key in row else "-" for _, key, fmt in COLUMNS])
    widths = [max(len(r[i]) for r in cells) for i in range(len(COLUMNS))]

    def line(r: list[str]) -> str:
        pairs = enumerate(zip(r, widths, strict=True))
        padded = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in pairs]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join("-" * (w + 1) + ("-" if i == 0 else ":") for i, w in enumerate(widths))
    return "\n".join([line(cells[0]), rule + "|", *map(line, cells[1:])])


def rep_ratios(
    runs: list[dict[str, Any]], a: str, b: str, key: str, key_b: str | None = None
) -> list[float]:
    """`a`'s value of `key` over `b`'s of `key_b` (default: `key`), rep by rep: the two
    ran one after the other, so each ratio saw one state of the machine (its speed drifts
    by 10-20% within minutes)."""

    def values(name: str, k: str) -> dict[int, float]:
        return {
            r["rep"]: r[k]
            for r in runs
            if r["name"] == name and "error" not in r and r.get("rep") is not None
            if isinstance(r.get(k), int | float)
        }

    mine, theirs = values(a, key), values(b, key_b or key)
    return [mine[rep] / theirs[rep] for rep in sorted(mine) if theirs.get(rep)]


def targets(rows: dict[str, dict[str, Any]], runs: list[dict[str, Any]] | None = None) -> list[str]:
    """The issue's targets, as lines: measured value, target, ok or MISSED; with `runs`,
    the ratios to the bare loop also rep by rep (the spread the medians hide)."""
    crawler = rows.get("crawler", {})
    out = []

    def check(label: str, value: float | None, goal: str, ok: bool | None) -> None:
        if value is None:
            return
        out.append(f"  {label:<38} {value:>8.2f}   target {goal:<8} {'ok' if ok else 'MISSED'}")

    def per_rep(key: str, baseline: str = "aiohttp-loop", key_b: str | None = None) -> None:
        if ratios := rep_ratios(runs or [], "crawler", baseline, key, key_b):
            out[-1] += "   per rep " + " ".join(f"{x:.2f}" for x in ratios)

    def info(label: str, key: str, baseline: str) -> None:
        """A ratio the issues set no target for, shown beside the targets."""
        value, base = crawler.get(key), rows.get(baseline, {}).get(key)
        if value and base:
            out.append(f"  {label:<38} {value / base:>8.2f}   (no target)")
            per_rep(key, baseline)

    rate = crawler.get("pages_per_s")
    scrapy = rows.get("scrapy-sqlite", {}).get("pages_per_s")
    loop = rows.get("aiohttp-loop", {}).get("pages_per_s")
    if rate and scrapy:
        x = rate / scrapy
        check(
            "crawler / scrapy-sqlite pages/s", x, f">= {TARGET_VS_SCRAPY:g}x", x >= TARGET_VS_SCRAPY
        )
    if rate and loop:
        x = rate / loop
        check("crawler / aiohttp-loop pages/s", x, f">= {TARGET_VS_LOOP:g}", x >= TARGET_VS_LOOP)
        per_rep("pages_per_s")
    ms, loop_ms = (
        crawler.get("cpu_ms_per_page"),
        rows.get("aiohttp-loop", {}).get("cpu_ms_per_page"),
    )
    if ms and loop_ms:
        x = ms / loop_ms
        goal = f"<= {TARGET_CPU_VS_LOOP:g}"
        check("crawler / aiohttp-loop CPU ms/page", x, goal, x <= TARGET_CPU_VS_LOOP)
        per_rep("cpu_ms_per_page")
    # The crawler's event loop alone (its SQLite writer thread left out) against the whole
    # bare loop, which has no other thread: the part of the gap that is not the writer.
    main = crawler.get("main_ms_per_page")
    if main and loop_ms:
        label = "crawler main thread / aiohttp-loop CPU"
        out.append(f"  {label:<38} {main / loop_ms:>8.2f}   (no target)")
        per_rep("main_ms_per_page", key_b="cpu_ms_per_page")
    # The bare loop keeping the same bytes: how much of the gap above is the storing.
    info("crawler / aiohttp-sqlite pages/s", "pages_per_s", "aiohttp-sqlite")
    info("crawler / aiohttp-sqlite CPU ms/page", "cpu_ms_per_page", "aiohttp-sqlite")
    b = rows.get("crawler-b", {})
    if rate and b.get("pages_per_s"):
        x = rate / b["pages_per_s"]
        check("crawler / crawler-b pages/s", x, f">= {TARGET_VS_B:g}", x >= TARGET_VS_B)
    if ms and b.get("cpu_ms_per_page"):
        x = ms / b["cpu_ms_per_page"]
        goal = f"<= {1 / TARGET_VS_B:.3f}"
        check("crawler / crawler-b CPU ms/page", x, goal, x <= 1 / TARGET_VS_B)
    scraped = rows.get("crawler-metrics", {}).get("pages_per_s")
    if rate and scraped:
        x = scraped / rate
        check("crawler-metrics / crawler pages/s", x, f">= {TARGET_METRICS:g}", x >= TARGET_METRICS)
    two = rows.get("crawler-p2", {}).get("pages_per_s")
    if two and rate:
        out.append(f"  {'crawler --processes 2 / crawler pages/s':<38} {two / rate:>8.2f}")
    rss = crawler.get("peak_rss_mb")
    if rss:
        check("crawler peak RSS MB", rss, f"<= {TARGET_RSS_MB:g}", rss <= TARGET_RSS_MB)
    if crawler.get("cpu_ms_per_page"):
        ms = crawler["cpu_ms_per_page"]
        out.append(f"  {'crawler CPU s per 1000 pages':<38} {ms:>8.2f}")
    # Never a quiet "ok" over a run that hung: a crawl killed at --timeout once looked like
    # one rep fewer (a hang at the end of a crawl went unseen that way).
    for name, row in rows.items():
        if row.get("failed"):
            total = row["failed"] + row.get("runs", 0)
            out.append(
                f"  {name}: {row['failed']} of {total} runs FAILED (killed at --timeout, or a "
                "non-zero exit: see the log); the medians leave them out"
            )
    return out


# ---------------------------------------------------------------- profile


def summarize_profile(prof: Path, top: int) -> dict[str, Any]:
    """The top functions of a cProfile dump by own and by cumulative time."""
    stats = pstats.Stats(str(prof))
    entries = []
    for (file, line, func), (cc, nc, tt, ct, _) in stats.stats.items():  # type: ignore[attr-defined]
        entries.append(
            {
                "function": short_name(file, line, func),
                "calls": nc,
                "primitive_calls": cc,
                "own_s": round(tt, 3),
                "cumulative_s": round(ct, 3),
            }
        )
    by_own = sorted(entries, key=lambda e: -e["own_s"])[:top]
    by_cum = sorted(
        (e for e in entries if not is_plumbing(e["function"])), key=lambda e: -e["cumulative_s"]
    )[:top]
    return {
        "profiled_s": round(stats.total_tt, 2),  # type: ignore[attr-defined]
        "top_own": by_own,
        "top_cumulative": by_cum,
    }


def short_name(file: str, line: int, func: str) -> str:
    if file == "~":
        return func  # a builtin: "<method 'execute' of 'sqlite3.Cursor' objects>"
    path = Path(file)
    parts = path.parts
    for anchor in ("site-packages", "crawler"):
        if anchor in parts:
            i = parts.index(anchor)
            rel = "/".join(parts[i + 1 :] if anchor == "site-packages" else parts[i:])
            return f"{rel}:{line}({func})"
    if "lib" in parts and "python3" in "".join(parts):
        return f"{path.name}:{line}({func})"
    return f"{path.name}:{line}({func})"


def is_plumbing(name: str) -> bool:
    """Frames that wrap everything (the CLI, the event loop): no news in a cumulative top list."""
    plumbing = (
        "cli.py",
        "click/",
        "asyncio/runners.py",
        "asyncio/base_events.py",
        "run.py",
        "<built-in method builtins.exec>",
        "bench_profile",
        "events.py",
        "core.py",
        "decorators.py",
    )
    return any(p in name for p in plumbing)


def render_profile(p: dict[str, Any]) -> str:
    if "error" in p:
        return f"profile: FAILED: {p['error'][-300:]}"
    head = (
        f"profile ({p['profiler']}): wall {p['wall_s']} s, CPU {p['cpu_s']} s, "
        f"main thread {p['main_thread_cpu_s']} s, other threads "
        f"{p['process_cpu_s'] - p['main_thread_cpu_s']:.2f} s"
    )
    lines = [head, "", "top by own time:", f"  {'own s':>7} {'cum s':>7} {'calls':>9}  function"]
    for e in p["top_own"]:
        lines.append(
            f"  {e['own_s']:>7.2f} {e['cumulative_s']:>7.2f} {e['calls']:>9}  {e['function']}"
        )
    lines += ["", "top by cumulative time:", f"  {'cum s':>7} {'own s':>7} {'calls':>9}  function"]
    for e in p["top_cumulative"]:
        lines.append(
            f"  {e['cumulative_s']:>7.2f} {e['own_s']:>7.2f} {e['calls']:>9}  {e['function']}"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------- whole reports


def site_text(results: dict[str, Any]) -> str:
    """What the site benchmark prints: conditions, table, notes, targets, profile."""
    parts = [machine_line(results["machine"]), results["conditions"], "", results["table"]]
    parts += ["", NOTES]
    ceiling = results.get("server_ceiling")
    if ceiling and ceiling.get("pages_per_s"):
        parts.append(
            f"server ceiling: aiohttp fetching the {ceiling['pages']} URLs without parsing: "
            f"{ceiling['pages_per_s']:.0f} pages/s, server CPU {ceiling['server_cpu_s']} s"
        )
    if results["targets"]:
        parts += ["", "targets (issues 4, 10, 11, 15):", *results["targets"]]
    if "profile" in results:
        parts += ["", render_profile(results["profile"])]
    return "\n" + "\n".join(parts)


def frontier_text(results: dict[str, Any], concurrency: int, per_host: int) -> str:
    r = results["frontier"]
    n = r["links_per_page"]
    parts = [
        machine_line(results["machine"]),
        f"frontier: {r['hosts']} hosts, page /n links to /n*{n}+1 .. /n*{n}+{n}; "
        f"concurrency {concurrency}, per host {per_host}, --max-pages {r['max_pages']}",
    ]
    if "error" in r:
        return "\n".join([*parts, f"FAILED (exit {r['exit']}): {r['error'][-500:]}"])
    target = TARGET_FRONTIER_10M_RSS_MB if r["queued"] >= 10_000_000 else TARGET_FRONTIER_RSS_MB
    ok = "ok" if r["peak_rss_mb"] < target else "MISSED"
    parts += [
        f"  pages fetched      {r['pages']:>10}",
        f"  queued URLs        {r['queued']:>10}   (urls WHERE state = 'queued')",
        f"  urls, links rows   {r['urls']:>10} {r['links']:>10}",
        f"  database MB        {r['db_mb']:>10}",
        f"  wall s, CPU s      {r['wall_s']:>10} {r['cpu_s']:>10}",
        f"  peak RSS MB        {r['peak_rss_mb']:>10}   target < {target:g}: {ok}",
    ]
    return "\n" + "\n".join(parts)


# ---------------------------------------------------------------- machine


def machine(server: str, scrapy_python: Path | None) -> dict[str, Any]:
    """CPU, cores, memory, OS, Python and package versions, the server and the tree's commit."""
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gb = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_gb = round(int(Path("/proc/meminfo").read_text().split()[1]) / 1024**2, 1)
    packages = {}
    for name in ("crawler", "aiohttp", "selectolax", "aiosqlite", "yarl", "uvloop", "protego"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            packages[name] = metadata.version(name)
    if scrapy_python is not None:
        code = (
            "import json, importlib.metadata as m, sys; print(json.dumps({**{n: m.version(n) "
            "for n in ('scrapy', 'twisted', 'lxml', 'parsel')}, 'python': sys.version.split()[0]}))"
        )
        out = subprocess.run([str(scrapy_python), "-c", code], capture_output=True, text=True)
        with contextlib.suppress(json.JSONDecodeError):
            packages["scrapy_venv"] = json.loads(out.stdout)
    git = subprocess.run(
        ["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "memory_gb": mem_gb,
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "packages": packages,
        "server": server,
        "git": git.stdout.strip() or None,
    }


def machine_line(m: dict[str, Any]) -> str:
    p = m["packages"]
    versions = ", ".join(f"{k} {v}" for k, v in p.items() if isinstance(v, str))
    scrapy = p.get("scrapy_venv", {})
    if scrapy:
        versions += f", Scrapy {scrapy.get('scrapy')} (Twisted {scrapy.get('twisted')})"
    return (
        f"machine: {m['cpu']}, {m['usable_cores']} cores, {m['memory_gb']} GB, "
        f"Python {m['python']}; {versions}; server {m['server']}; tree {m['git']}"
    )
