"""Every query block of docs/schema.md runs on the backends it is written for, against a
real crawl of a local site stored in each: ```sql on SQLite and PostgreSQL, ```sqlite on
SQLite only, ```postgresql on PostgreSQL only.

Blocks are found anew on every run, so a block added to the docs is tested without a line
here. A single query must return rows on the test crawl; one that is rightly empty there
says why with a comment line `-- empty when ...` or `-- empty unless ...`. Each block runs
in a transaction that is rolled back: a documented `ALTER TABLE` changes nothing here.
(tests/test_docs.py checks what the SQLite answers say.)
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pg import Cluster
from test_docs import _crawl

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_MD = ROOT / "docs" / "schema.md"
RUNS_ON = {"sql": ("sqlite", "postgres"), "sqlite": ("sqlite",), "postgresql": ("postgres",)}
MAY_BE_EMPTY = re.compile(r"^\s*-- empty (when|unless) ", re.M)


@dataclass(frozen=True)
class Block:
    line: int
    heading: str
    dialect: str
    sql: str

    @property
    def statements(self) -> int:
        text = re.sub(r"'[^']*'|--[^\n]*", "", self.sql)  # a ';' in a string or a comment
        return len([s for s in text.split(";") if s.strip()])

    @property
    def wants_rows(self) -> bool:
        first = re.sub(r"--[^\n]*", "", self.sql).lstrip().split(None, 1)[0].upper()
        may_be_empty = MAY_BE_EMPTY.search(self.sql) is not None
        return self.statements == 1 and first in ("SELECT", "WITH") and not may_be_empty


def blocks(text: str) -> list[Block]:
    """Every fenced query block, with the heading above it; an unknown dialect name for
    what looks like SQL (```postgres, ```psql) is an error, not a skipped block."""
    out = []
    heading = ""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        elif line.startswith("```"):
            fence = line[3:].strip()
            end = lines.index("```", i + 1)
            if fence in RUNS_ON:
                out.append(Block(i + 1, heading, fence, "\n".join(lines[i + 1 : end])))
            else:
                assert fence in ("", "sh", "toml", "json", "text", "python"), (
                    f"docs/schema.md:{i + 1}: unknown block kind ```{fence}"
                )
            i = end
        i += 1
    return out


BLOCKS = blocks(SCHEMA_MD.read_text())
CASES = [
    pytest.param(b, backend, id=f"L{b.line}-{backend}-{b.heading[:40]}")
    for b in BLOCKS
    for backend in RUNS_ON[b.dialect]
]


def test_the_docs_have_blocks_for_each_backend() -> None:
    kinds = {b.dialect for b in BLOCKS}
    assert kinds == {"sql", "sqlite", "postgresql"}
    assert len(blocks("# h\n```sql\nSELECT 1;\n```\n```sh\nls\n```\n")) == 1


def test_a_dialect_difference_is_shown_both_ways() -> None:
    """A heading with a ```sqlite block has a ```postgresql one too, and the other way
    round (the autovacuum settings and lease queries are PostgreSQL's alone)."""
    by_heading: dict[str, set[str]] = {}
    for b in BLOCKS:
        by_heading.setdefault(b.heading, set()).add(b.dialect)
    one_sided = {
        h: kinds
        for h, kinds in by_heading.items()
        if "sqlite" in kinds and "postgresql" not in kinds
    }
    assert one_sided == {}
    for b in BLOCKS:
        if b.dialect == "sql":  # the SQLite-only spellings do not hide in shared blocks
            assert not re.search(r"group_concat|strftime|unixepoch|json_each|instr\(", b.sql), b


# ---------------------------------------------------------------------- the crawls


@pytest.fixture(scope="module")
def sqlite_crawl(tmp_path_factory: pytest.TempPathFactory) -> str:
    db = str(tmp_path_factory.mktemp("schema-docs") / "crawl.db")
    asyncio.run(_crawl(db))
    return db


@pytest.fixture(scope="module")
def postgres_crawl(pg_cluster: Cluster) -> str:
    dsn = pg_cluster.dsn(pg_cluster.new_database())
    asyncio.run(_crawl(dsn))
    return dsn


@pytest.fixture
def query(request: pytest.FixtureRequest, backend: str) -> Iterator[Any]:
    if backend == "sqlite":
        yield _sqlite_runner(request.getfixturevalue("sqlite_crawl"))
    else:
        yield _postgres_runner(request.getfixturevalue("postgres_crawl"))


def _sqlite_runner(db: str) -> Any:
    def run(block: Block) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(db, isolation_level=None)
        try:
            if block.statements > 1:  # no rows, in a transaction of the script's own
                conn.executescript(f"BEGIN;\n{block.sql}\n;ROLLBACK;")
                return []
            conn.execute("BEGIN")
            return conn.execute(block.sql).fetchall()
        finally:
            conn.rollback()
            conn.close()

    return run


def _postgres_runner(dsn: str) -> Any:
    import asyncpg

    async def go(block: Block) -> list[tuple[Any, ...]]:
        conn = await asyncpg.connect(dsn)
        try:
            tx = conn.transaction()
            await tx.start()
            try:
                if block.statements == 1:
                    return [tuple(r) for r in await conn.fetch(block.sql)]
                await conn.execute(block.sql)  # several statements: no rows
                return []
            finally:
                await tx.rollback()
        finally:
            await conn.close()

    return lambda block: asyncio.run(go(block))


@pytest.mark.parametrize(("block", "backend"), CASES)
def test_a_documented_query_runs_on_its_backend(block: Block, backend: str, query: Any) -> None:
    rows = query(block)
    if block.wants_rows:
        assert rows, (
            f"docs/schema.md:{block.line} ({block.heading}) finds nothing on a real crawl "
            f"on {backend}; if that is right, say why in a comment `-- empty when/unless ...`"
        )
