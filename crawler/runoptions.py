"""What one run brings that is never stored with the crawl: headers, proxy, name
mappings and a time limit.

Header values and proxy credentials are secrets (an API token, a password): they are
given again on each `crawl`/`resume`/`work` (or come from the environment: `--proxy
env`), never written to the database, and shown only redacted (`crawler config`, the
summary's resume hint, logs).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yarl

from crawler.errors import UsageError
from crawler.guard import ip_or_none

_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 5.1: a field name
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
# Set by the crawler itself: a header of these names would contradict it.
_OURS = ("user-agent", "accept-encoding", "host", "content-length", "transfer-encoding")


@dataclass(frozen=True, slots=True)
class RunOptions:
    """The run's own options; each is a CLI flag of the same name (`time_limit` /
    `--time-limit`)."""

    header: tuple[str, ...] = ()  # "Name: value", sent with every request
    proxy: str = ""  # "": none; "env": HTTP_PROXY/HTTPS_PROXY/NO_PROXY; or a proxy URL
    resolve: tuple[str, ...] = ()  # "HOST:ADDRESS": HOST resolves to ADDRESS, DNS unasked
    time_limit: float = 0.0  # seconds after which the run stops gracefully; 0: none

    def headers(self) -> list[tuple[str, str]]:
        return [parse_header(h) for h in self.header]

    def names(self) -> dict[str, str]:
        return dict(parse_resolve(r) for r in self.resolve)

    @property
    def has_secrets(self) -> bool:
        return bool(self.header) or bool(self.proxy)

    def shown(self) -> dict[str, Any]:
        """The options as `crawler config` prints them: header values and proxy
        credentials replaced by ***."""
        return {
            "header": [f"{parse_header(h)[0]}: ***" for h in self.header],
            "proxy": redacted_url(self.proxy) if self.proxy not in ("", "env") else self.proxy,
            "resolve": list(self.resolve),
            "time_limit": self.time_limit,
        }


NO_OPTIONS = RunOptions()


def run_options(
    header: tuple[str, ...] = (),
    proxy: str | None = None,
    resolve: tuple[str, ...] = (),
    time_limit: str | None = None,
) -> RunOptions:
    """RunOptions from the command line's text, checked: a UsageError names the bad one."""
    for h in header:
        parse_header(h)
    for r in resolve:
        parse_resolve(r)
    if proxy not in (None, "", "env"):
        proxy_url(proxy)
    limit = parse_duration(time_limit) if time_limit is not None else 0.0
    return RunOptions(tuple(header), proxy or "", tuple(resolve), limit)


def parse_header(text: str) -> tuple[str, str]:
    """'Name: value' -> (name, value).

    >>> parse_header("X-Token: a b")
    ('X-Token', 'a b')
    """
    name, sep, value = text.partition(":")
    name, value = name.strip(), value.strip()
    if not sep or not _TOKEN.match(name):
        # The value is not echoed: it may be a secret.
        raise UsageError(f"--header must be 'Name: value', got a header named {name[:40]!r}")
    if name.lower() in _OURS:
        hint = " (use --user-agent)" if name.lower() == "user-agent" else ""
        raise UsageError(f"--header cannot set {name}: the crawler sets it{hint}")
    if any(c in value for c in "\r\n\0"):
        raise UsageError(f"--header {name}: the value must be one line")
    return name, value


def parse_resolve(text: str) -> tuple[str, str]:
    """'HOST:ADDRESS' -> (host, address); the address may be IPv6 (`h:[::1]` or `h:::1`).

    >>> parse_resolve("site.test:127.0.0.2")
    ('site.test', '127.0.0.2')
    """
    host, sep, address = text.partition(":")
    ip = ip_or_none(address)
    if not sep or not host or ip is None:
        raise UsageError(f"--resolve must be HOST:ADDRESS (an IP address), got {text!r}")
    return host.lower(), str(ip)


def parse_duration(text: str) -> float:
    """'90s', '15m', '2h', '1d' or plain seconds -> seconds.

    >>> parse_duration("15m")
    900.0
    """
    m = _DURATION.match(text)
    if m is None or float(m.group(1)) <= 0:
        raise UsageError(
            f"--time-limit must be a positive duration such as 90s, 15m, 2h or 1d, got {text!r}"
        )
    return float(m.group(1)) * _UNITS[m.group(2)]


def duration_text(seconds: float) -> str:
    """900.0 -> '15m': the shortest exact way to write it back."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def proxy_url(text: str) -> yarl.URL:
    """A proxy URL, checked: http:// or https:// with a host."""
    try:
        url = yarl.URL(text)
    except (ValueError, TypeError):
        url = None
    if url is None or url.scheme not in ("http", "https") or not url.host:
        shown = redacted_url(text)
        raise UsageError(f"--proxy must be an http:// or https:// URL or 'env', got {shown!r}")
    return url


def redacted_url(text: str) -> str:
    """`text` with any user name and password replaced by ***.

    >>> redacted_url("http://me:pw@proxy:3128")
    'http://***@proxy:3128'
    """
    scheme, sep, rest = text.partition("://")
    if not sep:
        return "***" if "@" in text else text
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        authority = "***@" + authority.rpartition("@")[2]
    return f"{scheme}{sep}{authority}{slash}{path}"
