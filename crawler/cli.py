"""The command line: parse, call the library, turn its errors into one-line messages.

Exit codes: 0 done (or stopped by a signal, state saved), 1 runtime failure,
2 bad usage or input. No traceback reaches the user for an expected failure.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import click

from crawler import __version__
from crawler.cli_options import (
    given_settings,
    output_options,
    recrawl_options,
    request_options,
    run_output,
    settings_options,
    take_run_options,
)
from crawler.cli_read import export, report, stats, why
from crawler.cli_search import search
from crawler.config import SETTING_NAMES, Resolved, build_settings, resolve
from crawler.errors import CrawlerError, UsageError
from crawler.logs import setup_logging
from crawler.store import open_reader, shown_name

log = logging.getLogger("crawler")


class CrawlerGroup(click.Group):
    """A click group whose errors are one line on stderr with the contract's exit codes."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        argv = kwargs.get("args", args[0] if args else None)
        as_json = _json_logs(sys.argv[1:] if argv is None else list(argv))
        try:
            rv = super().main(*args, **kwargs)
        except click.exceptions.NoArgsIsHelpError as exc:
            click.echo(exc.ctx.get_help() if exc.ctx else str(exc), err=True)
            sys.exit(2)
        except click.UsageError as exc:
            _fail(as_json, exc.format_message(), 2)
        except click.ClickException as exc:
            _fail(as_json, exc.format_message(), exc.exit_code)
        except click.Abort:
            _fail(as_json, "aborted", 1)
        except CrawlerError as exc:
            _fail(as_json, str(exc), exc.exit_code)
        except KeyboardInterrupt:
            _fail(as_json, "interrupted", 130)
        except OSError as exc:
            _fail(as_json, f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), 1)
        sys.exit(rv if isinstance(rv, int) else 0)


def _fail(as_json: bool, message: str, code: int) -> None:
    line = message.splitlines()[0] if message else "failed"
    if as_json:  # --log-format json: machines get every stderr line as JSON, errors too
        record = {"time": time.time(), "level": "error", "logger": "crawler", "message": line}
        click.echo(json.dumps({**record, "event": "error", "exit_code": code}), err=True)
    else:
        click.echo(f"crawler: error: {line}", err=True)
    sys.exit(code)


def _json_logs(argv: list[str]) -> bool:
    """Whether the command line asks for --log-format json (read before click parses it)."""
    for i, arg in enumerate(argv):
        if arg == "--log-format=json" or (
            arg == "--log-format" and argv[i + 1 : i + 2] == ["json"]
        ):
            return True
    return False


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
@request_options
@output_options
def crawl(
    seeds: tuple[str, ...],
    db: str | None,
    config_path: Path | None,
    seeds_file: TextIO | None,
    quiet: bool,
    verbose: bool,
    log_format: str,
    status_host: str,
    status_port: int | None,
    **values: Any,
) -> int:
    """Crawl from SEED URLs into a new SQLite file.

    A database that already holds a crawl is refused: `crawler resume` continues it
    (and `resume --seed URL` adds seeds to it).
    """
    from crawler.run import run_crawl

    setup_logging(verbose, quiet, log_format)
    options = take_run_options(values)
    all_seeds = _seed_list(seeds, seeds_file)
    if not all_seeds:
        raise UsageError("no seed URLs given (crawler crawl URL... or --seeds-file FILE)")
    resolved = resolve({**given_settings(values), "db": db}, config_path)
    out = run_output(quiet, log_format, status_host, status_port)
    return run_crawl(resolved.db, resolved.settings, all_seeds, out, options)


@cli.command()
@click.option("--db", default="crawl.db", show_default=True, help="The crawl database.")
@click.option("--seed", "seeds", multiple=True, metavar="URL", help="Add a seed URL (repeatable).")
@click.option(
    "--seeds-file",
    type=click.File("r"),
    default=None,
    help="Add the seed URLs in this file, one per line ('-' for stdin).",
)
@settings_options
@request_options
@output_options
def resume(
    db: str,
    seeds: tuple[str, ...],
    seeds_file: TextIO | None,
    quiet: bool,
    verbose: bool,
    log_format: str,
    status_host: str,
    status_port: int | None,
    **values: Any,
) -> int:
    """Continue a crawl with the settings it was started with.

    Settings given here replace the stored ones (e.g. a larger --max-pages) and are
    stored with the crawl; --seed adds seeds to it.
    """
    from crawler.run import resume_crawl

    setup_logging(verbose, quiet, log_format)
    options = take_run_options(values)
    given = given_settings(values)
    build_settings(given, source="command line")  # validate before touching the file
    added = _seed_list(seeds, seeds_file)
    out = run_output(quiet, log_format, status_host, status_port)
    return resume_crawl(db, given, added, out, options)


@cli.command()
@click.option("--db", default="crawl.db", show_default=True, help="The crawl database.")
@recrawl_options
@settings_options
@request_options
@output_options
def recrawl(
    db: str,
    older_than: str | None,
    where: str | None,
    due: bool,
    quiet: bool,
    verbose: bool,
    log_format: str,
    status_host: str,
    status_port: int | None,
    **values: Any,
) -> int:
    """Fetch stored pages again (default: all), conditionally (ETag, Last-Modified).

    A 304 or an identical body marks a page unchanged (its body kept); a changed page is
    replaced and its new links are crawled; a 404/410 is recorded as gone (its last body
    kept). Every fetch is a row of the fetches table. Politeness, robots.txt and the
    crawl's settings apply as in a crawl (flags given here replace stored ones). Ctrl-C
    stops it; `crawler resume` continues it.
    """
    from crawler.revisit import duration_seconds
    from crawler.run import recrawl_crawl

    setup_logging(verbose, quiet, log_format)
    options = take_run_options(values)
    given = given_settings(values)
    build_settings(given, source="command line")  # validate before touching the file
    selection = {
        "where": where,
        "older_than": duration_seconds(older_than) if older_than is not None else None,
        "due": due,
    }
    out = run_output(quiet, log_format, status_host, status_port)
    return recrawl_crawl(db, given, selection, out, options)


@cli.command()
@click.option("--db", required=True, help="The shared store: postgresql://user@host:port/dbname.")
@click.option("--concurrency", type=int, default=None, help="This worker's requests in flight.")
@click.option("--processes", type=int, default=None, help="Worker processes on this machine.")
@request_options
@output_options
def work(
    db: str,
    concurrency: int | None,
    processes: int | None,
    quiet: bool,
    verbose: bool,
    log_format: str,
    status_host: str,
    status_port: int | None,
    **values: Any,
) -> int:
    """Join a crawl in a shared store as one more worker, until the crawl is over.

    The crawl's settings are the ones `crawler crawl` stored; a worker chooses only its
    own concurrency and processes, and its own request options (headers, proxy: never
    stored). SIGTERM or Ctrl-C gives its hosts back at once.
    """
    from crawler.run import work_crawl

    setup_logging(verbose, quiet, log_format)
    options = take_run_options(values)
    given = {k: v for k, v in {"concurrency": concurrency, "processes": processes}.items() if v}
    build_settings(given, source="command line")  # validate before connecting
    return work_crawl(db, given, run_output(quiet, log_format, status_host, status_port), options)


def _seed_list(seeds: tuple[str, ...], seeds_file: TextIO | None) -> list[str]:
    out = list(seeds)
    if seeds_file is not None:
        out += [ln.strip() for ln in seeds_file if ln.strip() and not ln.startswith("#")]
    return out


for command in (export, report, search, stats, why):
    cli.add_command(command)


@cli.command("config")
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Settings file. [default: ./config.toml when present]",
)
@click.option(
    "--db",
    default=None,
    help="A crawl database: show the settings stored with its crawl (what resume uses).",
)
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@settings_options
@request_options
def show_config(config_path: Path | None, db: str | None, as_json: bool, **values: Any) -> None:
    """Print the effective settings and their sources.

    For a new crawl: defaults < config file < flags. With --db naming an existing
    crawl: the settings stored with it < flags, as `crawler resume` would use them.
    Request options given (--header, --proxy, --resolve, --time-limit) belong to one
    run: shown as "this run only", header values and proxy credentials as ***.
    """
    options = take_run_options(values)
    if db is not None and Path(db).is_file():
        resolved = _stored(db, given_settings(values))
    else:
        resolved = resolve({**given_settings(values), "db": db}, config_path)
    rows = [("db", shown_name(resolved.db), resolved.sources["db"])]
    rows += [
        (name, getattr(resolved.settings, name), resolved.sources[name]) for name in SETTING_NAMES
    ]
    given = {"header": options.header, "proxy": options.proxy, "resolve": options.resolve}
    rows += [
        (name, value, "this run only (not stored)")
        for name, value in options.shown().items()
        if given.get(name) or (name == "time_limit" and value)
    ]
    if as_json:
        click.echo(json.dumps({k: {"value": v, "source": s} for k, v, s in rows}, indent=2))
        return
    width = max(len(k) for k, _, _ in rows)
    for key, value, source in rows:
        shown = json.dumps(list(value)) if isinstance(value, tuple | list) else json.dumps(value)
        click.echo(f"{key:<{width}}  {shown:<40}  # {source}")


def _stored(db: str, given: dict[str, Any]) -> Resolved:
    """The settings stored with the crawl in `db`, with `given` flags on top."""
    with contextlib.closing(open_reader(db)) as reader:
        crawl = reader.crawl()
    if crawl is None:
        raise UsageError(f"{shown_name(db)} holds no crawl")
    stored = crawl[0]
    settings, cli_sources = build_settings(given, source="command line", base=stored)
    source = f"stored in {shown_name(db)}"
    sources = {name: source for name in SETTING_NAMES} | cli_sources | {"db": "command line"}
    return Resolved(settings=settings, db=db, sources=sources)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="crawler")


if __name__ == "__main__":  # pragma: no cover
    main()
