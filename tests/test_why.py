"""`crawler why URL`: one URL's fate from the stored crawl, and who links to it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from support import Host, assert_one_line_error, invoke, threaded_site

pytestmark = pytest.mark.usefixtures("in_tmp")  # tests/conftest.py


@pytest.fixture(scope="module")
def crawled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Host, Host, str]]:
    db = str(tmp_path_factory.mktemp("why") / "why.db")
    with threaded_site() as (site, thread):
        host = thread.call(site.host("127.0.0.81"))
        other = thread.call(site.host("127.0.0.82"))
        host.robots("User-agent: *\nDisallow: /private\n")
        host.page("/", ["/a", "/moved", "/private/x", other.url("/"), "/deny-me", "/b"])
        host.page("/a", ["/a/deeper"])
        host.redirect("/moved", "/a")
        host.page("/b", status=404)
        other.page("/")
        args = ["crawl", host.url("/"), "--db", db, "-q", "--max-depth", "1", "--deny", "deny"]
        result = invoke(*args)
        assert result.exit_code == 0, result.stderr
        yield host, other, db


def why(url: str, db: str) -> dict[str, Any]:
    result = invoke("why", url, "--db", db, "--json")
    assert result.exit_code == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def test_stored_page(crawled: tuple[Host, Host, str]) -> None:
    host, _, db = crawled
    data = why(host.url("/b"), db)
    assert data["fate"] == "stored"
    assert data["page"]["status"] == 404 and data["page"]["final_status"] == 404
    assert data["linked_from"] == [{"url": host.url("/"), "nofollow": False, "kind": "a"}]
    text = invoke("why", host.url("/b"), "--db", db).stdout
    assert "stored: status 404" in text and host.url("/") in text


def test_redirect_shows_where_the_chain_ended(crawled: tuple[Host, Host, str]) -> None:
    host, _, db = crawled
    data = why(host.url("/moved"), db)
    assert data["page"]["final_url"] == host.url("/a")
    assert data["page"]["final_status"] == 200
    assert (
        "redirect chain ends at " + host.url("/a")
        in invoke("why", host.url("/moved"), "--db", db).stdout
    )
    assert why(host.url("/a"), db)["redirected_from"] == [host.url("/moved")]


@pytest.mark.parametrize(
    ("path", "fate", "reason"),
    [
        pytest.param("/private/x", "disallowed", "robots.txt", id="robots"),
        pytest.param("/deny-me", "not followed", "deny", id="deny"),
        pytest.param("/a/deeper", "not followed", "depth", id="depth"),
    ],
)
def test_not_fetched(crawled: tuple[Host, Host, str], path: str, fate: str, reason: str) -> None:
    host, _, db = crawled
    data = why(host.url(path), db)
    assert data["fate"] == fate
    assert data["reason"].startswith(reason)


def test_out_of_scope(crawled: tuple[Host, Host, str]) -> None:
    _, other, db = crawled
    data = why(other.url("/"), db)
    assert (data["fate"], data["reason"]) == ("not followed", "out of scope")
    assert data["links_to_it"] == 1


def test_unknown_url(crawled: tuple[Host, Host, str]) -> None:
    host, _, db = crawled
    data = why(host.url("/never"), db)
    assert data["fate"] == "unknown"
    assert "never saw" in data["reason"]


def test_bad_input(crawled: tuple[Host, Host, str]) -> None:
    _, _, db = crawled
    assert_one_line_error(invoke("why", "not a url", "--db", db), "not an http(s) URL")
    assert_one_line_error(invoke("why", "http://x.example/", "--db", "missing.db"), "missing.db")
