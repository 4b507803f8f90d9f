"""What `bench.py --broad` computes from the server's request log: the politeness bound and more.

A run's log (bench_broad_server.py: `start end addr status bytes "target"` per request) is
cut to the window [T0, T0 + W]: T0 is the first request the server saw in the run, W the
window (--window). Definitions, with d = the delay (1 s) and lat(url) the URL's latency:

- **achieved**: distinct pages (200 HTML, robots.txt not counted) answered by T0 + W.
- **bound** (the politeness bound): per host, a sequential crawl (one request at a time)
  from the host's first request t0 in this run: request k+1 starts at
  max(start_k + d, end_k), end = start + lat. Requests follow the runner's own order for
  that host (its distinct requests in the log, robots.txt, 404s and /private/ included, as
  each costs a slot), then the host's pages it did not request, breadth-first. It counts
  pages answered by T0 + W; small hosts stop at their page count, big ones never run out.
  Summed over the hosts the runner requested.
- **ideal**: the same from when each host became available rather than from its first
  request: T0 for seeded hosts, for a hidden host the end of the first response that linked
  it. A host the runner never reached counts here (robots.txt first), not in `bound`.
- **small done**: seconds from T0 until the last page of the last small host (seeded and
  hidden) was answered, when all were within the window; its ideal: the largest
  (available + sequential time to crawl all its pages) - T0 over those hosts.
- **min gap**: the smallest time between two request starts to one host, server-side,
  robots.txt included, over the whole run (shutdown too); `gap slips` counts hosts whose
  smallest gap is below d - 10 ms; `overlaps` hosts that had two requests open at once.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import chain, pairwise
from typing import Any

from bench_broad_site import Site

SLIP_S = 0.010  # a gap this much below the delay is a politeness slip


@dataclass(frozen=True, slots=True)
class Request:
    start: float
    end: float
    addr: str
    status: int
    size: int
    path: str


def parse(lines: Iterable[str]) -> list[Request]:
    out = []
    for line in lines:
        parts = line.split(" ", 5)
        if len(parts) == 6:
            start, end, addr, status, size, target = parts
            path = target.strip().strip('"')
            out.append(Request(float(start), float(end), addr, int(status), int(size), path))
    out.sort(key=lambda r: r.start)
    return out


def simulate(
    site: Site, addr: str, t0: float, order: Iterable[str], until: float, delay: float
) -> tuple[int, float]:
    """Pages a sequential, polite crawl of `order` from t0 answers by `until`, and when
    its last request would end (for a finite order; inf when cut at `until`)."""
    pages, start, end = 0, t0, t0
    for path in order:
        if start > until and site.kind[addr] == "big":
            return pages, float("inf")
        end = start + site.latency(addr, path)
        if end <= until and site.is_page(addr, path):
            pages += 1
        start = max(start + delay, end)
    return pages, end


def crawl_order(site: Site, addr: str, requested: list[str]) -> Iterator[str]:
    """The runner's distinct requests to `addr`, then the pages it did not request."""
    seen = dict.fromkeys(requested or ["/robots.txt"])
    return chain(seen, (p for p in site.order(addr) if p not in seen))


def analyse(site: Site, reqs: list[Request], window: float, delay: float) -> dict[str, Any]:
    """The run's numbers (see the module docstring); {} when the server saw nothing."""
    if not reqs:
        return {}
    t0 = reqs[0].start
    until = t0 + window
    by_host: dict[str, list[Request]] = defaultdict(list)
    for r in reqs:
        by_host[r.addr].append(r)

    answered: dict[str, dict[str, float]] = defaultdict(dict)  # addr -> page -> first end
    discovered: dict[str, float] = {}
    private = repeats = 0
    for r in reqs:
        private += r.path.startswith("/private/")
        if r.status != 200 or r.end > until or not site.is_page(r.addr, r.path):
            continue
        pages = answered[r.addr]
        if r.path in pages:
            continue
        pages[r.path] = r.end
        if site.kind[r.addr] == "big" and r.path != "/":
            for h in site.hidden_linked(r.addr, int(r.path[3:])):
                discovered[h] = min(discovered.get(h, r.end), r.end)

    gaps: dict[str, float] = {}
    overlaps = 0
    for addr, rs in by_host.items():
        repeats += len(rs) - len({r.path for r in rs})
        if len(rs) > 1:
            gaps[addr] = min(b.start - a.start for a, b in pairwise(rs))
            overlaps += any(b.start < a.end for a, b in pairwise(rs))

    bound = ideal = 0
    kinds = ("big", "small", "hidden")
    per_kind = {k: {"pages": 0, "bound": 0, "ideal": 0, "site_pages": 0} for k in kinds}
    small_done: dict[str, list[float]] = {"small": [], "hidden": []}
    small_ideal: dict[str, list[float]] = {"small": [], "hidden": []}
    small_ideal_first: list[float] = []
    not_done = {"small": 0, "hidden": 0}
    for addr in site.addrs:
        kind = site.kind[addr]
        rs = by_host.get(addr, [])
        requested = [r.path for r in rs if r.start <= until]
        got = len(answered.get(addr, {}))
        pk = per_kind[kind]
        pk["pages"] += got
        pk["site_pages"] += site.pages.get(addr, 0)
        available = t0 if kind != "hidden" else discovered.get(addr)
        if rs and rs[0].start <= until:
            n, finish_first = simulate(
                site, addr, rs[0].start, crawl_order(site, addr, requested), until, delay
            )
            bound += n
            pk["bound"] += n
            if kind != "big":
                small_ideal_first.append(finish_first)
        if available is not None and available <= until:
            n, finish = simulate(
                site, addr, available, crawl_order(site, addr, requested), until, delay
            )
            ideal += n
            pk["ideal"] += n
            if kind != "big":
                small_ideal[kind].append(finish)
        if kind != "big":
            if got == site.pages[addr]:
                small_done[kind].append(max(answered[addr].values()))
            else:
                not_done[kind] += 1

    out: dict[str, Any] = {
        "window_s": window,
        "t0": t0,
        "pages": sum(len(p) for p in answered.values()),
        "bound": bound,
        "ideal": ideal,
        "hosts_requested": sum(1 for rs in by_host.values() if rs[0].start <= until),
        "hidden_discovered": sum(1 for t in discovered.values() if t <= until),
        "requests": len(reqs),
        "requests_in_window": sum(1 for r in reqs if r.start <= until),
        "robots": sum(1 for r in reqs if r.path == "/robots.txt"),
        "private": private,
        "repeats": repeats,
        "not_found": sum(1 for r in reqs if r.status == 404),
        "min_gap_ms": round(1000 * min(gaps.values()), 1) if gaps else None,
        "gap_slips": sum(1 for g in gaps.values() if g < delay - SLIP_S),
        "overlaps": overlaps,
        "per_kind": per_kind,
    }
    out["pct_bound"] = round(100 * out["pages"] / bound, 1) if bound else None
    out["pct_ideal"] = round(100 * out["pages"] / ideal, 1) if ideal else None
    small_total = per_kind["small"]["site_pages"] + per_kind["hidden"]["site_pages"]
    small_got = per_kind["small"]["pages"] + per_kind["hidden"]["pages"]
    out["small_pct"] = round(100 * small_got / small_total, 1) if small_total else None
    hidden_total = per_kind["hidden"]["site_pages"]
    out["hidden_pct"] = (
        round(100 * per_kind["hidden"]["pages"] / hidden_total, 1) if hidden_total else None
    )
    both_ideal = small_ideal["small"] + small_ideal["hidden"]
    if both_ideal:
        out["small_ideal_s"] = round(max(both_ideal) - t0, 2)
    if small_ideal_first:
        out["small_ideal_first_request_s"] = round(max(small_ideal_first) - t0, 2)
    both_done = small_done["small"] + small_done["hidden"]
    if not any(not_done.values()) and both_done:
        out["small_done_s"] = round(max(both_done) - t0, 2)
        if out.get("small_ideal_s"):
            out["small_x_ideal"] = round(out["small_done_s"] / out["small_ideal_s"], 2)
    # The same for the seeded and the hidden small hosts apart (JSON only).
    for kind in ("small", "hidden"):
        label = "seeded" if kind == "small" else "hidden"
        out[f"{label}_not_done"] = not_done[kind]
        if small_ideal[kind]:
            out[f"{label}_ideal_s"] = round(max(small_ideal[kind]) - t0, 2)
        if not not_done[kind] and small_done[kind]:
            out[f"{label}_done_s"] = round(max(small_done[kind]) - t0, 2)
    return out


# ---------------------------------------------------------------- tables

COLUMNS = [  # header, key, format
    ("runner", "name", "{}"),
    ("pages", "pages", "{:.0f}"),
    ("bound", "bound", "{:.0f}"),
    ("% bound", "pct_bound", "{:.1f}"),
    ("ideal", "ideal", "{:.0f}"),
    ("% ideal", "pct_ideal", "{:.1f}"),
    ("small done s", "small_done", "{}"),
    ("ideal s", "small_ideal_s", "{:.1f}"),
    ("x ideal", "small_x_ideal", "{:.2f}"),
    ("hidden %", "hidden_pct", "{:.1f}"),
    ("min gap ms", "min_gap_ms", "{:.0f}"),
    ("slips", "gap_slips", "{:.0f}"),
    ("RSS MB", "peak_rss_mb", "{:.0f}"),
    ("CPU s", "cpu_window_s", "{:.1f}"),
    ("srv CPU s", "server_cpu_window_s", "{:.1f}"),
]
MEDIAN_KEYS = (
    "pages", "bound", "pct_bound", "ideal", "pct_ideal", "small_done_s", "small_ideal_s",
    "small_x_ideal", "small_pct", "hidden_pct", "min_gap_ms", "gap_slips", "overlaps",
    "peak_rss_mb", "cpu_window_s", "cpu_s", "server_cpu_window_s", "server_cpu_s", "private",
    "repeats", "hosts_requested", "hidden_discovered",
)  # fmt: skip
NOTES = """\
pages: distinct pages answered within the window (robots.txt not counted). bound: the
politeness bound from each host's first request, in the runner's order; ideal: the same
from when each host became available (the run's first request; for hidden hosts, the
answer of the first page linking them). small done s: when every page of every small host
was answered (else the share of their pages, in brackets), against its ideal. hidden %:
share of the hidden hosts' pages fetched. min gap: smallest server-side gap between two
request starts to one host (robots.txt included); slips: hosts with a gap < delay - 10 ms.
CPU s: the runner's process tree from its start to the SIGINT; srv CPU s: the server's."""


def medians(runs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    good = [r for r in runs if r["name"] == name and "error" not in r]
    row: dict[str, Any] = {"name": name, "runs": len(good)}
    row["failed"] = len([r for r in runs if r["name"] == name]) - len(good)
    for key in MEDIAN_KEYS:
        values = [r[key] for r in good if isinstance(r.get(key), int | float)]
        if values:
            row[key] = statistics.median(values)
    # Done times only mean something when every run finished the small hosts.
    if good and any("small_done_s" not in r for r in good):
        row.pop("small_done_s", None)
        row.pop("small_x_ideal", None)
    if "small_done_s" in row:
        row["small_done"] = f"{row['small_done_s']:.1f}"
    elif "small_pct" in row:
        row["small_done"] = f"({row['small_pct']:.0f}%)"
    return row


def render(rows: list[dict[str, Any]]) -> str:
    cells = [[header for header, _, _ in COLUMNS]]
    for row in rows:
        if not row.get("runs"):
            cells.append([row["name"], "FAILED", *[""] * (len(COLUMNS) - 2)])
        else:
            cells.append([fmt.format(row[key]) if key in row else "-" for _, key, fmt in COLUMNS])
    widths = [max(len(r[i]) for r in cells) for i in range(len(COLUMNS))]

    def line(r: list[str]) -> str:
        pairs = enumerate(zip(r, widths, strict=True))
        return "| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in pairs) + " |"

    rule = "|" + "|".join("-" * (w + 1) + ("-" if i == 0 else ":") for i, w in enumerate(widths))
    return "\n".join([line(cells[0]), rule + "|", *map(line, cells[1:])])


TARGET_PCT_BOUND = 90.0
TARGET_SMALL_X = 1.5


def targets(rows: dict[str, dict[str, Any]]) -> list[str]:
    crawler = rows.get("crawler", {})
    scrapy = rows.get("scrapy", {})
    out = []
    pct = crawler.get("pct_bound")
    if pct is not None:
        ok = "ok" if pct >= TARGET_PCT_BOUND else "MISSED"
        out.append(f"  crawler % of the politeness bound   {pct:>7.1f}   target >= 90    {ok}")
    x = crawler.get("small_x_ideal")
    if x is not None:
        ok = "ok" if x <= TARGET_SMALL_X else "MISSED"
        out.append(f"  small hosts done / ideal            {x:>7.2f}   target <= 1.5   {ok}")
    elif crawler.get("runs"):
        share = crawler.get("small_pct")
        out.append(f"  small hosts done / ideal            not done in the window "
                   f"({share}% of their pages)   target <= 1.5   MISSED")  # fmt: skip
    if crawler.get("pages") and scrapy.get("pages"):
        ratio = crawler["pages"] / scrapy["pages"]
        out.append(f"  crawler / scrapy pages in window    {ratio:>7.2f}")
    return out
