"""Private addresses: which addresses a crawl may connect to, checked where we connect.

A crawl that follows links to other hosts (`--scope domain` or `any`) must not become a
way into the machine's own network: a link to `http://169.254.169.254/` (a cloud's
metadata service) or to a name that resolves to 127.0.0.1 is refused with an error row
("private address: ..."). The check runs on the address we are about to connect to,
inside the resolver the connection pool uses (`GuardedResolver`), so a name that
resolves to a public address once and a private one later (DNS rebinding) is caught.

What is allowed anyway: a seed's own host name (the user chose it), and the range of
a seed that is an address (a loopback seed allows 127.0.0.0/8). Link-local addresses
(169.254.0.0/16, fe80::/10) are allowed by nothing but `--allow-private`.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_RANGES: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ipaddress.ip_network(net), kind)
    for net, kind in (
        ("127.0.0.0/8", "loopback"),
        ("::1/128", "loopback"),
        ("10.0.0.0/8", "private"),
        ("172.16.0.0/12", "private"),
        ("192.168.0.0/16", "private"),
        ("fc00::/7", "private"),
        ("169.254.0.0/16", "link-local"),
        ("fe80::/10", "link-local"),
        ("0.0.0.0/8", "unspecified"),
        ("::/128", "unspecified"),
    )
)
LINK_LOCAL = "link-local"


def ip_or_none(text: str) -> IPAddress | None:
    """The address `text` names ("[::1]" too), or None for a host name."""
    try:
        ip = ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    return ip


def address_range(ip: IPAddress) -> tuple[IPNetwork, str] | None:
    """The non-public range `ip` is in and its kind, or None for a public address.

    >>> address_range(ipaddress.ip_address("10.1.2.3"))
    (IPv4Network('10.0.0.0/8'), 'private')
    """
    for net, kind in _RANGES:
        if ip.version == net.version and ip in net:
            return net, kind
    if ip.is_private:  # the other special-purpose blocks (RFC 6890): this one address
        return ipaddress.ip_network(ip), "private"
    return None


class PrivateAddress(OSError):
    """A connection refused before it was made: the address is not for crawling."""


@dataclass(frozen=True, slots=True)
class Guard:
    """Decides, per host name and address, whether a connection may be made."""

    allow_all: bool = False  # --allow-private
    allowed: tuple[IPNetwork, ...] = ()  # ranges the seeds' own addresses open
    names: frozenset[str] = frozenset()  # seeds' host names and proxies: the user's choice

    @classmethod
    def for_crawl(cls, seed_hosts: Iterable[str], *, allow_private: bool) -> Guard:
        allowed: list[IPNetwork] = []
        names: set[str] = set()
        for host in seed_hosts:
            ip = ip_or_none(host)
            if ip is None:
                names.add(host.lower())
            elif (found := address_range(ip)) is not None and found[1] != LINK_LOCAL:
                allowed.append(found[0])
        return cls(allow_private, tuple(dict.fromkeys(allowed)), frozenset(names))

    def exempt(self, hosts: Iterable[str]) -> Guard:
        """This guard with `hosts` (e.g. the proxies') allowed whatever they resolve to."""
        names = {h.lower() for h in hosts if ip_or_none(h) is None}
        return Guard(self.allow_all, self.allowed, self.names | names)

    def refusal(self, host: str, address: str) -> str | None:
        """Why connecting to `address` (for `host`) is refused, or None when it is not."""
        if self.allow_all:
            return None
        ip = ip_or_none(address)
        found = address_range(ip) if ip is not None else None
        if ip is None or found is None:
            return None
        kind = found[1]
        if kind != LINK_LOCAL and (
            host.lower() in self.names
            or any(ip in n for n in self.allowed if n.version == ip.version)
        ):
            return None
        what = f"{address} is" if ip_or_none(host) is not None else f"{host} resolves to {address},"
        return f"private address: {what} a {kind} address (--allow-private allows it)"


class GuardedResolver(AbstractResolver):
    """Name resolution for the pool: `names` first (--resolve), then `inner` (aiohttp's
    default unless given); every address is checked by `guard` before it is returned,
    so no connection to a refused address is ever opened."""

    def __init__(
        self, guard: Guard, names: dict[str, str], inner: AbstractResolver | None = None
    ) -> None:
        self.guard = guard
        self.names = {k.lower(): v for k, v in names.items()}
        self._inner = inner
        self._own_inner = inner is None

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        mapped = self.names.get(host.lower())
        if mapped is not None:
            found: list[ResolveResult] = [
                {
                    "hostname": host,
                    "host": mapped,
                    "port": port,
                    "family": socket.AF_INET6 if ":" in mapped else socket.AF_INET,
                    "proto": 0,
                    "flags": socket.AI_NUMERICHOST,
                }
            ]
        else:
            if self._inner is None:
                self._inner = aiohttp.DefaultResolver()
            found = await self._inner.resolve(host, port, family)
        for entry in found:
            why = self.guard.refusal(host, entry["host"])
            if why is not None:
                raise PrivateAddress(why)
        return found

    async def close(self) -> None:
        if self._own_inner and self._inner is not None:
            await self._inner.close()
