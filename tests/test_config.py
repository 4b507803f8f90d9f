"""Settings: defaults < config.toml < flags, clear one-line errors, one name everywhere."""

from __future__ import annotations

import dataclasses
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result
from support import assert_one_line_error

from crawler.cli import cli
from crawler.config import SCOPES, SETTING_NAMES, Settings, build_settings, resolve
from crawler.errors import UsageError

REPO_CONFIG = Path(__file__).resolve().parents[1] / "config.toml"
SEED = "http://127.0.0.2:9/"  # never fetched: every crawl here fails before the network


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # ./config.toml is looked up in the working directory
    return tmp_path


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def effective(*args: str) -> dict[str, tuple[Any, str]]:
    """`crawler config --json ARGS` as {key: (value, source)}."""
    result = invoke("config", "--json", *args)
    assert result.exit_code == 0, result.stderr
    return {k: (v["value"], v["source"]) for k, v in json.loads(result.stdout).items()}


# ---------------------------------------------------------------------- precedence


def test_defaults_when_nothing_is_given() -> None:
    got = effective()
    assert got["db"] == ("crawl.db", "default")
    for name in SETTING_NAMES:
        default = getattr(Settings(), name)
        expected = list(default) if isinstance(default, tuple) else default
        assert got[name] == (expected, "default"), name


def test_config_file_overrides_defaults_and_flags_override_both(in_tmp: Path) -> None:
    (in_tmp / "config.toml").write_text(
        'db = "from-file.db"\nper_host = 5\ndelay = 0.5\nallow = ["/docs/"]\nscope = "domain"\n'
    )
    got = effective("--per-host", "7", "--allow", "/blog/", "--allow", "/news/", "--no-cookies")
    assert got["db"] == ("from-file.db", "config.toml")
    assert got["per_host"] == (7, "command line")
    assert got["allow"] == (["/blog/", "/news/"], "command line")  # a list flag replaces the key
    assert got["cookies"] == (False, "command line")
    assert got["delay"] == (0.5, "config.toml")
    assert got["scope"] == ("domain", "config.toml")
    assert got["concurrency"] == (64, "default")
    assert effective("--db", "flag.db")["db"] == ("flag.db", "command line")


def test_explicit_config_path_replaces_the_default_file(in_tmp: Path) -> None:
    (in_tmp / "config.toml").write_text("per_host = 5\nretries = 4\n")
    (in_tmp / "other.toml").write_text("per_host = 3\n")
    got = effective("--config", "other.toml")
    assert got["per_host"] == (3, "other.toml")
    assert got["retries"] == (2, "default")  # ./config.toml was not read at all


def test_integer_in_file_is_accepted_for_a_float_setting(in_tmp: Path) -> None:
    (in_tmp / "config.toml").write_text("delay = 1\ntimeout = 5\n")
    got = effective()
    assert got["delay"] == (1.0, "config.toml")
    assert got["timeout"] == (5.0, "config.toml")


def test_config_text_output_shows_each_value_and_its_source(in_tmp: Path) -> None:
    (in_tmp / "config.toml").write_text("delay = 0.5\n")
    result = invoke("config", "--per-host", "4")
    assert result.exit_code == 0
    lines = {line.split()[0]: line for line in result.stdout.splitlines()}
    assert set(lines) == {"db", *SETTING_NAMES}
    assert re.fullmatch(r"per_host\s+4\s+# command line", lines["per_host"])
    assert re.fullmatch(r"delay\s+0\.5\s+# config\.toml", lines["delay"])
    assert re.fullmatch(r"concurrency\s+64\s+# default", lines["concurrency"])
    assert re.fullmatch(r'db\s+"crawl\.db"\s+# default', lines["db"])


# ---------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("toml", "fragments"),
    [
        pytest.param("per_hots = 3\n", ["unknown setting 'per_hots'"], id="unknown-key"),
        pytest.param(
            "per_host = 2\nbogus = 1\n", ["unknown setting 'bogus'"], id="unknown-among-known"
        ),
        pytest.param('per_host = "two"\n', ["'per_host'", "integer", "'two'"], id="str-for-int"),
        pytest.param("per_host = 1.5\n", ["'per_host'", "integer"], id="float-for-int"),
        pytest.param("per_host = true\n", ["'per_host'", "integer"], id="bool-for-int"),
        pytest.param('delay = "fast"\n', ["'delay'", "number"], id="str-for-float"),
        pytest.param(
            'ignore_robots = "yes"\n', ["'ignore_robots'", "true or false"], id="str-bool"
        ),
        pytest.param("allow = [1, 2]\n", ["'allow'", "list of strings"], id="ints-for-list"),
        pytest.param("scope = 3\n", ["'scope'", "string"], id="int-for-str"),
        pytest.param('scope = "planet"\n', ["scope must be one of host, domain, any"], id="scope"),
        pytest.param("per_host = 0\n", ["per_host must be at least 1"], id="zero-per-host"),
        pytest.param("delay = -1\n", ["delay must not be negative"], id="negative-delay"),
        pytest.param('db = ""\n', ["'db'"], id="empty-db"),
        pytest.param("per_host = \n", ["invalid TOML", "config.toml", "line 1"], id="bad-toml"),
        pytest.param("[crawl]\nper_host = 2\n", ["unexpected table [crawl]"], id="table"),
        pytest.param('deny = ["[a-"]\n', ["invalid regex '[a-'"], id="bad-regex"),
        pytest.param(b"delay = 1\n\xff\xfe\n", ["config.toml"], id="not-utf8"),
    ],
)
@pytest.mark.parametrize("command", ["config", "crawl"])
def test_bad_config_file_is_one_line_and_exit_2(
    in_tmp: Path, toml: str | bytes, fragments: list[str], command: str
) -> None:
    path = in_tmp / "config.toml"
    if isinstance(toml, bytes):
        path.write_bytes(toml)
    else:
        path.write_text(toml)
    args = ["crawl", "--db", "crawl.db", SEED] if command == "crawl" else ["config"]
    assert_one_line_error(invoke(*args), *fragments)
    assert sorted(p.name for p in in_tmp.iterdir()) == ["config.toml"]  # no database created


BAD_FLAGS = [
    pytest.param(["--allow", "("], ["invalid regex '('"], id="bad-allow"),
    pytest.param(["--deny", "a", "--deny", "*x"], ["invalid regex '*x'"], id="bad-deny"),
    pytest.param(["--per-host", "two"], ["--per-host", "'two'"], id="flag-type"),
    pytest.param(["--delay", "soon"], ["--delay", "'soon'"], id="flag-float"),
    pytest.param(["--scope", "planet"], ["--scope", "'planet'"], id="flag-choice"),
    pytest.param(
        ["--concurrency", "0"], ["concurrency must be between 1 and 100000"], id="flag-range"
    ),
    pytest.param(["--max-depth", "-2"], ["max_depth must be -1"], id="flag-depth"),
]
MISSING_CONFIG = pytest.param(
    ["--config", "missing.toml"], ["config file not found: missing.toml"], id="no-config"
)


@pytest.mark.parametrize(
    ("command", "flags", "fragments"),
    [
        pytest.param(command, *p.values, id=f"{command}-{p.id}")
        for command in ("config", "crawl", "resume")
        for p in [*BAD_FLAGS, *([MISSING_CONFIG] if command != "resume" else [])]
    ],
)
def test_bad_flag_is_one_line_and_exit_2(
    in_tmp: Path, command: str, flags: list[str], fragments: list[str]
) -> None:
    args = {"config": ["config"], "crawl": ["crawl", SEED], "resume": ["resume"]}[command]
    assert_one_line_error(invoke(*args, *flags), *fragments)
    assert list(in_tmp.iterdir()) == []  # checked before any file is touched


# ---------------------------------------------------------------------- one name everywhere


def test_repo_config_toml_documents_every_setting_with_its_default() -> None:
    text = REPO_CONFIG.read_text(encoding="utf-8")
    values = tomllib.loads(text)
    assert set(values) == {"db", *SETTING_NAMES}
    lines = text.splitlines()
    for name in ("db", *SETTING_NAMES):
        index = next(i for i, line in enumerate(lines) if re.match(rf"{name}\s*=", line))
        assert lines[index - 1].startswith("# "), f"{name} has no comment line above it"
    defaults = dataclasses.asdict(Settings())
    for name in SETTING_NAMES:
        default = defaults[name]
        assert values[name] == (list(default) if isinstance(default, tuple) else default), name
    assert values["db"] == "crawl.db"


def test_repo_config_toml_is_a_valid_config(in_tmp: Path) -> None:
    (in_tmp / "config.toml").write_text(REPO_CONFIG.read_text(encoding="utf-8"))
    got = effective()
    assert all(source == "config.toml" for _, source in got.values())


def options(command: str) -> dict[str, click.Option]:
    cmd = cli.commands[command]  # type: ignore[attr-defined]
    return {o.name: o for o in cmd.params if isinstance(o, click.Option) and o.name}


@pytest.mark.parametrize("command", ["crawl", "resume", "config"])
def test_every_setting_is_a_flag_of_the_same_name(command: str) -> None:
    opts = options(command)
    for name in SETTING_NAMES:
        assert name in opts, f"{command} has no flag for {name}"
        flag = "--" + name.replace("_", "-")
        assert flag in opts[name].opts, (name, opts[name].opts)
        assert opts[name].help, f"--{name} has no help text"


# ---------------------------------------------------------------------- range edges


RANGES: list[tuple[str, list[Any], list[Any], str]] = [
    # setting, the values at the edges that are accepted, the first rejected one(s), message
    ("concurrency", [1, 100_000], [0, 100_001], "concurrency must be between 1 and 100000"),
    ("per_host", [1], [0], "per_host must be at least 1"),
    ("per_ip", [0, 3], [-1], "per_ip must not be negative (0: off)"),
    ("processes", [1, 64], [0, 65], "processes must be between 1 and 64"),
    ("delay", [0, 0.0], [-0.001], "delay must not be negative"),
    ("delay_factor", [0, 2.5], [-0.001], "delay_factor must not be negative (0: off)"),
    ("max_delay", [0, 60.0], [-0.001], "max_delay must not be negative"),
    ("lease", [1, 1.0, 600], [0.999, 0], "lease must be at least 1 second"),
    ("max_pages", [0], [-1], "max_pages must not be negative (0: no limit)"),
    ("max_depth", [-1], [-2], "max_depth must be -1 (no limit) or more"),
    ("timeout", [0.001], [0, -1.0], "timeout must be positive"),
    ("max_bytes", [1], [0], "max_bytes must be at least 1"),
    ("retries", [0], [-1], "retries must not be negative"),
    ("max_redirects", [0], [-1], "max_redirects must not be negative"),
    ("max_links", [0], [-1], "max_links must not be negative"),
    ("max_url_length", [16], [15], "max_url_length must be at least 16"),
    ("max_crawl_delay", [0], [-0.001], "max_crawl_delay must not be negative"),
    ("host_budget", [0], [-1], "host_budget must not be negative (0: no limit)"),
    ("host_failures", [1], [0], "host_failures must be at least 1"),
    ("repeat_segments", [1], [0], "repeat_segments must be at least 1"),
    ("recrawl_interval", [0.001], [0, -1.0], "recrawl_interval must be positive"),
    ("recrawl_min_interval", [0.001, 3600], [0, -1.0], "recrawl_min_interval must be positive"),
    (
        "recrawl_max_interval",
        [3600, 1e9],
        [3599.9],
        "recrawl_min_interval must not be more than recrawl_max_interval",
    ),
    ("user_agent", ["x"], ["", " \t"], "user_agent must not be empty"),
    (
        "extract",
        [("t=h1",), ("a_1 = h1 > span",)],
        [("t=p[",)],
        "extract: invalid CSS selector 'p[' for 't'",
    ),
    (
        "hooks",
        [("m:f",), ("a.b:c.d",)],
        [("m",)],
        "hooks: 'm' is not module:function (e.g. mypkg.hooks:on_page)",
    ),
    (
        "accept_type",
        [("text/html", "image/*", "*/*", "Application/PDF")],
        [("html",)],
        "accept_type must be a media type such as text/html or image/*, got 'html'",
    ),
]


def test_every_range_check_is_listed_here() -> None:
    # A new bounded setting must get its edges tested: unbounded ones are named here.
    unbounded = {"allow", "assets", "compress", "cookies", "deny", "ignore_robots", "scope"}
    unbounded |= {"sitemap_probe", "sitemaps", "text"}
    unbounded |= {"allow_private", "insecure", "ca_bundle"}  # ca_bundle: tests/test_request.py
    assert {r[0] for r in RANGES} | unbounded == set(SETTING_NAMES)


@pytest.mark.parametrize(
    ("name", "value"),
    [pytest.param(r[0], v, id=f"{r[0]}={v!r}") for r in RANGES for v in r[1]],
)
def test_range_edge_is_accepted(name: str, value: Any) -> None:
    settings, sources = build_settings({name: value}, source="test")
    assert getattr(settings, name) == value
    assert sources == {name: "test"}


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [pytest.param(r[0], v, r[3], id=f"{r[0]}={v!r}") for r in RANGES for v in r[2]],
)
def test_one_past_the_edge_is_rejected_naming_the_setting(
    name: str, value: Any, message: str
) -> None:
    with pytest.raises(UsageError) as err:
        build_settings({name: value}, source="test")
    assert str(err.value) == message


@pytest.mark.parametrize("scope", SCOPES)
def test_every_scope_is_accepted(scope: str) -> None:
    assert build_settings({"scope": scope}, source="test")[0].scope == scope


def test_a_range_check_applies_to_the_merged_settings() -> None:
    # The file sets max_depth = 3, the command line only lowers per_host: still checked.
    base = build_settings({"max_depth": 3}, source="file")[0]
    with pytest.raises(UsageError, match=r"^per_host must be at least 1$"):
        build_settings({"per_host": 0}, source="command line", base=base)
    settings, sources = build_settings({"per_host": 5}, source="command line", base=base)
    assert (settings.max_depth, settings.per_host, sources) == (3, 5, {"per_host": "command line"})


# ---------------------------------------------------------------------- types


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        pytest.param("delay", 2, 2.0, id="int-for-float"),
        pytest.param("timeout", 1.5, 1.5, id="float"),
        pytest.param("per_host", 3, 3, id="int"),
        pytest.param("cookies", True, True, id="bool"),
        pytest.param("scope", "domain", "domain", id="str"),
        pytest.param("allow", "/docs/", ("/docs/",), id="one-string-for-a-list"),
        pytest.param("deny", ["a", "b"], ("a", "b"), id="toml-list"),
        pytest.param("deny", ("a",), ("a",), id="cli-tuple"),
        pytest.param("allow", [], (), id="empty-list"),
    ],
)
def test_value_is_coerced_to_the_setting_type(name: str, value: Any, expected: Any) -> None:
    got = getattr(build_settings({name: value}, source="test")[0], name)
    assert got == expected
    assert type(got) is type(expected)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        pytest.param("per_host", True, "must be an integer, got True", id="bool-for-int"),
        pytest.param("per_host", 2.0, "must be an integer, got 2.0", id="float-for-int"),
        pytest.param("delay", False, "must be a number, got False", id="bool-for-float"),
        pytest.param("delay", "1", "must be a number, got '1'", id="str-for-float"),
        pytest.param("cookies", 1, "must be true or false, got 1", id="int-for-bool"),
        pytest.param("scope", ["host"], "must be a string, got ['host']", id="list-for-str"),
        pytest.param("allow", 5, "must be a list of strings, got 5", id="int-for-list"),
        pytest.param("deny", ["a", 1], "must be a list of strings, got ['a', 1]", id="mixed"),
    ],
)
def test_wrong_type_names_the_source_setting_and_value(name: str, value: Any, message: str) -> None:
    with pytest.raises(UsageError) as err:
        build_settings({name: value}, source="cfg.toml")
    assert str(err.value) == f"cfg.toml: setting '{name}' {message}"


# ---------------------------------------------------------------------- resolve() and its sources


def test_resolve_names_the_source_of_every_value(in_tmp: Path) -> None:
    (in_tmp / "site.toml").write_text('db = "file.db"\ndelay = 1\nretries = 4\n')
    got = resolve({"retries": 0, "delay": None, "db": None}, Path("site.toml"))
    assert (got.settings.delay, got.settings.retries, got.db) == (1.0, 0, "file.db")
    assert got.sources == dict.fromkeys(SETTING_NAMES, "default") | {
        "delay": "site.toml",
        "retries": "command line",
        "db": "site.toml",
    }


def test_resolve_without_any_file_is_all_defaults(in_tmp: Path) -> None:
    got = resolve({"db": "flag.db"}, None, db_default="other.db")
    assert got.settings == Settings()
    assert got.db == "flag.db"
    assert got.sources == dict.fromkeys(SETTING_NAMES, "default") | {"db": "command line"}
    assert resolve({}, None, db_default="other.db").db == "other.db"


@pytest.mark.parametrize("value", ['""', "3", "[]"])
def test_resolve_rejects_a_db_that_is_not_a_path(in_tmp: Path, value: str) -> None:
    (in_tmp / "config.toml").write_text(f"db = {value}\n")
    with pytest.raises(UsageError) as err:
        resolve({}, None)
    assert str(err.value) == "config.toml: setting 'db' must be a non-empty string"


# ---------------------------------------------------------------------- stored with the crawl


def test_settings_round_trip_through_json() -> None:
    custom = Settings(
        allow=("/a/", "/b/"),
        compress=True,
        delay=0.25,
        max_depth=3,
        scope="domain",
        user_agent="bot/1",
    )
    text = custom.to_json()
    assert Settings.from_json(text) == custom
    assert json.loads(text)["allow"] == ["/a/", "/b/"]
    assert list(json.loads(text)) == sorted(SETTING_NAMES)


def test_from_json_ignores_settings_it_does_not_know() -> None:
    data = json.loads(Settings(per_host=7).to_json()) | {"from_the_future": 1}
    assert Settings.from_json(json.dumps(data)) == Settings(per_host=7)


def test_from_json_checks_values_and_blames_the_database() -> None:
    with pytest.raises(UsageError) as err:
        Settings.from_json('{"per_host": "two"}')
    assert str(err.value) == "database: setting 'per_host' must be an integer, got 'two'"
    with pytest.raises(UsageError, match=r"^per_host must be at least 1$"):
        Settings.from_json('{"per_host": 0}')
