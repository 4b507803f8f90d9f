"""Settings: one frozen dataclass, filled from defaults < config.toml < CLI flags.

A setting has one name everywhere: the TOML key, the dataclass field and the CLI flag
(`per_host` / `--per-host`). The crawl stores its settings in the database so that
`crawler resume` continues with exactly what it was started with.
"""

from __future__ import annotations

import dataclasses
import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from crawler.errors import UsageError

DEFAULT_CONFIG = Path("config.toml")
SCOPES = ("host", "domain", "any")


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything that shapes a crawl, alphabetised; see config.toml for each one's meaning."""

    allow: tuple[str, ...] = ()  # regexes; a URL must match one of them (when any are given)
    assets: bool = False  # fetch subresources (img, script, style, icon, preload, iframe) too
    compress: bool = False  # store bodies zlib-compressed (pages.body_codec = 'zlib')
    concurrency: int = 64  # most requests in flight overall
    cookies: bool = False  # keep cookies between requests (off: every request is anonymous)
    delay: float = 0.0  # least seconds between the starts of two requests to one host
    delay_factor: float = 0.0  # wait this many times a host's last response time (0: off)
    deny: tuple[str, ...] = ()  # regexes; a URL matching any of them is not crawled
    host_budget: int = 0  # most pages fetched from one host (0: no limit); a trap guard
    host_failures: int = 10  # consecutive failed requests before a host's queue is dropped
    ignore_robots: bool = False  # do not fetch or obey robots.txt
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
    repeat_segments: int = 3  # a path segment repeated more often than this is a trap
    retries: int = 2  # extra attempts after a network error, 429 or 5xx
    scope: str = "host"  # host: the seeds' hosts; domain: their registered domains; any
    sitemap_probe: bool = False  # also try /sitemap.xml when robots.txt names no sitemap
    sitemaps: bool = True  # fetch the sitemaps robots.txt names and crawl what they list
    timeout: float = 30.0  # seconds per request, from the moment it is sent
    user_agent: str = "crawler/0.1 (+https://github.com/crawler/crawler)"

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Settings:
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        # A database written by a newer version may carry settings we do not know: ignore them.
        return build_settings({k: v for k, v in data.items() if k in known}, source="database")[0]


SETTING_NAMES: tuple[str, ...] = tuple(f.name for f in fields(Settings))
_FIELDS = {f.name: f for f in fields(Settings)}


def _coerce(name: str, value: Any, source: str) -> Any:
    """Check one value's type (TOML and JSON are typed; CLI values arrive typed from click)."""
    default = getattr(Settings(), name)
    bad = UsageError(f"{source}: setting '{name}' must be {_type_name(default)}, got {value!r}")
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise bad
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise bad
        return value
    if isinstance(default, tuple):
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise bad
        return tuple(value)
    raise bad  # pragma: no cover - every field has one of the types above


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
        (s.concurrency >= 1, "concurrency must be at least 1"),
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
        (s.repeat_segments >= 1, "repeat_segments must be at least 1"),
        (s.scope in SCOPES, f"scope must be one of {', '.join(SCOPES)}, got {s.scope!r}"),
        (bool(s.user_agent.strip()), "user_agent must not be empty"),
    ]
    for ok, message in checks:
        if not ok:
            raise UsageError(message)
    for pattern in (*s.allow, *s.deny):
        try:
            re.compile(pattern)
        except re.error as exc:
            raise UsageError(f"invalid regex {pattern!r}: {exc}") from None


def build_settings(
    values: Mapping[str, Any], *, source: str, base: Settings | None = None
) -> tuple[Settings, dict[str, str]]:
    """Settings from `base` (defaults) with `values` on top; also which source set each one."""
    base = base or Settings()
    unknown = sorted(set(values) - set(SETTING_NAMES))
    if unknown:
        raise UsageError(f"{source}: unknown setting '{unknown[0]}'")
    coerced = {k: _coerce(k, v, source) for k, v in values.items()}
    settings = dataclasses.replace(base, **coerced)
    _validate(settings)
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
