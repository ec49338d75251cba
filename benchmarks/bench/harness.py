"""Systems, scenarios and one measurement: start a system, probe it, drive it with wrk.

Theory of operation: every *system* is started alone on 127.0.0.1 (free ports), with its own
backend when it needs one, and stopped (its whole process group) before the next starts. For
each *scenario* the system supports: one probe request checks the answer (status, decoded size),
``wrk`` warms up with the scenario's connection count, a second probe checks the coding and
that a cache scenario is really served from the cache, then ``wrk`` measures (one thread, fixed
connections and duration). A Lua ``done()`` hook prints wrk's exact percentiles as JSON.
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parents[1]  # benchmarks/
REPO = BENCH.parent
APPS = BENCH / "apps"
SYSTEMS_DIR = BENCH / "systems"
VENV_BIN = Path(sys.executable).parent  # run with the project's venv python
sys.path.insert(0, str(APPS))
from main import ROUTES, STATIC_FILES  # noqa: E402  (expected sizes come from the backend)

CEILING = "aiohttp-ceiling"
# The same backend command app.yaml's entrypoint runs for gfe_proxy's instance.
UVICORN_ARGS = ("--http", "httptools", "--loop", "uvloop", "--no-access-log",
                "--log-level", "warning")  # fmt: skip


# --- scenarios -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    key: str
    title: str
    path: str
    conns: int
    gzip: bool = False  # send Accept-Encoding: gzip; the answer must come back gzipped
    cache: bool = False  # a cache hit is expected after warm-up
    baselines: tuple[str, ...] = (CEILING,)  # the first is the scenario's main baseline

    @property
    def size(self) -> int:
        """Bytes of the decoded body every system must answer."""
        if self.path in STATIC_FILES:
            return STATIC_FILES[self.path]
        return len(ROUTES[self.path][1])


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(key="small-c1", title="small dynamic, c=1 (added latency)", path="/small",
             conns=1, baselines=("backend",)),
    Scenario(key="small-c16", title="small dynamic, c=16 (pass-through)", path="/small",
             conns=16, baselines=(CEILING, "aiohttp-naive")),
    Scenario(key="text100k", title="100 KB text dynamic, c=16", path="/text100k", conns=16),
    Scenario(key="text100k-gzip", title="100 KB text dynamic, gzip, c=16", path="/text100k",
             conns=16, gzip=True),
    Scenario(key="hit-small", title="cache hit, small, c=16", path="/cached-small", conns=16,
             cache=True),
    Scenario(key="hit-100k", title="cache hit, 100 KB, c=16", path="/cached-100k", conns=16,
             cache=True),
    Scenario(key="hit-100k-gzip", title="cache hit, 100 KB, gzip, c=16", path="/cached-100k",
             conns=16, gzip=True, cache=True),
    Scenario(key="static-10k", title="static 10 KB, c=16", path="/static/10k.txt", conns=16),
    Scenario(key="static-1m", title="static 1 MB, c=16", path="/static/1m.txt", conns=16,
             baselines=("nginx", CEILING)),
    Scenario(key="routing", title="routing: 100 handlers vs 1, small, c=16", path="/small",
             conns=16, baselines=("gfe-routes-1",)),
)  # fmt: skip
SCENARIO = {s.key: s for s in SCENARIOS}


# --- processes -------------------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(slots=True)
class Running:
    """The processes of one started system and where it listens."""

    port: int = 0
    procs: list[tuple[str, subprocess.Popen[bytes], Path]] = field(default_factory=list)
    cache_header: tuple[str, str] | None = None  # (header, value) that marks a cache hit

    def spawn(self, name: str, argv: list[str], run: Path, cwd: Path | None = None) -> None:
        log = run / f"{name}.log"
        with log.open("ab") as out:
            # A session of its own: stop() signals the whole group (nginx workers, gunicorn or
            # uvicorn instances, varnish's child), and only it.
            proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.procs.append((name, proc, log))

    def check_alive(self) -> None:
        for name, proc, log in self.procs:
            if proc.poll() is not None:
                tail = log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{tail}")

    def stop(self) -> None:
        for _, proc, _ in reversed(self.procs):
            if proc.poll() is None:
                with suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for _, proc, _ in reversed(self.procs):
            with suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.1, deadline - time.monotonic()))
            # Leftovers of the group: children that outlived their parent or ignored TERM.
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        self.procs.clear()


def wait_http(running: Running, port: int, timeout: float = 30.0) -> None:
    """Ready means it answers HTTP, not that the process is alive."""
    deadline = time.monotonic() + timeout
    while True:
        running.check_alive()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/small")
            conn.getresponse().read()
            conn.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing answered HTTP on port {port}") from None
            time.sleep(0.1)


# --- systems ---------------------------------------------------------------------------------


def start_backend(running: Running, run: Path) -> int:
    port = free_port()
    argv = [
        str(VENV_BIN / "uvicorn"),
        "main:app",
        "--app-dir",
        str(APPS),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *UVICORN_ARGS,
    ]
    running.spawn("backend", argv, run)
    wait_http(running, port)
    return port


def sys_backend(running: Running, run: Path) -> None:
    running.port = start_backend(running, run)


def _fill(template: Path, out: Path, values: dict[str, str]) -> Path:
    text = template.read_text()
    for name, value in values.items():
        text = text.replace(f"@{name}@", value)
    leftover = re.search(r"@[A-Z_]+@", text)
    if leftover:
        raise RuntimeError(f"{template.name}: no value for {leftover.group()}")
    out.write_text(text)
    return out


def _nginx(running: Running, run: Path, cache: bool) -> None:
    backend = start_backend(running, run)
    running.port = free_port()
    cache_lines = (
        "proxy_cache bench;\n            add_header X-Cache-Status $upstream_cache_status;"
    )
    conf = _fill(
        SYSTEMS_DIR / "nginx.conf",
        run / "nginx.conf",
        {
            "USER": "user root;" if os.geteuid() == 0 else "",  # workers must reach the run dir
            "RUN": str(run),
            "APPS": str(APPS),
            "PORT": str(running.port),
            "BACKEND_PORT": str(backend),
            "CACHE": cache_lines if cache else "",
        },
    )
    running.spawn("nginx", ["nginx", "-p", str(run), "-c", str(conf), "-g", "daemon off;"], run)
    wait_http(running, running.port)
    if cache:
        running.cache_header = ("X-Cache-Status", "HIT")


def sys_nginx(running: Running, run: Path) -> None:
    _nginx(running, run, cache=False)


def sys_nginx_cache(running: Running, run: Path) -> None:
    _nginx(running, run, cache=True)


def sys_varnish(running: Running, run: Path) -> None:
    backend = start_backend(running, run)
    running.port = free_port()
    vcl = _fill(SYSTEMS_DIR / "varnish.vcl", run / "bench.vcl", {"BACKEND_PORT": str(backend)})
    argv = [
        "varnishd",
        "-F",
        "-j",
        "none",
        "-n",
        str(run / "varnish"),
        "-f",
        str(vcl),
        "-a",
        f"127.0.0.1:{running.port}",
        "-T",
        "none",
        "-s",
        "malloc,256m",
        "-p",
        "gzip_level=4",
    ]
    running.spawn("varnish", argv, run)
    wait_http(running, running.port)
    running.cache_header = ("X-Cache", "HIT")


def _python_proxy(running: Running, run: Path, name: str, script: str) -> None:
    """A proxy from systems/ (``script PORT BACKEND_PORT``) in front of its own backend."""
    backend = start_backend(running, run)
    running.port = free_port()
    argv = [sys.executable, str(SYSTEMS_DIR / script), str(running.port), str(backend)]
    running.spawn(name, argv, run)
    wait_http(running, running.port)


def sys_naive(running: Running, run: Path) -> None:
    _python_proxy(running, run, "naive", "aiohttp_naive_proxy.py")


def sys_floor(running: Running, run: Path) -> None:
    _python_proxy(running, run, "floor", "floor_proxy.py")


def sys_ceiling(running: Running, run: Path) -> None:
    running.port = free_port()
    script = SYSTEMS_DIR / "aiohttp_constant.py"
    running.spawn("ceiling", [sys.executable, str(script), str(running.port)], run)
    wait_http(running, running.port)


_LISTENING = re.compile(rb"http listening on http://[^\s/]+:(\d+)/")


def start_gfe(running: Running, run: Path, app: str) -> None:
    argv = [
        str(VENV_BIN / "gfe-proxy"),
        "serve",
        str(APPS / app),
        "--port",
        "0",
        "--admin-port",
        "0",
        "--https-port",
        "0",
        "--compression",
        "gzip",
        "-q",
    ]
    running.spawn("gfe", argv, run)
    log = running.procs[-1][2]
    deadline = time.monotonic() + 60
    while b"gfe-proxy: ready" not in log.read_bytes():
        running.check_alive()
        if time.monotonic() > deadline:
            raise RuntimeError("gfe-proxy did not become ready in 60 s")
        time.sleep(0.1)
    m = _LISTENING.search(log.read_bytes())
    if m is None:
        raise RuntimeError("gfe-proxy did not say where it listens")
    running.port = int(m.group(1))
    wait_http(running, running.port)
    running.cache_header = ("X-GFE-Cache", "HIT")  # SPEC CACHE-6


@dataclass(frozen=True, slots=True)
class System:
    key: str
    title: str
    start: Callable[[Running, Path], None]
    scenarios: tuple[str, ...]
    needs: str | None = None  # the program it cannot run without


_PASS = ("small-c1", "small-c16", "text100k")
_HITS = ("hit-small", "hit-100k", "hit-100k-gzip")
SYSTEMS: tuple[System, ...] = (
    System("backend", "backend direct (uvicorn + httptools)", sys_backend,
           (*_PASS, "hit-small", "hit-100k")),
    System("nginx", "nginx proxy_pass (keepalive upstream)", sys_nginx,
           (*_PASS, "text100k-gzip", "static-10k", "static-1m"), "nginx"),
    System("nginx-cache", "nginx proxy_cache", sys_nginx_cache, _HITS, "nginx"),
    System("varnish", "Varnish 7", sys_varnish, (*_PASS, "text100k-gzip", *_HITS), "varnishd"),
    System("aiohttp-naive", "aiohttp naive proxy (ClientSession)", sys_naive, _PASS),
    System("floor", "gfe_proxy's front + upstream client, no rules (its design's floor)",
           sys_floor, _PASS),
    System(CEILING, "aiohttp constant (ceiling)", sys_ceiling,
           tuple(s.key for s in SCENARIOS if s.key != "routing")),
    System("gfe", "gfe_proxy", lambda r, d: start_gfe(r, d, "app.yaml"),
           tuple(s.key for s in SCENARIOS if s.key != "routing")),
    System("gfe-routes-1", "gfe_proxy, 1 handler",
           lambda r, d: start_gfe(r, d, "routes-1.yaml"), ("routing",)),
    System("gfe-routes-100", "gfe_proxy, 100 handlers",
           lambda r, d: start_gfe(r, d, "routes-100.yaml"), ("routing",)),
)  # fmt: skip
SYSTEM = {s.key: s for s in SYSTEMS}


# --- one measurement -------------------------------------------------------------------------

LUA = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_us":%d,"bytes":%d,"errors":%d,"non2xx":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"mean_us":%.1f,"max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, latency.max))
end
"""


@dataclass(frozen=True, slots=True)
class Probe:
    status: int
    size: int  # decoded body bytes
    encoding: str
    cache: str  # the system's cache header, "" when absent


def probe(port: int, scenario: Scenario, cache_header: str | None) -> Probe:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Accept-Encoding": "gzip"} if scenario.gzip else {}
    conn.request("GET", scenario.path, headers=headers)
    r = conn.getresponse()
    body = r.read()
    conn.close()
    encoding = r.headers.get("Content-Encoding", "")
    if encoding == "gzip":
        body = gzip.decompress(body)
    return Probe(r.status, len(body), encoding, r.headers.get(cache_header or "", "") or "")


def wrk_argv(port: int, scenario: Scenario, seconds: float, lua: Path) -> list[str]:
    """One wrk thread, the scenario's connections, ``seconds`` long, reporting through ``lua``."""
    argv = ["wrk", "-t1", f"-c{scenario.conns}", f"-d{max(1, round(seconds))}s",
            "--timeout", "10s", "-s", str(lua)]  # fmt: skip
    if scenario.gzip:
        argv += ["-H", "Accept-Encoding: gzip"]
    argv.append(f"http://127.0.0.1:{port}{scenario.path}")
    return argv


def parse_wrk(stdout: str) -> dict[str, Any]:
    """The LUA hook's JSON line, plus ``rps``."""
    for line in stdout.splitlines():
        if line.startswith("BENCHJSON "):
            data: dict[str, Any] = json.loads(line.removeprefix("BENCHJSON "))
            data["rps"] = data["requests"] / (data["duration_us"] / 1e6)
            return data
    raise RuntimeError(f"wrk printed no result: {stdout}")


def wrk(port: int, scenario: Scenario, seconds: float, lua: Path) -> dict[str, Any]:
    argv = wrk_argv(port, scenario, seconds, lua)
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    return parse_wrk(out.stdout + out.stderr)


@dataclass(slots=True)
class Cell:
    system: str
    scenario: str
    rps: float | None = None
    p50_us: int | None = None
    p99_us: int | None = None
    p90_us: int | None = None
    mean_us: float | None = None
    errors: int = 0
    non2xx: int = 0
    mb_per_s: float | None = None
    encoding: str = ""
    notes: list[str] = field(default_factory=list)
    load_avg: float = 0.0
    rounds_rps: list[float] = field(default_factory=list)  # every round's req/s, run order


def best_of(cells: list[Cell]) -> list[Cell]:
    """One cell per (system, scenario): the round with the most req/s, whole (its latencies
    too). Other jobs on a shared machine only ever slow a round down, so the best round is the
    least disturbed one."""
    best: dict[tuple[str, str], Cell] = {}
    for cell in cells:
        key = (cell.system, cell.scenario)
        kept = best.get(key)
        rounds = (kept.rounds_rps if kept else []) + ([cell.rps] if cell.rps is not None else [])
        if kept is None or (cell.rps or 0) > (kept.rps or 0):
            kept = best[key] = cell
        kept.rounds_rps = rounds
    return list(best.values())


def measure(
    running: Running,
    system: System,
    scenario: Scenario,
    *,
    warmup: float,
    duration: float,
    lua: Path,
) -> Cell:
    """One cell: probe, warm up, check the coding and the cache, measure."""
    cell = Cell(system.key, scenario.key)
    header = running.cache_header[0] if running.cache_header else None
    first = probe(running.port, scenario, header)
    if first.status != 200 or first.size != scenario.size:
        cell.notes.append(f"wrong answer: status {first.status}, {first.size} bytes")
        return cell
    wrk(running.port, scenario, warmup, lua)
    after = probe(running.port, scenario, header)
    cell.encoding = after.encoding
    if scenario.gzip and after.encoding != "gzip":
        cell.notes.append("not compressed")
    if scenario.cache and running.cache_header and after.cache != running.cache_header[1]:
        cell.notes.append("cache not active")
    cell.load_avg = os.getloadavg()[0]
    r = wrk(running.port, scenario, duration, lua)
    cell.rps, cell.mean_us, cell.errors, cell.non2xx = (
        r["rps"],
        r["mean_us"],
        r["errors"],
        r["non2xx"],
    )
    cell.p50_us, cell.p90_us, cell.p99_us = r["p50_us"], r["p90_us"], r["p99_us"]
    cell.mb_per_s = r["bytes"] / (r["duration_us"] / 1e6) / 1e6
    if r["errors"] or r["non2xx"]:
        cell.notes.append(f"{r['errors']} socket errors, {r['non2xx']} non-2xx")
    return cell


def run_system(
    system: System,
    scenarios: list[Scenario],
    *,
    warmup: float,
    duration: float,
    log: Callable[[str], None],
) -> list[Cell]:
    """Start ``system``, measure each scenario, stop it; a failure marks the cells left."""
    run = Path(tempfile.mkdtemp(prefix=f"bench-{system.key}-"))
    lua = run / "report.lua"
    lua.write_text(LUA)
    running = Running()
    cells: list[Cell] = []
    try:
        system.start(running, run)
        for scenario in scenarios:
            cell = measure(running, system, scenario, warmup=warmup, duration=duration, lua=lua)
            running.check_alive()
            cells.append(cell)
            shown = (
                f"{cell.rps:10.0f} req/s  p50 {cell.p50_us} µs  p99 {cell.p99_us} µs"
                if (cell.rps is not None)
                else "-"
            )
            log(f"  {scenario.key:14} {shown}  {'; '.join(cell.notes)}")
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        failed = True
        log(f"  {system.key} failed: {e}\n  (logs kept in {run})")
        done = {c.scenario for c in cells}
        cells += [
            Cell(system.key, s.key, notes=[f"system failed: {str(e).splitlines()[0]}"])
            for s in scenarios
            if s.key not in done
        ]
    else:
        failed = False
    finally:
        running.stop()
    if not failed:
        shutil.rmtree(run, ignore_errors=True)
    return cells
