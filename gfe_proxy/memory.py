"""How much memory an instance uses: its process group's memory from ``/proc`` (SPEC INST-3).

An instance is a process group (gunicorn's master and its worker, a shell and the server it
runs, ...), so its memory is the sum over the group. The figure is PSS (proportional set size,
from ``/proc/<pid>/smaps_rollup``) where the kernel offers it: pages that a forked worker shares
with its master are counted once across the group, as one instance's share of the machine.
Without ``smaps_rollup`` (old kernels, no permission) it falls back to RSS from
``/proc/<pid>/statm``, which counts shared pages in every process and so over-estimates.

The parsers are pure (text in, bytes out); ``group_memory`` is the one thin function that reads
files, meant to run in a worker thread every few seconds.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path

MIB = 1024 * 1024
PROC = Path("/proc")
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def parse_stat(text: str) -> tuple[int, int] | None:
    """``(pid, pgrp)`` from the text of ``/proc/<pid>/stat``; None if it does not parse.

    The command name sits in parentheses and may itself contain spaces and ``)``, so the
    fields are counted from the last ``)``:

    >>> parse_stat("4242 (gunicorn: worker) S 4241 4241 4241 0 -1 ...")
    (4242, 4241)
    """
    head, sep, rest = text.rpartition(")")
    if not sep:
        return None
    fields = rest.split()
    pid_text = head.split("(", 1)[0].strip()
    if len(fields) < 3 or not pid_text.isdigit() or not fields[2].lstrip("-").isdigit():
        return None
    return int(pid_text), int(fields[2])  # fields: state, ppid, pgrp, ...


def parse_statm_rss(text: str, *, page_size: int = _PAGE_SIZE) -> int | None:
    """Resident set size in bytes from ``/proc/<pid>/statm`` (second field, in pages)."""
    fields = text.split()
    if len(fields) < 2 or not fields[1].isdigit():
        return None
    return int(fields[1]) * page_size


def parse_smaps_rollup_pss(text: str) -> int | None:
    """Proportional set size in bytes from ``/proc/<pid>/smaps_rollup`` (``Pss: N kB``)."""
    for line in text.splitlines():
        if line.startswith("Pss:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                return int(parts[1]) * 1024
            return None
    return None


def over_limit_message(limit_mb: int, used_bytes: int, served: int) -> str:
    """The production log line for an instance over its class's memory (SPEC INST-3)."""
    return (
        f"Exceeded soft memory limit of {limit_mb} MiB with {used_bytes // MIB} MiB after"
        f" servicing {served} requests total. Consider setting a larger instance class in"
        " app.yaml."
    )


def _read(path: Path) -> str | None:
    try:
        return path.read_text("utf-8", "replace")
    except OSError:  # the process exited meanwhile, or is not ours to read
        return None


def process_memory(pid: int, *, proc: Path = PROC) -> int | None:
    """One process's memory in bytes: PSS, else RSS; None if it is gone."""
    rollup = _read(proc / str(pid) / "smaps_rollup")
    if rollup is not None:
        pss = parse_smaps_rollup_pss(rollup)
        if pss is not None:
            return pss
    statm = _read(proc / str(pid) / "statm")
    return parse_statm_rss(statm) if statm is not None else None


def group_members(pgids: Collection[int], *, proc: Path = PROC) -> dict[int, list[int]]:
    """The pids of every process in each of ``pgids`` (one pass over ``/proc``)."""
    wanted = set(pgids)
    members: dict[int, list[int]] = {g: [] for g in wanted}
    try:
        entries = os.listdir(proc)
    except OSError:
        return members
    for name in entries:
        if not name.isdigit():
            continue
        text = _read(proc / name / "stat")
        parsed = parse_stat(text) if text is not None else None
        if parsed is not None and parsed[1] in wanted:
            members[parsed[1]].append(parsed[0])
    return members


def group_memory(pgids: Collection[int], *, proc: Path = PROC) -> dict[int, int]:
    """Memory in bytes of each process group in ``pgids``; a group with no process is left out.

    Blocking file reads: call it from a worker thread.
    """
    out: dict[int, int] = {}
    for pgid, pids in group_members(pgids, proc=proc).items():
        sizes = [m for m in (process_memory(pid, proc=proc) for pid in pids) if m is not None]
        if sizes:
            out[pgid] = sum(sizes)
    return out
