"""The broad-crawl benchmark's site: thousands of loopback hosts, a few huge, most small.

Served by bench_broad_server.py, measured by bench_broad.py. Pure and deterministic:
the same `Site` gives the same hosts, pages, links and latencies every time.

Hosts (`Site(hosts=2000, big=20, hidden=150)`), host k on `127.1.(k // 200).(k % 200 + 1)`:

- **big** (k < big): the home page links 6,000 pages (`/b/1` .. `/b/6000`), and every
  page `/b/n` links 300 pages nobody has seen (`/b/6000+(n-1)*300+1` ..), so each big host's
  queue grows without end, far past the crawler's RAM window (50,000 URLs, 5,000 a host):
  20 home pages alone queue 120,000 URLs. `/b/n` also links three hidden hosts' home pages.
- **hidden** small hosts (the next `hidden`): in no seed list, found only through links
  on big hosts' `/b/n` pages, that is after the big hosts' queues are full: the issue's
  starvation case.
- **seeded** small hosts (the rest): in the seed list after the big hosts.
Small hosts have 10-50 pages (`/` and `/p1.html` ..): page i links pages 3i+1 .. 3i+3,
the home page and, on the home page, `/private/secret.html`, which robots.txt disallows.

Every response (robots.txt included) waits `latency(addr, path)` before its head is
written: 50-500 ms from a hash of the URL (big hosts' home pages 50 ms, so their 6,000
links are in before the small hosts' home pages answer).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import count

PORT = 18100
BIG_HOME_LINKS = 6000
BIG_LINKS = 300
HIDDEN_LINKS = 3  # hidden hosts linked from each big /b/n page
SMALL_MIN, SMALL_MAX = 10, 50
ROBOTS = b"User-agent: *\nDisallow: /private/\n"
FILLER = (
    "<p>Broad crawls are bound by politeness and latency rather than by CPU: each host allows "
    "one request per delay, and every server takes its time to answer. A fair scheduler keeps "
    "every host that has work and may be asked busy, however many URLs the biggest hosts hold."
    "</p>\n"
) * 6


def address(k: int) -> str:
    """Host k's loopback address: 127.1.0.1 .. 127.1.0.200, 127.1.1.1 ..; never 127.0.*."""
    return f"127.1.{k // 200}.{k % 200 + 1}"


def latency(addr: str, path: str) -> float:
    """Seconds before answering `path` on `addr`: 0.05-0.5 from a hash of the URL."""
    return (50 + zlib.crc32(f"{addr}{path}".encode()) % 451) / 1000


def small_pages(addr: str) -> int:
    """How many pages small host `addr` has (10-50)."""
    return SMALL_MIN + zlib.crc32(f"pages {addr}".encode()) % (SMALL_MAX - SMALL_MIN + 1)


def small_path(i: int) -> str:
    return "/" if i == 0 else f"/p{i}.html"


def small_index(path: str) -> int | None:
    if path == "/":
        return 0
    if path.startswith("/p") and path.endswith(".html") and path[2:-5].isdigit():
        return int(path[2:-5])
    return None


def big_index(path: str) -> int | None:
    if path == "/":
        return 0
    if path.startswith("/b/") and path[3:].isdigit() and path[3] != "0":
        return int(path[3:])
    return None


@dataclass(frozen=True)
class Site:
    hosts: int = 2000
    big: int = 20
    hidden: int = 150
    port: int = PORT
    addrs: list[str] = field(init=False, repr=False)
    kind: dict[str, str] = field(init=False, repr=False)  # addr -> big | hidden | small
    pages: dict[str, int] = field(init=False, repr=False)  # small and hidden hosts' page counts
    big_rank: dict[str, int] = field(init=False, repr=False)  # big host addr -> 0 .. big-1

    def __post_init__(self) -> None:
        if self.hosts > 200 * 255 or self.big + self.hidden > self.hosts:
            raise ValueError("need big + hidden <= hosts <= 51,000")
        addrs = [address(k) for k in range(self.hosts)]
        kind = {a: "big" if k < self.big else "hidden" if k < self.big + self.hidden else "small"
                for k, a in enumerate(addrs)}  # fmt: skip
        object.__setattr__(self, "addrs", addrs)
        object.__setattr__(self, "kind", kind)
        pages = {a: small_pages(a) for a in addrs if kind[a] != "big"}
        object.__setattr__(self, "pages", pages)
        object.__setattr__(self, "big_rank", {a: b for b, a in enumerate(addrs[: self.big])})

    @property
    def hidden_addrs(self) -> list[str]:
        return self.addrs[self.big : self.big + self.hidden]

    def url(self, addr: str, path: str = "/") -> str:
        return f"http://{addr}:{self.port}{path}"

    def seeds(self) -> list[str]:
        """Home pages of the big hosts, then of the seeded small hosts (not the hidden)."""
        return [self.url(a) for a in self.addrs if self.kind[a] != "hidden"]

    def hidden_linked(self, addr: str, n: int) -> list[str]:
        """The hidden hosts that big host `addr`'s page `/b/n` links to (n >= 1).

        Host b's pages 1, 2, 3 .. walk the hidden hosts from b * spacing, three at a time,
        so the first few pages of all big hosts together link every hidden host.
        """
        if not self.hidden:
            return []
        b = self.big_rank[addr]
        spacing = -(-self.hidden // self.big)
        first = b * spacing + HIDDEN_LINKS * (n - 1)
        hidden = self.hidden_addrs
        return [hidden[(first + i) % self.hidden] for i in range(HIDDEN_LINKS)]

    def latency(self, addr: str, path: str) -> float:
        """Seconds the server waits before the response head: big home pages 0.05."""
        if path == "/" and addr in self.big_rank:
            return 0.05
        return latency(addr, path)

    def order(self, addr: str) -> Iterator[str]:
        """The host's pages breadth-first (small: all; big: without end)."""
        if self.kind[addr] == "big":
            yield "/"
            for n in count(1):
                yield f"/b/{n}"
        else:
            for i in range(self.pages[addr]):
                yield small_path(i)

    def is_page(self, addr: str, path: str) -> bool:
        """A path that answers 200 with HTML (not robots.txt, not a 404)."""
        kind = self.kind.get(addr)
        if kind is None:
            return False
        if kind == "big":
            return big_index(path) is not None
        i = small_index(path)
        return i is not None and i < self.pages[addr]

    def response(self, addr: str, target: str) -> tuple[int, bytes, bytes]:
        """(status, content type, body) for a GET of `target` on `addr`."""
        path = target.split("?", 1)[0].split("#", 1)[0]
        if path == "/robots.txt":
            return 200, b"text/plain", ROBOTS
        kind = self.kind.get(addr)
        if kind == "big":
            n = big_index(path)
            if n is not None:
                return 200, b"text/html; charset=utf-8", self._big_page(addr, n)
        elif kind is not None:
            i = small_index(path)
            if i is not None and i < self.pages[addr]:
                return 200, b"text/html; charset=utf-8", self._small_page(addr, i)
        return 404, b"text/plain", b"not found\n"

    def _big_page(self, addr: str, n: int) -> bytes:
        if n == 0:
            first, links = 1, BIG_HOME_LINKS
        else:
            first, links = BIG_HOME_LINKS + (n - 1) * BIG_LINKS + 1, BIG_LINKS
        anchors = [f'<li><a href="/b/{i}">page {i}</a></li>\n' for i in range(first, first + links)]
        if n:
            anchors += [f'<li><a href="{self.url(h)}">friend {h}</a></li>\n'
                        for h in self.hidden_linked(addr, n)]  # fmt: skip
        return _html(f"big {addr} page {n}", "".join(anchors))

    def _small_page(self, addr: str, i: int) -> bytes:
        total = self.pages[addr]
        kids = [j for j in range(3 * i + 1, 3 * i + 4) if j < total]
        anchors = ['<li><a href="/">home</a></li>\n']
        anchors += [f'<li><a href="{small_path(j)}">page {j}</a></li>\n' for j in kids]
        if i == 0:
            anchors.append('<li><a href="/private/secret.html">members</a></li>\n')
        return _html(f"small {addr} page {i}", FILLER + "<ul>\n" + "".join(anchors) + "</ul>\n")


def _html(title: str, body: str) -> bytes:
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{title}</title></head>\n'
        f"<body><h1>{title}</h1>\n{body}</body></html>\n"
    ).encode()
