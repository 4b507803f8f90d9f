"""Processes for bench.py: the site's server (nginx or bench_server.py) and measured runs.

Every process is started in its own session and stopped by its own process group, never
by name; a run that outlives its timeout is killed, group and all.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCRIPTS = Path(__file__).resolve().parent
GNU_TIME = "/usr/bin/time"


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def runner_env() -> dict[str, str]:
    """The environment without proxy settings: all traffic stays on loopback."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.0/8,localhost"
    return env


# ---------------------------------------------------------------- the server


@dataclass
class Server:
    """A server process we started (in its own session), its access log and what it is."""

    proc: subprocess.Popen[bytes]
    kind: str
    log: Path
    tmp: Path
    version: str = ""

    def cpu_s(self) -> float:
        """User + system CPU seconds of the server and its worker processes so far."""
        return tree_cpu(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)  # our own child's group
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)


def tree_cpu(pid: int) -> float:
    """CPU seconds of process `pid` and its descendants, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        fields = text[text.rfind(")") + 2 :].split()
        stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    family, total, grew = {pid}, 0.0, True
    while grew:
        grew = False
        for p, (ppid, _) in stats.items():
            if ppid in family and p not in family:
                family.add(p)
                grew = True
    for p in family:
        total += stats.get(p, (0, 0.0))[1]
    return total


def start_server(
    logs: Path,
    *,
    nginx: str | None,
    site: Path | None,
    port: int,
    hosts: list[str],
    workers: int = 1,
    links: int = 1000,
) -> Server:
    """Serve `site` with `nginx` (its binary) or bench_server.py; the frontier site when
    `site` is None. Returns once the first and last host answer."""
    kind = "nginx" if nginx is not None and site is not None else "python"
    busy = [h for h in (hosts[0], hosts[-1]) if not port_free(h, port)]
    if busy:
        raise SystemExit(f"bench: {busy[0]}:{port} is in use by another process (--port moves us)")
    tmp = Path(tempfile.mkdtemp(prefix="bench-server-"))
    access = logs / f"access-{port}.log"
    access.write_text("")
    if nginx is not None and site is not None:
        conf = tmp / "nginx.conf"
        conf.write_text(nginx_conf(site, hosts, port, logs, tmp, workers))
        argv = [nginx, "-p", str(tmp), "-c", str(conf)]
        out = subprocess.run([nginx, "-v"], capture_output=True, text=True)
        version = (out.stderr or out.stdout).strip().split("/")[-1]
    else:
        argv = [sys.executable, str(SCRIPTS / "bench_server.py")]
        argv += ["static", str(site)] if site is not None else ["frontier"]
        argv += ["--port", str(port), "--log", str(access), "--workers", str(workers)]
        if site is None:
            argv += ["--hosts", str(len(hosts)), "--links", str(links)]
        version = "bench_server.py"
    errors = logs / f"server-{port}.err"  # nginx's error_log too: kept after the server stops
    with open(errors, "a") as err:
        proc = subprocess.Popen(
            argv, stdout=err, stderr=err, start_new_session=True, env=runner_env()
        )
    server = Server(proc, kind, access, tmp, version)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            server.stop()
            raise SystemExit(f"bench: {kind} exited at start: {errors.read_text()[-500:]}")
        if answers(hosts[0], port) and answers(hosts[-1], port) and proc.poll() is None:
            return server
        time.sleep(0.1)
    server.stop()
    raise SystemExit(f"bench: {kind} did not answer on {hosts[0]}:{port} within 15 s")


def port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def answers(host: str, port: int) -> bool:
    conn = http.client.HTTPConnection(host, port, timeout=1)
    try:
        conn.request("GET", "/robots.txt")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def nginx_conf(site: Path, hosts: list[str], port: int, logs: Path, tmp: Path, workers: int) -> str:
    user = "user root;\n" if os.geteuid() == 0 else ""  # else workers may not read the site
    listens = "".join(f"        listen {h}:{port};\n" for h in hosts)
    return f"""{user}daemon off;
worker_processes {workers};
worker_rlimit_nofile 65536;
pid {tmp}/nginx.pid;
error_log {logs}/server-{port}.err warn;
events {{ worker_connections 8192; }}
http {{
    types {{ text/html html; text/plain txt; }}
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 65;
    keepalive_requests 100000;
    server_tokens off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    log_format bench '$msec $server_addr $status $body_bytes_sent "$request_uri"';
    access_log {logs}/access-{port}.log bench;
    server {{
{listens}        root {site}/$server_addr;
        index index.html;
    }}
}}
"""


def server_check(lines: list[str], port: int, expected: set[str]) -> dict[str, Any]:
    """What the server saw during one run: requests, repeats, robots.txt and /private/ hits."""
    requests = robots = private = not_found = 0
    urls: set[str] = set()
    repeated: list[str] = []
    for line in lines:
        parts = line.split(" ", 4)
        if len(parts) < 5:
            continue
        _, addr, status, _, quoted = parts
        uri = quoted.strip().strip('"')
        if uri == "/robots.txt":
            robots += 1
            continue
        requests += 1
        url = f"http://{addr}:{port}{uri}"
        if url in urls and len(repeated) < 10:
            repeated.append(url)
        urls.add(url)
        private += uri.startswith("/private/")
        not_found += status == "404"
    return {
        "srv_requests": requests,
        "srv_repeats": requests - len(urls),
        "srv_expected": len(urls & expected),
        "srv_private": private,
        "srv_robots": robots,
        "srv_404": not_found,
        "srv_repeated_sample": repeated,  # the first few URLs requested again
    }


def read_from(path: Path, offset: int) -> list[str]:
    with open(path) as f:
        f.seek(offset)
        return [line for line in f.read().splitlines() if line]


# ---------------------------------------------------------------- running one process


@dataclass
class Measured:
    code: int | None  # None: killed after the timeout
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    stdout: str
    stderr: str
    # CPU of the processes' main threads (the event loops), sampled every 0.1 s: so the
    # rest of cpu_s is their other threads' (the crawler's SQLite writer's).
    main_thread_cpu_s: float = 0.0


_current: subprocess.Popen[bytes] | None = None  # the runner in progress, killed on exit


def measure(argv: list[str], *, cwd: Path, timeout: float, out_dir: Path, label: str) -> Measured:
    """Run argv in its own session and measure it; killed (its whole group) after `timeout`.

    Under GNU time when installed: os.wait4's ru_maxrss would include this process's RSS
    when the child was forked, a small C program's is negligible. Without it, wait4 it is.
    """
    global _current
    out_path, err_path = out_dir / f"{label}.out", out_dir / f"{label}.err"
    time_file = out_dir / f"{label}.time"
    gnu_time = Path(GNU_TIME).exists()
    if gnu_time:
        argv = [GNU_TIME, "-f", "%M %U %S", "-o", str(time_file), *argv]
    start = time.perf_counter()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(
            argv, cwd=cwd, stdout=out, stderr=err, env=runner_env(), start_new_session=True
        )
        _current = proc
        code: int | None
        usage = None
        deadline = start + timeout
        tree_peak, polls = 0, 0
        mains: dict[int, float] = {}
        while True:
            if polls % 5 == 0:  # every 0.1 s
                tree_kb, cpu_by_pid = sample_tree(proc.pid, skip_root=gnu_time)
                tree_peak = max(tree_peak, tree_kb)
                mains.update(cpu_by_pid)
            polls += 1
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                code = os.waitstatus_to_exitcode(status)
                proc.returncode = code
                break
            if time.perf_counter() > deadline:
                log(f"{label}: killed after {timeout:.0f} s")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                code = None
                break
            time.sleep(0.02)
        _current = None
    wall = time.perf_counter() - start
    rss_mb, cpu = 0.0, 0.0
    if gnu_time and time_file.exists() and time_file.read_text().strip():
        rss_kb, user, system = time_file.read_text().split()[-3:]
        rss_mb, cpu = int(rss_kb) / 1024, float(user) + float(system)
    elif usage is not None:
        rss_mb, cpu = usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime
    # ru_maxrss is the largest single process: a runner of several processes is their sum.
    rss_mb = max(rss_mb, tree_peak / 1024)
    return Measured(
        code,
        wall,
        cpu,
        rss_mb,
        out_path.read_text(errors="replace"),
        err_path.read_text(errors="replace"),
        sum(mains.values()),
    )


def sample_tree(root: int, *, skip_root: bool) -> tuple[int, dict[int, float]]:
    """The summed RSS (KB) of `root`'s descendants, and the CPU seconds so far of each
    one's main thread, by pid; `root` too unless `skip_root` (GNU time, a few hundred KB
    that are not the runner's). Walks /proc/PID/task/TID/children: a handful of small
    reads, so sampling it does not steal the runners' CPU. A process's last 0.1 s of
    CPU is not seen when sampled every 0.1 s: a few ticks of a 15 s run."""
    tick = os.sysconf("SC_CLK_TCK")
    rss, todo = 0, [root]
    mains: dict[int, float] = {}
    while todo:
        pid = todo.pop()
        try:
            for task in Path(f"/proc/{pid}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
            if pid == root and skip_root:
                continue
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss += int(line.split()[1])
            stat = Path(f"/proc/{pid}/task/{pid}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            mains[pid] = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        except (OSError, ValueError):
            continue
    return rss, mains


def kill_current() -> None:
    proc = _current
    if proc is not None and proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
