"""The connection pool within the process's open-file limit.

Every open connection is a file descriptor, and a polite broad crawl wants one per host:
each host's connection waits out its delay idle in the pool, to be reused. aiohttp's
`limit` counts only connections in use; idle ones stay open for `keepalive_timeout`
(15 s), however many. A crawl of 10,000 hosts at one request per host per second kept
~9,900 sockets open, and with the usual `ulimit -n` of 1024 a crawl of a few thousand
hosts ran out of descriptors within seconds: SQLite could not open a temporary file and
the crawl stopped ("unable to open database file"), connects failed with EMFILE.

So the soft limit is raised to the hard one (as far as the process may), and the pool
keeps at most `limit - concurrency - RESERVED_FILES` idle connections: past that it
closes the one idle longest (which, in a crawl, is a host done or one whose turn is
furthest away). A crawl that cannot have `--concurrency` sockets besides the reserve
stops before it starts, with a message that says why.
"""

from __future__ import annotations

import collections
import sys
from typing import Any

import aiohttp
from aiohttp.client_proto import ResponseHandler
from aiohttp.client_reqrep import ConnectionKey

from crawler.errors import UsageError

# Descriptors a crawl needs besides its HTTP connections: the database and its WAL,
# SQLite's temporary files, DNS lookups on the resolver's threads, the event loop, logs,
# the status server's clients, --processes' pipes.
RESERVED_FILES = 100

# When the hard limit is "unlimited": Linux refuses more than fs.nr_open (2**20).
_UNLIMITED_CAP = 1 << 20


def open_file_limit() -> int | None:
    """The soft limit on open files, raised first to the hard limit (as far as the system
    lets us); None where there is no such limit to read (Windows)."""
    try:
        import resource
    except ImportError:  # pragma: no cover (Windows)
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = _UNLIMITED_CAP if hard == resource.RLIM_INFINITY else hard
    if sys.platform == "darwin":
        target = min(target, 10_240)  # OPEN_MAX: macOS refuses more for setrlimit
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass  # keep the soft limit we have
    return None if soft == resource.RLIM_INFINITY else soft


def idle_room(concurrency: int) -> int | None:
    """How many idle connections the pool may keep besides `concurrency` in use (None: no
    limit is known). UsageError when even `concurrency` connections do not fit."""
    limit = open_file_limit()
    if limit is None:
        return None
    room = limit - RESERVED_FILES - concurrency
    if room < 0:
        raise UsageError(
            f"--concurrency {concurrency} needs {concurrency + RESERVED_FILES} open files "
            f"and this process may open {limit} (ulimit -n): raise the limit or lower "
            "--concurrency"
        )
    return room


class Connector(aiohttp.TCPConnector):
    """A TCPConnector that keeps at most `max_idle` connections idle (None: no cap)."""

    def __init__(self, *args: Any, max_idle: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._max_idle = max_idle
        # Connections as they were last put back, oldest first. Some were taken again since,
        # or closed (by the server, by the keep-alive timer): those leave when they reach
        # the front, so the map holds little more than the last keep-alive period's
        # releases, and the idle connections are at most len(_idle).
        self._idle: collections.OrderedDict[ResponseHandler, None] = collections.OrderedDict()

    def _release(
        self, key: ConnectionKey, protocol: ResponseHandler, *, should_close: bool = False
    ) -> None:
        super()._release(key, protocol, should_close=should_close)
        if self._max_idle is None or not protocol.is_connected():
            return  # closed: not pooled
        idle = self._idle
        idle[protocol] = None
        idle.move_to_end(protocol)
        while idle:
            oldest = next(iter(idle))
            if oldest.is_connected() and oldest not in self._acquired:
                if len(idle) <= self._max_idle:
                    break
                # The pool meets a closed connection as one the server closed: it skips it.
                oldest.close()
            del idle[oldest]
