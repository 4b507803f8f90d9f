"""The command line's options: every crawl setting as a flag of the same name, and the
output flags of a running crawl (progress, logs, the status server)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from crawler.config import SETTING_NAMES, Settings
from crawler.runoptions import RunOptions, run_options

if TYPE_CHECKING:
    from crawler.run import Output


# Every crawl setting as a CLI flag with the same name (per_host -> --per-host). Defaults
# are None so that "not given" can be told apart and config.toml can fill it.
_HELP = {
    "accept_type": "Read bodies of this media type only, e.g. text/html, image/* (repeatable); "
    "others are recorded unread. robots.txt and sitemaps are exempt.",
    "allow": "Only crawl URLs matching this regex (repeatable).",
    "allow_private": "Also fetch loopback, private and link-local addresses "
    "(refused by default unless a seed is in the range; link-local only with this flag).",
    "assets": "Fetch subresources (images, scripts, stylesheets, icons, iframes) as pages too.",
    "ca_bundle": "Verify TLS certificates against the CAs in this PEM file.",
    "compress": "Store bodies zlib-compressed (body_codec = 'zlib').",
    "concurrency": "Most requests in flight overall.",
    "cookies": "Keep cookies between requests (default: off).",
    "delay": "Least seconds between the starts of two requests to one host.",
    "delay_factor": "Wait this many times a host's last response time before its next request.",
    "deny": "Never crawl URLs matching this regex (repeatable).",
    "extract": "NAME=CSS: store the text of the selector's first match in pages.data (repeatable).",
    "host_budget": "Most pages fetched from one host (0: no limit).",
    "host_failures": "Consecutive failures before a host's queue is dropped.",
    "hooks": "module:function to call with every stored page (repeatable; see README).",
    "ignore_robots": "Do not fetch or obey robots.txt.",
    "insecure": "Do not verify TLS certificates.",
    "lease": "Seconds a worker of a shared store holds a host without renewing its lease.",
    "max_bytes": "Most body bytes read per response, after decompression.",
    "max_crawl_delay": "Cap on a robots.txt Crawl-delay we honour, in seconds.",
    "max_delay": "Cap, in seconds, on the wait --delay-factor asks for.",
    "max_depth": "Most link hops from a seed (seeds are depth 0; -1: no limit).",
    "max_links": "Most links kept from one page.",
    "max_pages": "Stop after this many fetches are stored (0: no limit).",
    "max_redirects": "Redirect hops followed from one requested URL.",
    "max_url_length": "Longer URLs are dropped.",
    "per_host": "Most simultaneous requests to one server: the host name, plus its port when "
    "not the scheme's default (http and https of one name share it).",
    "per_ip": "Most simultaneous requests to hosts on one IP address (0: no cap).",
    "processes": "Crawl in this many processes, each owning a share of the hosts.",
    "recrawl_interval": "A page's first revisit interval in seconds (recrawl --due).",
    "recrawl_max_interval": "Longest revisit interval in seconds (an unchanging page's).",
    "recrawl_min_interval": "Shortest revisit interval in seconds (a page that keeps changing).",
    "repeat_segments": "A path segment repeated more often than this is a trap.",
    "retries": "Extra attempts after a network error, 429 or 5xx.",
    "scope": "Which links to follow: the seeds' hosts, their domains, or any.",
    "sitemap_probe": "Also try /sitemap.xml when robots.txt names no sitemap (default: off).",
    "sitemaps": "Fetch the sitemaps robots.txt names and crawl the URLs they list (default: on).",
    "text": "Store each HTML page's visible text in a full-text index (crawler search).",
    "timeout": "Seconds per request, from the moment it is sent.",
    "user_agent": "The User-Agent header, also matched against robots.txt.",
}
# Repeatable flags. `--hook a:f --hook b:g` fills the setting `hooks` (--hooks works too).
_LISTS = {"accept_type": ("TYPE",), "allow": ("REGEX",), "deny": ("REGEX",),
          "extract": ("NAME=CSS",), "hooks": ("MODULE:FUNCTION", "--hook")}  # fmt: skip
_BOOL_PAIRS = {
    "assets": "--assets/--no-assets",
    "compress": "--compress/--no-compress",
    "cookies": "--cookies/--no-cookies",
    "ignore_robots": "--ignore-robots/--obey-robots",
    "sitemap_probe": "--sitemap-probe/--no-sitemap-probe",
    "sitemaps": "--sitemaps/--no-sitemaps",
    "allow_private": "--allow-private/--no-allow-private",
    "insecure": "--insecure/--verify-tls",
    "text": "--text/--no-text",
}


def settings_options(func: Callable[..., Any]) -> Callable[..., Any]:
    defaults = Settings()
    for name in reversed(SETTING_NAMES):
        flag = "--" + name.replace("_", "-")
        default = getattr(defaults, name)
        help_text = _HELP[name]
        if name in _BOOL_PAIRS:
            opt = click.option(_BOOL_PAIRS[name], name, default=None, help=help_text)
        elif name in _LISTS:
            metavar, *alias = _LISTS[name]
            opt = click.option(*alias, flag, name, multiple=True, metavar=metavar, help=help_text)
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


def request_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """This run's own request options: never stored with the crawl (give them again on
    resume); header values and proxy credentials are never printed."""
    func = click.option(
        "--time-limit",
        default=None,
        metavar="DURATION",
        help="Stop gracefully after this long (90s, 15m, 2h, 1d); resume continues.",
    )(func)
    func = click.option(
        "--resolve",
        multiple=True,
        metavar="HOST:ADDRESS",
        help="Resolve HOST to ADDRESS without asking DNS (repeatable).",
    )(func)
    func = click.option(
        "--proxy",
        default=None,
        metavar="URL",
        help="Send every request, robots.txt too, through this http(s) proxy; 'env': "
        "HTTP_PROXY/HTTPS_PROXY/NO_PROXY. Not stored.",
    )(func)
    func = click.option(
        "--header",
        multiple=True,
        metavar="'NAME: VALUE'",
        help="Send this header with every request (repeatable). Not stored, never printed.",
    )(func)
    return func


def take_run_options(values: dict[str, Any]) -> RunOptions:
    """The request options out of a command's `values` (removed from it), checked."""
    return run_options(
        values.pop("header", ()),
        values.pop("proxy", None),
        values.pop("resolve", ()),
        values.pop("time_limit", None),
    )


def output_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option(
        "-q", "--quiet", is_flag=True, help="No progress and no summary: warnings and errors only."
    )(func)
    func = click.option(
        "-v", "--verbose", is_flag=True, help="Debug logging: a line per fetched URL."
    )(func)
    func = click.option(
        "--log-format",
        type=click.Choice(["text", "json"]),
        default="text",
        help="Log, progress and summary lines as text or as one JSON object per line.",
    )(func)
    func = click.option(
        "--status-port",
        type=click.IntRange(0, 65535),
        default=None,
        help="Serve the live report, /status (JSON) and /metrics (Prometheus) on this port.",
    )(func)
    func = click.option(
        "--status-host",
        default="127.0.0.1",
        show_default=True,
        help="Address of the status server (loopback unless widened, e.g. 0.0.0.0).",
    )(func)
    return func


def run_output(quiet: bool, log_format: str, status_host: str, status_port: int | None) -> Output:
    from crawler.run import Output

    status = (status_host, status_port) if status_port is not None else None
    return Output(quiet=quiet, log_format=log_format, handle_signals=True, status=status)


def given_settings(values: dict[str, Any]) -> dict[str, Any]:
    """The settings the user actually passed on the command line."""
    out = {}
    for name in SETTING_NAMES:
        value = values.get(name)
        if value is None or (name in _LISTS and not value):
            continue
        out[name] = value
    return out


def recrawl_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """`crawler recrawl`'s selection of the stored pages to fetch again."""
    for option in reversed(_RECRAWL_OPTIONS):
        func = option(func)
    return func


_RECRAWL_OPTIONS = [
    click.option(
        "--older-than",
        metavar="DURATION",
        default=None,
        help="Only pages last fetched longer ago than DURATION: 90s, 15m, 2h, 7d.",
    ),
    click.option(
        "--where",
        metavar="SQL",
        default=None,
        help='Only pages matching this SQL condition on the pages table, e.g. "error IS NOT '
        'NULL" (retry failures) or "host = \'https://example.com:443\'".',
    ),
    click.option(
        "--due",
        is_flag=True,
        help="Only pages whose revisit interval has passed (adaptive: shorter for pages "
        "that change, longer for pages that do not).",
    ),
]
