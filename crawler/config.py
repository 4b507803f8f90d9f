"""Settings: one frozen dataclass, filled from defaults < config.toml < CLI flags.

A setting has one name everywhere: the TOML key, the dataclass field and the CLI flag
(`per_host` / `--per-host`). The crawl stores its settings in the database so that
`crawler resume` continues with exactly what it was started with.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import ssl
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from crawler.errors import SettingError, UsageError

DEFAULT_CONFIG = Path("config.toml")
SCOPES = ("host", "domain", "any")
PROJECT_URL = "https://github.com/crawler/crawler"
DEFAULT_USER_AGENT = f"crawler/0.1.0 (+{PROJECT_URL})"  # the version: crawler.__version__
_MEDIA_TYPE = re.compile(r"^[!#$%&'*+.^_`|~0-9a-z-]+/[!#$%&'*+.^_`|~0-9a-z-]+$")


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything that shapes a crawl, alphabetised; see config.toml for each one's meaning."""

    accept_type: tuple[str, ...] = ()  # media types whose bodies are read (none given: all)
    allow: tuple[str, ...] = ()  # regexes; a URL must match one of them (when any are given)
    allow_private: bool = False  # fetch loopback, private and link-local addresses too
    assets: bool = False  # fetch subresources (img, script, style, icon, preload, iframe) too
    ca_bundle: str = ""  # PEM file of the CAs that TLS certificates must chain to ("": system's)
    compress: bool = False  # store bodies zlib-compressed (pages.body_codec = 'zlib')
    concurrency: int = 64  # most requests in flight overall
    cookies: bool = False  # keep cookies between requests (off: every request is anonymous)
    delay: float = 0.0  # least seconds between the starts of two requests to one host
    delay_factor: float = 0.0  # wait this many times a host's last response time (0: off)
    deny: tuple[str, ...] = ()  # regexes; a URL matching any of them is not crawled
    extract: tuple[str, ...] = ()  # NAME=CSS: the first match's text goes to pages.data NAME
    host_budget: int = 0  # most pages fetched from one host (0: no limit); a trap guard
    host_failures: int = 10  # consecutive failed requests before a host's queue is dropped
    hooks: tuple[str, ...] = ()  # module:function called with every stored page (crawler.hooks)
    ignore_robots: bool = False  # do not fetch or obey robots.txt
    insecure: bool = False  # do not verify TLS certificates
    lease: float = 30.0  # seconds a shared store's worker holds a host without renewing
    max_bytes: int = 10_000_000  # most body bytes read per response, after decompression
    max_crawl_delay: float = 30.0  # cap on a robots.txt Crawl-delay we honour, seconds
    max_delay: float = 30.0  # cap on the wait delay_factor asks for, seconds
    max_depth: int = -1  # links followed from a seed (seeds are depth 0); -1: no limit
    max_links: int = 10_000  # most links kept from one page
    max_pages: int = 0  # stop after this many fetches are stored; 0: no limit
    max_redirects: int = 5  # redirect hops followed from one requested URL
    max_url_length: int = 2048  # longer URLs are dropped (a trap guard)
    per_host: int = 2  # most simultaneous requests to one server (host, + port if not default)
    per_ip: int = 0  # most simultaneous requests to the hosts on one IP address (0: no cap)
    processes: int = 1  # processes crawling at once, each owning a share of the hosts
    recrawl_interval: float = 86_400.0  # a page's first revisit interval, seconds (1 day)
    recrawl_max_interval: float = 2_592_000.0  # longest revisit interval, seconds (30 days)
    recrawl_min_interval: float = 3_600.0  # shortest revisit interval, seconds (1 hour)
    repeat_segments: int = 3  # a path segment repeated more often than this is a trap
    retries: int = 2  # extra attempts after a network error, 429 or 5xx
    scope: str = "host"  # host: the seeds' hosts; domain: their registered domains; any
    sitemap_probe: bool = False  # also try /sitemap.xml when robots.txt names no sitemap
    sitemaps: bool = True  # fetch the sitemaps robots.txt names and crawl what they list
    text: bool = False  # keep HTML pages' visible text, indexed for `crawler search` (CPU cost)
    timeout: float = 30.0  # seconds per request, from the moment it is sent
    user_agent: str = DEFAULT_USER_AGENT  # names the project; add your own contact to it

    def __post_init__(self) -> None:
        # Checked here, not by whoever builds one: Settings(per_host=0) from Python, a
        # config.toml, a flag and a stored crawl all meet the same checks and messages.
        for f in fields(self):
            value = getattr(self, f.name)
            coerced = _coerce(f.name, value)
            if coerced is not value:
                object.__setattr__(self, f.name, coerced)
        _validate(self)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Settings:
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        # A database written by a newer version may carry settings we do not know: ignore them.
        return build_settings({k: v for k, v in data.items() if k in known}, source="database")[0]


SETTING_NAMES: tuple[str, ...] = tuple(f.name for f in fields(Settings))
_DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(Settings)}


def _coerce(name: str, value: Any) -> Any:
    """One value as its setting's type (TOML, JSON and Python values arrive typed), or a
    SettingError naming the setting: an int is a number, a string a one-item list."""
    default = _DEFAULTS[name]
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(default, float):
        if isinstance(value, int | float) and not isinstance(value, bool):
            if math.isfinite(value):
                return value if type(value) is float else float(value)
            raise SettingError(f"setting '{name}' must be a finite number, got {value!r}")
    elif isinstance(default, str):
        if isinstance(value, str):
            return value
    elif isinstance(default, tuple):
        if isinstance(value, str):
            return (value,)
        if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            return value if type(value) is tuple else tuple(value)
    raise SettingError(f"setting '{name}' must be {_type_name(default)}, got {value!r}")


def _type_name(default: Any) -> str:
    if isinstance(default, bool):
        return "true or false"
    if isinstance(default, int):
        return "an integer"
    if isinstance(default, float):
        return "a number"
    if isinstance(default, tuple):
        return "a list of strings"
    return "a string"


def _validate(s: Settings) -> None:
    checks: list[tuple[bool, str]] = [
        # One worker task each: a billion would exhaust memory before the first request.
        (1 <= s.concurrency <= 100_000, "concurrency must be between 1 and 100000"),
        (s.per_host >= 1, "per_host must be at least 1"),
        (s.per_ip >= 0, "per_ip must not be negative (0: off)"),
        (1 <= s.processes <= 64, "processes must be between 1 and 64"),
        (s.delay >= 0, "delay must not be negative"),
        (s.delay_factor >= 0, "delay_factor must not be negative (0: off)"),
        (s.max_delay >= 0, "max_delay must not be negative"),
        (s.lease >= 1, "lease must be at least 1 second"),
        (s.max_pages >= 0, "max_pages must not be negative (0: no limit)"),
        (s.max_depth >= -1, "max_depth must be -1 (no limit) or more"),
        (s.timeout > 0, "timeout must be positive"),
        (s.max_bytes >= 1, "max_bytes must be at least 1"),
        (s.retries >= 0, "retries must not be negative"),
        (s.max_redirects >= 0, "max_redirects must not be negative"),
        (s.max_links >= 0, "max_links must not be negative"),
        (s.max_url_length >= 16, "max_url_length must be at least 16"),
        (s.max_crawl_delay >= 0, "max_crawl_delay must not be negative"),
        (s.host_budget >= 0, "host_budget must not be negative (0: no limit)"),
        (s.host_failures >= 1, "host_failures must be at least 1"),
        (s.recrawl_min_interval > 0, "recrawl_min_interval must be positive"),
        (
            s.recrawl_min_interval <= s.recrawl_max_interval,
            "recrawl_min_interval must not be more than recrawl_max_interval",
        ),
        (s.recrawl_interval > 0, "recrawl_interval must be positive"),
        (s.repeat_segments >= 1, "repeat_segments must be at least 1"),
        (s.scope in SCOPES, f"scope must be one of {', '.join(SCOPES)}, got {s.scope!r}"),
        (bool(s.user_agent.strip()), "user_agent must not be empty"),
        (s.user_agent.isprintable(), "user_agent must not hold control characters"),
    ]
    for ok, message in checks:
        if not ok:
            raise SettingError(message)
    if s.insecure and s.ca_bundle:
        raise SettingError(
            "insecure and ca_bundle exclude each other: verify with the bundle or not at all"
        )
    if s.ca_bundle:
        try:
            ssl.create_default_context(cafile=s.ca_bundle)
        except (OSError, ssl.SSLError) as exc:
            raise SettingError(
                f"ca_bundle {s.ca_bundle}: cannot load certificates ({exc})"
            ) from None
    for media in s.accept_type:
        if not _MEDIA_TYPE.match(media.lower()) or (media.startswith("*/") and media != "*/*"):
            raise SettingError(
                f"accept_type must be a media type such as text/html or image/*, got {media!r}"
            )
    for name in ("allow", "deny"):
        for pattern in getattr(s, name):
            try:
                re.compile(pattern)
            except re.error as exc:
                raise SettingError(f"{name}: invalid regex {pattern!r}: {exc}") from None
    for hook in s.hooks:
        if not _HOOK_NAME.fullmatch(hook):
            raise SettingError(f"hooks: {hook!r} is not module:function (e.g. mypkg.hooks:on_page)")
    _check_extract(s.extract)


_HOOK_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def extract_rules(extract: tuple[str, ...]) -> list[tuple[str, str]]:
    """`extract` entries as (name, css): "title=h1 span" -> ("title", "h1 span")."""
    return [(name.strip(), css.strip()) for name, _, css in (e.partition("=") for e in extract)]


def _check_extract(extract: tuple[str, ...]) -> None:
    if not extract:
        return
    # Lexbor compiles a selector when it is first used: try each on an empty document, so
    # a typo is a usage error at start, not an error note on every page.
    from selectolax.lexbor import LexborHTMLParser, SelectolaxError

    empty = LexborHTMLParser("")
    seen: set[str] = set()
    for entry, (name, css) in zip(extract, extract_rules(extract), strict=True):
        if "=" not in entry or not _FIELD_NAME.fullmatch(name):
            raise SettingError(
                f"extract: {entry!r} is not NAME=CSS (NAME: letters, digits, _; e.g. title=h1)"
            )
        if name in seen or name == "hook_error":
            raise SettingError(f"extract: the name {name!r} is given twice or is reserved")
        seen.add(name)
        try:
            empty.css_first(css)
        except SelectolaxError:
            raise SettingError(f"extract: invalid CSS selector {css!r} for {name!r}") from None


def build_settings(
    values: Mapping[str, Any], *, source: str, base: Settings | None = None
) -> tuple[Settings, dict[str, str]]:
    """Settings from `base` (defaults) with `values` on top; also which source set each one."""
    base = base or Settings()
    unknown = sorted(set(values) - set(SETTING_NAMES))
    if unknown:
        raise SettingError(f"{source}: unknown setting '{unknown[0]}'")
    try:
        coerced = {k: _coerce(k, v) for k, v in values.items()}
    except SettingError as exc:  # a type: say which file (or flag, or database) gave it
        raise SettingError(f"{source}: {exc}") from None
    settings = dataclasses.replace(base, **coerced)  # checked by Settings itself
    return settings, dict.fromkeys(coerced, source)


def read_config(path: Path) -> dict[str, Any]:
    """The keys of a config.toml; a clear UsageError when it cannot be read or parsed."""
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise UsageError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read config file {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"invalid TOML in {path}: {exc}") from None
    # `db` lives in config.toml too but is not a crawl setting: the CLI handles it.
    for key, value in data.items():
        if isinstance(value, dict):
            raise UsageError(f"{path}: unexpected table [{key}]; settings are top-level keys")
    return data


@dataclass(frozen=True, slots=True)
class Resolved:
    """The effective settings and, for `crawler config`, where each value came from."""

    settings: Settings
    db: str
    sources: dict[str, str] = field(default_factory=dict)


def resolve(
    cli_values: Mapping[str, Any], config_path: Path | None, *, db_default: str = "crawl.db"
) -> Resolved:
    """defaults < config file (given, or ./config.toml when present) < CLI flags."""
    file_values: dict[str, Any] = {}
    source = "default"
    if config_path is not None:
        file_values = read_config(config_path)
        source = str(config_path)
    elif DEFAULT_CONFIG.is_file():
        config_path = DEFAULT_CONFIG
        file_values = read_config(DEFAULT_CONFIG)
        source = str(DEFAULT_CONFIG)
    db = db_default
    db_source = "default"
    if "db" in file_values:
        db = file_values.pop("db")
        if not isinstance(db, str) or not db:
            raise UsageError(f"{source}: setting 'db' must be a non-empty string")
        db_source = source
    settings, sources = build_settings(file_values, source=source)
    cli = {k: v for k, v in cli_values.items() if v is not None and k != "db"}
    settings, cli_sources = build_settings(cli, source="command line", base=settings)
    sources = {name: "default" for name in SETTING_NAMES} | sources | cli_sources
    if cli_values.get("db") is not None:
        db, db_source = cli_values["db"], "command line"
    sources["db"] = db_source
    return Resolved(settings=settings, db=db, sources=sources)
