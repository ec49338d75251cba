"""SPEC INST-3: an instance's memory from /proc (gfe_proxy/memory.py), and the production
message for one over its instance class's limit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gfe_proxy import memory

MIB = 1024 * 1024


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4242 (gunicorn) S 4241 4241 4241 0 -1 4194560", (4242, 4241)),
        ("17 (python3 -m x) R 1 17 17 0", (17, 17)),
        ("99 (a) b) (c)) S 1 55 55 0", (99, 55)),  # ")" inside the command name
        ("5 (x)", None),  # truncated
        ("garbage", None),
        ("", None),
    ],
    ids=["gunicorn", "spaces-in-name", "parens-in-name", "truncated", "garbage", "empty"],
)
def test_parse_stat_reads_pid_and_process_group(
    text: str, expected: tuple[int, int] | None
) -> None:
    assert memory.parse_stat(text) == expected


@pytest.mark.parametrize(
    ("text", "page", "expected"),
    [
        ("12345 678 90 1 0 300 0", 4096, 678 * 4096),
        ("1 2", 16384, 2 * 16384),
        ("1", 4096, None),
        ("a b c", 4096, None),
    ],
    ids=["pages-4k", "pages-16k", "short", "not-numbers"],
)
def test_parse_statm_rss_is_resident_pages_times_page_size(
    text: str, page: int, expected: int | None
) -> None:
    assert memory.parse_statm_rss(text, page_size=page) == expected


def test_parse_smaps_rollup_pss_in_bytes() -> None:
    text = (
        "55d0c0a00000-7ffd3d3f1000 ---p 00000000 00:00 0    [rollup]\n"
        "Rss:               20480 kB\nPss:               12345 kB\nPss_Anon:   8000 kB\n"
    )
    assert memory.parse_smaps_rollup_pss(text) == 12345 * 1024
    assert memory.parse_smaps_rollup_pss("Rss: 1 kB\n") is None
    assert memory.parse_smaps_rollup_pss("Pss: lots kB\n") is None


@given(st.text())
def test_parsers_never_raise(text: str) -> None:
    memory.parse_stat(text)
    memory.parse_statm_rss(text)
    memory.parse_smaps_rollup_pss(text)


@pytest.mark.parametrize(
    ("limit", "used", "served", "expected"),
    [
        (
            384,
            412 * MIB + 5,
            17,
            "Exceeded soft memory limit of 384 MiB with 412 MiB after servicing 17 requests"
            " total. Consider setting a larger instance class in app.yaml.",
        ),
        (
            128,
            129 * MIB,
            0,
            "Exceeded soft memory limit of 128 MiB with 129 MiB after servicing 0 requests"
            " total. Consider setting a larger instance class in app.yaml.",
        ),
    ],
    ids=["f1-gen2", "f1-gen1"],
)
def test_inst_3_over_limit_message_is_the_production_wording(
    limit: int, used: int, served: int, expected: str
) -> None:
    assert memory.over_limit_message(limit, used, served) == expected


def _fake_proc(root: Path, pid: int, pgrp: int, *, pss_kb: int | None, rss_pages: int) -> None:
    d = root / str(pid)
    d.mkdir()
    (d / "stat").write_text(f"{pid} (worker) S 1 {pgrp} {pgrp} 0 -1\n")
    (d / "statm").write_text(f"1000 {rss_pages} 10 1 0 100 0\n")
    if pss_kb is not None:
        (d / "smaps_rollup").write_text(f"Rss: 1 kB\nPss: {pss_kb} kB\n")


def test_inst_3_group_memory_sums_the_group_pss_else_rss(tmp_path: Path) -> None:
    _fake_proc(tmp_path, 100, 100, pss_kb=1000, rss_pages=5)  # gunicorn master
    _fake_proc(tmp_path, 101, 100, pss_kb=3000, rss_pages=9)  # its worker
    _fake_proc(tmp_path, 200, 200, pss_kb=None, rss_pages=7)  # no smaps_rollup: RSS
    _fake_proc(tmp_path, 300, 300, pss_kb=50, rss_pages=1)  # another group, not asked for
    (tmp_path / "self").mkdir()  # non-numeric entries are ignored
    page = memory.parse_statm_rss("0 1") or 0
    got = memory.group_memory([100, 200, 999], proc=tmp_path)
    assert got == {100: 4000 * 1024, 200: 7 * page}  # 999: no process, left out


def test_group_memory_of_a_real_process_group() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; print('up', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == b"up\n"  # the interpreter is up, not still exec'ing
        sizes = memory.group_memory([child.pid])
        assert 1 * MIB < sizes[child.pid] < 512 * MIB  # a Python interpreter's worth
        assert memory.group_memory([os.getpid() + 10_000_000]) == {}
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait()
        assert child.stdout is not None
        child.stdout.close()
