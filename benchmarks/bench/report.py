"""The run's record: machine, same-run ratios, the issue's targets, Markdown and JSON.

Every ratio divides by a baseline measured in the same run (STYLE 19): throughput as
system / baseline (above 1 is faster), latency as system / baseline (above 1 is slower).
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Cells = dict[tuple[str, str], dict[str, Any]]  # (system, scenario) -> cell
NOISE = (
    "Numbers from a shared 2-core machine: wrk, the system under test and its backend compete "
    "for the same two cores, and other jobs may run beside them (see the load averages). Read "
    "the ratios, which are taken within one run, rather than the absolute numbers; differences "
    "under ~10% between runs are noise."
)


# --- machine ---------------------------------------------------------------------------------


def _first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "not installed"
    text = (out.stdout + out.stderr).strip()
    return text.splitlines()[0] if text else "?"


def _version(text: str, pattern: str) -> str:
    m = re.search(pattern, text)
    return m.group(1) if m else text


def machine(repo: Path) -> dict[str, Any]:
    """What the numbers were measured on: hardware, kernel, tool and package versions, commit."""
    from importlib.metadata import PackageNotFoundError, version

    cpu, mem_gib = "?", 0.0
    with suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with suppress(OSError, ValueError, IndexError):
        mem_gib = round(int(Path("/proc/meminfo").read_text().split()[1]) / 1024**2, 1)
    packages = {}
    for name in ("aiohttp", "uvloop", "uvicorn", "httptools", "multidict", "gfe-proxy", "py-spy"):
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = "not installed"
    # Read-only git: --no-optional-locks keeps `status` from refreshing the index.
    dirty = subprocess.run(
        ["git", "--no-optional-locks", "-C", str(repo), "status", "--porcelain"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": mem_gib,
        "kernel": platform.release(),
        "os": _first_line(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "python": platform.python_version(),
        "nginx": _first_line(["nginx", "-v"]).removeprefix("nginx version: nginx/"),
        "varnish": _version(_first_line(["varnishd", "-V"]), r"varnish-([\w.]+)"),
        "wrk": _version(_first_line(["wrk", "-v"]), r"wrk (\S+)"),
        "packages": packages,
        "git_commit": _first_line(["git", "-C", str(repo), "rev-parse", "HEAD"]),
        "git_dirty": bool(dirty.strip()),
        "load_avg_start": round(os.getloadavg()[0], 2),
    }


# --- ratios and targets ----------------------------------------------------------------------


def usable(cell: dict[str, Any] | None) -> bool:
    return cell is not None and cell["rps"] is not None


def ratios(cells: Cells, scenarios: dict[str, dict[str, Any]]) -> None:
    """Add ``ratios[baseline] = {rps, p50, p99}`` to every measured cell."""
    for (_, scenario), cell in cells.items():
        cell["ratios"] = {}
        if not usable(cell):
            continue
        for base in scenarios[scenario]["baselines"]:
            b = cells.get((base, scenario))
            if not usable(b) or b is None:
                continue
            cell["ratios"][base] = {
                "rps": cell["rps"] / b["rps"],
                "p50": cell["p50_us"] / max(b["p50_us"], 1),
                "p99": cell["p99_us"] / max(b["p99_us"], 1),
            }


@dataclass(frozen=True, slots=True)
class Target:
    id: str
    text: str  # the wording
    goal: str
    measure: Callable[[Cells], tuple[float | None, str]]  # -> (value, why there is none)
    passes: Callable[[float], bool]
    unit: str = "×"  # "×" for ratios, "µs" for added latency


def _ratio(
    system: str, scenario: str, base: str, base_scenario: str | None = None, need_hit: bool = False
) -> Callable[[Cells], tuple[float | None, str]]:
    def measure(cells: Cells) -> tuple[float | None, str]:
        a, b = cells.get((system, scenario)), cells.get((base, base_scenario or scenario))
        for cell, name in ((a, system), (b, base)):
            if cell is None or not usable(cell):
                return None, f"{name} not measured"
            if need_hit and "cache not active" in cell["notes"]:
                return None, f"cache not active ({name}, {cell['scenario']})"
            if "not compressed" in cell["notes"]:
                return None, f"not compressed ({name}, {cell['scenario']})"
        assert a is not None
        assert b is not None
        return a["rps"] / b["rps"], ""

    return measure


def _added_latency(cells: Cells) -> tuple[float | None, str]:
    gfe, backend = cells.get(("gfe", "small-c1")), cells.get(("backend", "small-c1"))
    if not usable(gfe) or not usable(backend) or gfe is None or backend is None:
        return None, "gfe or backend not measured"
    return float(gfe["p50_us"] - backend["p50_us"]), ""


def _at_least(x: float) -> Callable[[float], bool]:
    return lambda v: v >= x


TARGETS: tuple[Target, ...] = (
    Target("pass-naive", "pass-through, small, c=16: ≥ 2.5× the naive aiohttp yardstick",
           "≥ 2.5×", _ratio("gfe", "small-c16", "aiohttp-naive"), _at_least(2.5)),
    Target("pass-ceiling", "pass-through, small, c=16: ≥ 0.6× the aiohttp constant ceiling",
           "≥ 0.6×", _ratio("gfe", "small-c16", "aiohttp-ceiling"), _at_least(0.6)),
    Target("latency-c1", "added latency at c=1: ≤ 150 µs p50 over the direct backend",
           "≤ 150 µs", _added_latency, lambda v: v <= 150, "µs"),
    Target("hit-small", "cache hit, small: ≥ 0.9× the ceiling", "≥ 0.9×",
           _ratio("gfe", "hit-small", "aiohttp-ceiling", need_hit=True), _at_least(0.9)),
    Target("hit-100k", "cache hit, 100 KB: ≥ 0.9× the ceiling", "≥ 0.9×",
           _ratio("gfe", "hit-100k", "aiohttp-ceiling", need_hit=True), _at_least(0.9)),
    Target("hit-100k-gzip", "cache hit, 100 KB gzip: ≥ 0.9× the (pre-gzipped) ceiling",
           "≥ 0.9×", _ratio("gfe", "hit-100k-gzip", "aiohttp-ceiling", need_hit=True),
           _at_least(0.9)),
    Target("hit-gzip-vs-plain", "compressed hit within 5% of an uncompressed hit (100 KB)",
           "≥ 0.95×", _ratio("gfe", "hit-100k-gzip", "gfe", "hit-100k", need_hit=True),
           _at_least(0.95)),
    Target("static-10k", "static 10 KB: ≥ 0.9× the ceiling", "≥ 0.9×",
           _ratio("gfe", "static-10k", "aiohttp-ceiling"), _at_least(0.9)),
    Target("static-1m", "static 1 MB: ≥ 0.5× nginx", "≥ 0.5×",
           _ratio("gfe", "static-1m", "nginx"), _at_least(0.5)),
    Target("routing", "100 handlers: ≥ 0.9× the 1-handler throughput", "≥ 0.9×",
           _ratio("gfe-routes-100", "routing", "gfe-routes-1"), _at_least(0.9)),
)  # fmt: skip


def judge(cells: Cells) -> list[dict[str, Any]]:
    """Each target's measured value and verdict; a miss says by how much."""
    out = []
    for t in TARGETS:
        value, why = t.measure(cells)
        if value is None:
            verdict = f"n/a: {why}"
        elif t.passes(value):
            verdict = "pass"
        elif t.unit == "µs":
            verdict = f"FAIL by {value - 150:.0f} µs"
        else:
            goal = float(t.goal.strip("≥× "))
            verdict = f"FAIL, {100 * (1 - value / goal):.0f}% short"
        out.append(
            {
                "id": t.id,
                "target": t.text,
                "goal": t.goal,
                "value": value,
                "unit": t.unit,
                "verdict": verdict,
            }
        )
    return out


def pass_through_bound(cells: Cells) -> str:
    """What the direct backend reached in the same run: no proxy in front of it can pass more
    requests than it answers alone, on the same cores (plus the proxy's own share of them)."""
    backend = cells.get(("backend", "small-c16"))
    if backend is None or not usable(backend):
        return ""
    parts = []
    for base in ("aiohttp-naive", "aiohttp-ceiling"):
        b = cells.get((base, "small-c16"))
        if b is not None and usable(b):
            parts.append(f"{backend['rps'] / b['rps']:.2f}× {base}")
    if not parts:
        return ""
    text = (
        "Bound: a pass-through request is also served by the backend, on the same two cores. "
        f"The backend alone, small c=16, reached {' and '.join(parts)} in this run: a "
        "pass-through ratio above that is out of reach for any front here."
    )
    floor = cells.get(("floor", "small-c16"))
    naive = cells.get(("aiohttp-naive", "small-c16"))
    if floor is not None and usable(floor) and naive is not None and usable(naive):
        text += (
            f" gfe_proxy's own front and upstream client with no App Engine rules (`floor`) "
            f"reached {floor['rps'] / naive['rps']:.2f}× aiohttp-naive: the most this design "
            "can pass before it does any of its work."
        )
    return text


# --- Markdown and JSON -----------------------------------------------------------------------


def _us(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.0f} µs" if v < 1000 else f"{v / 1000:.2f} ms"


def _x(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}×"


def _value(r: dict[str, Any]) -> str:
    if r["value"] is None:
        return "-"
    return f"{r['value']:+.0f} µs" if r["unit"] == "µs" else f"{r['value']:.2f}×"


def markdown(
    info: dict[str, Any],
    run: dict[str, Any],
    cells: Cells,
    scenarios: dict[str, dict[str, Any]],
    systems: dict[str, str],
    targets: list[dict[str, Any]],
) -> str:
    """The human-readable record: targets, a req/s matrix, then one table per scenario."""
    pk = info["packages"]
    lines = [
        f"# gfe_proxy benchmarks, {run['started_utc']}{' (--quick)' if run['quick'] else ''}",
        "",
        f"- machine: {info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB; "
        f"{info['os']}, kernel {info['kernel']}",
        f"- software: Python {info['python']}, aiohttp {pk['aiohttp']}, uvloop {pk['uvloop']}, "
        f"uvicorn {pk['uvicorn']}, httptools {pk['httptools']}; nginx {info['nginx']}, "
        f"Varnish {info['varnish']}, wrk {info['wrk']}",
        f"- commit: {info['git_commit'][:12]}"
        + (" + uncommitted changes" if info["git_dirty"] else ""),
        f"- method: wrk, 1 thread, {run['warmup_s']:g} s warm-up then {run['duration_s']:g} s "
        f"measured per cell; systems one at a time on 127.0.0.1; {run['rounds']} round(s), "
        f"the round with more req/s kept; {run['elapsed_s']:.0f} s in all",
        f"- load average (1 min): {info['load_avg_start']} at start, {info['load_avg_end']} at end",
        "",
        f"> {NOISE}",
        "",
    ]
    if run["skipped"]:
        lines += ["Skipped: " + "; ".join(run["skipped"]), ""]
    lines += [
        "## Targets (issue 6)",
        "",
        "| target | measured | goal | verdict |",
        "|---|---:|---:|---|",
    ]
    lines += [f"| {r['target']} | {_value(r)} | {r['goal']} | {r['verdict']} |" for r in targets]
    bound = pass_through_bound(cells)
    if bound:
        lines += ["", bound]

    present = [s for s in systems if any(k[0] == s for k in cells)]
    lines += [
        "",
        "## Requests/s (ratio to the scenario's baseline)",
        "",
        "| scenario | baseline | " + " | ".join(present) + " |",
        "|---|---|" + "---:|" * len(present),
    ]
    for key, sc in scenarios.items():
        row = []
        for s in present:
            cell = cells.get((s, key))
            if cell is None:
                row.append("")
            elif not usable(cell):
                row.append("; ".join(cell["notes"]) or "-")
            else:
                ratio = cell["ratios"].get(sc["baselines"][0], {}).get("rps")
                note = " ⚠ " + "; ".join(cell["notes"]) if cell["notes"] else ""
                row.append(f"{cell['rps']:,.0f} ({_x(ratio)}){note}")
        if any(row):
            lines.append(f"| {sc['title']} | {sc['baselines'][0]} | " + " | ".join(row) + " |")

    lines += ["", "## Per scenario", ""]
    for key, sc in scenarios.items():
        rows = [(s, cells[(s, key)]) for s in present if (s, key) in cells]
        if not rows:
            continue
        bases = sc["baselines"]
        lines += [
            f"### {sc['title']}",
            "",
            f"`GET {sc['path']}`{' with Accept-Encoding: gzip' if sc['gzip'] else ''}, "
            f"{sc['size']:,} bytes decoded; baseline **{bases[0]}**"
            + (f", also {', '.join(bases[1:])}" if bases[1:] else "")
            + ".",
            "",
            "| system | req/s | "
            + " | ".join(f"× {b}" for b in bases)
            + " | p50 | × | p99 | × | MB/s | notes |",
            "|---|---:|" + "---:|" * len(bases) + "---:|---:|---:|---:|---:|---|",
        ]
        for s, cell in rows:
            if not usable(cell):
                lines.append(
                    f"| {s} | - |"
                    + " - |" * len(bases)
                    + " - | - | - | - | - | "
                    + "; ".join(cell["notes"])
                    + " |"
                )
                continue
            r = cell["ratios"]
            main = r.get(bases[0], {})
            notes = list(cell["notes"])
            if len(cell["rounds_rps"]) > 1:
                notes.append("rounds " + " / ".join(f"{v:,.0f}" for v in cell["rounds_rps"]))
            lines.append(
                f"| {s} | {cell['rps']:,.0f} | "
                + " | ".join(_x(r.get(b, {}).get("rps")) for b in bases)
                + f" | {_us(cell['p50_us'])} | {_x(main.get('p50'))} | {_us(cell['p99_us'])} | "
                f"{_x(main.get('p99'))} | {cell['mb_per_s']:.1f} | {'; '.join(notes)} |"
            )
        lines.append("")
    lines += [
        "Systems: " + "; ".join(f"`{k}` = {v}" for k, v in systems.items() if k in present),
        "",
    ]
    return "\n".join(lines)


def write_report(
    out: Path,
    info: dict[str, Any],
    run: dict[str, Any],
    cell_list: list[dict[str, Any]],
    scenarios: dict[str, dict[str, Any]],
    systems: dict[str, str],
) -> tuple[Path, Path]:
    """Write ``bench-<UTC time>[-quick].md`` and ``.json`` under ``out``; return their paths."""
    cells: Cells = {(c["system"], c["scenario"]): c for c in cell_list}
    ratios(cells, scenarios)
    targets = judge(cells)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.strptime(run["started_utc"], "%Y-%m-%dT%H:%M:%SZ"))
    stem = out / f"bench-{stamp}{'-quick' if run['quick'] else ''}"
    md, js = stem.with_suffix(".md"), stem.with_suffix(".json")
    md.write_text(markdown(info, run, cells, scenarios, systems, targets))
    js.write_text(
        json.dumps(
            {
                "machine": info,
                "run": run,
                "scenarios": scenarios,
                "systems": systems,
                "targets": targets,
                "bound": pass_through_bound(cells),
                "cells": cell_list,
            },
            indent=2,
            ensure_ascii=False,
        )
        + "\n"
    )
    return md, js
