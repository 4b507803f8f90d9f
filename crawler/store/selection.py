"""The SQL that picks the stored pages a recrawl fetches again, shared by both stores."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def recrawl_selection(
    where: str | None,
    older_than: float | None,
    due: float | None,
    now: float,
    mark: Callable[[int], str] = lambda i: "?",
) -> tuple[str, tuple[Any, ...]]:
    """The query of the URLs a recrawl fetches again, and its parameters; `mark(n)` is
    the backend's n-th placeholder (both stores use it). A blank `where` is no condition."""
    clauses: list[str] = ["TRUE"]
    params: list[Any] = []
    if where and where.strip():
        clauses.append(f"({where}\n)")
    if older_than is not None:
        params.append(older_than)
        clauses.append(f"fetched_at < {mark(len(params))}")
    if due is not None:
        params += [due, now]
        clauses.append(
            "url IN (SELECT url FROM page_rows WHERE "
            f"coalesce(due_at, fetched_at + {mark(len(params) - 1)}) <= {mark(len(params))})"
        )
    return f"SELECT url FROM pages WHERE {' AND '.join(clauses)}", tuple(params)
