"""Seeds the crawl's own rules refuse: never a silent "done" with nothing fetched."""

from __future__ import annotations

from pathlib import Path

from support import assert_one_line_error, invoke, rows, threaded_site


def test_every_seed_refused_is_a_usage_error_and_no_file(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    result = invoke(
        "crawl", "http://127.0.0.2:9/a", "http://127.0.0.2:9/b", "--deny", "127", "--db", str(db)
    )
    assert_one_line_error(result, "no seed can be crawled", "/a is refused (deny)", "1 more")
    assert not db.exists()


def test_a_refused_seed_among_others_is_counted(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    with threaded_site() as (site, thread):
        host = thread.call(site.host())
        host.page("/")
        result = invoke(
            "crawl", host.url("/"), host.url("/private/x"), "--deny", "/private/",
            "--db", str(db), "--ignore-robots",
        )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "is not crawled: deny" in result.stderr
    assert rows(str(db), "SELECT reason, count FROM skipped") == [("deny", 1)]
    assert host.paths == ["/"]
