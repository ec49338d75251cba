"""``--reload``: notice that an app's files changed, by polling. No new dependency, no asyncio.

A snapshot maps each uploaded file (a path relative to the app directory, ``/``-separated) to
``(mtime_ns, size)``. ``diff`` of two snapshots is pure; ``scan`` is the one function that walks
the disk, and ``Watcher.poll`` keeps the last snapshot between calls. The glue (server.py) calls
``poll`` from a worker thread once a second and, when something changed, reloads the service
(supervisor.ServiceRuntime.reload: new instances first, then the switch, then the drain).

Which files count: every file ``skip_files`` does not leave out of the app (SPEC CFG-5: the
same prefix ``re.match`` rule appcfg used, so ``.git/``, ``*.pyc`` and editor backups never
trigger a reload), plus the app.yaml itself and any extra file named by the caller (includes
outside the app directory). Like dev_appserver, any such change restarts the instances: static
files are read from disk per request anyway, so a change there only costs a quick restart.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from gfe_proxy.routing import translate_pattern

Entry = tuple[int, int]  # (mtime_ns, size)
Snapshot = Mapping[str, Entry]

# A scan stops after this many files: an app directory holding a whole virtualenv or a
# node_modules tree should say so in skip_files rather than cost a walk of 100k files a second.
MAX_FILES = 20_000


@dataclass(frozen=True, slots=True, kw_only=True)
class Changes:
    """What differs between two snapshots; false when nothing does."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    modified: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.modified)

    def describe(self, limit: int = 3) -> str:
        """``"main.py modified, new.py added"``: the first few changes, for a log line."""
        items = (
            [f"{p} modified" for p in self.modified]
            + [f"{p} added" for p in self.added]
            + [f"{p} removed" for p in self.removed]
        )
        more = len(items) - limit
        return ", ".join(items[:limit]) + (f" and {more} more" if more > 0 else "")


def diff(old: Snapshot, new: Snapshot) -> Changes:
    """The files added, removed and modified (mtime or size changed) from ``old`` to ``new``.

    >>> diff({"a.py": (1, 10)}, {"a.py": (2, 10), "b.py": (1, 1)})
    Changes(added=('b.py',), removed=(), modified=('a.py',))
    """
    return Changes(
        added=tuple(sorted(p for p in new if p not in old)),
        removed=tuple(sorted(p for p in old if p not in new)),
        modified=tuple(sorted(p for p, e in new.items() if p in old and old[p] != e)),
    )


class SkipFiles:
    """``skip_files`` as appcfg applied it: a regex matching the start of the path of a file
    or of any directory above it leaves the file out (SPEC CFG-5)."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self._patterns = tuple(re.compile(translate_pattern(p)) for p in patterns)

    def matches(self, rel: str) -> bool:
        """True when ``rel`` itself (a file or a directory) is skipped; not its parents."""
        return any(p.match(rel) for p in self._patterns)

    def skipped(self, rel: str) -> bool:
        """True when ``rel`` or a directory above it is skipped."""
        parts = rel.split("/")
        return any(self.matches("/".join(parts[:n])) for n in range(1, len(parts) + 1))


def scan(root: Path, skip: SkipFiles, *, extra: Sequence[Path] = ()) -> dict[str, Entry]:
    """Stat every uploaded file under ``root`` (skipped directories are not descended) and each
    of ``extra`` (keyed by its absolute path). Unreadable entries are left out."""
    out: dict[str, Entry] = {}
    base = str(root)
    for dirpath, dirnames, filenames in os.walk(base):
        rel_dir = os.path.relpath(dirpath, base)
        prefix = "" if rel_dir == "." else rel_dir.replace(os.sep, "/") + "/"
        dirnames[:] = sorted(d for d in dirnames if not skip.matches(prefix + d))
        for name in filenames:
            rel = prefix + name
            if skip.matches(rel):
                continue
            try:
                st = os.stat(os.path.join(dirpath, name))
            except OSError:
                continue
            out[rel] = (st.st_mtime_ns, st.st_size)
            if len(out) >= MAX_FILES:
                return out
    for path in extra:
        try:
            st = path.stat()
        except OSError:
            continue
        out[str(path.resolve())] = (st.st_mtime_ns, st.st_size)
    return out


class Watcher:
    """Polls one app directory: each ``poll()`` rescans and returns what changed since the last.

    Blocking file-system calls: the glue runs ``poll`` in a worker thread.
    """

    def __init__(
        self, root: Path, skip_files: Iterable[str], *, extra: Sequence[Path] = ()
    ) -> None:
        self.root = root
        self.extra = tuple(extra)
        self._skip = SkipFiles(skip_files)
        self._last: dict[str, Entry] = scan(root, self._skip, extra=self.extra)

    @property
    def files(self) -> int:
        return len(self._last)

    def poll(self) -> Changes:
        new = scan(self.root, self._skip, extra=self.extra)
        changes = diff(self._last, new)
        self._last = new
        return changes
