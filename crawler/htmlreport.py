"""`crawler report`: a `ReportData` as one self-contained HTML page.

Charts are pygal's SVG, inlined; pygal's tooltip script (fetched from the web by
default) is switched off, so the page makes no request at all: styles and the small
table-sorting script are inlined from `crawler/assets/`.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from importlib import resources
from typing import Any

import pygal
from pygal.style import Style

from crawler.records import STATUS_CLASSES, Bucket, ReportData

# Importing pygal appends an old-style finder (for its optional map plugins, which we do
# not use) to sys.meta_path; it makes every later import in the process warn (ImportWarning,
# an error under our tests' filterwarnings). Take it out again.
sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, pygal.PluginImportFixer)]

STYLE = Style(
    background="#ffffff",
    plot_background="#ffffff",
    foreground="#333344",
    foreground_strong="#1d2330",
    foreground_subtle="#888899",
    font_family="system-ui, sans-serif",
    label_font_size=11,
    major_label_font_size=11,
    legend_font_size=12,
    # 2xx, 3xx, 4xx, 5xx, network error; then the other series
    colors=("#2e9e5b", "#3b7dd8", "#e0a019", "#d9482b", "#7a3fb0", "#2a9fb0", "#777788"),
)
# Series colours by status class, whatever classes a chart has.
CLASS_COLORS = dict(zip(STATUS_CLASSES, STYLE.colors, strict=False))


def render(data: ReportData, *, refresh: int | None = None) -> str:
    """The report page; `refresh` (seconds): a live page that reloads itself."""
    s = data.stats
    seeds = ", ".join(s["seeds"][:3]) + (
        f" and {len(s['seeds']) - 3} more" if len(s["seeds"]) > 3 else ""
    )
    parts = [
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f'<meta http-equiv="refresh" content="{refresh}">' if refresh else "",
        f"<title>Crawl report: {_e(seeds)}</title>",
        f"<style>{_asset('report.css')}</style></head><body>",
        f"<header><h1>Crawl report</h1><p class=sub>{_e(seeds)}</p>",
        f'<p class="sub">generated {_when(data.generated_at)}; crawl started '
        f"{_when(s['started_at'])}, "
        + (f"finished {_when(s['finished_at'])}" if s["finished_at"] else "not finished")
        + "</p>",
        f'<p class="live">live: this page reloads every {refresh} s</p>' if refresh else "",
        "</header>",
        _headline(data),
        _timeline(data),
        _hosts(data),
        _errors(data),
        _shape(data),
        _extremes(data),
        _broken(data),
        _not_followed(data),
        f"<script>{_asset('report.js')}</script></body></html>\n",
    ]
    return "\n".join(p for p in parts if p)


# ---------------------------------------------------------------- sections


def _headline(data: ReportData) -> str:
    s = data.stats
    rate = s["pages_per_s"]
    items = [
        ("pages", "pages", s["pages"]),
        ("ok", "ok (2xx)", s["ok"]),
        ("redirects", "redirects (3xx)", s["redirects"]),
        ("http_errors", "HTTP errors (≥400)", s["http_errors"]),
        ("network_errors", "network errors", s["network_errors"]),
        ("hosts", "hosts", s["hosts"]),
        ("links", "links", s["links"]),
        ("broken_links", "links to broken pages", data.broken_links),
        ("bytes", "data", s["bytes"]),
        ("queued", "queued", s["queued"]),
        ("duration_s", "duration", s["duration_s"]),
        ("pages_per_s", "pages/s", rate),
    ]
    cells = []
    for key, label, value in items:
        shown = (
            _mb(value)
            if key == "bytes"
            else f"{value:,.1f} s"
            if key == "duration_s"
            else "-"
            if value is None
            else f"{value:,.1f}"
            if isinstance(value, float)
            else f"{value:,}"
        )
        cells.append(
            f'<div><dt>{_e(label)}</dt><dd data-key="{key}" data-value="{_e(_raw(value))}">'
            f"{_e(shown)}</dd></div>"
        )
    return f'<section id="headline"><h2>Headline</h2><dl>{"".join(cells)}</dl></section>'


def _timeline(data: ReportData) -> str:
    buckets = data.buckets
    w = data.bucket_width
    labels = _time_labels(buckets, w)
    rate = _chart(pygal.Bar, labels, [("pages/s", [b.pages / w for b in buckets])], "{:,.2f}")
    classes = [c for c in STATUS_CLASSES if any(b.by_class[c] for b in buckets)]
    status = _chart(
        pygal.StackedBar,
        labels,
        [(c, [b.by_class[c] for b in buckets]) for c in classes],
        "{:,.0f}",
        colors=[CLASS_COLORS[c] for c in classes],
    )
    volume = _chart(
        pygal.Bar, labels, [("MB/s", [b.bytes / w / 1e6 for b in buckets])], "{:,.3f}", color=5
    )
    per = f"per {w} s" if w < 60 else f"per {w // 60} min"
    return (
        '<section id="timeline"><h2>Over time</h2>'
        + _figure("chart-rate", rate, f"Pages per second, averaged {per}")
        + _figure("chart-status", status, f"Pages by status class, {per}")
        + _figure("chart-bytes", volume, f"Body data received, MB/s averaged {per}")
        + "</section>"
    )


def _hosts(data: ReportData) -> str:
    total = data.stats["hosts"]
    caption = (
        f"the {len(data.hosts):,} busiest of {total:,} hosts" if total > len(data.hosts) else ""
    )
    table = _table(
        "hosts",
        ["host", "pages", "errors", "median s", "p95 s", "pages/s"],
        [[h.host, h.pages, h.errors, h.median_s, h.p95_s, h.pages_per_s] for h in data.hosts],
        caption=caption,
        formats=[None, None, None, "{:,.3f}", "{:,.3f}", "{:,.2f}"],
    )
    return f'<section><h2>Hosts</h2><p class="sub">click a column to sort</p>{table}</section>'


def _errors(data: ReportData) -> str:
    reasons = data.stats["error_reasons"]
    chart = _chart(
        pygal.HorizontalBar, [], [(r["reason"], [r["pages"]]) for r in reasons], "{:,.0f}",
        legend=True,
    )  # fmt: skip
    table = _table("errors", ["reason", "pages"], [[r["reason"], r["pages"]] for r in reasons])
    body = _figure("chart-errors", chart, "Failed pages by reason") if reasons else ""
    return f"<section><h2>Error reasons</h2>{body}{table}</section>"


def _shape(data: ReportData) -> str:
    depths = data.stats["depths"]
    types = data.stats["by_content_type"]
    depth_chart = _chart(
        pygal.Bar, [str(d["depth"]) for d in depths], [("pages", [d["pages"] for d in depths])],
        "{:,.0f}", color=1,
    )  # fmt: skip
    type_chart = _chart(
        pygal.HorizontalBar, [], [(t["content_type"], [t["pages"]]) for t in types], "{:,.0f}",
        legend=True,
    )  # fmt: skip
    return (
        '<section><h2>Depth and content types</h2><div class="pair"><div>'
        + _figure("chart-depth", depth_chart, "Pages by depth (link hops from a seed)")
        + _table("depths", ["depth", "pages"], [[d["depth"], d["pages"]] for d in depths])
        + "</div><div>"
        + _figure("chart-types", type_chart, "Pages by content type")
        + _table(
            "content-types",
            ["content type", "pages"],
            [[t["content_type"], t["pages"]] for t in types],
        )
        + "</div></div></section>"
    )


def _extremes(data: ReportData) -> str:
    slow = _table(
        "slowest",
        ["url", "seconds", "status"],
        [[r["url"], r["elapsed"], r["status"]] for r in data.slowest],
        formats=[None, "{:,.3f}", None],
    )
    large = _table(
        "largest",
        ["url", "bytes", "content type"],
        [[r["url"], r["size"], r["content_type"]] for r in data.largest],
    )
    return (
        f"<section><h2>Slowest pages</h2>{slow}</section>"
        f"<section><h2>Largest pages</h2>{large}</section>"
    )


def _broken(data: ReportData) -> str:
    rows = [
        [b.url, b.status if b.status is not None else "-", b.error or "", b.links, b.sources]
        for b in data.broken
    ]
    caption = (
        f"{data.broken_links:,} links to {data.broken_pages:,} pages that failed"
        " (HTTP status ≥ 400 where the redirect chain ended, or no response)"
    )
    table = _table(
        "broken", ["url", "status", "error", "links to it", "linked from"], rows, caption=caption
    )
    return f"<section><h2>Broken links</h2>{table}</section>"


def _not_followed(data: ReportData) -> str:
    skipped = _table(
        "skipped",
        ["reason", "links"],
        [[r["reason"], r["links"]] for r in data.stats["skipped"]],
        caption="links seen on pages and not followed, by reason",
    )
    frontier = _table(
        "not-followed",
        ["state", "reason", "URLs", "for example"],
        [[r["state"], r["reason"], r["urls"], r["example"]] for r in data.not_followed],
        caption="URLs the crawl took up and then did not fetch (robots.txt, dropped hosts)",
    )
    return f"<section><h2>Not followed</h2>{skipped}{frontier}</section>"


# ---------------------------------------------------------------- building blocks


def _chart(
    kind: Callable[..., Any],
    labels: Sequence[str],
    series: Iterable[tuple[str, Sequence[float]]],
    fmt: str,
    *,
    colors: Sequence[str] | None = None,
    color: int = 0,
    legend: bool = False,
) -> str:
    series = list(series)
    style = STYLE
    if colors is not None or color:
        style = Style(**{**_style_fields(), "colors": tuple(colors or STYLE.colors[color:])})
    chart = kind(
        style=style,
        js=[],  # pygal's tooltips load a script from the web: none, the page stays offline
        disable_xml_declaration=True,
        width=900,
        height=300,
        show_legend=legend or len(series) > 1,
        legend_at_bottom=True,
        legend_at_bottom_columns=6,
        truncate_legend=40,
        value_formatter=fmt.format,
    )
    if labels:
        chart.x_labels = list(labels)
        chart.show_minor_x_labels = False
        chart.x_labels_major_every = max(1, len(labels) // 8)
    for name, values in series:
        chart.add(name, list(values))
    return str(chart.render(is_unicode=True))


def _style_fields() -> dict[str, Any]:
    return {
        name: getattr(STYLE, name)
        for name in (
            "background", "plot_background", "foreground", "foreground_strong",
            "foreground_subtle", "font_family", "label_font_size", "major_label_font_size",
            "legend_font_size",
        )
    }  # fmt: skip


def _figure(ident: str, svg: str, caption: str) -> str:
    return f'<figure id="{ident}">{svg}<figcaption>{_e(caption)}</figcaption></figure>'


def _table(
    ident: str,
    headers: list[str],
    rows: list[list[Any]],
    *,
    caption: str = "",
    formats: Sequence[str | None] | None = None,
) -> str:
    """A sortable table; number cells keep their raw value in data-value."""
    numeric = [
        bool(rows) and all(_is_number(r[i]) for r in rows if r[i] is not None)
        for i in range(len(headers))
    ]
    head = "".join(
        f'<th scope="col"{" class=n" if numeric[i] else ""}>{_e(h)}</th>'
        for i, h in enumerate(headers)
    )
    body = []
    for row in rows:
        cells = []
        for i, value in enumerate(row):
            fmt = formats[i] if formats else None
            cells.append(_cell(value, fmt))
        body.append("<tr>" + "".join(cells) + "</tr>")
    if not rows:
        body.append(f'<tr><td class="empty" colspan="{len(headers)}">none</td></tr>')
    cap = f"<caption>{_e(caption)}</caption>" if caption else ""
    return (
        f'<table id="{ident}" class="sortable">{cap}<thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def _cell(value: Any, fmt: str | None) -> str:
    if isinstance(value, list):
        items = "".join(f"<li>{_e(v)}</li>" for v in value)
        return f'<td class="url"><ul class="sources">{items}</ul></td>'
    if value is None:
        return '<td class="n" data-value="">-</td>'
    if _is_number(value):
        shown = fmt.format(value) if fmt else f"{value:,}"
        return f'<td class="n" data-value="{value}">{_e(shown)}</td>'
    text = str(value)
    klass = ' class="url"' if "://" in text else ""
    return f"<td{klass}>{_e(text)}</td>"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _time_labels(buckets: list[Bucket], width: int) -> list[str]:
    if not buckets:
        return []
    days = buckets[-1].start - buckets[0].start >= 86400
    fmt = "%m-%d %H:%M" if days else "%H:%M" if width >= 60 else "%H:%M:%S"
    return [dt.datetime.fromtimestamp(b.start).strftime(fmt) for b in buckets]


def _asset(name: str) -> str:
    return resources.files("crawler").joinpath("assets", name).read_text("utf-8")


def _raw(value: Any) -> str:
    return "" if value is None else json.dumps(value)


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts).isoformat(sep=" ", timespec="seconds")


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


def _e(value: Any) -> str:
    return html.escape(str(value))
