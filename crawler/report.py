"""Human-readable output: the end-of-crawl summary and `crawler stats` tables (rich)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import shlex
from typing import Any

from rich.console import Console
from rich.table import Table

from crawler.records import Summary

log = logging.getLogger(__name__)


def summary_data(summary: Summary) -> dict[str, Any]:
    """The summary as plain data (the fields of the JSON summary line)."""
    data = dataclasses.asdict(summary)
    data["elapsed"] = round(summary.elapsed, 3)
    data["pages_per_s"] = round(summary.pages / summary.elapsed, 2) if summary.elapsed > 0 else 0
    data["errors_by_kind"] = dict(sorted(summary.errors_by_kind.items()))
    data["by_status_class"] = dict(sorted(summary.by_status_class.items()))
    data["changes"] = dict(sorted(summary.changes.items()))
    return data


def print_summary(
    summary: Summary,
    *,
    db: str = "crawl.db",
    quiet: bool = False,
    log_format: str = "text",
    again: list[str] | None = None,
) -> None:
    """The end of a crawl: a table on stderr, or one JSON log line; nothing when quiet.

    `again` names the flags this run was given that are not stored (--header, --proxy):
    the resume hint asks for them by name, never with their (secret) values.
    """
    if quiet:
        return
    data = summary_data(summary)
    if log_format == "json":
        log.info("summary", extra={"fields": {"event": "summary", **data}})
        return
    console = Console(stderr=True, highlight=False)
    state = "stopped" if summary.interrupted else "done"
    table = Table(title=f"crawl {state}", title_justify="left", show_header=False)
    table.add_column("", style="dim")
    table.add_column("", justify="right")
    table.add_row("pages this run", f"{summary.pages:,}")
    table.add_row("pages in the database", f"{summary.total_pages:,}")
    table.add_row("duration", f"{summary.elapsed:,.1f}s")
    table.add_row("pages/s", f"{data['pages_per_s']:,.1f}")
    table.add_row("data", f"{summary.bytes / 1e6:,.1f} MB")
    for klass, n in data["by_status_class"].items():
        table.add_row(f"status {klass}", f"{n:,}")
    if summary.not_downloaded:
        table.add_row("not downloaded (--accept-type)", f"{summary.not_downloaded:,}")
    table.add_row("network errors", f"{summary.errors:,}")
    for kind, n in data["errors_by_kind"].items():
        table.add_row(f"  {kind}", f"{n:,}")
    if set(summary.changes) - {"new"}:  # a recrawl: what the fetches of stored pages found
        for change in ("changed", "unchanged", "gone", "failed", "new"):
            table.add_row(f"pages {change}", f"{summary.changes.get(change, 0):,}")
    console.print(table)
    if summary.interrupted:
        if summary.stopped_by and summary.stopped_by != "signal":
            console.print(f"crawl stopped: {summary.stopped_by}", soft_wrap=True)
        hint = f"continue it with: crawler resume --db {shlex.quote(db)}"
        if again:
            hint += f" (give {' and '.join(again)} again: they are not stored)"
        console.print(hint, soft_wrap=True)


def print_stats(data: dict[str, Any]) -> None:
    """`crawler stats` as tables on stdout."""
    console = Console(highlight=False)
    head = Table(show_header=False, box=None)
    head.add_column(style="dim")
    head.add_column(justify="right")
    rate = data["pages_per_s"]
    for label, value in (
        ("pages", f"{data['pages']:,}"),
        ("ok (2xx)", f"{data['ok']:,}"),
        ("redirects (3xx)", f"{data['redirects']:,}"),
        ("HTTP errors (>=400)", f"{data['http_errors']:,}"),
        ("network errors", f"{data['network_errors']:,}"),
        ("hook errors", f"{data.get('hook_errors', 0):,}"),
        ("hosts", f"{data['hosts']:,}"),
        ("links", f"{data['links']:,}"),
        ("bytes", f"{data['bytes']:,}"),
        ("queued", f"{data['queued']:,}"),
        ("robots-disallowed", f"{data['disallowed']:,}"),
        ("dropped", f"{data['dropped']:,}"),
        *_sitemap_rows(data.get("sitemaps")),
        ("runs", f"{data.get('runs', 0):,}"),
        ("duration", f"{data['duration_s']:,.1f}s"),
        ("pages/s", f"{rate:,.1f}" if rate is not None else "-"),
        ("started", _when(data["started_at"])),
        ("resumed", _when(data["resumed_at"])),
        ("finished", _when(data["finished_at"]) if data["finished_at"] else "no (resume it)"),
    ):
        head.add_row(label, value)
    console.print(head)
    for title, key in (
        ("By status class", "by_status_class"),
        ("By content type", "by_content_type"),
        ("Top hosts", "top_hosts"),
        ("Error reasons", "error_reasons"),
        ("Links not followed", "skipped"),
        ("Depths", "depths"),
        ("Fetches per run", "per_run"),
    ):
        rows = data.get(key) or []
        if not rows:
            continue
        table = Table(title=title, title_justify="left")
        names = list(rows[0])
        for i, name in enumerate(names):
            table.add_column(name.replace("_", " "), justify="left" if i == 0 else "right")
        for row in rows:
            table.add_row(*(_cell(row[name]) for name in names))
        console.print(table)


def _sitemap_rows(counts: dict[str, int] | None) -> list[tuple[str, str]]:
    """The sitemap lines of `stats`: none for a crawl that found no sitemap."""
    if not counts or not any(counts.values()):
        return []
    return [
        ("sitemaps fetched", f"{counts['fetched']:,}"),
        ("sitemaps failed", f"{counts['failed']:,}"),
        ("sitemaps queued", f"{counts['queued']:,}"),
        ("sitemap URLs", f"{counts['urls']:,}"),
    ]


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts).isoformat(timespec="seconds")
