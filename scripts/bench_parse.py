"""Micro-benchmark of the parser alone: µs per page of `extract_links`, before and after a change.

    .venv/bin/python scripts/bench_parse.py [--before REV] [--pages 400] [--reps 15]

"before" is crawler/parser.py as of git revision REV (default 2ae3613, the parser that
found <a> links only), loaded beside the current one; both canonicalise with today's
crawler.urls, so only the parse differs. Two page sets, built in memory:

- bench: pages of the standard benchmark site (scripts/bench_site.py: ~15 KB, ~31 links);
- assets: the same pages with what real pages carry besides links: a stylesheet, an
  icon, a canonical link and two scripts in <head>, four images (one with a srcset) in
  the body, and ~9 more links (~40 in all).

Reps alternate before/after and measure CPU time (process_time); the best rep of each is
reported (the least disturbed by the other tenants of a shared machine: their load still
costs us caches), with the median beside it.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from bench_site import Generator  # noqa: E402

from crawler import parser as after  # noqa: E402


def load_before(rev: str) -> ModuleType:
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{rev}:crawler/parser.py"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "parser_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("parser_before", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["parser_before"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def pages(n: int) -> tuple[list[tuple[str, bytes]], list[tuple[str, bytes]]]:
    gen = Generator(hosts=2, pages=n, links=30, size_kb=15, seed=1, port=18080)
    plain, rich = [], []
    for i in range(n):
        nav, body = gen.hrefs(0, i)
        url = f"{gen.origin(0)}/d{i // 100}/{i}.html"
        html = gen.html(0, f"page {i}", nav, body)
        plain.append((url, html.encode()))
        head = (
            '<link rel="stylesheet" href="/static/site.css">\n'
            '<link rel="icon" href="/favicon.ico">\n'
            f'<link rel="canonical" href="{url}">\n'
            '<script src="/static/app.js"></script>\n'
            '<script async src="https://cdn.example.net/analytics.js"></script>\n</head>'
        )
        images = (
            f'<img src="/img/{i}.jpg" alt="a picture">\n'
            '<img src="/img/logo.png" srcset="/img/logo.png 1x, /img/logo@2x.png 2x">\n'
            f'<img src="/img/{i + 1}-thumb.jpg"><img src="https://cdn.example.net/banner.gif">\n'
        )
        more = "".join(f'<li><a href="/extra/{i}/{j}.html">more</a></li>\n' for j in range(9))
        html = html.replace("</head>", head, 1).replace("<main>", f"<main>\n{images}", 1)
        html = html.replace("</main>", f'<ul class="more">\n{more}</ul>\n</main>', 1)
        rich.append((url, html.encode()))
    return plain, rich


def per_page(extract: Callable[..., object], site: list[tuple[str, bytes]]) -> float:
    # CPU time of this process: on a shared machine, wall time would count the others' work.
    start = time.process_time()
    for url, body in site:
        extract(body, url, "text/html; charset=utf-8")
    return (time.process_time() - start) / len(site) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", default="2ae3613", help="git revision of the old parser")
    ap.add_argument("--pages", type=int, default=400)
    ap.add_argument("--reps", type=int, default=15)
    args = ap.parse_args()
    before = load_before(args.before)
    sets = dict(zip(("bench", "assets"), pages(args.pages), strict=True))
    found = after.extract_links(sets["assets"][0][1], sets["assets"][0][0])
    print(
        f"{args.pages} pages a set; an 'assets' page: {len(found.links)} links, "
        f"{len(found.resources)} subresources, canonical {found.canonical is not None}"
    )
    print(f"{'set':8} {'parser':8} {'best µs/page':>13} {'median':>8}")
    for name, site in sets.items():
        times: dict[str, list[float]] = {"before": [], "after": []}
        for _ in range(args.reps):
            times["before"].append(per_page(before.extract_links, site))
            times["after"].append(per_page(after.extract_links, site))
        for label, runs in times.items():
            print(f"{name:8} {label:8} {min(runs):13.1f} {statistics.median(runs):8.1f}")
        ratio = min(times["after"]) / min(times["before"])
        print(f"{name:8} after/before {ratio:.3f}")


if __name__ == "__main__":
    main()
