"""How a run reaches the web: extra headers, the proxy for each URL, TLS verification,
name resolution and the private-address guard, gathered for the one session.

With a proxy the pool connects to the proxy, not to the target, so the guard cannot
see the target's address there: `Network.route` resolves the target itself (through
the same guarded resolver) before the request goes to the proxy.
"""

from __future__ import annotations

import asyncio
import ssl
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field

import aiohttp
import yarl
from aiohttp.abc import AbstractResolver

from crawler.config import Settings
from crawler.errors import UsageError
from crawler.guard import Guard, GuardedResolver, PrivateAddress, ip_or_none
from crawler.runoptions import RunOptions, proxy_url


@dataclass(frozen=True, slots=True)
class Proxy:
    """A proxy as aiohttp takes it: the URL without credentials, and the header that
    carries them (so they never appear in a URL that could be logged)."""

    url: yarl.URL
    headers: dict[str, str] | None = None

    @classmethod
    def of(cls, text: str) -> Proxy:
        url = proxy_url(text)
        if url.user is None:
            return cls(url)
        try:
            auth = aiohttp.encode_basic_auth(url.user, url.password or "")
        except ValueError:  # a ':' in the user name (RFC 7617 2)
            raise UsageError("--proxy: the user name must not contain ':'") from None
        return cls(url.with_user(None), {"Proxy-Authorization": auth})


@dataclass(slots=True)
class Proxies:
    """Which proxy, if any, a URL goes through: one for all (`--proxy URL`) or the
    environment's per scheme, NO_PROXY honoured (`--proxy env`)."""

    by_scheme: dict[str, Proxy] = field(default_factory=dict)
    from_env: bool = False

    @classmethod
    def of(cls, option: str) -> Proxies:
        if option == "":
            return cls()
        if option != "env":
            proxy = Proxy.of(option)
            return cls({"http": proxy, "https": proxy})
        env = urllib.request.getproxies_environment()
        found: dict[str, Proxy] = {}
        for scheme in ("http", "https"):
            if env.get(scheme):
                try:
                    found[scheme] = Proxy.of(env[scheme])
                except UsageError:
                    raise UsageError(
                        f"--proxy env: {scheme.upper()}_PROXY is not an http:// or https:// URL"
                    ) from None
        return cls(found, from_env=True)

    def hosts(self) -> set[str]:
        return {p.url.host for p in self.by_scheme.values() if p.url.host}

    def for_url(self, url: yarl.URL) -> Proxy | None:
        proxy = self.by_scheme.get(url.scheme)
        if proxy is None or url.host is None:
            return None
        # In the standard library since Python 2, missing from typeshed's stubs.
        bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
        if self.from_env and bypass(url.host):
            return None
        return proxy


def accepts(accept: tuple[str, ...], resp: aiohttp.ClientResponse) -> bool:
    """Whether the response's media type matches one of `accept` (`image/*`, `*/*`)."""
    media = resp.headers.get("Content-Type", "").partition(";")[0].strip().lower()
    media = media or "application/octet-stream"  # RFC 9110 8.3: unknown type
    kind = media.partition("/")[0]
    return any(a.lower() in (media, f"{kind}/*", "*/*") for a in accept)


def ssl_setting(settings: Settings) -> ssl.SSLContext | bool:
    """The connector's `ssl`: verify (True), not at all (--insecure), or with --ca-bundle."""
    if settings.insecure:
        return False
    if settings.ca_bundle:
        return load_ca_bundle(settings.ca_bundle)
    return True


def load_ca_bundle(path: str) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cafile=path)
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"--ca-bundle {path}: cannot load certificates ({exc})") from None


class Network:
    """The run's way to the web, built once per engine, passed to the session and fetch."""

    def __init__(
        self,
        settings: Settings,
        options: RunOptions,
        seed_hosts: Iterable[str],
        *,
        resolver: AbstractResolver | None = None,
    ) -> None:
        self.headers = options.headers()
        self.proxies = Proxies.of(options.proxy)
        guard = Guard.for_crawl(seed_hosts, allow_private=settings.allow_private)
        self.guard = guard.exempt(self.proxies.hosts())
        self.guarded = GuardedResolver(self.guard, options.names(), resolver)
        # What the pool asks: the guarded resolver, or a cache over it (--per-ip).
        self.resolver: AbstractResolver = self.guarded
        self.ssl = ssl_setting(settings)
        self._literals: dict[str, tuple[bool, str | None]] = {}  # host -> (an IP?, refusal)

    async def route(self, url: yarl.URL, timeout: float) -> Proxy | None:
        """The proxy `url` goes through; raises PrivateAddress when its host is refused,
        TimeoutError when resolving it (a proxied request's host) takes over `timeout` s.

        A direct request's name is checked by the pool's resolver when it connects; an
        address in the URL never reaches a resolver, and a proxied request's target is
        resolved by the proxy, so both are checked here.
        """
        host = url.host or ""
        proxy = self.proxies.for_url(url)
        literal = self._literals.get(host)
        if literal is None:  # parsed once per host: this runs for every request
            if len(self._literals) >= 100_000:
                self._literals.clear()
            is_ip = ip_or_none(host) is not None
            literal = self._literals[host] = (
                is_ip,
                self.guard.refusal(host, host) if is_ip else None,
            )
        if literal[1] is not None:
            raise PrivateAddress(literal[1])
        if not literal[0] and proxy is not None and not self.guard.allow_all:
            async with asyncio.timeout(timeout):  # the only wait here, and rare
                await self.guarded.resolve(host, url.port or 0)
        return proxy

    async def close(self) -> None:
        await self.resolver.close()  # a cache over `guarded` closes it too
        if self.resolver is not self.guarded:
            await self.guarded.close()
