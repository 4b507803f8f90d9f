"""The commands that read a crawl (`stats`, `export`, `why`, `report`): each opens the
store's reader, read-only, also while a crawl runs; crawler/cli.py registers them."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import click

from crawler.errors import UsageError
from crawler.store import open_reader


@click.command()
@click.option("--db", default="crawl.db", show_default=True, help="The crawl database.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.option("--top", default=10, show_default=True, help="Rows in the top-N tables.")
def stats(db: str, as_json: bool, top: int) -> None:
    """Counts by status and content type, top hosts, errors, depths, pages/s."""
    from crawler.report import print_stats

    with contextlib.closing(open_reader(db)) as reader:
        data = reader.stats(top=top)
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        print_stats(data)


@click.command()
@click.option("--db", default="crawl.db", show_default=True, help="The crawl database.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["jsonl", "csv", "warc"]),
    default=None,  # required: checked in the body, for a one-line message with the choices
    help="Required. jsonl: one JSON object per page; csv: a header row then one row per page; "
    "warc: request/response records (WARC/1.1, gzipped per record).",
)
@click.option("-o", "--output", default="-", help="Output file ('-': stdout).")
@click.option(
    "--where",
    default=None,
    metavar="SQL",
    help='SQL condition on the pages table, e.g. "status = 200 AND depth <= 2".',
)
@click.option(
    "--since",
    default=None,
    metavar="TIME",
    help="Only pages fetched at or after TIME: unix seconds or ISO 8601 (local time).",
)
@click.option(
    "--body/--no-body", default=False, help="Include bodies in jsonl (base64 when binary)."
)
@click.option(
    "--links",
    is_flag=True,
    help="Export the links table (src_url, dst_url, nofollow, kind) instead; --where on links.",
)
def export(
    db: str,
    fmt: str | None,
    output: str,
    where: str | None,
    since: str | None,
    body: bool,
    links: bool,
) -> None:
    """Export stored pages (or links) as JSON lines, CSV or WARC, streaming."""
    import os

    from crawler import exporter

    if fmt is None:
        raise UsageError("missing --format: choose jsonl, csv or warc")
    if fmt == "warc" and output == "-" and sys.stdout.isatty():
        raise UsageError("refusing to write a gzipped WARC to a terminal: use -o FILE or a pipe")
    since_ts = exporter.parse_time(since) if since is not None else None
    try:
        with contextlib.closing(open_reader(db)) as reader:
            n = exporter.export(
                reader, fmt, output, where=where, since=since_ts, body=body, links=links
            )
    except BrokenPipeError:
        if output != "-":
            raise
        # The reader left (`crawler export ... | head`): stop quietly, as `git log | head`
        # does. stdout still holds unwritten bytes whose flush at exit would fail and print
        # a warning: point it at /dev/null first.
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
        return
    if output != "-":
        click.echo(f"{n:,} {'links' if links else 'pages'} written to {output}", err=True)


@click.command()
@click.argument("url")
@click.option("--db", default="crawl.db", show_default=True, help="The crawl database.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def why(url: str, db: str, as_json: bool) -> None:
    """What happened to URL: stored, queued, or not followed and why; who links to it."""
    from crawler import why as explain

    with contextlib.closing(open_reader(db)) as reader:
        data = explain.explain(reader, url)
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo("\n".join(explain.render(data)))


@click.command()
@click.option("--db", default="crawl.db", show_default=True, help="The crawl database.")
@click.option(
    "-o", "--output", default="report.html", show_default=True, help="HTML file to write."
)
@click.option("--top", default=20, show_default=True, help="Rows in the top-N tables.")
def report(db: str, output: str, top: int) -> None:
    """An HTML report with charts: one file, viewable offline."""
    from crawler import htmlreport

    with contextlib.closing(open_reader(db)) as reader:
        data = reader.report(top=top)
    Path(output).write_text(htmlreport.render(data), encoding="utf-8")
    click.echo(f"report of {data.stats['pages']:,} pages written to {output}", err=True)
