"""Autoscaling under a step load: 1 → 64 concurrent clients on a 50 ms handler.

Run: ``.venv/bin/python benchmarks/scaling.py [--clients 64] [--duration 30] [--out DIR]``

The app (written to a temporary directory) is a gunicorn WSGI handler that sleeps 50 ms, with
``automatic_scaling: max_concurrent_requests: 8`` (target_throughput_utilization 0.6 by
default, so SPEC SCALE-1 wants floor(64 / 4.8) + 1 = 14 instances for 64 clients).

Two runs in the same process, against a real ``gfe-proxy serve``:

  autoscaled  starts with one instance; one client for 5 s, then a step to 64 clients;
  pre-scaled  the baseline: ``min_instances: 14`` (already at the size the rule predicts),
              64 clients from the start.

Reported: time from the step until throughput reaches steady state (the end of the first of
three consecutive 1 s windows at >= 90 % of the steady throughput, the median 1 s window of
the run's last 10 s), p50/p99 latency during that ramp and at steady state, the instance
count over time (from /api/status every 250 ms), errors (must be 0), and the ratios to the
pre-scaled baseline and to the ideal throughput (clients / 50 ms). Each request has a unique
query string so that the edge cache never coalesces them (CACHE-5).

Output: a text report on stdout and in ``benchmarks/results/scaling.md``, the raw series in
``benchmarks/results/scaling.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
HANDLER_S = 0.050
MAIN_PY = f"""
import time

def app(environ, start_response):
    time.sleep({HANDLER_S})
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]
"""
APP_YAML = """
runtime: python312
automatic_scaling:
  max_concurrent_requests: 8
  min_instances: {min_instances}
handlers:
- url: /.*
  script: auto
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Run:
    name: str
    step_at: float = 0.0  # seconds since start when the 64 clients began
    requests: list[tuple[float, float, int]] = field(default_factory=list)  # (end, latency, status)
    errors: list[str] = field(default_factory=list)
    instances: list[tuple[float, int, int, int, int]] = field(default_factory=list)
    decisions: list[dict[str, Any]] = field(default_factory=list)


class Proxy:
    """A `gfe-proxy serve` subprocess on ephemeral ports."""

    def __init__(self, app: Path) -> None:
        self.port, self.admin = free_port(), free_port()
        cmd = [
            sys.executable,
            "-m",
            "gfe_proxy",
            "serve",
            str(app),
            "--port",
            str(self.port),
            "--admin-port",
            str(self.admin),
            "--https-port",
            "0",
            "--quiet",
            "--cache-size",
            "0",
        ]
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=self.log)
        assert self.proc.stdout is not None
        for raw in iter(self.proc.stdout.readline, b""):
            if raw.startswith(b"gfe-proxy: ready"):
                break
        else:
            self.log.seek(0)
            raise SystemExit("gfe-proxy did not start:\n" + self.log.read().decode())

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self.log.close()


async def client(
    session: aiohttp.ClientSession, url: str, run: Run, t0: float, stop: asyncio.Event, tag: str
) -> None:
    n = 0
    while not stop.is_set():
        n += 1
        start = time.perf_counter()
        try:
            async with session.get(f"{url}/work?c={tag}-{n}") as r:
                await r.read()
                status = r.status
        except (aiohttp.ClientError, OSError) as e:
            run.errors.append(repr(e))
            status = 0
        end = time.perf_counter()
        run.requests.append((end - t0, end - start, status))


async def sampler(
    session: aiohttp.ClientSession, admin: str, run: Run, t0: float, stop: asyncio.Event
) -> None:
    while not stop.is_set():
        async with session.get(f"{admin}/api/status") as r:
            data = await r.json()
        svc = data["services"][0]
        states = [i["state"] for i in svc["instances"]]
        run.instances.append(
            (
                round(time.perf_counter() - t0, 2),
                states.count("ready") + states.count("starting"),
                states.count("ready"),
                sum(i["inflight"] for i in svc["instances"]),
                svc["pending"],
            )
        )
        run.decisions = svc["decisions"]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.25)


async def drive(proxy: Proxy, run: Run, *, clients: int, warm: float, duration: float) -> None:
    url, admin = f"http://127.0.0.1:{proxy.port}", f"http://127.0.0.1:{proxy.admin}"
    stop = asyncio.Event()
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        t0 = time.perf_counter()
        tasks = [asyncio.create_task(sampler(session, admin, run, t0, stop))]
        if warm:
            tasks.append(asyncio.create_task(client(session, url, run, t0, stop, "w")))
            await asyncio.sleep(warm)  # the benchmark's own schedule: one client for `warm` s
        run.step_at = time.perf_counter() - t0
        for k in range(clients - (1 if warm else 0)):
            tasks.append(asyncio.create_task(client(session, url, run, t0, stop, f"c{k}")))
        await asyncio.sleep(duration)
        stop.set()
        await asyncio.gather(*tasks)


def windows(run: Run, start: float, end: float) -> list[tuple[float, int]]:
    """Requests completed per 1 s window from ``start``."""
    out = []
    t = start
    while t + 1.0 <= end + 1e-9:
        out.append((t - start, sum(1 for e, _, _ in run.requests if t <= e < t + 1.0)))
        t += 1.0
    return out


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def analyse(run: Run, duration: float) -> dict[str, Any]:
    end = run.step_at + duration
    wins = windows(run, run.step_at, end)
    steady = statistics.median(n for _, n in wins[-10:])
    reached = None
    for i, (t, _) in enumerate(wins):
        if len(wins[i : i + 3]) == 3 and all(n >= 0.9 * steady for _, n in wins[i : i + 3]):
            reached = t + 1.0  # the end of the first of three good windows in a row
            break
    ramp_end = run.step_at + (reached or 0.0)
    ramp = [lat for e, lat, _ in run.requests if run.step_at <= e < ramp_end]
    steady_lat = [lat for e, lat, _ in run.requests if end - 10 <= e < end]
    bad = [s for _, _, s in run.requests if s != 200]
    return {
        "steady_rps": round(steady, 1),
        "time_to_steady_s": reached,
        "ramp_requests": len(ramp),
        "ramp_p50_ms": round(pct(ramp, 0.50) * 1000, 1) if ramp else None,
        "ramp_p99_ms": round(pct(ramp, 0.99) * 1000, 1) if ramp else None,
        "steady_p50_ms": round(pct(steady_lat, 0.50) * 1000, 1),
        "steady_p99_ms": round(pct(steady_lat, 0.99) * 1000, 1),
        "errors": len(bad) + len(run.errors),
        "requests": len(run.requests),
        "max_instances": max((s[1] for s in run.instances), default=0),
        "throughput_windows": wins,
    }


def series(run: Run, every: float = 1.0) -> list[tuple[float, int, int, int, int]]:
    out: list[tuple[float, int, int, int, int]] = []
    for s in run.instances:
        if not out or s[0] - out[-1][0] >= every - 1e-9:
            out.append(s)
    return out


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "aiohttp": aiohttp.__version__,
    }


def report(
    clients: int, duration: float, auto: dict[str, Any], base: dict[str, Any], run: Run
) -> str:
    ideal = clients / HANDLER_S
    lines = [
        f"# Autoscaling step load: 1 -> {clients} clients, {HANDLER_S * 1000:.0f} ms handler,"
        " max_concurrent_requests 8",
        "",
        f"machine: {machine()}",
        f"measured {duration:g} s after the step; ideal throughput {ideal:.0f} req/s"
        f" ({clients} clients / {HANDLER_S * 1000:.0f} ms)",
        "",
        "| run | steady req/s | vs pre-scaled | vs ideal | time to steady | ramp p50 | ramp p99"
        " | steady p50 | steady p99 | max instances | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in (("autoscaled (1 instance at the step)", auto), ("pre-scaled (14)", base)):
        tts = f"{r['time_to_steady_s']:.0f} s" if r["time_to_steady_s"] is not None else "never"
        lines.append(
            f"| {name} | {r['steady_rps']:.0f} | {r['steady_rps'] / base['steady_rps']:.2f}"
            f" | {r['steady_rps'] / ideal:.2f} | {tts} | {r['ramp_p50_ms']} ms"
            f" | {r['ramp_p99_ms']} ms | {r['steady_p50_ms']} ms | {r['steady_p99_ms']} ms"
            f" | {r['max_instances']} | {r['errors']} |"
        )
    lines += [
        "",
        "Instances over time (autoscaled run; t = seconds since start, the step at"
        f" t = {run.step_at:.1f} s):",
        "",
        "| t | live | ready | in flight | pending |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {t:.1f} | {a} | {b} | {c} | {d} |" for t, a, b, c, d in series(run)]
    lines += ["", "Scaling decisions (autoscaled run):", ""]
    lines += [f"- {d['action']}: {d['reason']}" for d in run.decisions]
    lines += [
        "",
        "Throughput per second after the step (autoscaled): "
        + ", ".join(str(n) for _, n in auto["throughput_windows"]),
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--duration", type=float, default=30.0, help="seconds after the step")
    ap.add_argument("--warm", type=float, default=5.0, help="seconds of one client first")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    runs: dict[str, tuple[Run, dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="gfe-scaling-") as tmp:
        for name, min_instances, warm in (("autoscaled", 0, args.warm), ("prescaled", 14, 0.0)):
            app = Path(tmp) / name
            app.mkdir()
            (app / "main.py").write_text(MAIN_PY)
            (app / "app.yaml").write_text(APP_YAML.format(min_instances=min_instances))
            proxy = Proxy(app)
            run = Run(name)
            try:
                asyncio.run(
                    drive(proxy, run, clients=args.clients, warm=warm, duration=args.duration)
                )
            finally:
                proxy.stop()
            runs[name] = (run, analyse(run, args.duration))
    (run, auto), (_, base) = runs["autoscaled"], runs["prescaled"]
    text = report(args.clients, args.duration, auto, base, run)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scaling.md").write_text(text)
    raw = {
        "machine": machine(),
        "clients": args.clients,
        "handler_s": HANDLER_S,
        "duration_s": args.duration,
        "runs": {
            name: {
                **result,
                "step_at": r.step_at,
                "instances": r.instances,
                "decisions": r.decisions,
            }
            for name, (r, result) in runs.items()
        },
    }
    (args.out / "scaling.json").write_text(json.dumps(raw, indent=1))
    return 0 if auto["errors"] == 0 and base["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
