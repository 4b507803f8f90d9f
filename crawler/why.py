"""`crawler why URL`: what happened to one URL, from the stored crawl alone.

A URL is stored (a `pages` row), queued, given up on before its fetch (robots.txt, a
host budget), or never admitted. The last leaves no row of its own (only a count in
`skipped`), so for a URL that stored pages link to, the crawl's stored rules are
applied to it again to say which one kept it out.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from crawler.config import Settings
from crawler.errors import UsageError
from crawler.reasons import Reason
from crawler.scope import Scope
from crawler.urls import canonical_url, has_repeated_segments

LINKERS_SHOWN = 10


def explain(db: sqlite3.Connection, url: str) -> dict[str, Any]:
    """Everything the database says about `url`, as plain data (what `why --json` prints)."""
    row = db.execute("SELECT settings, seeds FROM crawl WHERE id = 1").fetchone()
    if row is None:
        raise UsageError("the database holds no crawl")
    settings = Settings.from_json(row[0])
    seeds = json.loads(row[1])
    canonical = canonical_url(url.strip(), max_length=1 << 20)
    if canonical is None or "://" not in url:
        raise UsageError(f"not an http(s) URL: {url!r}")
    out: dict[str, Any] = {"url": canonical, "fate": None}
    page = _one(
        db,
        "SELECT status, final_status, final_url, error, depth, fetched_at, attempts "
        "FROM pages WHERE url = ?",
        canonical,
    )
    state = _one(db, "SELECT state, reason, depth, origin FROM urls WHERE url = ?", canonical)
    linkers = db.execute(
        "SELECT src_url, nofollow FROM links WHERE dst_url = ? LIMIT ?",
        (canonical, LINKERS_SHOWN),
    ).fetchall()
    out["linked_from"] = [{"url": src, "nofollow": bool(nf)} for src, nf in linkers]
    out["links_to_it"] = db.execute(
        "SELECT count(*) FROM links WHERE dst_url = ?", (canonical,)
    ).fetchone()[0]
    redirected = db.execute(
        "SELECT url FROM pages WHERE redirect_to = ? LIMIT ?", (canonical, LINKERS_SHOWN)
    ).fetchall()
    out["redirected_from"] = [r[0] for r in redirected]
    if state is not None and state["origin"]:
        out["redirect_origin"] = state["origin"]
    if page is not None:
        out["fate"] = "stored"
        out["page"] = page
    elif state is not None:
        out["fate"] = state["state"]  # queued | disallowed | dropped
        out["reason"] = state["reason"]
        out["depth"] = state["depth"]
    else:
        out["fate"] = "not followed" if out["links_to_it"] or out["redirected_from"] else "unknown"
        out["reason"] = _not_admitted(db, canonical, settings, seeds, out)
    return out


def _not_admitted(
    db: sqlite3.Connection,
    url: str,
    settings: Settings,
    seeds: list[str],
    found: dict[str, Any],
) -> str:
    """Which of the crawl's rules keeps `url` out, checked in the order the crawl checks."""
    if len(url) > settings.max_url_length:
        return f"{Reason.TOO_LONG.value} (longer than max_url_length {settings.max_url_length})"
    if not found["links_to_it"] and not found["redirected_from"]:
        return "the crawl never saw this URL: no stored page links to it"
    linked = db.execute(
        "SELECT min(p.depth), min(l.nofollow) FROM links l JOIN pages p ON p.url = l.src_url "
        "WHERE l.dst_url = ?",
        (url,),
    ).fetchone()
    if linked[1] == 1 and not found["redirected_from"]:
        return Reason.NOFOLLOW.value
    if linked[0] is not None and 0 <= settings.max_depth < linked[0] + 1:
        return (
            f"{Reason.DEPTH.value} (linked from depth {linked[0]}, max_depth {settings.max_depth})"
        )
    scope = Scope.from_settings(seeds, settings.scope, settings.allow, settings.deny)
    verdict = scope.verdict(url)
    if verdict is not None:
        return verdict.value
    if has_repeated_segments(url, settings.repeat_segments):
        return Reason.TRAP.value
    return "not admitted for a reason the stored rules do not show (settings changed since?)"


def _one(db: sqlite3.Connection, sql: str, url: str) -> dict[str, Any] | None:
    cur = db.execute(sql, (url,))
    row = cur.fetchone()
    if row is None:
        return None
    return {d[0]: v for d, v in zip(cur.description, row, strict=True)}


def render(data: dict[str, Any]) -> list[str]:
    """`why`'s answer as text lines."""
    lines = [data["url"]]
    fate = data["fate"]
    if fate == "stored":
        p = data["page"]
        if p["error"]:
            what = f"failed: {p['error']}"
            if p["status"] is not None:
                what = f"status {p['status']}, {what}"
        else:
            what = f"status {p['status']}"
        lines.append(f"  stored: {what} (depth {p['depth']}, {p['attempts']} attempt(s))")
        if p["final_url"] and p["final_url"] != data["url"]:
            lines.append(f"  redirect chain ends at {p['final_url']} (status {p['final_status']})")
    elif fate == "queued":
        lines.append(f"  queued at depth {data['depth']}: not fetched yet (`resume` continues)")
    elif fate in ("disallowed", "dropped"):
        lines.append(f"  {fate} before fetching: {data['reason']}")
    else:
        lines.append(f"  {fate}: {data['reason']}")
    if data.get("redirect_origin"):
        lines.append(f"  reached by a redirect chain from {data['redirect_origin']}")
    for src in data["redirected_from"]:
        lines.append(f"  redirected to from {src}")
    n = data["links_to_it"]
    if n:
        lines.append(f"  linked from {n} page(s):")
        for link in data["linked_from"]:
            lines.append(f"    {link['url']}" + (" (nofollow)" if link["nofollow"] else ""))
        if n > len(data["linked_from"]):
            lines.append(f"    ... and {n - len(data['linked_from'])} more")
    return lines
