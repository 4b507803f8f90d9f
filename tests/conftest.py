"""Fixtures shared by the tests; the helpers themselves live in support.py."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from pg import pg_cluster, pg_dsn  # noqa: F401  (PostgreSQL fixtures: tests/pg.py)
from support import Site


@pytest.fixture(autouse=True)
def no_proxy_from_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy set on the machine (CI often has one) is not the tests': they talk to
    loopback only, and a crawl warns about an unused HTTP_PROXY. Tests set their own."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    s = Site()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "crawl.db")


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Run in an empty directory (no ./config.toml) and undo the CLI's logging setup."""
    monkeypatch.chdir(tmp_path)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield tmp_path
    root.handlers[:] = handlers
    root.setLevel(level)
