"""A throwaway PostgreSQL 15 cluster for the tests: one per session, one database per test.

`pg_config --bindir` names Debian's server binaries (not on PATH). initdb refuses to run
as root, so as root the cluster belongs to the `postgres` OS user (`runuser`), in a
folder of its own under /tmp: pytest's temp folders are mode 0700 and root's. The server
listens on a free loopback port and a private socket folder, with durability switched
off (a test cluster lives seconds). Each test gets a fresh database (`CREATE DATABASE ...
TEMPLATE template0`, quick) owned by a role with a password, so tests are independent and
the password path (never stored, never printed) is exercised.

Without the binaries the tests skip with the reason, except under CI=true, where they fail.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

USER = "crawler"
PASSWORD = "s3cret-pw"


@dataclass
class Cluster:
    """A running server: `dsn(db)` names one of its databases (with the password)."""

    bindir: Path
    data: Path
    sockets: Path
    port: int
    owner: str | None  # the OS user running it (None: ourselves)
    _names: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def dsn(self, database: str, *, password: bool = True) -> str:
        secret = f":{PASSWORD}" if password else ""
        return f"postgresql://{USER}{secret}@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run `sql` as the superuser through the socket; its output."""
        done = subprocess.run(
            [*self._as_owner(), str(self.bindir / "psql"), "-X", "-q", "-A", "-t",
             "-v", "ON_ERROR_STOP=1", "-h", str(self.sockets), "-p", str(self.port),
             "-U", "postgres", "-d", database, "-c", sql],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"psql failed: {done.stderr.strip()}")
        return done.stdout

    def new_database(self) -> str:
        name = f"t{next(self._names)}"
        self.psql(f"CREATE DATABASE {name} OWNER {USER} TEMPLATE template0")
        return name

    def _as_owner(self) -> list[str]:
        return ["runuser", "-u", self.owner, "--"] if self.owner else []

    def ctl(self, *args: str) -> None:
        subprocess.run(
            [*self._as_owner(), str(self.bindir / "pg_ctl"), "-D", str(self.data), *args],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip


def _bindir() -> Path | None:
    """`pg_config --bindir`, else Debian's newest /usr/lib/postgresql/N/bin."""
    candidates = []
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        found = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        candidates.append(Path(found.stdout.strip()))
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for path in candidates:
        if (path / "initdb").exists() and (path / "pg_ctl").exists():
            return path
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def unavailable() -> str | None:
    """Why no cluster can start here (None: it can)."""
    if _bindir() is None:
        return "PostgreSQL server binaries not found (pg_config --bindir has no initdb)"
    try:
        import asyncpg  # noqa: F401
    except ImportError:
        return "asyncpg is not installed (pip install -e '.[test]')"
    return None


@contextlib.contextmanager
def cluster() -> Iterator[Cluster]:
    """Start a cluster, yield it, stop it and remove its files."""
    bindir = _bindir()
    assert bindir is not None
    owner = None
    root = Path(tempfile.mkdtemp(prefix="crawler-pg-", dir="/tmp"))
    if os.geteuid() == 0:  # initdb refuses root: the cluster is the postgres user's
        owner = "postgres"
        entry = pwd.getpwnam(owner)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    data, sockets = root / "data", root / "sock"
    c = Cluster(bindir, data, sockets, _free_port(), owner)
    try:
        run = [*c._as_owner()]
        subprocess.run([*run, "mkdir", "-m", "0700", str(sockets)], check=True)
        secret = root / "pw"
        subprocess.run(
            [*run, "sh", "-c", f"umask 077; echo postgres > {secret}"], check=True, timeout=10
        )
        subprocess.run(
            [*run, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-E", "UTF8",
             "--locale=C", "-A", "scram-sha-256", f"--pwfile={secret}"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        # The socket is trusted (the superuser's door for psql); TCP needs a password.
        hba = "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n"
        subprocess.run(
            [*run, "sh", "-c", f"cat > {data / 'pg_hba.conf'}"], input=hba.encode(), check=True
        )
        options = (
            f"-p {c.port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        c.ctl("-o", options, "-l", str(root / "log"), "-w", "start")
        try:
            c.psql(f"CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'")
            yield c
        finally:
            c.ctl("-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    reason = unavailable()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL tests cannot run under CI: {reason}")
        pytest.skip(reason)
    with cluster() as c:
        yield c


@pytest.fixture
def pg_dsn(pg_cluster: Cluster) -> str:
    """A fresh, empty database of the session's cluster, as a URL with its password."""
    return pg_cluster.dsn(pg_cluster.new_database())
