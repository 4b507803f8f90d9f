"""The command line: parse, call the library, turn its errors into one-line messages.

Exit codes: 0 done (or stopped by a signal, state saved), 1 runtime failure,
2 bad usage or input. No traceback reaches the user for an expected failure.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

import click

from crawler import __version__, queries
from crawler.config import SETTING_NAMES, Settings, build_settings, resolve
from crawler.errors import CrawlerError, UsageError

log = logging.getLogger("crawler")


class CrawlerGroup(click.Group):
    """A click group whose errors are one line on stderr with the contract's exit codes."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            rv = super().main(*args, **kwargs)
        except click.exceptions.NoArgsIsHelpError as exc:
            click.echo(exc.ctx.get_help() if exc.ctx else str(exc), err=True)
            sys.exit(2)
        except click.UsageError as exc:
            _fail(exc.format_message(), 2)
        except click.ClickException as exc:
            _fail(exc.format_message(), exc.exit_code)
        except click.Abort:
            _fail("aborted", 1)
        except CrawlerError as exc:
            _fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except OSError as exc:
            _fail(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), 1)
        sys.exit(rv if isinstance(rv, int) else 0)


def _fail(message: str, code: int) -> None:
    click.echo(f"crawler: error: {message.splitlines()[0] if message else 'failed'}", err=True)
    sys.exit(code)


def _setup_logging(verbose: bool, quiet: bool, log_format: str) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiosqlite").setLevel(logging.WARNING)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(
            {
                "time": record.created,
                "level": record.levelname.lower(),
                "logger": record.name,
                "message": record.getMessage(),
            }
        )


# Every crawl setting as a CLI flag with the same name (per_host -> --per-host). Defaults
# are None so that "not given" can be told apart and config.toml can fill it.
_HELP = {
    "allow": "Only crawl URLs matching this regex (repeatable).",
    "compress": "Store bodies zlib-compressed (body_codec = 'zlib').",
    "concurrency": "Most requests in flight overall.",
    "cookies": "Keep cookies between requests (default: off).",
    "delay": "Least seconds between the starts of two requests to one host.",
    "deny": "Never crawl URLs matching this regex (repeatable).",
    "host_budget": "Most pages fetched from one host (0: no limit).",
    "host_failures": "Consecutive failures before a host's queue is dropped.",
    "ignore_robots": "Do not fetch or obey robots.txt.",
    "max_bytes": "Most body bytes read per response, after decompression.",
    "max_crawl_delay": "Cap on a robots.txt Crawl-delay we honour, in seconds.",
    "max_depth": "Most link hops from a seed (seeds are depth 0; -1: no limit).",
    "max_links": "Most links kept from one page.",
    "max_pages": "Stop after this many fetches are stored (0: no limit).",
    "max_redirects": "Redirect hops followed from one requested URL.",
    "max_url_length": "Longer URLs are dropped.",
    "per_host": "Most simultaneous requests to one host (scheme+host+port).",
    "repeat_segments": "A path segment repeated more often than this is a trap.",
    "retries": "Extra attempts after a network error, 429 or 5xx.",
    "scope": "Which links to follow: the seeds' hosts, their domains, or any.",
    "timeout": "Seconds per request, from the moment it is sent.",
    "user_agent": "The User-Agent header, also matched against robots.txt.",
}
_BOOL_PAIRS = {
    "compress": "--compress/--no-compress",
    "cookies": "--cookies/--no-cookies",
    "ignore_robots": "--ignore-robots/--obey-robots",
}


def settings_options(func: Callable[..., Any]) -> Callable[..., Any]:
    defaults = Settings()
    for name in reversed(SETTING_NAMES):
        flag = "--" + name.replace("_", "-")
        default = getattr(defaults, name)
        help_text = _HELP[name]
        if name in _BOOL_PAIRS:
            opt = click.option(_BOOL_PAIRS[name], name, default=None, help=help_text)
        elif name in ("allow", "deny"):
            opt = click.option(flag, name, multiple=True, metavar="REGEX", help=help_text)
        elif name == "scope":
            opt = click.option(
                flag, name, type=click.Choice(["host", "domain", "any"]), help=help_text
            )
        else:
            kind = type(default)
            opt = click.option(
                flag,
                name,
                type=kind,
                default=None,
                help=f"{help_text} [default: {default}]",
            )
        func = opt(func)
    return func


def output_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option("-q", "--quiet", is_flag=True, help="No progress, warnings only.")(func)
    func = click.option("-v", "--verbose", is_flag=True, help="Debug logging.")(func)
    func = click.option(
        "--log-format",
        type=click.Choice(["text", "json"]),
        default="text",
        help="Log lines as text or as JSON objects.",
    )(func)
    return func


def _given(values: dict[str, Any]) -> dict[str, Any]:
    """The settings the user actually passed on the command line."""
    out = {}
    for name in SETTING_NAMES:
        value = values.get(name)
        if value is None or (name in ("allow", "deny") and not value):
            continue
        out[name] = value
    return out


@click.group(cls=CrawlerGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="crawler")
def cli() -> None:
    """A fast, polite, resumable web crawler that stores everything in SQLite."""


@cli.command()
@click.argument("seeds", nargs=-1)
@click.option("--db", default=None, help="SQLite file to crawl into. [default: crawl.db]")
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Settings file. [default: ./config.toml when present]",
)
@click.option(
    "--seeds-file",
    type=click.File("r"),
    default=None,
    help="Read more seed URLs from this file, one per line ('-' for stdin).",
)
@settings_options
@output_options
def crawl(
    seeds: tuple[str, ...],
    db: str | None,
    config_path: Path | None,
    seeds_file: TextIO | None,
    quiet: bool,
    verbose: bool,
    log_format: str,
    **values: Any,
) -> int:
    """Crawl from SEED URLs into a SQLite file.

    Crawling into a database that already holds a crawl continues it, adding the
    new seeds.
    """
    from crawler.run import run_crawl

    _setup_logging(verbose, quiet, log_format)
    all_seeds = list(seeds)
    if seeds_file is not None:
        all_seeds += [ln.strip() for ln in seeds_file if ln.strip() and not ln.startswith("#")]
    if not all_seeds:
        raise UsageError("no seed URLs given (crawler crawl URL... or --seeds-file FILE)")
    resolved = resolve({**_given(values), "db": db}, config_path)
    return run_crawl(resolved.db, resolved.settings, all_seeds, quiet=quiet)


@cli.command()
@click.option("--db", default="crawl.db", show_default=True, help="The crawl database.")
@settings_options
@output_options
def resume(db: str, quiet: bool, verbose: bool, log_format: str, **values: Any) -> int:
    """Continue an interrupted crawl with the settings it was started with.

    Settings given here replace the stored ones (e.g. a larger --max-pages).
    """
    from crawler.run import resume_crawl

    _setup_logging(verbose, quiet, log_format)
    given = _given(values)
    build_settings(given, source="command line")  # validate before touching the file
    return resume_crawl(db, given, quiet=quiet)


@cli.command()
@click.option("--db", default="crawl.db", show_default=True, help="The crawl database.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.option("--top", default=10, show_default=True, help="Rows in the top-N tables.")
def stats(db: str, as_json: bool, top: int) -> None:
    """Counts by status and content type, top hosts, errors, depths, pages/s."""
    from crawler.report import print_stats

    with contextlib.closing(queries.connect(db)) as conn:
        data = queries.stats(conn, top=top)
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        print_stats(data)


@cli.command()
@click.option("--db", default="crawl.db", show_default=True, help="The crawl database.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["jsonl", "csv", "warc"]),
    required=True,
    help="jsonl: one JSON object per page; csv: a header row then one row per page; "
    "warc: request/response records (WARC/1.1, gzipped per record).",
)
@click.option("-o", "--output", default="-", help="Output file ('-': stdout).")
@click.option("--where", default=None, help="SQL condition on the pages table.")
@click.option(
    "--since", type=float, default=None, help="Only pages fetched at or after this unix time."
)
@click.option(
    "--body/--no-body", default=False, help="Include bodies in jsonl (base64 when binary)."
)
def export(
    db: str, fmt: str, output: str, where: str | None, since: float | None, body: bool
) -> None:
    """Export stored pages as JSON lines, CSV or WARC, streaming."""
    from crawler import exporter

    with contextlib.closing(queries.connect(db)) as conn:
        if fmt == "warc":
            exporter.write_warc(conn, output, where=where, since=since)
        else:
            with _open_text(output) as fh:
                if fmt == "jsonl":
                    exporter.write_jsonl(conn, fh, where=where, since=since, body=body)
                else:
                    exporter.write_csv(conn, fh, where=where, since=since)


@contextlib.contextmanager
def _open_text(path: str) -> Iterator[TextIO]:
    if path == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    with open(path, "w", encoding="utf-8", newline="") as fh:
        yield fh


@cli.command("config")
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Settings file. [default: ./config.toml when present]",
)
@click.option("--db", default=None, help="As for crawl.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@settings_options
def show_config(config_path: Path | None, db: str | None, as_json: bool, **values: Any) -> None:
    """Print the effective settings (defaults < config file < flags) and their sources."""
    resolved = resolve({**_given(values), "db": db}, config_path)
    rows = [("db", resolved.db, resolved.sources["db"])]
    rows += [
        (name, getattr(resolved.settings, name), resolved.sources[name]) for name in SETTING_NAMES
    ]
    if as_json:
        click.echo(json.dumps({k: {"value": v, "source": s} for k, v, s in rows}, indent=2))
        return
    width = max(len(k) for k, _, _ in rows)
    for key, value, source in rows:
        shown = json.dumps(list(value)) if isinstance(value, tuple) else json.dumps(value)
        click.echo(f"{key:<{width}}  {shown:<40}  # {source}")


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="crawler")


if __name__ == "__main__":  # pragma: no cover
    main()
