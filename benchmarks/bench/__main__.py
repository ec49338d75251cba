"""gfe_proxy against nginx, Varnish, the bare backend and two aiohttp yardsticks (issue 6).

Run from the repository root: ``make bench`` (installs nginx, varnish, wrk and py-spy, then
runs this), or ``.venv/bin/python benchmarks/bench [--quick] [--systems a,b] [--scenarios x,y]``.
Default: two rounds over every system, each cell 2 s of warm-up and 6 s measured, the better
round reported (~13 min); ``--quick``: one round of 1 s + 3 s (~4 min).
Writes ``benchmarks/results/bench-<UTC time>[-quick].{md,json}``; see benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path

import harness
import report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="1 round, 1 s warm-up, 3 s per cell")
    p.add_argument("--duration", type=float, help="measured seconds per cell (default 6)")
    p.add_argument("--warmup", type=float, help="warm-up seconds per cell (default 2)")
    p.add_argument("--rounds", type=int, help="rounds over all systems; best kept (default 2)")
    p.add_argument("--systems", help="comma-separated subset of: " + ",".join(harness.SYSTEM))
    p.add_argument("--scenarios", help="comma-separated subset of: " + ",".join(harness.SCENARIO))
    p.add_argument("--out", type=Path, default=harness.BENCH / "results", help="results dir")
    args = p.parse_args(argv)
    duration = args.duration or (3.0 if args.quick else 6.0)
    warmup = args.warmup or (1.0 if args.quick else 2.0)
    rounds = args.rounds or (1 if args.quick else 2)
    want_systems = args.systems.split(",") if args.systems else list(harness.SYSTEM)
    want_scenarios = args.scenarios.split(",") if args.scenarios else list(harness.SCENARIO)
    unknown = [k for k in want_systems if k not in harness.SYSTEM]
    unknown += [k for k in want_scenarios if k not in harness.SCENARIO]
    if unknown:
        p.error(f"unknown system or scenario: {', '.join(unknown)}")
    if shutil.which("wrk") is None:
        print("bench: wrk is not installed (make bench installs it)", file=sys.stderr)
        return 1

    started = time.time()
    info = report.machine(harness.REPO)
    cells: list[harness.Cell] = []
    skipped: list[str] = []
    for n in range(1, rounds + 1):
        for system in (harness.SYSTEM[k] for k in want_systems):
            scenarios = [harness.SCENARIO[k] for k in system.scenarios if k in want_scenarios]
            if not scenarios:
                continue
            if system.needs and shutil.which(system.needs) is None:
                if n == 1:
                    skipped.append(f"{system.key} ({system.needs} not installed)")
                    print(f"bench: skipping {system.key}: no {system.needs}", flush=True)
                continue
            print(f"bench: round {n}/{rounds}: {system.title}", flush=True)
            cells += harness.run_system(
                system,
                scenarios,
                warmup=warmup,
                duration=duration,
                log=lambda line: print(line, flush=True),
            )
    info["load_avg_end"] = round(os.getloadavg()[0], 2)
    run = {
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "elapsed_s": round(time.time() - started, 1),
        "quick": args.quick,
        "duration_s": duration,
        "warmup_s": warmup,
        "rounds": rounds,
        "wrk_threads": 1,
        "skipped": skipped,
    }
    md, js = report.write_report(
        args.out,
        info,
        run,
        [asdict(c) for c in harness.best_of(cells)],
        {s.key: {**asdict(s), "size": s.size} for s in harness.SCENARIOS},
        {s.key: s.title for s in harness.SYSTEMS},
    )
    print(md.read_text(), flush=True)
    print(f"bench: wrote {md} and {js.name} in {run['elapsed_s']:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
