"""Why a discovered link was not followed: one extensible enum, counted per crawl.

Each value is what `stats`, `why` and the `skipped` table show. Later features add
their own members here (sitemaps, private addresses, ...), never free-form strings.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """A link not followed, or a queued URL given up on before it was fetched."""

    OUT_OF_SCOPE = "out of scope"  # not on the seeds' hosts/domains, or no --allow matched
    DENY = "deny"  # matched a --deny pattern
    DEPTH = "depth"  # deeper than --max-depth
    TRAP = "trap guard"  # a path segment repeated past --repeat-segments
    TOO_LONG = "url too long"  # longer than --max-url-length
    NOFOLLOW = "nofollow"  # rel=nofollow on the link, meta robots or X-Robots-Tag nofollow
    ROBOTS = "robots"  # disallowed by the host's robots.txt
    HOST_BUDGET = "host budget"  # the host's --host-budget of pages was reached
    SITEMAP_HOST = "sitemap host"  # listed by a sitemap of another host (nor its robots.txt's)
    SITEMAP_URL = "sitemap invalid url"  # a sitemap entry that is no usable http(s) URL
    SITEMAP_NESTING = "sitemap nesting"  # a sitemap index nested deeper than the cap
    HOOK = "hook"  # an on_page hook removed it from page.links
    ASSET = "asset"  # a subresource (img, script, style...), fetched only with --assets
