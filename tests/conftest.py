"""Fixtures shared by the tests; the helpers themselves live in support.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
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
