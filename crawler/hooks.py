"""User code per page: hooks (`module:function`, or callables from Python) and `--extract`.

A hook is called with a `Page` for every response the crawl stores (any status, and
network errors), after its links were parsed and before they are followed. It returns
None or a dict of JSON values, stored in `pages.data`; it may remove URLs from
`page.links` (in place) so that they are not followed. A hook is named by an importable
`module:function` so that every process of a crawl (`--processes`, `crawler work`) and
every `resume` loads the same code: the names are stored with the crawl's settings.

A hook that raises (or returns something else than a dict or None) costs its page an
error note, `pages.data.hook_error`, never the crawl: the page is stored all the same.
"""

from __future__ import annotations

import importlib
import inspect
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from crawler.config import Settings, extract_rules
from crawler.errors import UsageError

log = logging.getLogger(__name__)

LOGGED_FAILURES = 10  # hook failures logged as warnings per process; the rest at debug level

__all__ = ["Hook", "Hooks", "Page", "hook_name", "load_hook", "load_hooks"]


@dataclass(frozen=True, slots=True)
class Page:
    """What a hook sees of one stored page.

    `links` are the canonical URLs the page links to that the crawl would follow (before
    scope, robots.txt and depth are applied): remove some, in place, and they are not
    followed (counted as `hook` in `skipped`; they stay in `links`). Adding URLs is an
    error note: a hook chooses among a page's links, it does not invent them.
    """

    url: str  # the canonical requested URL (pages.url)
    status: int | None  # None: no HTTP response (see `error`)
    error: str | None  # pages.error, e.g. "timeout: ..."
    headers: tuple[tuple[str, str], ...]  # as received, in order
    body: bytes  # content-decoded, at most max_bytes
    document: Any  # the parsed HTML (selectolax LexborHTMLParser); None when not parsed
    links: list[str]  # links to follow; a hook may remove some (in place)
    depth: int  # link hops from a seed

    @property
    def content_type(self) -> str | None:
        return self.header("Content-Type")

    def header(self, name: str) -> str | None:
        """The first header called `name` (any case), or None."""
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)


# A hook: a plain or async function of a Page returning a dict of fields, or None.
Hook = Callable[[Page], Mapping[str, Any] | Awaitable[Mapping[str, Any] | None] | None]


def load_hook(name: str) -> Hook:
    """The function `name` ("package.module:function") names; UsageError when it cannot
    be imported or is not callable (the CLI's exit 2, before anything is fetched)."""
    module_name, _, attr = name.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except Exception as exc:  # any error of the user's module is this one message
        raise UsageError(f"cannot import hook {name!r}: {type(exc).__name__}: {exc}") from None
    if not callable(obj):
        raise UsageError(f"hook {name!r} is not callable")
    return obj  # type: ignore[no-any-return]


def hook_name(fn: Callable[..., Any]) -> str | None:
    """The `module:function` name another process can import `fn` by, or None (a lambda,
    a nested function, a function of `__main__`)."""
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    if not module or not qualname or module == "__main__" or "<" in qualname:
        return None
    name = f"{module}:{qualname}"
    try:
        return name if load_hook(name) is fn else None
    except UsageError:
        return None


class Hooks:
    """The hooks and `--extract` rules of one crawl in one process."""

    def __init__(self, hooks: Sequence[tuple[str, Hook]], extract: Sequence[tuple[str, str]]):
        self.hooks = list(hooks)
        self.extract = list(extract)
        self.failures = 0  # pages on which a hook failed, in this process

    async def run(self, page: Page) -> tuple[str | None, list[str]]:
        """(pages.data as JSON or None, the links to follow) for `page`."""
        data: dict[str, Any] = {}
        doc = page.document
        if doc is not None:
            for name, css in self.extract:
                node = doc.css_first(css)
                data[name] = " ".join(node.text().split()) if node is not None else None
        errors: list[str] = []
        offered = list(page.links)
        for name, hook in self.hooks:
            try:
                got = hook(page)
                if inspect.isawaitable(got):
                    got = await got
                if got is not None:
                    if not isinstance(got, Mapping):
                        raise TypeError(f"returned {type(got).__name__}, not a dict or None")
                    data.update(got)
            except Exception as exc:  # the hook's failure is its page's note, not the crawl's
                errors.append(f"{name}: {type(exc).__name__}: {exc}")
        follow = page.links
        try:
            kept = set(follow)
        except TypeError:  # something unhashable put in the list: keep what was offered
            kept = set(offered)
            errors.append("page.links: holds values that are not URLs")
        if not kept <= set(offered):
            errors.append("page.links: a hook added URLs (only removing them has an effect)")
        if len(kept) != len(follow) or not kept <= set(offered):
            follow = [url for url in offered if url in kept]
        if errors:
            data["hook_error"] = _line("; ".join(errors))
            self.failures += 1
            # Every failure is in pages.data and counted by `stats`; the log says the first
            # few, so a hook that fails on every page does not bury the crawl's other lines.
            level = logging.WARNING if self.failures <= LOGGED_FAILURES else logging.DEBUG
            log.log(level, "%s: hook failed: %s", page.url, data["hook_error"])
            if self.failures == LOGGED_FAILURES:
                log.warning("more hook failures are noted in pages.data only (crawler stats)")
        return _json(data), follow


def _json(data: dict[str, Any]) -> str | None:
    if not data:
        return None
    try:
        return json.dumps(_clean(data), allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        note = f"fields are not JSON: {type(exc).__name__}: {exc}"
        return json.dumps({"hook_error": _line(note)}, ensure_ascii=False)


def _clean(value: Any) -> Any:
    """Strings as any store takes them: a NUL (which PostgreSQL's jsonb refuses) as the
    text `\\x00`, a lone surrogate escaped; keys as strings."""
    if isinstance(value, str):
        if "\x00" in value:
            value = value.replace("\x00", "\\x00")
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, Mapping):
        return {_clean(str(k)): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _line(text: str) -> str:
    return " ".join(text.split())[:500]


def load_hooks(settings: Settings, extra: Sequence[Hook] = ()) -> Hooks | None:
    """The crawl's hooks: `settings.hooks` imported, `extra` callables (Python only) and
    the `extract` rules; None when there are none, so the crawl pays nothing for them."""
    named: list[tuple[str, Hook]] = [(name, load_hook(name)) for name in settings.hooks]
    named += [(getattr(fn, "__qualname__", repr(fn)), fn) for fn in extra]
    if not named and not settings.extract:
        return None
    return Hooks(named, extract_rules(settings.extract))
