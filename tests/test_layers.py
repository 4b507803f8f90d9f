"""The package's shape: layers only point down, drivers only inside store/, small modules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "crawler"
DRIVERS = {"sqlite3", "aiosqlite", "asyncpg"}
MAX_LINES = 450  # "most under ~400": a module past this has grown a second job


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module this one imports, at the top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
GRAPH = {
    name: {m for m in imports(path) if m in MODULES and m != name} for name, path in MODULES.items()
}


def test_no_import_cycles() -> None:
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for dep in sorted(GRAPH[name]):
            if dep == "crawler" or name.startswith(dep + "."):
                continue  # a package's __init__ re-exports its own modules
            if state.get(dep) == 1:
                pytest.fail("import cycle: " + " -> ".join([*path, name, dep]))
            if dep not in state:
                visit(dep, [*path, name])
        state[name] = 2

    for name in MODULES:
        if name not in state:
            visit(name, [])


def test_only_the_cli_imports_the_cli() -> None:
    users = [
        name for name, deps in GRAPH.items() if "crawler.cli" in deps and name != "crawler.__main__"
    ]
    assert users == [], f"the library imports the command line: {users}"


def test_database_drivers_stay_inside_store() -> None:
    for name, path in MODULES.items():
        if name.startswith("crawler.store"):
            continue
        assert not (imports(path) & DRIVERS), f"{name} imports a database driver"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_stay_small(name: str) -> None:
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines: split it by job"
