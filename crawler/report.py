"""Human-readable output: the end-of-crawl summary and `crawler stats` tables (rich)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from rich.console import Console
from rich.table import Table

from crawler.engine import Summary


def print_summary(summary: Summary) -> None:
    console = Console(stderr=True, highlight=False)
    rate = summary.pages / summary.elapsed if summary.elapsed > 0 else 0.0
    state = "stopped; `crawler resume` continues it" if summary.interrupted else "done"
    console.print(
        f"crawl {state}: {summary.pages:,} pages this run ({rate:,.1f}/s over "
        f"{summary.elapsed:,.1f}s), {summary.errors:,} network errors, "
        f"{summary.total_pages:,} pages in the database"
    )


def print_stats(data: dict[str, Any]) -> None:
    console = Console(highlight=False)
    started = data.get("started_at")
    finished = data.get("finished_at")
    head = Table(show_header=False, box=None)
    head.add_row("pages", f"{data['pages']:,}")
    head.add_row("ok (2xx)", f"{data['ok']:,}")
    head.add_row("errors", f"{data['errors']:,} ({data['network_errors']:,} network)")
    head.add_row("hosts", f"{data['hosts']:,}")
    head.add_row("links", f"{data['links']:,}")
    head.add_row("bytes", f"{data['bytes']:,}")
    head.add_row("queued", f"{data['queued']:,}")
    head.add_row("robots-disallowed", f"{data['disallowed']:,}")
    head.add_row("dropped", f"{data['dropped']:,}")
    head.add_row("duration", f"{data['duration_s']:,.1f}s")
    rate = data["pages_per_s"]
    head.add_row("pages/s", f"{rate:,.1f}" if rate is not None else "-")
    if started:
        head.add_row("started", _when(started))
    head.add_row("finished", _when(finished) if finished else "no (resume to continue)")
    console.print(head)
    for title, key, cols in (
        ("By status class", "by_status_class", ("class", "pages")),
        ("By content type", "by_content_type", ("content type", "pages")),
        ("Top hosts", "top_hosts", ("host", "pages")),
        ("Error reasons", "error_reasons", ("reason", "pages")),
        ("Depths", "depths", ("depth", "pages")),
    ):
        rows = data[key]
        if not rows:
            continue
        table = Table(title=title, title_justify="left")
        table.add_column(cols[0])
        table.add_column(cols[1], justify="right")
        for k, n in rows:
            table.add_row(str(k), f"{n:,}")
        console.print(table)


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts).isoformat(timespec="seconds")
