"""``--reload``'s file watcher (gfe_proxy/reload.py): the pure snapshot diff, skip_files as
appcfg applied them (SPEC CFG-5), and polling a real directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gfe_proxy.config import DEFAULT_SKIP_FILES
from gfe_proxy.reload import Changes, SkipFiles, Watcher, diff, scan

A, B = (1, 10), (2, 10)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ({}, {}, Changes()),
        ({"a.py": A}, {"a.py": A}, Changes()),
        ({"a.py": A}, {"a.py": B}, Changes(modified=("a.py",))),
        ({"a.py": A}, {"a.py": (1, 11)}, Changes(modified=("a.py",))),  # size only
        ({}, {"b.py": A}, Changes(added=("b.py",))),
        ({"b.py": A}, {}, Changes(removed=("b.py",))),
        (
            {"a.py": A, "c.py": A},
            {"a.py": B, "b.py": A},
            Changes(added=("b.py",), removed=("c.py",), modified=("a.py",)),
        ),
    ],
    ids=["empty", "same", "mtime", "size", "added", "removed", "all-three"],
)
def test_diff_of_snapshots(
    old: dict[str, tuple[int, int]], new: dict[str, tuple[int, int]], expected: Changes
) -> None:
    assert diff(old, new) == expected
    assert bool(diff(old, new)) is bool(expected.added or expected.removed or expected.modified)


snapshots = st.dictionaries(
    st.sampled_from(["a.py", "b.py", "c/d.py", "e.txt"]),
    st.tuples(st.integers(0, 3), st.integers(0, 3)),
)


@given(snapshots, snapshots)
def test_diff_partitions_the_changed_paths(
    old: dict[str, tuple[int, int]], new: dict[str, tuple[int, int]]
) -> None:
    c = diff(old, new)
    assert set(c.added) == new.keys() - old.keys()
    assert set(c.removed) == old.keys() - new.keys()
    assert set(c.modified) == {p for p in old.keys() & new.keys() if old[p] != new[p]}
    assert not diff(new, new)


def test_describe_names_the_first_changes() -> None:
    c = Changes(added=("x.py",), modified=("a.py", "b.py", "c.py"))
    assert c.describe() == "a.py modified, b.py modified, c.py modified and 1 more"
    assert Changes(removed=("old.py",)).describe() == "old.py removed"


@pytest.mark.parametrize(
    ("path", "skipped"),
    [
        ("main.py", False),
        ("pkg/mod.py", False),
        ("main.pyc", True),
        ("pkg/mod.pyo", True),
        ("notes~", True),
        ("#draft#", True),
        (".git", True),
        (".git/HEAD", True),
        ("pkg/.hidden", True),
        ("a/RCS/file", True),
        ("static/app.css", False),
    ],
    ids=lambda v: str(v),
)
def test_cfg_5_default_skip_files_leave_files_out(path: str, skipped: bool) -> None:
    assert SkipFiles(DEFAULT_SKIP_FILES).skipped(path) is skipped


def _tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


def test_scan_honours_skip_files_and_prunes_skipped_directories(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        {
            "app.yaml": "runtime: python312\n",
            "main.py": "x = 1\n",
            "pkg/mod.py": "",
            "pkg/mod.pyc": "",
            ".git/HEAD": "ref",
            ".venv/lib/site.py": "",
            "vendor/big/lib.py": "",
            "main.py~": "",
        },
    )
    skip = SkipFiles([*DEFAULT_SKIP_FILES, r"^vendor/.*$"])
    assert sorted(scan(tmp_path, skip)) == ["app.yaml", "main.py", "pkg/mod.py"]
    size = (tmp_path / "main.py").stat().st_size
    assert scan(tmp_path, skip)["main.py"][1] == size


def test_scan_includes_extra_files_outside_the_app(tmp_path: Path) -> None:
    app, elsewhere = tmp_path / "app", tmp_path / "shared.yaml"
    app.mkdir()
    elsewhere.write_text("handlers: []\n")
    got = scan(app, SkipFiles(()), extra=(elsewhere, tmp_path / "missing.yaml"))
    assert list(got) == [str(elsewhere.resolve())]


def test_watcher_reports_each_change_once(tmp_path: Path) -> None:
    _tree(tmp_path, {"app.yaml": "runtime: python312\n", "main.py": "v = 1\n"})
    w = Watcher(tmp_path, DEFAULT_SKIP_FILES)
    assert w.files == 2
    assert not w.poll()
    main = tmp_path / "main.py"
    main.write_text("v = 22\n")
    os.utime(main, ns=(1, 1))  # an mtime surely different from the first write's
    (tmp_path / "new.py").write_text("")
    (tmp_path / "main.pyc").write_text("")  # skipped: no reload for bytecode
    assert w.poll() == Changes(added=("new.py",), modified=("main.py",))
    assert not w.poll()
    (tmp_path / "new.py").unlink()
    assert w.poll() == Changes(removed=("new.py",))


def test_reload_is_pure_of_aiohttp_and_asyncio() -> None:
    code = "import sys, gfe_proxy.reload; print('aiohttp' in sys.modules, 'asyncio' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
