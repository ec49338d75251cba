"""Where gfe_proxy's time goes: py-spy samples the gfe-proxy process while wrk drives it.

Run from the repository root (``make bench`` installs py-spy into the venv):

    .venv/bin/python benchmarks/profile.py [--scenario small-c16] [--seconds 15] [--rate 499]

gfe_proxy is started exactly as ``benchmarks/bench`` starts it (``benchmarks/apps/app.yaml``),
warmed up with the scenario's wrk load, then sampled by ``py-spy record`` for ``--seconds``
while wrk keeps the load on: collapsed stacks aggregated by function, ``--gil`` so only samples
where a thread holds the GIL count (the loop's idle epoll wait releases it; a socket write made
from Python holds it, so kernel send time is charged to the Python caller). Blocking sampling
(py-spy pauses the process for each sample): its ``--nonblocking`` mode truncated coroutine
stacks here and uvloop's idle wait was not told apart without ``--gil``.
The gfe-proxy process's CPU time over the same window, divided by wrk's request count, gives
the CPU cost of one request; each profile share is also shown as microseconds of that.

Prints and writes ``benchmarks/results/profile-<UTC time>-<scenario>.md``: top functions by
self and by cumulative samples, and self time per source file. ``--raw PATH`` keeps py-spy's
collapsed stacks (for flamegraph tools).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "bench"))
import harness  # benchmarks/bench/harness.py: systems, scenarios, wrk

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def short_file(path: str) -> str:
    """``/…/site-packages/aiohttp/web_protocol.py`` -> ``aiohttp/web_protocol.py``."""
    for marker in ("site-packages/", "/work/main/", "lib/python3"):
        if marker in path:
            tail = path.split(marker, 1)[1]
            return tail.split("/", 1)[1] if marker == "lib/python3" else tail
    return path


def parse_raw(text: str) -> tuple[Counter[str], Counter[str], Counter[str], int]:
    """py-spy's collapsed stacks -> (self by function, cumulative by function, self by file,
    total samples). Cumulative counts a function once per sample however deep it recurses."""
    own: Counter[str] = Counter()
    cumulative: Counter[str] = Counter()
    by_file: Counter[str] = Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        names = []
        for frame in stack.split(";"):
            m = _FRAME.match(frame)
            if m is None:
                names.append((frame, frame))
                continue
            file = short_file(m["file"])
            names.append((f"{m['func']} ({file}{':' + m['line'] if m['line'] else ''})", file))
        for name in {n for n, _ in names}:
            cumulative[name] += count
        leaf, leaf_file = names[-1]
        own[leaf] += count
        by_file[leaf_file] += count
    return own, cumulative, by_file, total


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (not its children), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def _table(title: str, rows: Counter[str], total: int, per_request_us: float, top: int) -> str:
    lines = [
        f"### {title}",
        "",
        "| # | samples | share | µs/request | where |",
        "|---:|---:|---:|---:|---|",
    ]
    # The entry chain (<module>, main, the loop's run) is on every stack and says nothing.
    ranked = [(n, c) for n, c in rows.most_common() if c < 0.97 * total][:top]
    for i, (name, count) in enumerate(ranked, 1):
        share = count / total
        lines.append(
            f"| {i} | {count} | {100 * share:.1f}% | {share * per_request_us:.1f} | `{name}` |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenario", default="small-c16", choices=list(harness.SCENARIO))
    p.add_argument("--seconds", type=float, default=15.0, help="sampling window")
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--rate", type=int, default=499, help="py-spy samples per second")
    p.add_argument("--top", type=int, default=20)
    p.add_argument("--raw", type=Path, help="also keep py-spy's collapsed stacks here")
    p.add_argument("--out", type=Path, default=harness.BENCH / "results")
    args = p.parse_args()
    pyspy = shutil.which("py-spy", path=str(harness.VENV_BIN)) or shutil.which("py-spy")
    if pyspy is None:
        print("profile: py-spy is not installed (make bench installs it)", file=sys.stderr)
        return 1
    scenario = harness.SCENARIO[args.scenario]
    app = "routes-100.yaml" if scenario.key == "routing" else "app.yaml"
    run = Path(tempfile.mkdtemp(prefix="bench-profile-"))
    lua = run / "report.lua"
    lua.write_text(harness.LUA)
    running = harness.Running()
    try:
        harness.start_gfe(running, run, app)
        gfe_pid = running.procs[0][1].pid  # the gfe-proxy process itself (its session leader)
        harness.wrk(running.port, scenario, args.warmup, lua)
        raw = run / "stacks.txt"
        load = subprocess.Popen(
            harness.wrk_argv(running.port, scenario, args.seconds + 2, lua),
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(1.0)  # sample the steady state, not wrk's connection setup
        cpu0 = cpu_seconds(gfe_pid)
        spy = subprocess.run(
            [pyspy, "record", "--pid", str(gfe_pid), "--duration", str(round(args.seconds)),
             "--rate", str(args.rate), "--format", "raw", "--function", "--gil",
             "--output", str(raw)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        cpu = cpu_seconds(gfe_pid) - cpu0
        out, _ = load.communicate(timeout=args.seconds + 60)
        result = harness.parse_wrk(out)
        if spy.returncode != 0 or not raw.exists():
            print(f"profile: py-spy failed:\n{spy.stdout}{spy.stderr}", file=sys.stderr)
            return 1
        text = raw.read_text()
        if args.raw:
            args.raw.write_text(text)
    finally:
        running.stop()
    shutil.rmtree(run, ignore_errors=True)

    own, cumulative, by_file, total = parse_raw(text)
    # wrk ran seconds + 2 from just before the sampling window; its average rate over the
    # window is the best estimate of how many requests the window's CPU time served.
    requests = result["rps"] * args.seconds
    cpu_us = cpu / requests * 1e6 if requests else 0.0
    busy = total / (args.rate * args.seconds)
    # py-spy samples wall time: a GIL-holding thread that the kernel has preempted (typically
    # right after its write woke a peer on a 2-core machine) still counts. So the shares are of
    # the time the loop held the GIL, and µs/request is that time per request, not CPU time.
    per_request_us = busy * args.seconds / requests * 1e6 if requests else 0.0
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    report = "\n".join(
        [
            f"# gfe_proxy profile: {scenario.title}, {stamp}",
            "",
            f"- load: wrk 1 thread, c={scenario.conns}, `GET {scenario.path}`"
            + (" (gzip)" if scenario.gzip else "")
            + f": {result['rps']:,.0f} req/s, p50 {result['p50_us']} µs, p99 {result['p99_us']} µs"
            " (py-spy's sampling slows the process a little)",
            f"- gfe-proxy process CPU: {cpu:.2f} s in {args.seconds:g} s "
            f"({100 * cpu / args.seconds:.0f}% of one core) = **{cpu_us:.1f} µs of CPU per "
            "request**",
            f"- py-spy {args.rate} Hz, blocking, --gil: {total} samples holding the GIL = "
            f"{100 * busy:.0f}% of the window = **{per_request_us:.1f} µs of loop time per "
            "request**; µs/request below = share × that. Loop time above CPU time is time the "
            "process held the GIL but was not running (preempted, mostly inside a socket "
            "write that woke a peer), charged to the frame it was in. Frames on every stack "
            "are omitted.",
            "",
            _table("Self time (leaf function)", own, total, per_request_us, args.top),
            _table(
                "Cumulative time (function on the stack)",
                cumulative,
                total,
                per_request_us,
                args.top,
            ),
            _table("Self time by file", by_file, total, per_request_us, args.top),
        ]
    )
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"profile-{stamp}-{scenario.key}.md"
    path.write_text(report)
    print(report)
    print(f"profile: wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
