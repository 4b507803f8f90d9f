"""Benchmark the crawler against Scrapy and a bare aiohttp loop on a local multi-host site.

    .venv/bin/python scripts/bench.py                 # 3 interleaved reps, table, profile
    .venv/bin/python scripts/bench.py --frontier      # a crawl whose frontier passes 1M URLs
    .venv/bin/python scripts/bench.py --broad         # 2,000 hosts, latency, --delay 1: bound
    .venv/bin/python scripts/bench.py --postgres      # 1, 2, 4 PostgreSQL workers vs SQLite

The site (bench_site.py: 40 hosts x 500 pages by default, on 127.0.0.2-41) is generated
once into scripts/.bench/site and served by nginx when it is installed, by bench_server.py
otherwise. Each rep runs every runner once, in turn (A B C D A B C D ...), each as its own
process under /usr/bin/time (user + system CPU of the process and its children; peak RSS
of the whole process tree, sampled, as several processes' memory adds up);
the table shows medians. Every request goes to 127.0.0.0/8; every runner is killed after
--timeout seconds; the server is stopped on exit, Ctrl-C included.

Runners (--runners picks some, in this order):
  crawler        `crawler crawl` from this venv: robots obeyed, everything stored in SQLite
  crawler-p2     the same with --processes 2 (hosts split between two crawling processes)
  crawler-b      --crawler-b CMD: a second crawler build (another tree, another venv), e.g.
                 the tree before a refactor, crawled the same way (not in the default set)
  crawler-metrics  `crawler crawl --status-port P` with a thread that GETs /metrics every
                 second during the run (issue 15's overhead; not in the default set)
  aiohttp-loop   baselines/aiohttp_loop.py: aiohttp + selectolax, no robots, no storage
  aiohttp-sqlite the same with --db: every response and link kept in SQLite (WAL) by a
                 writer thread; not a target, the price of keeping the bytes
  scrapy-sqlite  baselines/scrapy_runner.py --db: Scrapy, pages stored by a SQLite pipeline
  scrapy         the same, storing nothing
Scrapy (~150 pages/s here) stops after --scrapy-cap pages; the others crawl the whole site.
Scrapy lives in its own venv, scripts/.bench/venv, created on first use from PyPI.

--broad: bench_broad_site.py's 2,000 hosts on 127.1.0.0/16 (20 huge, 150 found only through
links, the rest 10-50 pages), served by bench_broad_server.py with 50-500 ms per response;
the crawler and Scrapy (--runners crawler,scrapy) with --per-host 1 --delay 1 and a high
--concurrency, each stopped by SIGINT --window seconds after its first request. The numbers
(politeness bound, small hosts' finish, server-side gaps) are defined in bench_broad.py.

--postgres: the standard site crawled by `crawler crawl` on SQLite (runner sqlite) and on a
throwaway PostgreSQL cluster by 1, 2 and 4 workers (pg-1: `crawl` alone; pg-N: `crawl` and
N-1 `crawler work`), interleaved; CPU is the workers' tree, srv/db CPU the cluster's
(bench_postgres.py).

Results: a table on stdout, everything (machine, versions, every run) in --json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import bench_broad as broad
import bench_broad_site as broad_site
import bench_postgres
import bench_proc
import bench_report as report
import bench_site
from bench_broad_site import Site
from bench_proc import (
    Server,
    kill_current,
    log,
    measure,
    read_from,
    runner_env,
    server_check,
    start_server,
    tree_cpu,
)

SCRIPTS = Path(__file__).resolve().parent
ROOT = SCRIPTS.parent
WORK = SCRIPTS / ".bench"  # git-ignored: the site, Scrapy's venv, logs
SITE = WORK / "site"  # --port P other than the default: WORK / "site-P"
DEFAULT_PORT = 18090
SCRAPY_VENV = WORK / "venv"
SCRAPY_PY = SCRAPY_VENV / "bin" / "python"
BASELINES = SCRIPTS / "baselines"
RUNNERS = ("crawler", "crawler-p2", "crawler-b", "crawler-metrics", "aiohttp-loop",
           "aiohttp-sqlite", "scrapy-sqlite", "scrapy")  # fmt: skip
DEFAULT_RUNNERS = (
    "crawler",
    "crawler-p2",
    "aiohttp-loop",
    "aiohttp-sqlite",
    "scrapy-sqlite",
    "scrapy",
)
METRICS_EVERY_S = 1.0  # crawler-metrics: one GET /metrics a second, as a Prometheus would
FRONTIER_PORT_OFFSET = 1  # the frontier site listens on --port + 1
BROAD_RUNNERS = ("crawler", "scrapy")
BROAD_ALLOW = r"^http://127\.1\."  # scope: every broad host, the hidden ones included


# ---------------------------------------------------------------- setup


def site_dir(args: argparse.Namespace) -> Path:
    """Where the site lives: one per port, so that two benchmarks on two ports can coexist."""
    return SITE if args.port == DEFAULT_PORT else SITE.with_name(f"site-{args.port}")


def ensure_site(args: argparse.Namespace) -> dict[str, Any]:
    """The generated site's params.json, generating it when absent or different."""
    site = site_dir(args)
    wanted = {
        "hosts": args.hosts,
        "pages": args.pages,
        "links": args.links,
        "size_kb": args.size,
        "seed": args.seed,
        "port": args.port,
    }
    params_file = site / "params.json"
    if params_file.exists():
        have: dict[str, Any] = json.loads(params_file.read_text())
        if all(have.get(k) == v for k, v in wanted.items()):
            return have
    log(f"generating the site in {site.relative_to(ROOT)} (once; ~10 s)")
    return bench_site.generate(site, **wanted)


def ensure_scrapy(setup: bool) -> bool:
    """Scrapy's venv exists (created with the latest Scrapy from PyPI when `setup`)."""
    if SCRAPY_PY.exists():
        ok = subprocess.run([str(SCRAPY_PY), "-c", "import scrapy"], capture_output=True)
        if ok.returncode == 0:
            return True
    if not setup:
        log("no Scrapy venv and --no-setup: skipping the Scrapy runners")
        return False
    log(f"creating {SCRAPY_VENV.relative_to(ROOT)} with the latest Scrapy (pip install scrapy)")
    python = shutil.which("python3") or sys.executable
    try:
        subprocess.run([python, "-m", "venv", "--clear", str(SCRAPY_VENV)], check=True)
        subprocess.run(
            [str(SCRAPY_PY), "-m", "pip", "install", "-q", "--upgrade", "pip", "scrapy"],
            check=True,
        )
    except (subprocess.CalledProcessError, OSError) as exc:
        log(f"could not install Scrapy ({exc}): skipping the Scrapy runners")
        return False
    return True


def nginx_binary(install: bool) -> str | None:
    found = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if found or not install:
        return found
    log("installing nginx with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "nginx"]):
            subprocess.run(argv, check=True, env=env, stdout=subprocess.DEVNULL)
    except (subprocess.CalledProcessError, OSError) as exc:
        log(f"could not install nginx ({exc}); using bench_server.py")
        return None
    return shutil.which("nginx") or "/usr/sbin/nginx"


# ---------------------------------------------------------------- runners


def crawler_cmd(args: argparse.Namespace, *, build_b: bool = False) -> list[str]:
    """--crawler (--crawler-b for the second build), or the `crawler` script beside this
    interpreter."""
    if build_b:
        return shlex.split(args.crawler_b)
    if args.crawler:
        return shlex.split(args.crawler)
    script = Path(sys.executable).parent / "crawler"
    return [str(script)] if script.exists() else [sys.executable, "-m", "crawler"]


def crawler_argv(
    args: argparse.Namespace, seeds: Path, db: Path, *extra: str, build_b: bool = False
) -> list[str]:
    """`crawler crawl` with the run's limits; robots.txt obeyed, everything stored (defaults)."""
    limits = ["--concurrency", str(args.concurrency), "--per-host", str(args.per_host)]
    return [*crawler_cmd(args, build_b=build_b), "crawl", "--seeds-file", str(seeds),
            "--db", str(db), *limits, "-q", *extra]  # fmt: skip


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the kernel's pick)."""
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class MetricsScraper(threading.Thread):
    """GETs http://127.0.0.1:PORT/metrics every `every` seconds until `stop` is set, as a
    Prometheus server would; counts the answers (refusals before the crawl listens and
    after it ends are expected and counted apart)."""

    def __init__(self, port: int, every: float) -> None:
        super().__init__(daemon=True)
        self.url, self.every = f"http://127.0.0.1:{port}/metrics", every
        self.stop = threading.Event()
        self.ok = self.failed = 0
        self.bytes = 0
        self.max_ms = 0.0
        # No proxy: the variables runner_env() strips must not route loopback elsewhere.
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def run(self) -> None:
        while not self.stop.wait(self.every):
            t0 = time.perf_counter()
            try:
                with self.opener.open(self.url, timeout=5) as resp:
                    self.bytes += len(resp.read())
                self.ok += 1
                self.max_ms = max(self.max_ms, 1000 * (time.perf_counter() - t0))
            except OSError:  # URLError, refused, reset: the crawl is not up yet or gone
                self.failed += 1


@dataclass
class Bench:
    args: argparse.Namespace
    params: dict[str, Any]
    seeds: Path
    expected_file: Path
    expected: set[str]
    tmp: Path
    out_dir: Path
    server: Server | None = None
    runs: list[dict[str, Any]] = field(default_factory=list)

    def serve(self) -> Server:
        return start_server(
            self.out_dir.parent,
            nginx=self.args.nginx,
            site=self.seeds.parent,
            port=self.params["port"],
            hosts=[bench_site.address(k) for k in range(self.params["hosts"])],
            workers=self.args.server_workers,
        )

    def argv(self, name: str, db: Path, status_port: int = 0) -> list[str]:
        if name == "crawler":
            return crawler_argv(self.args, self.seeds, db)
        if name == "crawler-b":
            return crawler_argv(self.args, self.seeds, db, build_b=True)
        if name == "crawler-metrics":
            return crawler_argv(self.args, self.seeds, db, "--status-port", str(status_port))
        if name == "crawler-p2":
            return crawler_argv(self.args, self.seeds, db, "--processes", "2")
        c, k = str(self.args.concurrency), str(self.args.per_host)
        common = [str(self.seeds), "--concurrency", c, "--per-host", k]
        common += ["--expected", str(self.expected_file)]
        if name in ("aiohttp-loop", "aiohttp-sqlite", "fetch-only"):
            extra = {"fetch-only": ["--list"], "aiohttp-sqlite": ["--db", str(db)]}.get(name, [])
            return [sys.executable, str(BASELINES / "aiohttp_loop.py"), *common, *extra]
        cap = ["--max-pages", str(self.args.scrapy_cap)] if self.args.scrapy_cap else []
        store = ["--db", str(db)] if name == "scrapy-sqlite" else []
        return [str(SCRAPY_PY), str(BASELINES / "scrapy_runner.py"), *common, *cap, *store]

    def run(self, name: str, rep: int) -> dict[str, Any]:
        """Run one runner once; its record (measurements, correctness, server's view)."""
        assert self.server is not None
        db = self.tmp / f"{name}.{rep}.db"
        offset = self.server.log.stat().st_size
        server_cpu = self.server.cpu_s()
        scraper = None
        port = 0
        if name == "crawler-metrics":
            port = free_port()
            scraper = MetricsScraper(port, METRICS_EVERY_S)
            scraper.start()
        try:
            m = measure(
                self.argv(name, db, port),
                cwd=self.tmp,  # no config.toml here: the crawler runs on its defaults and flags
                timeout=self.args.timeout,
                out_dir=self.out_dir,
                label=f"{name}.{rep}",
            )
        finally:
            if scraper is not None:
                scraper.stop.set()
                scraper.join()
        time.sleep(0.3)  # bench_server.py flushes its log every 0.1 s
        died = self.server.proc.poll() is not None
        record: dict[str, Any] = {"name": name, "rep": rep, "exit": m.code}
        record.update(wall_s=round(m.wall_s, 3), cpu_s=round(m.cpu_s, 2))
        record["peak_rss_mb"] = round(m.peak_rss_mb, 1)
        record["server_cpu_s"] = round(self.server.cpu_s() - server_cpu, 2)
        if scraper is not None:
            record["metrics_scrapes"] = scraper.ok
            record["metrics_refused"] = scraper.failed
            record["metrics_max_ms"] = round(scraper.max_ms, 1)
            record["metrics_bytes"] = scraper.bytes
        if name.startswith("crawler"):
            if db.exists():
                record.update(crawler_db_check(db, self.expected))
        else:
            line = last_json_line(m.stdout)
            if line:
                line.pop("name", None)
                record.update(line)
        lines = read_from(self.server.log, offset)
        record.update(server_check(lines, self.params["port"], self.expected))
        pages = record.get("pages")
        if pages and record.get("seconds"):
            record["pages_per_s"] = round(pages / record["seconds"], 1)
            record["wall_pages_per_s"] = round(pages / m.wall_s, 1)
            record["cpu_ms_per_page"] = round(1000 * m.cpu_s / pages, 3)
            if m.main_thread_cpu_s:
                record["main_ms_per_page"] = round(1000 * m.main_thread_cpu_s / pages, 3)
        if m.code != 0 or not pages:
            record["error"] = (m.stderr.strip() or m.stdout.strip() or f"exit {m.code}")[-1500:]
        if died:
            # Someone killed the server (pkill nginx?): this run means nothing; start anew.
            record["error"] = "the server died during the run; it was restarted"
            record["server_died"] = True
            log(f"the server died during {name} (see {self.server.log.parent}); restarting it")
            self.server.stop()
            self.server = self.serve()
        for path in self.tmp.glob(f"{name}.{rep}.db*"):
            path.unlink()
        return record


def last_json_line(text: str) -> dict[str, Any] | None:
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            with contextlib.suppress(json.JSONDecodeError):
                parsed: dict[str, Any] = json.loads(line)
                return parsed
    return None


def crawler_db_check(db: Path, expected: set[str]) -> dict[str, Any]:
    """The crawler's counts and correctness, from its database."""
    con = sqlite3.connect(db)
    try:
        pages, ok = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE status = 200) FROM pages"
        ).fetchone()
        fetched = {u for (u,) in con.execute("SELECT url FROM pages WHERE status = 200")}
        states = dict(con.execute("SELECT state, count(*) FROM urls GROUP BY state").fetchall())
        started, finished = con.execute("SELECT started_at, finished_at FROM crawl").fetchone()
        links = con.execute("SELECT count(*) FROM links").fetchone()[0]
    finally:
        con.close()
    out: dict[str, Any] = {
        "pages": pages,
        "pages_200": ok,
        "fetched_expected": len(fetched & expected),
        "expected": len(expected),
        "unexpected": len(fetched - expected),
        "private_fetched": sum(urlsplit(u).path.startswith("/private/") for u in fetched),
        "duplicates": 0,  # pages.url is UNIQUE; srv_repeats counts repeated requests
        "robots_disallowed": states.get("disallowed", 0),
        "queued_left": states.get("queued", 0),
        "links_stored": links,
    }
    if finished:
        out["seconds"] = round(finished - started, 3)  # the crawl, without start-up
    return out


# ---------------------------------------------------------------- profile


def profile(bench: Bench, top: int) -> dict[str, Any]:
    """Crawl the site once under cProfile; the top functions by own and cumulative time."""
    prof = bench.tmp / "crawler.prof"
    db = bench.tmp / "profile.db"
    extra = ["--max-pages", str(bench.args.profile_pages)] if bench.args.profile_pages else []
    crawl = crawler_argv(bench.args, bench.seeds, db, *extra)[len(crawler_cmd(bench.args)) :]
    argv = [sys.executable, str(SCRIPTS / "bench_profile.py"), str(prof), *crawl]
    m = measure(
        argv, cwd=bench.tmp, timeout=bench.args.timeout * 3, out_dir=bench.out_dir, label="profile"
    )
    pages = 0
    if db.exists():
        with contextlib.closing(sqlite3.connect(db)) as con:
            pages = con.execute("SELECT count(*) FROM pages WHERE status = 200").fetchone()[0]
    for path in bench.tmp.glob("profile.db*"):
        path.unlink()
    if m.code != 0 or not prof.exists() or not pages:
        return {"error": (m.stderr.strip() or f"exit {m.code}")[-1500:]}
    split = json.loads(Path(str(prof) + ".json").read_text())
    return {
        "profiler": "cProfile (main thread only; aiosqlite's thread is not in it)",
        "pages": pages,
        "wall_s": round(m.wall_s, 2),
        "cpu_s": round(m.cpu_s, 2),
        **split,
        **report.summarize_profile(prof, top),
    }


# ---------------------------------------------------------------- the modes


def site_benchmark(
    args: argparse.Namespace, results: dict[str, Any], tmp: Path, out_dir: Path
) -> int:
    params = ensure_site(args)
    wanted = [n for n in RUNNERS if n in args.runners]
    scrapy_ok = any(n.startswith("scrapy") for n in wanted) and ensure_scrapy(not args.no_setup)
    if not scrapy_ok:
        wanted = [n for n in wanted if not n.startswith("scrapy")]
    site = site_dir(args)
    expected_file = site / "expected.txt"
    expected = set(expected_file.read_text().split())
    bench = Bench(args, params, site / "seeds.txt", expected_file, expected, tmp, out_dir)
    bench.server = bench.serve()
    server = bench.server
    name = f"nginx {server.version}" if server.kind == "nginx" else "bench_server.py (asyncio)"
    results["server"] = f"{name}, {args.server_workers} worker process(es)"
    results["machine"] = report.machine(results["server"], SCRAPY_PY if scrapy_ok else None)
    kb = params["html_bytes"] / params["html_pages"] / 1024
    caps = f"Scrapy capped at {args.scrapy_cap} pages" if args.scrapy_cap else "no page caps"
    conditions = (
        f"site: {params['hosts']} hosts x {params['pages']} pages, {params['expected_urls']} URLs "
        f"to fetch, {kb:.1f} KB/page, {params['linked_private_urls']} linked robots-disallowed "
        f"URLs; concurrency {args.concurrency}, per host {args.per_host}; medians of {args.reps} "
        f"interleaved reps; {caps}, the others crawl the whole site"
    )
    results["conditions"] = conditions
    results["site"] = params
    try:
        if not args.no_ceiling:
            log("server ceiling: aiohttp fetching expected.txt, no parsing")
            ceiling = bench.run("fetch-only", 0)
            results["server_ceiling"] = ceiling
        for rep in range(1, args.reps + 1):
            for name in wanted:
                log(f"rep {rep}/{args.reps}: {name}")
                record = bench.run(name, rep)
                if record.get("server_died"):
                    bench.runs.append(record)
                    record = bench.run(name, rep)  # once more, on the restarted server
                bench.runs.append(record)
                if "error" in record:
                    log(
                        f"{name} FAILED (exit {record['exit']}): {record['error'].splitlines()[-1]}"
                    )
                else:
                    log(
                        f"{name}: {record['pages']} pages, {record.get('pages_per_s')} pages/s, "
                        f"{record['cpu_s']} CPU s, {record['peak_rss_mb']} MB"
                    )
        prof = None
        if not args.no_profile:
            log("profiling one crawler run under cProfile")
            prof = profile(bench, args.top)
            results["profile"] = prof
    finally:
        bench.server.stop()
    results["runs"] = bench.runs
    rows = [report.medians(bench.runs, n) for n in wanted]
    results["medians"] = rows
    results["targets"] = report.targets({r["name"]: r for r in rows}, bench.runs)
    results["table"] = report.render(rows)
    print(report.site_text(results))
    return 0 if all(r["runs"] and not r["failed"] for r in rows) else 1


def frontier_benchmark(
    args: argparse.Namespace, results: dict[str, Any], tmp: Path, out_dir: Path
) -> int:
    """One crawl of a generated site whose frontier grows past --frontier-target URLs."""
    links = args.frontier_links
    pages = math.ceil(args.frontier_target / (links - 1)) + args.concurrency
    hosts = [bench_site.address(k) for k in range(args.frontier_hosts)]
    port = args.port + FRONTIER_PORT_OFFSET
    seeds = tmp / "frontier-seeds.txt"
    seeds.write_text("".join(f"http://{h}:{port}/\n" for h in hosts))
    server = start_server(
        out_dir.parent, nginx=None, site=None, port=port, hosts=hosts, links=links
    )
    results["machine"] = report.machine("bench_server.py frontier", None)
    db = tmp / "frontier.db"
    argv = crawler_argv(args, seeds, db, "--max-pages", str(pages))
    log(f"frontier: {len(hosts)} hosts, {links} new links a page, stopping after {pages} pages")
    try:
        m = measure(argv, cwd=tmp, timeout=args.timeout * 2, out_dir=out_dir, label="frontier")
    finally:
        server.stop()
    record: dict[str, Any] = {
        "hosts": len(hosts),
        "links_per_page": links,
        "max_pages": pages,
        "exit": m.code,
        "wall_s": round(m.wall_s, 2),
        "cpu_s": round(m.cpu_s, 2),
        "peak_rss_mb": round(m.peak_rss_mb, 1),
    }
    if db.exists():
        con = sqlite3.connect(db)
        try:
            q = "SELECT count(*) FROM urls WHERE state = 'queued'"
            record["queued"] = con.execute(q).fetchone()[0]
            record["urls"] = con.execute("SELECT count(*) FROM urls").fetchone()[0]
            record["pages"] = con.execute("SELECT count(*) FROM pages").fetchone()[0]
            record["links"] = con.execute("SELECT count(*) FROM links").fetchone()[0]
        finally:
            con.close()
        record["db_mb"] = round(sum(p.stat().st_size for p in tmp.glob("frontier.db*")) / 2**20, 1)
    if m.code != 0:
        record["error"] = (m.stderr.strip() or f"exit {m.code}")[-1500:]
    results["frontier"] = record
    print(report.frontier_text(results, args.concurrency, args.per_host))
    if "error" in record or record["queued"] < args.frontier_target:
        return 1
    return 0


# ---------------------------------------------------------------- broad crawl


def start_broad_server(site: Site, logs: Path) -> Server:
    """bench_broad_server.py on every host of `site`; returns once all listen."""
    busy = [a for a in (site.addrs[0], site.addrs[-1]) if not bench_proc.port_free(a, site.port)]
    if busy:
        raise SystemExit(f"bench: {busy[0]}:{site.port} is in use (--broad-port moves us)")
    tmp = Path(tempfile.mkdtemp(prefix="bench-broad-"))
    access = logs / f"broad-{site.port}.log"
    access.write_text("")
    ready = tmp / "ready"
    argv = [sys.executable, str(SCRIPTS / "bench_broad_server.py"), "--port", str(site.port)]
    argv += ["--hosts", str(site.hosts), "--big", str(site.big), "--hidden", str(site.hidden)]
    argv += ["--log", str(access), "--ready", str(ready)]
    with open(logs / f"broad-server-{site.port}.err", "a") as err:
        proc = subprocess.Popen(
            argv, stdout=err, stderr=err, start_new_session=True, env=runner_env()
        )
    server = Server(proc, "python", access, tmp, "bench_broad_server.py")
    deadline = time.monotonic() + 30
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise SystemExit(f"bench: bench_broad_server.py did not start (see {logs})")
        time.sleep(0.1)
    return server


class Stopper(threading.Thread):
    """Sends SIGINT to the run in progress `window` seconds after the server's first request
    of the run, and a second one `grace` seconds later if it is still running; samples the
    runner's and the server's CPU at the first.

    It never waits for the child (measure() reaps it): the run is over when
    bench_proc._current is None again.
    """

    def __init__(self, server: Server, offset: int, window: float, grace: float) -> None:
        super().__init__(daemon=True)
        self.server, self.offset, self.window, self.grace = server, offset, window, grace
        self.t0: float | None = None
        self.sigint_at: float | None = None
        self.forced = False
        self.cpu_window_s: float | None = None
        self.server_cpu_window_s: float | None = None
        self.server_cpu0 = server.cpu_s()
        self.cancel = threading.Event()

    def run(self) -> None:
        proc = None
        while proc is None and not self.cancel.wait(0.02):
            proc = bench_proc._current
        while proc is not None and self.t0 is None:
            if bench_proc._current is not proc or self.cancel.wait(0.1):
                return
            with open(self.server.log) as f:
                f.seek(self.offset)
                first = f.readline()
            if first.endswith("\n"):
                self.t0 = float(first.split(" ", 1)[0])
        if proc is None or self.t0 is None:
            return
        while time.time() < self.t0 + self.window + 0.2:  # the log is flushed every 0.25 s
            if bench_proc._current is not proc or self.cancel.wait(0.05):
                return
        self.cpu_window_s = tree_cpu(proc.pid)
        self.server_cpu_window_s = self.server.cpu_s() - self.server_cpu0
        self.sigint_at = time.time()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)  # GNU time ignores it; the runner stops
        if self.cancel.wait(self.grace) or bench_proc._current is not proc:
            return
        self.forced = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)  # the second one: stop now


def broad_argv(args: argparse.Namespace, name: str, seeds: Path, db: Path) -> list[str]:
    c, delay = str(args.concurrency), str(args.delay)
    if name == "crawler":
        extra = ["--delay", delay, "--scope", "any", "--allow", BROAD_ALLOW]
        return crawler_argv(args, seeds, db, *extra)
    empty = seeds.with_name("expected.txt")  # the JSON line's check is not used here
    empty.touch()
    return [str(SCRAPY_PY), str(BASELINES / "scrapy_runner.py"), str(seeds), "--concurrency", c,
            "--per-host", str(args.per_host), "--delay", delay, "--expected", str(empty),
            "--follow-prefix", "http://127.1."]  # fmt: skip


def broad_run(
    args: argparse.Namespace, site: Site, server: Server, name: str, rep: int, tmp: Path,
    out_dir: Path,
) -> dict[str, Any]:  # fmt: skip
    db = tmp / f"broad-{name}.{rep}.db"
    seeds = tmp / "broad-seeds.txt"
    offset = server.log.stat().st_size
    server_cpu = server.cpu_s()
    stopper = Stopper(server, offset, args.window, grace=30)
    stopper.start()
    try:
        m = measure(
            broad_argv(args, name, seeds, db),
            cwd=tmp,
            timeout=args.window + 120,
            out_dir=out_dir,
            label=f"broad-{name}.{rep}",
        )
    finally:
        stopper.cancel.set()
        stopper.join()
    time.sleep(0.6)  # the server's last log flush
    record: dict[str, Any] = {"name": name, "rep": rep, "exit": m.code}
    record.update(wall_s=round(m.wall_s, 2), cpu_s=round(m.cpu_s, 2))
    record["peak_rss_mb"] = round(m.peak_rss_mb, 1)
    record["server_cpu_s"] = round(server.cpu_s() - server_cpu, 2)
    if stopper.cpu_window_s is not None:
        record["cpu_window_s"] = round(stopper.cpu_window_s, 2)
        record["server_cpu_window_s"] = round(stopper.server_cpu_window_s or 0, 2)
    if stopper.sigint_at is not None and stopper.t0 is not None:
        record["sigint_after_s"] = round(stopper.sigint_at - stopper.t0, 2)
    record["forced_stop"] = stopper.forced
    record.update(broad.analyse(site, broad.parse(read_from(server.log, offset)), args.window,
                                args.delay))  # fmt: skip
    if stopper.sigint_at is None:
        record["error"] = "the run ended before the window did: " + (
            m.stderr.strip()[-1000:] or f"exit {m.code}"
        )
    elif not record.get("pages"):
        record["error"] = (m.stderr.strip() or m.stdout.strip() or f"exit {m.code}")[-1500:]
    if server.proc.poll() is not None:
        raise SystemExit(f"bench: the broad server died during {name} (see {out_dir.parent})")
    for path in tmp.glob(f"broad-{name}.{rep}.db*"):
        path.unlink()
    return record


def broad_benchmark(
    args: argparse.Namespace, results: dict[str, Any], tmp: Path, out_dir: Path
) -> int:
    """Crawl 2,000 slow hosts politely for --window seconds; pages against the bound."""
    site = Site(args.broad_hosts, args.broad_big, args.broad_hidden, args.broad_port)
    (tmp / "broad-seeds.txt").write_text("".join(f"{u}\n" for u in site.seeds()))
    wanted = [n for n in BROAD_RUNNERS if n in args.runners]
    scrapy_ok = "scrapy" in wanted and ensure_scrapy(not args.no_setup)
    if not scrapy_ok:
        wanted = [n for n in wanted if n != "scrapy"]
    server = start_broad_server(site, out_dir.parent)
    results["server"] = "bench_broad_server.py (asyncio, uvloop when installed), 1 process"
    results["machine"] = report.machine(results["server"], SCRAPY_PY if scrapy_ok else None)
    small = sum(n for a, n in site.pages.items() if site.kind[a] == "small")
    hidden = sum(n for a, n in site.pages.items() if site.kind[a] == "hidden")
    results["conditions"] = (
        f"broad site: {site.hosts} hosts on 127.1.0.0/16: {site.big} big (home page links "
        f"{broad_site.BIG_HOME_LINKS}, every other page {broad_site.BIG_LINKS} new), "
        f"{site.hosts - site.big - site.hidden} seeded small ({small} pages), {site.hidden} "
        f"hidden small ({hidden} pages, linked only from big pages); 50-500 ms a response; "
        f"--per-host {args.per_host} --delay {args.delay:g} --concurrency {args.concurrency}; "
        f"window {args.window:g} s from the first request, then SIGINT; medians of "
        f"{args.reps} interleaved reps"
    )
    runs: list[dict[str, Any]] = []
    try:
        for rep in range(1, args.reps + 1):
            for name in wanted:
                log(f"broad rep {rep}/{args.reps}: {name} ({args.window:g} s window)")
                record = broad_run(args, site, server, name, rep, tmp, out_dir)
                runs.append(record)
                if "error" in record:
                    log(f"{name} FAILED (exit {record['exit']}): {record['error'][-300:]}")
                else:
                    log(
                        f"{name}: {record['pages']} pages of a bound of {record['bound']} "
                        f"({record['pct_bound']}%), ideal {record['ideal']}, small done "
                        f"{record.get('small_done_s', '-')} s (ideal "
                        f"{record.get('small_ideal_s')} s), hidden {record['hidden_pct']}%, "
                        f"min gap {record['min_gap_ms']} ms, {record['peak_rss_mb']} MB, "
                        f"CPU {record.get('cpu_window_s')} s, server CPU "
                        f"{record.get('server_cpu_window_s')} s"
                    )
    finally:
        server.stop()
    rows = [broad.medians(runs, n) for n in wanted]
    results["runs"] = runs
    results["medians"] = rows
    results["table"] = broad.render(rows)
    results["targets"] = broad.targets({r["name"]: r for r in rows})
    parts = [report.machine_line(results["machine"]), results["conditions"], "", results["table"]]
    parts += ["", broad.NOTES, "", "targets (issue 11):", *results["targets"]]
    print("\n" + "\n".join(parts))
    return 0 if all(r["runs"] and not r["failed"] for r in rows) else 1


# ---------------------------------------------------------------- PostgreSQL


def postgres_benchmark(
    args: argparse.Namespace, results: dict[str, Any], tmp: Path, out_dir: Path
) -> int:
    """The site on SQLite and on PostgreSQL with 1, 2 and 4 workers, interleaved."""
    sys.path.insert(0, str(ROOT / "tests"))
    import pg  # type: ignore[import-not-found]  # tests/pg.py: the tests' throwaway cluster

    reason = pg.unavailable()
    if reason is not None:
        raise SystemExit(f"bench: --postgres: {reason}")
    params = ensure_site(args)
    site = site_dir(args)
    expected_file = site / "expected.txt"
    expected = set(expected_file.read_text().split())
    bench = Bench(args, params, site / "seeds.txt", expected_file, expected, tmp, out_dir)
    bench.server = bench.serve()
    results["server"] = f"nginx {bench.server.version}" if bench.server.kind == "nginx" else (
        "bench_server.py (asyncio)"
    )  # fmt: skip
    results["machine"] = report.machine(results["server"], None)
    results["conditions"] = (
        f"site: {params['hosts']} hosts x {params['pages']} pages; concurrency "
        f"{args.concurrency} per worker, per host {args.per_host}; PostgreSQL "
        f"{pg._bindir()} with fsync=off, synchronous_commit=off (tests/pg.py); medians of "
        f"{args.reps} interleaved reps"
    )
    wanted = [n for n in bench_postgres.RUNNERS if n in args.runners or n == "sqlite"]
    runs: list[dict[str, Any]] = []
    try:
        with pg.cluster() as cluster:
            for rep in range(1, args.reps + 1):
                for name in wanted:
                    log(f"postgres rep {rep}/{args.reps}: {name}")
                    if name == "sqlite":
                        record = bench.run("crawler", rep)
                        record["name"] = "sqlite"
                    else:
                        record = postgres_run(bench, cluster, name, rep)
                    runs.append(record)
                    log(
                        f"{name}: {record.get('pages')} pages, {record.get('pages_per_s')} "
                        f"pages/s, {record['cpu_s']} CPU s, db CPU {record.get('db_cpu_s')} s"
                        + (f"; FAILED: {record['error'][-300:]}" if "error" in record else "")
                    )
    finally:
        bench.server.stop()
    rows = []
    for name in wanted:
        row = report.medians(runs, name)
        good = [r for r in runs if r["name"] == name and "db_cpu_ms_per_page" in r]
        if good:
            row["db_cpu_ms_per_page"] = sorted(r["db_cpu_ms_per_page"] for r in good)[
                len(good) // 2
            ]
        rows.append(row)
    results["runs"], results["medians"] = runs, rows
    results["table"] = report.render(rows)
    sqlite_rate = rows[0].get("pages_per_s")
    lines = []
    for row in rows[1:]:
        if sqlite_rate and row.get("pages_per_s"):
            x = row["pages_per_s"] / sqlite_rate
            db = row.get("db_cpu_ms_per_page")
            goal = "   target >= 0.5   " + ("ok" if x >= 0.5 else "MISSED")
            lines.append(
                f"  {row['name']} / sqlite pages/s {x:6.2f}; db CPU ms/page {db}"
                + (goal if row["name"] == "pg-1" else "")
            )
    results["targets"] = lines
    parts = [report.machine_line(results["machine"]), results["conditions"], "", results["table"]]
    parts += ["", "srv CPU s: nginx; db CPU: the PostgreSQL cluster's CPU per page", ""]
    parts += ["targets (issue 12):", *lines]
    print("\n" + "\n".join(parts))
    return 0 if all(r["runs"] and not r["failed"] for r in rows) else 1


def postgres_run(bench: Bench, cluster: Any, name: str, rep: int) -> dict[str, Any]:
    """One PostgreSQL run: a fresh database, `crawl` plus N-1 `work`ers under measure()."""
    assert bench.server is not None
    args = bench.args
    workers = int(name.split("-")[1])
    dsn = cluster.dsn(cluster.new_database())
    crawl = crawler_argv(args, bench.seeds, Path("unused"))
    crawl[crawl.index("--db") + 1] = dsn
    argv = [sys.executable, str(SCRIPTS / "bench_postgres.py"), dsn, str(workers),
            str(args.concurrency), "--", *crawl]  # fmt: skip
    offset = bench.server.log.stat().st_size
    server_cpu = bench.server.cpu_s()
    db_cpu = bench_postgres.cluster_cpu_s(cluster.data)
    m = measure(argv, cwd=bench.tmp, timeout=args.timeout, out_dir=bench.out_dir,
                label=f"{name}.{rep}")  # fmt: skip
    time.sleep(0.3)
    record: dict[str, Any] = {"name": name, "rep": rep, "exit": m.code}
    record.update(wall_s=round(m.wall_s, 3), cpu_s=round(m.cpu_s, 2))
    record["peak_rss_mb"] = round(m.peak_rss_mb, 1)
    record["server_cpu_s"] = round(bench.server.cpu_s() - server_cpu, 2)
    record["db_cpu_s"] = round(bench_postgres.cluster_cpu_s(cluster.data) - db_cpu, 2)
    try:
        found = asyncio.run(bench_postgres.counts(dsn))
    except (OSError, ImportError) as exc:
        found = {"error": str(exc)}
    fetched = found.pop("fetched", set())
    record.update(found)
    record.update(fetched_expected=len(fetched & bench.expected), expected=len(bench.expected))
    record["unexpected"] = len(fetched - bench.expected)
    record.update(server_check(read_from(bench.server.log, offset), bench.params["port"],
                               bench.expected))  # fmt: skip
    pages = record.get("pages")
    if pages:
        seconds = record.get("seconds") or m.wall_s
        record["pages_per_s"] = round(pages / seconds, 1)
        record["wall_pages_per_s"] = round(pages / m.wall_s, 1)
        record["cpu_ms_per_page"] = round(1000 * m.cpu_s / pages, 3)
        record["db_cpu_ms_per_page"] = round(1000 * record["db_cpu_s"] / pages, 3)
    if m.code != 0 or not pages:
        record["error"] = (m.stderr.strip() or m.stdout.strip() or f"exit {m.code}")[-1500:]
    return record


# ---------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    doc = __doc__ or ""
    ap = argparse.ArgumentParser(
        description=doc.split("\n\n")[0],
        epilog=doc.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--reps", type=int, default=3, help="interleaved repetitions (default 3)")
    ap.add_argument("--concurrency", type=int, help="default 64; --broad: 1000")
    ap.add_argument("--per-host", type=int, help="default 4; --broad: 1")
    ap.add_argument(
        "--runners",
        default=",".join(DEFAULT_RUNNERS),
        help=f"comma-separated, of {', '.join(RUNNERS)} (default {','.join(DEFAULT_RUNNERS)})",
    )
    ap.add_argument("--scrapy-cap", type=int, default=2000, help="Scrapy's page cap (0: none)")
    ap.add_argument("--crawler", help="the crawler command (default: this venv's `crawler`)")
    ap.add_argument(
        "--crawler-b",
        metavar="CMD",
        help="a second crawler build's command, run as the runner crawler-b "
        "(added to --runners when not named there)",
    )
    ap.add_argument(
        "--server",
        choices=["auto", "nginx", "python"],
        default="auto",
        help="auto: nginx when installed, else bench_server.py",
    )
    ap.add_argument("--install-nginx", action="store_true", help="apt-get install nginx if missing")
    ap.add_argument("--server-workers", type=int, default=1, help="server processes (default 1)")
    ap.add_argument("--timeout", type=float, default=300, help="seconds before a run is killed")
    ap.add_argument("--no-profile", action="store_true", help="skip the cProfile run")
    ap.add_argument("--profile-pages", type=int, default=0, help="profile run's --max-pages")
    ap.add_argument("--top", type=int, default=15, help="functions in each profile list")
    ap.add_argument("--no-ceiling", action="store_true", help="skip the server-ceiling run")
    ap.add_argument("--no-setup", action="store_true", help="never pip-install Scrapy")
    ap.add_argument("--json", type=Path, default=ROOT / "bench-results.json")
    site = ap.add_argument_group("site")
    site.add_argument("--hosts", type=int, default=40)
    site.add_argument("--pages", type=int, default=500, help="pages per host")
    site.add_argument("--links", type=int, default=30, help="links per page")
    site.add_argument("--size", type=float, default=15, help="average page KB")
    site.add_argument("--seed", type=int, default=1)
    site.add_argument("--port", type=int, default=DEFAULT_PORT, help="the site's port")
    big = ap.add_argument_group("frontier mode")
    big.add_argument(
        "--frontier",
        action="store_true",
        help="instead: a crawl whose frontier passes --frontier-target URLs",
    )
    big.add_argument("--frontier-target", type=int, default=1_000_000)
    big.add_argument("--frontier-links", type=int, default=1000, help="new links per page")
    big.add_argument("--frontier-hosts", type=int, default=4)
    wide = ap.add_argument_group("broad mode")
    wide.add_argument(
        "--broad",
        action="store_true",
        help="instead: thousands of slow hosts with --delay, pages against the politeness bound",
    )
    wide.add_argument("--window", type=float, default=120, help="seconds before SIGINT (120)")
    wide.add_argument("--delay", type=float, default=1.0, help="per-host delay (default 1)")
    wide.add_argument("--broad-hosts", type=int, default=2000)
    wide.add_argument("--broad-big", type=int, default=20, help="hosts with huge queues")
    wide.add_argument("--broad-hidden", type=int, default=150, help="small hosts found by links")
    wide.add_argument("--broad-port", type=int, default=broad_site.PORT)
    ap.add_argument(
        "--postgres",
        action="store_true",
        help="instead: the site on SQLite and on PostgreSQL with 1, 2 and 4 workers "
        "(--runners picks of pg-1,pg-2,pg-4)",
    )
    args = ap.parse_args()
    if args.concurrency is None:
        args.concurrency = 1000 if args.broad else 64
    if args.per_host is None:
        args.per_host = 1 if args.broad else 4
    if sum((args.broad, args.frontier, args.postgres)) > 1:
        ap.error("one of --broad, --frontier, --postgres")
    if args.postgres and args.runners == ",".join(DEFAULT_RUNNERS):
        args.runners = ",".join(bench_postgres.RUNNERS)
    args.runners = [n.strip() for n in args.runners.split(",") if n.strip()]
    unknown = set(args.runners) - set(RUNNERS) - set(bench_postgres.RUNNERS)
    if unknown:
        ap.error(f"unknown runner(s) {', '.join(sorted(unknown))}; have {', '.join(RUNNERS)}")
    if args.crawler_b and "crawler-b" not in args.runners:
        args.runners.append("crawler-b")
    if "crawler-b" in args.runners and not args.crawler_b:
        ap.error("the runner crawler-b needs --crawler-b CMD")
    if args.frontier_links < 2:
        ap.error("--frontier-links must be at least 2")
    return args


def main() -> int:
    args = parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # beside stderr's log
    args.nginx = None
    if not args.frontier and not args.broad and args.server != "python":
        args.nginx = nginx_binary(args.install_nginx)
        if args.nginx is None:
            if args.server == "nginx":
                raise SystemExit("bench: nginx is not installed (--install-nginx installs it)")
            log("nginx not found: serving with bench_server.py (--install-nginx for nginx)")
    # SIGTERM ends the run like Ctrl-C does, through the finally blocks that stop servers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    began = time.time()
    results: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "argv": sys.argv[1:],
        "load_before": busy_check(),
    }
    out_dir = WORK / "logs" / time.strftime("run-%Y%m%d-%H%M%S")
    out_dir.mkdir(parents=True, exist_ok=True)
    code = 1
    try:
        with temp_dir() as tmp:
            results["mode"] = (
                "frontier" if args.frontier else "broad" if args.broad
                else "postgres" if args.postgres else "site"
            )  # fmt: skip
            modes = {"site": site_benchmark, "frontier": frontier_benchmark,
                     "postgres": postgres_benchmark}  # fmt: skip
            code = modes.get(results["mode"], broad_benchmark)(args, results, tmp, out_dir)
    finally:
        kill_current()
    results["load_after"] = [round(x, 2) for x in os.getloadavg()]
    results["total_s"] = round(time.time() - began, 1)
    path = args.json
    if results["mode"] != "site" and path == ROOT / "bench-results.json":
        path = ROOT / f"bench-results-{results['mode']}.json"
    path.write_text(json.dumps(results, indent=1) + "\n")
    print(f"\ntotal {results['total_s']:.0f} s; results in {path}; logs in {out_dir}")
    return code


def busy_check() -> list[float]:
    """The load averages; a warning when other work shares the CPUs with the benchmark."""
    load = [round(x, 2) for x in os.getloadavg()]
    cores = len(os.sched_getaffinity(0))
    if load[0] > 0.5 * cores:
        log(f"the machine is busy (load {load[0]} on {cores} cores): the numbers will be noisy")
    return load


@contextlib.contextmanager
def temp_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="bench-") as name:
        yield Path(name)


if __name__ == "__main__":
    sys.exit(main())
