"""`crawler why URL`: what happened to one URL, from the stored crawl alone.

A URL is stored (a `pages` row), queued, given up on before its fetch (robots.txt, a
host budget), or never admitted. The last leaves no row of its own (only a count in
`skipped`), so for a URL that stored pages link to, the crawl's stored rules are
applied to it again to say which one kept it out.
"""

from __future__ import annotations

from typing import Any

from crawler.config import Settings
from crawler.errors import UsageError
from crawler.reasons import Reason
from crawler.scope import Scope
from crawler.store import Reader
from crawler.urls import canonical_url, has_repeated_segments

LINKERS_SHOWN = 10


def explain(reader: Reader, url: str) -> dict[str, Any]:
    """Everything the store says about `url`, as plain data (what `why --json` prints)."""
    crawl = reader.crawl()
    if crawl is None:
        raise UsageError("the database holds no crawl")
    settings, seeds = crawl
    canonical = canonical_url(url.strip(), max_length=1 << 20)
    if canonical is None or "://" not in url:
        raise UsageError(f"not an http(s) URL: {url!r}")
    out: dict[str, Any] = {"url": canonical, "fate": None}
    page = reader.page(canonical)
    state = reader.url_state(canonical)
    linkers, count = reader.linked_from(canonical, LINKERS_SHOWN)
    out["linked_from"] = [
        {"url": src, "nofollow": nofollow, "kind": kind} for src, nofollow, kind in linkers
    ]
    out["links_to_it"] = count
    out["redirected_from"] = reader.redirected_from(canonical, LINKERS_SHOWN)
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
        out["fate"] = "not followed" if count or out["redirected_from"] else "unknown"
        out["reason"] = _not_admitted(reader, canonical, settings, seeds, out)
    return out


def _not_admitted(
    reader: Reader, url: str, settings: Settings, seeds: list[str], found: dict[str, Any]
) -> str:
    """Which of the crawl's rules keeps `url` out, checked in the order the crawl checks."""
    if len(url) > settings.max_url_length:
        return f"{Reason.TOO_LONG.value} (longer than max_url_length {settings.max_url_length})"
    if not found["links_to_it"] and not found["redirected_from"]:
        return "the crawl never saw this URL: no stored page links to it"
    depth, all_nofollow, kinds = reader.linking_depth(url)
    if kinds and "a" not in kinds and not settings.assets and not found["redirected_from"]:
        return (
            f"{Reason.ASSET.value}: linked only as a subresource ({', '.join(kinds)}), "
            "fetched only with --assets"
        )
    if all_nofollow and not found["redirected_from"]:
        return Reason.NOFOLLOW.value
    if depth is not None and 0 <= settings.max_depth < depth + 1:
        return f"{Reason.DEPTH.value} (linked from depth {depth}, max_depth {settings.max_depth})"
    scope = Scope.from_settings(seeds, settings.scope, settings.allow, settings.deny)
    verdict = scope.verdict(url)
    if verdict is not None:
        return verdict.value
    if has_repeated_segments(url, settings.repeat_segments):
        return Reason.TRAP.value
    if settings.hooks:  # a hook may remove a page's links; only it knows which
        return f"{Reason.HOOK.value} (a hook of {', '.join(settings.hooks)} did not follow it?)"
    return "not admitted for a reason the stored rules do not show (settings changed since?)"


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
        if p.get("canonical_url"):
            lines.append(f"  canonical: {p['canonical_url']}")
        if p.get("noindex"):
            lines.append("  noindex (meta robots or X-Robots-Tag)")
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
            notes = [k for k in (link["kind"],) if k != "a"] + ["nofollow"] * link["nofollow"]
            lines.append(f"    {link['url']}" + (f" ({', '.join(notes)})" if notes else ""))
        if n > len(data["linked_from"]):
            lines.append(f"    ... and {n - len(data['linked_from'])} more")
    return lines
