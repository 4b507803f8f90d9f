"""Tables for the crawl's scope: seeds' hosts or domains, then allow and deny regexes."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

import crawler.scope
from crawler.reasons import Reason
from crawler.scope import Scope, registered_domain

SEED = ["http://www.example.co.uk/start"]


@pytest.mark.parametrize(
    ("seeds", "mode", "url", "expected"),
    [
        # host: netloc (host and port), whatever the scheme
        pytest.param(SEED, "host", "http://www.example.co.uk/other", True, id="host-same"),
        pytest.param(SEED, "host", "https://www.example.co.uk/", True, id="host-https-upgrade"),
        pytest.param(SEED, "host", "http://www.example.co.uk:8080/", False, id="host-other-port"),
        pytest.param(SEED, "host", "http://shop.example.co.uk/", False, id="host-sibling"),
        pytest.param(SEED, "host", "http://example.co.uk/", False, id="host-parent"),
        pytest.param(
            ["HTTP://WWW.Example.CO.UK:80"],
            "host",
            "http://www.example.co.uk/",
            True,
            id="host-seed-canonicalised",
        ),
        pytest.param(
            ["http://127.0.0.2:8080/"], "host", "http://127.0.0.2:8080/x", True, id="host-ip-port"
        ),
        pytest.param(
            ["http://127.0.0.2:8080/"], "host", "http://127.0.0.3:8080/x", False, id="host-other-ip"
        ),
        pytest.param(
            ["http://a.com/", "http://b.org/"],
            "host",
            "http://b.org/x",
            True,
            id="host-second-seed",
        ),
        # domain: registered domain, any port or scheme
        pytest.param(SEED, "domain", "http://shop.example.co.uk/", True, id="domain-sibling"),
        pytest.param(SEED, "domain", "https://example.co.uk:8443/", True, id="domain-apex-port"),
        pytest.param(SEED, "domain", "http://a.b.example.co.uk/", True, id="domain-deep"),
        pytest.param(SEED, "domain", "http://other.co.uk/", False, id="domain-same-suffix"),
        pytest.param(SEED, "domain", "http://co.uk/", False, id="domain-bare-suffix"),
        pytest.param(SEED, "domain", "http://example.com/", False, id="domain-other-tld"),
        pytest.param(
            ["http://a.example.com.au/"],
            "domain",
            "http://b.example.com.au/",
            True,
            id="domain-com-au",
        ),
        pytest.param(
            ["http://alice.github.io/"],
            "domain",
            "http://bob.github.io/",
            False,
            id="domain-private-suffix",
        ),
        pytest.param(
            ["http://a.site.test/"], "domain", "http://b.site.test/", True, id="domain-unlisted-tld"
        ),
        pytest.param(
            ["http://127.0.0.2/"], "domain", "http://127.0.0.2:8080/", True, id="domain-ip-port"
        ),
        pytest.param(
            ["http://127.0.0.2/"], "domain", "http://127.0.0.3/", False, id="domain-ip-own-domain"
        ),
        pytest.param(["http://[::1]/"], "domain", "http://[::1]:81/", True, id="domain-ipv6"),
        pytest.param(["http://[::1]/"], "domain", "http://[::2]/", False, id="domain-other-ipv6"),
        pytest.param(
            ["http://localhost/"], "domain", "http://localhost:81/", True, id="domain-single-label"
        ),
        # any
        pytest.param(SEED, "any", "http://anything.example.net/", True, id="any"),
        pytest.param([], "any", "https://[::1]/", True, id="any-no-seeds"),
    ],
)
def test_mode(seeds: list[str], mode: str, url: str, expected: bool) -> None:
    scope = Scope.from_settings(seeds, mode, [], [])
    assert scope.in_scope(url) is expected
    assert scope.in_scope(url) is expected  # the second answer comes from the cache


@pytest.mark.parametrize(
    ("allow", "deny", "url", "expected"),
    [
        pytest.param([], [], "http://h/x", True, id="none"),
        pytest.param([r"/blog/"], [], "http://h/blog/post", True, id="allow-match"),
        pytest.param([r"/blog/"], [], "http://h/shop/item", False, id="allow-miss"),
        pytest.param([r"/blog/", r"/news/"], [], "http://h/news/1", True, id="allow-any-of"),
        pytest.param([r"^http://h/$"], [], "http://h/", True, id="allow-anchored-absolute"),
        pytest.param([r"^/blog"], [], "http://h/blog", False, id="allow-searches-absolute-url"),
        pytest.param([], [r"\.pdf$"], "http://h/a.pdf", False, id="deny-match"),
        pytest.param([], [r"\.pdf$"], "http://h/a.html", True, id="deny-miss"),
        pytest.param([], [r"\?", r"logout"], "http://h/logout", False, id="deny-any-of"),
        pytest.param(
            [r"/blog/"], [r"draft"], "http://h/blog/draft-1", False, id="deny-beats-allow"
        ),
        pytest.param([r"/blog/"], [r"draft"], "http://h/blog/final", True, id="allow-and-not-deny"),
        pytest.param([r"(?i)/BLOG/"], [], "http://h/blog/x", True, id="inline-flags"),
        pytest.param([r"sort=asc"], [], "http://h/l?page=2&sort=asc", True, id="query-searched"),
    ],
)
def test_allow_deny(allow: list[str], deny: list[str], url: str, expected: bool) -> None:
    assert Scope.from_settings(["http://h/"], "host", allow, deny).in_scope(url) is expected


def test_allow_deny_apply_after_the_host_check() -> None:
    scope = Scope.from_settings(["http://h/"], "host", [r"/blog/"], [])
    assert not scope.in_scope("http://other/blog/x")


@pytest.mark.parametrize(
    ("allow", "deny", "bad"),
    [
        pytest.param(["(unclosed"], [], "(unclosed", id="allow"),
        pytest.param([], ["ok", "*star"], "*star", id="deny"),
        pytest.param([], ["a(?i)b"], "a(?i)b", id="misplaced-flag"),
    ],
)
def test_invalid_regex_names_the_pattern(allow: list[str], deny: list[str], bad: str) -> None:
    with pytest.raises(ValueError, match="invalid regex") as info:
        Scope.from_settings(["http://h/"], "any", allow, deny)
    assert repr(bad) in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("seeds", "mode", "message"),
    [
        pytest.param(
            ["http://h/"],
            "site",
            "^scope must be one of host, domain, any, got 'site'$",
            id="bad-mode",
        ),
        pytest.param(["mailto:a@b.c"], "host", "mailto:a@b.c", id="bad-seed"),
        pytest.param(["example.com"], "domain", "example.com", id="seed-without-scheme"),
    ],
)
def test_invalid_settings(seeds: list[str], mode: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Scope.from_settings(seeds, mode, [], [])


def test_host_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(crawler.scope, "_CACHE_SIZE", 8)
    scope = Scope.from_settings(["http://h0/"], "host", [], [])
    answers = []
    for i in range(50):
        answers.append(scope.in_scope(f"http://h{i}/"))
        assert len(scope._seen) <= 8
    assert answers == [True] + [False] * 49
    assert scope.in_scope("http://h0/x")  # still right after the cache was emptied


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        pytest.param("a.example.co.uk", "example.co.uk", id="multi-part-suffix"),
        pytest.param("example.co.uk", "example.co.uk", id="apex"),
        pytest.param("co.uk", "co.uk", id="bare-suffix"),
        pytest.param("www.bbc.com", "bbc.com", id="com"),
        pytest.param("x.y.example.com.au", "example.com.au", id="com-au"),
        pytest.param("xn--bcher-kva.de", "xn--bcher-kva.de", id="punycode"),
        pytest.param("alice.github.io", "alice.github.io", id="private-suffix"),
        pytest.param("a.b.site.test", "site.test", id="unlisted-tld"),
        pytest.param("localhost", "localhost", id="single-label"),
        pytest.param("127.0.0.2", "127.0.0.2", id="ipv4"),
        pytest.param("[::1]", "[::1]", id="ipv6"),
    ],
)
def test_registered_domain(host: str, expected: str) -> None:
    assert registered_domain(host) == expected


@pytest.fixture
def network_attempts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record (and refuse) every name lookup and connection made while the test runs."""
    attempts: list[str] = []

    def refuse(name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            attempts.append(f"{name}{args[:2]!r}")
            raise OSError(f"network use in a test: {name}")

        return call

    monkeypatch.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))
    monkeypatch.setattr(socket, "create_connection", refuse("create_connection"))
    monkeypatch.setattr(socket.socket, "connect", refuse("connect"))
    monkeypatch.delenv("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", raising=False)
    return attempts


def test_domain_scope_never_touches_the_network(network_attempts: list[str]) -> None:
    crawler.scope._extractor.cache_clear()  # build the extractor here, under the guard
    scope = Scope.from_settings(["http://www.example.co.uk/"], "domain", [], [])
    assert scope.in_scope("http://shop.example.co.uk/")
    assert not scope.in_scope("http://example.org/")
    assert network_attempts == []


def test_network_guard_catches_tldextracts_default(network_attempts: list[str]) -> None:
    # The control for the test above: tldextract's defaults do fetch the live list.
    import tldextract

    extract = tldextract.TLDExtract(cache_dir=None)
    assert extract("a.example.co.uk").suffix == "co.uk"  # from the snapshot, after failing
    assert network_attempts != []


@pytest.mark.parametrize(
    ("mode", "allow", "deny", "url", "expected"),
    [
        pytest.param("host", [], [], "http://h/x", None, id="in-scope"),
        pytest.param("host", [], [], "http://other/x", Reason.OUT_OF_SCOPE, id="other-host"),
        pytest.param("domain", [], [], "http://other/x", Reason.OUT_OF_SCOPE, id="other-domain"),
        pytest.param("host", [r"/blog/"], [], "http://h/shop", Reason.OUT_OF_SCOPE, id="no-allow"),
        pytest.param("host", [r"/blog/"], [], "http://h/blog/1", None, id="allowed"),
        pytest.param("host", [], [r"\.pdf$"], "http://h/a.pdf", Reason.DENY, id="deny"),
        pytest.param("any", [], [r"\.pdf$"], "http://x/a.pdf", Reason.DENY, id="deny-mode-any"),
        pytest.param("any", [], [r"a", r"b"], "http://x/b", Reason.DENY, id="deny-second"),
        pytest.param("any", [], [r"\.pdf$"], "http://x/a", None, id="any-not-denied"),
        pytest.param(
            "host", [r"/blog/"], [r"draft"], "http://h/blog/draft", Reason.DENY, id="deny-wins"
        ),
        pytest.param(
            "host", [], [r"\.pdf$"], "http://other/a.pdf", Reason.OUT_OF_SCOPE, id="host-first"
        ),
        pytest.param(
            "host", [r"/x"], [r"\.pdf$"], "http://h/a.pdf", Reason.OUT_OF_SCOPE, id="allow-first"
        ),
    ],
)
def test_verdict(
    mode: str, allow: list[str], deny: list[str], url: str, expected: Reason | None
) -> None:
    scope = Scope.from_settings(["http://h/"], mode, allow, deny)
    assert scope.verdict(url) is expected
    assert scope.verdict(url) is expected  # the second answer comes from the cache
    assert scope.in_scope(url) is (expected is None)


@pytest.mark.parametrize("mode", ["host", "domain"])
@pytest.mark.parametrize(
    "url",
    [
        pytest.param("http://evil.example/r?u=http://a.example/", id="query"),
        pytest.param("http://evil.example/http://a.example/", id="path"),
        pytest.param("http://evil.example/r?u=http://a.example", id="query-no-slash"),
    ],
)
def test_url_inside_a_url_is_not_its_host(mode: str, url: str) -> None:
    scope = Scope.from_settings(["http://a.example/"], mode, [], [])
    assert scope.verdict(url) is Reason.OUT_OF_SCOPE
    assert Scope.from_settings(["http://evil.example/"], mode, [], []).in_scope(url)


@pytest.mark.parametrize(
    ("seed", "url"),
    [
        pytest.param("http://127.0.0.1/", "http://0x7f.1/", id="hex"),
        pytest.param("http://127.0.0.1/", "http://2130706433/", id="number"),
        pytest.param("http://2130706433/", "http://127.0.0.1/", id="seed-number"),
        pytest.param("http://a.example/", "http://A.EXAMPLE:80/", id="case-port"),
    ],
)
def test_one_host_in_two_spellings_is_one_scope(seed: str, url: str) -> None:
    from crawler.urls import canonical_url

    canonical = canonical_url(url)
    assert canonical is not None
    assert Scope.from_settings([seed], "host", [], []).in_scope(canonical)
    deny = Scope.from_settings([seed], "host", [], [r"^http://127\.0\.0\.1/"])
    assert deny.verdict(canonical) is (
        Reason.DENY if "127" in (canonical_url(seed) or "") else None
    )


@pytest.fixture
def cache_writes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record (and skip) every write tldextract makes to its disk cache while the test runs."""
    import tldextract.cache

    writes: list[str] = []

    def record(self: Any, namespace: str, key: Any, value: object) -> None:
        writes.append(f"{self.cache_dir}/{namespace}")

    monkeypatch.setattr(tldextract.cache.DiskCache, "set", record)
    return writes


def test_domain_scope_never_writes_a_cache(
    cache_writes: list[str], network_attempts: list[str]
) -> None:
    crawler.scope._extractor.cache_clear()
    try:
        scope = Scope.from_settings(["http://www.example.co.uk/"], "domain", [], [])
        assert scope.in_scope("http://shop.example.co.uk/")
    finally:
        crawler.scope._extractor.cache_clear()  # later tests build theirs unguarded
    assert cache_writes == []


def test_cache_guard_catches_a_cache_dir(
    cache_writes: list[str], network_attempts: list[str], tmp_path: Path
) -> None:
    # The control for the test above: with a cache_dir tldextract writes the suffix list.
    import tldextract

    extract = tldextract.TLDExtract(cache_dir=str(tmp_path), suffix_list_urls=())
    assert extract("a.example.co.uk").suffix == "co.uk"
    assert cache_writes != []
