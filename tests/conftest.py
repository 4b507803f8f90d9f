"""Fixtures shared by the tests; the helpers themselves live in support.py."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from pg import pg_cluster, pg_dsn  # noqa: F401  (PostgreSQL fixtures: tests/pg.py)
from support import Site


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
