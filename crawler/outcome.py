"""Response -> Outcome: what one fetch means for the crawl, and the row that records it.

A redirect is sent back through the frontier as the chain's next hop (or ends the chain:
a loop, too many hops, a target not followed); an HTML page's links are parsed and the
new ones admitted; the page row is built. This is the one place that sees a whole page,
so it is where per-page user code (hooks) plugs in. CPU-heavy work (compressing a body
and hashing what is compressed) runs in a thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import operator
import time
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from crawler import revisit
from crawler.config import Settings
from crawler.directives import NONE, agent_token, x_robots_tag
from crawler.fetcher import Response
from crawler.frontier import Frontier
from crawler.hooks import Hooks, Page
from crawler.netbytes import location_url
from crawler.parser import ParsedPage, extract_links, is_html
from crawler.reasons import Reason
from crawler.records import (
    ChainEnd,
    Change,
    Job,
    LinkRun,
    NewURL,
    Outcome,
    PageRow,
    QueuedURL,
    URLState,
)
from crawler.text import visible_text
from crawler.urls import canonical_url


@dataclass(slots=True)
class _Redirect:
    """Where a 3xx leads, as far as this hop can tell."""

    to: str | None = None  # the canonical Location
    error: str | None = None  # this row's own error
    chain_error: str | None = None  # the whole chain failed
    continues: bool = False  # a next hop was admitted: the chain's end is not known yet
    new: list[NewURL] = field(default_factory=list)


class Outcomes:
    def __init__(self, settings: Settings, frontier: Frontier, hooks: Hooks | None = None) -> None:
        self.settings = settings
        self.frontier = frontier
        self.hooks = hooks  # None: no hook and no --extract, nothing to pay per page
        self.agent = agent_token(settings.user_agent)

    async def build(self, job: Job, resp: Response) -> Outcome:
        """The outcome of `job`'s final response (retries are the engine's business)."""
        item = job.item
        assert item is not None
        settings = self.settings
        change, interval, digest = Change.NEW, None, None
        if item.stored is not None:
            # A recrawl of a stored page: only a changed one is parsed and replaced.
            if resp.body:
                digest = await _digest(resp.body)
            change = revisit.change_of(item.stored, resp.status, digest)
            interval = revisit.next_interval(settings, change, item.stored.interval)
            if change is not Change.CHANGED:
                if change is Change.UNCHANGED:
                    digest = item.stored.content_hash  # a 304 has no body of its own
                return Outcome(
                    url=item.url,
                    state=URLState.DONE,
                    page=_fetch_row(job, item, resp, digest),
                    change=change,
                    interval=interval,
                )
        skipped: dict[str, int] = {}
        status = resp.status or 0
        hop = _Redirect(error=resp.error)
        final_url = item.url if resp.status is not None else None
        if 300 <= status < 400 and (location := resp.header("Location")) is not None:
            hop = self._redirect(job, item, location, skipped)
            final_url = None if hop.error == "redirect loop" else hop.to
        elif resp.error is not None and resp.downloaded and item.origin is not None:
            hop.chain_error = resp.error  # the chain's last hop failed
        if hop.chain_error is not None or hop.continues:
            final_status = None  # no response ended the chain (yet)
        elif hop.to is not None:
            final_status = None  # the chain ends at a URL the crawl already knows
        else:
            final_status = resp.status
        chain_end = None
        if not hop.continues and (item.origin or hop.chain_error or hop.to):
            # The chain through this URL ended here (at a final status, an error, or a URL
            # already known): every row of the chain learns where.
            chain_end = ChainEnd(item.origin or item.url, final_url, final_status, hop.chain_error)
        new = hop.new
        links: list[LinkRun] = []
        parsed: ParsedPage | None = None
        content_type = resp.content_type
        # X-Robots-Tag applies to any response (a PDF's, an image's); its nofollow is obeyed
        # as a meta robots nofollow is, its noindex recorded.
        robots = NONE
        if resp.status is not None and resp.headers:
            tags = [v for k, v in resp.headers if k.lower() == "x-robots-tag"]
            if tags:
                robots = x_robots_tag(tags, settings.user_agent)
        if 200 <= status < 300 and is_html(content_type) and resp.body:
            parsed = extract_links(
                resp.body,
                item.url,
                content_type,
                max_links=settings.max_links,
                max_url_length=settings.max_url_length,
                follow=not robots.nofollow,
                agent=self.agent,
            )
        data = None
        follow: Sequence[str] | None = None  # None: every link the page has
        if self.hooks is not None:
            data, follow = await self._hooks(job, resp, parsed, skipped)
        if parsed is not None:
            links, new = self._links(job, parsed, skipped, follow)
        text, text_truncated = None, False
        if settings.text and parsed is not None and parsed.document is not None:
            # From the tree the links came from, after the hooks: it strips the tree.
            text, text_truncated = visible_text(parsed.document)
        # Plain bodies are hashed by the store as it builds a batch (SHA-1: ~9 µs for
        # 15 KB); a body stored compressed is compressed and hashed here, in a thread.
        got_body = resp.status is not None and resp.downloaded  # else no body was read
        body: bytes | None = resp.body if got_body else None
        codec = None
        if body and self.settings.compress:
            body, codec, digest = await asyncio.to_thread(_compressed, body)
        page = PageRow(
            url=item.url,
            final_url=final_url,
            status=resp.status,
            error=hop.error,
            content_type=content_type,
            depth=item.depth,
            fetched_at=time.time(),
            body=body,
            host=item.host,
            headers=json.dumps(resp.headers) if resp.headers else None,
            elapsed=round(resp.elapsed, 6),
            size=len(resp.body) if got_body else None,
            truncated=resp.truncated,
            links_found=len(parsed.links) + len(parsed.nofollow) if parsed is not None else None,
            links_truncated=parsed.truncated if parsed is not None else False,
            redirect_to=hop.to,
            attempts=job.attempt,
            body_codec=codec,
            content_hash=digest,
            title=parsed.title if parsed is not None else None,
            final_status=final_status,
            data=data,
            canonical_url=parsed.canonical if parsed is not None else None,
            noindex=robots.noindex or (parsed is not None and parsed.noindex)
            if resp.status is not None
            else None,
            text=text,
            text_truncated=text_truncated,
        )
        return Outcome(
            url=item.url,
            state=URLState.DONE,
            page=page,
            links=links,
            new_urls=new,
            chain_end=chain_end,
            skipped=tuple(skipped.items()),
            change=change,
            interval=interval,
        )

    async def _hooks(
        self, job: Job, resp: Response, parsed: ParsedPage | None, skipped: dict[str, int]
    ) -> tuple[str | None, Sequence[str]]:
        """pages.data and the links to follow, as the hooks decided."""
        assert self.hooks is not None and job.item is not None
        offered = list(parsed.links) if parsed is not None else []
        page = Page(
            url=job.item.url,
            status=resp.status,
            error=resp.error,
            headers=resp.headers,
            body=resp.body,
            document=parsed.document if parsed is not None else None,
            links=offered.copy(),
            depth=job.item.depth,
        )
        data, follow = await self.hooks.run(page)
        if len(follow) < len(offered):
            skipped[Reason.HOOK] = len(offered) - len(follow)
        return data, follow

    def _links(
        self,
        job: Job,
        parsed: ParsedPage,
        skipped: dict[str, int],
        chosen: Sequence[str] | None = None,
    ) -> tuple[list[LinkRun], list[NewURL]]:
        """A parsed page's `links` rows (as runs) and the URLs it adds to the frontier: its
        links (those the hooks kept: `chosen`), and its subresources when `assets` is on
        (else they are counted as not followed)."""
        src = job.item.url if job.item is not None else ""
        links: list[LinkRun] = [(src, parsed.links, 0, "a")] if parsed.links else []
        if parsed.nofollow:
            links.append((src, parsed.nofollow, 1, "a"))
        page_links = parsed.links if chosen is None else chosen
        follow: Iterable[str] = page_links
        if parsed.resources:
            for kind, run in itertools.groupby(parsed.resources, key=operator.itemgetter(1)):
                links.append((src, [dst for dst, _ in run], 0, kind))
            # A URL also linked as a page is followed as one; a subresource is fetched for its
            # page whatever the page's nofollow says (nofollow is about links).
            linked = set(parsed.links) | set(parsed.nofollow)
            assets = [u for u in dict.fromkeys(u for u, _ in parsed.resources) if u not in linked]
            if self.settings.assets:
                follow = [*page_links, *assets]
            elif assets:
                skipped[Reason.ASSET] = len(assets)
        new = self.frontier.discover(job, follow, skipped)
        if parsed.nofollow:
            skipped[Reason.NOFOLLOW] = len(parsed.nofollow)
        if parsed.too_long:
            skipped[Reason.TOO_LONG] = parsed.too_long
        return links, new

    def _redirect(
        self, job: Job, item: QueuedURL, location: str, skipped: dict[str, int]
    ) -> _Redirect:
        settings = self.settings
        hop = _Redirect()
        hop.to = canonical_url(location_url(location), item.url, max_length=settings.max_url_length)
        if hop.to is None:
            hop.error = hop.chain_error = f"redirect to an unusable URL: {location[:200]!r}"
        elif item.hops >= settings.max_redirects:
            hop.error = hop.chain_error = f"redirect limit of {settings.max_redirects} hops reached"
        elif hop.to in (item.url, item.origin):
            hop.error = hop.chain_error = "redirect loop"  # the chain has no final URL
        else:
            target = self.frontier.redirect(job, hop.to)
            if isinstance(target, NewURL):
                hop.new.append(target)
                hop.continues = True
            elif target is not None:
                hop.chain_error = f"redirect target not followed: {target.value}"
                skipped[target] = 1
        return hop


def _fetch_row(job: Job, item: QueuedURL, resp: Response, digest: str | None) -> PageRow:
    """The row of a recrawl's fetch that leaves the stored page in place (unchanged, gone,
    failed): the store takes from it only what the fetch says (status, time, hash)."""
    return PageRow(
        url=item.url, final_url=None, status=resp.status, error=resp.error,
        content_type=resp.content_type, depth=item.depth, fetched_at=time.time(), body=None,
        host=item.host, headers=None, elapsed=round(resp.elapsed, 6),
        size=len(resp.body) if resp.status is not None else None, truncated=resp.truncated,
        links_found=None, links_truncated=False, redirect_to=None, attempts=job.attempt,
        body_codec=None, content_hash=digest, title=None,
    )  # fmt: skip


async def _digest(body: bytes) -> str:
    # A large body is hashed off the event loop (hashlib releases the GIL).
    if len(body) < 65_536:
        return hashlib.sha1(body).hexdigest()
    return await asyncio.to_thread(lambda: hashlib.sha1(body).hexdigest())


def _compressed(body: bytes) -> tuple[bytes, str, str]:
    return zlib.compress(body, 6), "zlib", hashlib.sha1(body).hexdigest()
