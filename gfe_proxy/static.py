"""Static files: resolution, the traversal guard, freshness and conditional requests.

SPEC STATIC-1…5 and CFG-5. Pure apart from reading the files it serves: no aiohttp, no
asyncio; the time is a parameter. The caller (the request pipeline) adds ``Date``, ``Server``
and ``Content-Length`` and drops the body of a HEAD response; ``respond`` returns the body for
HEAD too, so the caller can put the real ``Content-Length`` on it.

Theory of operation. ``Router`` hands over ``RouteMatch.file``, a path relative to the app
root built from the URL. It is untrusted: every segment is checked (no ``..``, ``.``, empty
segments, backslashes, NUL, or percent-escapes that decode to any of those or to ``/``), then
the path must have been "uploaded" (not matched by ``skip_files``, inside ``static_dir`` or
matching ``upload``), then the file must exist as a regular file whose real path, symlinks
resolved, stays inside the app root. The guard works whether ``file`` came from a decoded path
(``route_path``) or a raw one: a raw ``%2e%2e`` or ``%2f`` is refused the same way.

A hot file costs one ``stat`` and dict lookups: content, ETag and the symlink verdict are
cached under the file's identity (device, inode, size, mtime, ctime); any change to the file
or to what the path points at changes that identity.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import os
import posixpath
import re
import stat
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import unquote

from multidict import CIMultiDict

from gfe_proxy.config import DEFAULT_STATIC_EXPIRATION, Handler
from gfe_proxy.errors import Forbidden, NotFound
from gfe_proxy.mimetable import guess_type
from gfe_proxy.routing import RouteMatch, translate_pattern

__all__ = ["StaticFiles", "StaticResponse"]

MAX_CACHED_FILE = 1 << 20  # bytes; larger files are read on every request
MAX_CACHE_BYTES = 64 << 20  # bytes of file content kept in memory per app
_MAX_ENTRIES = 16384  # cached files (content or metadata only)
_MAX_VERDICTS = 8192  # cached "was it uploaded?" answers
_BAD_IN_SEGMENT = ("/", "\\", "\x00")
_RANGE = re.compile(r"\s*bytes\s*=\s*([0-9]*)\s*-\s*([0-9]*)\s*", re.IGNORECASE | re.ASCII)
_ETAG_ITEM = re.compile(r'(W/)?"([^"]*)"')
# SPEC STATIC-4: what a 304 leaves out (RFC 9110 §15.4.5: no representation metadata that a
# cache could not use; nginx drops the same).
_NOT_ON_304 = ("Content-Type", "Content-Language", "Content-Range")


@dataclass(frozen=True, slots=True, kw_only=True)
class StaticResponse:
    """What to send for a static request; the pipeline adds Date/Server/Content-Length."""

    status: int
    headers: CIMultiDict[str]
    body: bytes


@dataclass(frozen=True, slots=True)
class _Entry:
    identity: tuple[int, int, int, int, int]  # st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns
    body: bytes | None  # None: too large to keep, read again each time
    etag: str
    last_modified: str
    mtime: int  # whole seconds, for If-Modified-Since


def _identity(st: os.stat_result) -> tuple[int, int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


@lru_cache(maxsize=512)
def _http_date(ts: int) -> str:
    return email.utils.formatdate(ts, usegmt=True)


def _parse_http_date(value: str) -> int | None:
    parsed = email.utils.parsedate_tz(value)
    if parsed is None:
        return None
    try:
        return int(email.utils.mktime_tz(parsed))
    except (OverflowError, ValueError):
        return None


def _safe_relative(rel: str) -> bool:
    """SPEC STATIC-5: no traversal, encoded separators, NUL or empty segments."""
    if "\\" in rel or "\x00" in rel:
        return False
    for seg in rel.split("/"):
        if seg in ("", ".", ".."):
            return False
        if "%" in seg:
            decoded = unquote(seg)
            if decoded in (".", "..") or any(c in decoded for c in _BAD_IN_SEGMENT):
                return False
    return True


def _etag_matches(value: str, etag: str, *, weak: bool) -> bool:
    """RFC 9110 §8.8.3.2: weak comparison for If-None-Match, strong for If-Match."""
    if value.strip() == "*":
        return True
    ours = etag.removeprefix("W/")
    ours_weak = etag.startswith("W/")
    for w, tag in _ETAG_ITEM.findall(value):
        if f'"{tag}"' == ours and (weak or not (w or ours_weak)):
            return True
    return False


def _header(headers: Mapping[str, str], name: str) -> str | None:
    getall = getattr(headers, "getall", None)
    if getall is None:
        return headers.get(name)
    values: list[str] = getall(name, [])
    if not values:
        return None
    return values[0] if len(values) == 1 else ", ".join(values)


def _parse_range(value: str, size: int) -> tuple[int, int] | bool:
    """One ``bytes=`` range → (first, last); False → ignore (send 200); True → 416."""
    m = _RANGE.fullmatch(value)
    if m is None:
        return False  # malformed, another unit, or several ranges: a plain 200
    first, last = m.group(1), m.group(2)
    if not first:
        if not last:
            return False
        suffix = int(last)
        if suffix == 0:
            return True
        if size == 0:
            return False
        return (max(0, size - suffix), size - 1)
    start = int(first)
    if last and int(last) < start:
        return False  # RFC 9110 §14.1.1: invalid, so ignored
    if start >= size:
        return True
    end = int(last) if last else size - 1
    return (start, min(end, size - 1))


class StaticFiles:
    """Serves one app directory's static files (SPEC STATIC-1…5, CFG-5)."""

    def __init__(
        self,
        root: Path,
        skip_files: Sequence[str],
        *,
        max_cached_file: int = MAX_CACHED_FILE,
        max_cache_bytes: int = MAX_CACHE_BYTES,
    ) -> None:
        real = os.path.realpath(root)
        self._root = real
        self._prefix = real if real.endswith(os.sep) else real + os.sep
        # SPEC CFG-5: appcfg skipped a path when a skip_files regex matched its start
        # (re.match) — the file's own path or any directory above it.
        self._skip = tuple(re.compile(translate_pattern(p)) for p in skip_files)
        self._uploads: dict[str, re.Pattern[str]] = {}
        self._verdicts: dict[tuple[str, str | None, str | None], bool] = {}
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()  # the caller may read files from executor threads
        self._cached_bytes = 0
        self._max_file = max_cached_file
        self._max_bytes = max_cache_bytes

    def __repr__(self) -> str:
        return f"<StaticFiles {self._root} files={len(self._entries)} cached={self._cached_bytes}B>"

    # -- what was uploaded (CFG-5, STATIC-5) ------------------------------------------------

    def skipped(self, rel: str) -> bool:
        """True when ``skip_files`` leaves ``rel`` (or a directory above it) out of the app."""
        parts = rel.split("/")
        for n in range(1, len(parts) + 1):
            prefix = "/".join(parts[:n])
            if any(p.match(prefix) for p in self._skip):
                return True
        return False

    def _uploaded(self, rel: str, handler: Handler) -> bool:
        key = (rel, handler.static_dir, handler.upload)
        verdict = self._verdicts.get(key)
        if verdict is None:
            verdict = _safe_relative(rel) and self._matches_handler(rel, handler)
            verdict = verdict and not self.skipped(rel)
            if len(self._verdicts) >= _MAX_VERDICTS:
                self._verdicts.clear()
            self._verdicts[key] = verdict
        return verdict

    def _matches_handler(self, rel: str, handler: Handler) -> bool:
        if handler.static_dir is not None:
            directory = posixpath.normpath(handler.static_dir)
            return directory == "." or rel.startswith(directory + "/")
        if handler.upload is None:
            return False
        regex = self._uploads.get(handler.upload)
        if regex is None:
            regex = self._uploads[handler.upload] = re.compile(translate_pattern(handler.upload))
        return regex.fullmatch(rel) is not None

    # -- reading ----------------------------------------------------------------------------

    def _entry(self, rel: str) -> tuple[_Entry, bytes]:
        full = self._prefix + rel
        try:
            st = os.stat(full)
        except PermissionError:
            raise Forbidden(f"static file not readable: {rel}") from None
        except (OSError, ValueError):
            raise NotFound(f"static file not found: {rel}") from None
        if not stat.S_ISREG(st.st_mode):
            raise NotFound(f"not a regular file: {rel}")  # SPEC STATIC-5: a directory is 404
        entry = self._entries.get(full)
        if entry is not None and entry.identity == _identity(st):
            if entry.body is not None:
                with self._lock:  # recently used files go to the end; eviction takes the front
                    if self._entries.pop(full, None) is not None:
                        self._entries[full] = entry
                return entry, entry.body
            return entry, self._read(full, rel)[1]
        return self._load(full, rel)

    def _read(self, full: str, rel: str) -> tuple[os.stat_result, bytes]:
        try:
            with open(full, "rb") as f:
                st = os.fstat(f.fileno())
                if not stat.S_ISREG(st.st_mode):
                    raise NotFound(f"not a regular file: {rel}")
                return st, f.read()
        except PermissionError:
            raise Forbidden(f"static file not readable: {rel}") from None
        except OSError:
            raise NotFound(f"static file not found: {rel}") from None

    def _load(self, full: str, rel: str) -> tuple[_Entry, bytes]:
        real = os.path.realpath(full)
        if not real.startswith(self._prefix):
            # SPEC STATIC-5: a symlink leading out of the app directory
            raise NotFound(f"static file outside the app directory: {rel}")
        st, body = self._read(full, rel)
        digest = hashlib.blake2b(body, digest_size=12).digest()
        mtime = st.st_mtime_ns // 1_000_000_000
        keep = len(body) <= self._max_file
        entry = _Entry(
            identity=_identity(st),
            body=body if keep else None,
            etag='"' + base64.urlsafe_b64encode(digest).decode("ascii") + '"',
            last_modified=_http_date(mtime),
            mtime=mtime,
        )
        self._store(full, entry)
        return entry, body

    def _store(self, full: str, entry: _Entry) -> None:
        with self._lock:
            self._store_locked(full, entry)

    def _store_locked(self, full: str, entry: _Entry) -> None:
        old = self._entries.pop(full, None)
        if old is not None and old.body is not None:
            self._cached_bytes -= len(old.body)
        size = len(entry.body) if entry.body is not None else 0
        while self._entries and (
            self._cached_bytes + size > self._max_bytes or len(self._entries) >= _MAX_ENTRIES
        ):
            evicted = self._entries.pop(next(iter(self._entries)))
            if evicted.body is not None:
                self._cached_bytes -= len(evicted.body)
        if size <= self._max_bytes:
            self._entries[full] = entry
            self._cached_bytes += size

    # -- answering --------------------------------------------------------------------------

    def respond(
        self,
        method: str,
        headers: Mapping[str, str],
        match: RouteMatch,
        *,
        default_expiration: float | None,
        now: float,
    ) -> StaticResponse:
        """Answer a request routed to a static handler, or raise NotFound / Forbidden.

        SPEC STATIC-1: every method is answered as GET, HEAD included (same status and
        headers, and the body, which the caller drops after taking its length). ``headers``
        are the request's, case-insensitive (a ``CIMultiDict``/``CIMultiDictProxy``).
        A cached file costs one ``stat``; a miss reads the file (blocking I/O, safe to run in
        an executor thread).
        """
        rel = match.file
        handler = match.handler
        if rel is None or not self._uploaded(rel, handler):
            # SPEC CFG-5 / STATIC-5: not uploaded, or an unsafe path: 404 as in production
            raise NotFound(f"no uploaded static file for {rel!r}")
        entry, body = self._entry(rel)

        # SPEC STATIC-3: handler expiration, else default_expiration, else 10 minutes.
        if handler.expiration is not None:
            lifetime = handler.expiration
        elif default_expiration is not None:
            lifetime = default_expiration
        else:
            lifetime = DEFAULT_STATIC_EXPIRATION
        max_age = max(0, int(lifetime))
        out: CIMultiDict[str] = CIMultiDict(
            (
                # SPEC STATIC-2: mime_type, else the fixed extension table
                ("Content-Type", handler.mime_type or guess_type(rel)),
                ("Cache-Control", f"public, max-age={max_age}"),
                ("Expires", _http_date(int(now) + max_age)),
                ("ETag", entry.etag),
                ("Last-Modified", entry.last_modified),
                ("Accept-Ranges", "bytes"),
            )
        )
        if handler.http_headers:
            # SPEC STATIC-3: http_headers replace any default of the same name
            for name, _ in handler.http_headers:
                out.popall(name, None)
            out.extend(handler.http_headers)

        status = _preconditions(headers, entry)
        if status == 412:
            return StaticResponse(status=412, headers=CIMultiDict(), body=b"")
        if status == 304:
            for name in _NOT_ON_304:
                out.popall(name, None)
            return StaticResponse(status=304, headers=out, body=b"")

        range_value = _header(headers, "Range")
        if range_value is not None and _if_range_holds(_header(headers, "If-Range"), entry):
            size = len(body)
            span = _parse_range(range_value, size)
            if span is True:
                return StaticResponse(
                    status=416,
                    headers=CIMultiDict((("Content-Range", f"bytes */{size}"),)),
                    body=b"",
                )
            if isinstance(span, tuple):
                first, last = span
                out["Content-Range"] = f"bytes {first}-{last}/{size}"
                return StaticResponse(status=206, headers=out, body=body[first : last + 1])
        return StaticResponse(status=200, headers=out, body=body)


def _preconditions(headers: Mapping[str, str], entry: _Entry) -> int | None:
    """RFC 9110 §13.2.2 order: If-Match, If-Unmodified-Since, If-None-Match, If-Modified-Since."""
    if_match = _header(headers, "If-Match")
    if if_match is not None:
        if not _etag_matches(if_match, entry.etag, weak=False):
            return 412  # SPEC STATIC-4: failed If-Match
    else:
        ius = _header(headers, "If-Unmodified-Since")
        since = _parse_http_date(ius) if ius is not None else None
        if since is not None and entry.mtime > since:
            return 412
    if_none_match = _header(headers, "If-None-Match")
    if if_none_match is not None:
        # SPEC STATIC-4: weak comparison; every method counts as GET (STATIC-1)
        return 304 if _etag_matches(if_none_match, entry.etag, weak=True) else None
    ims = _header(headers, "If-Modified-Since")
    since = _parse_http_date(ims) if ims is not None else None
    if since is not None and entry.mtime <= since:
        return 304
    return None


def _if_range_holds(value: str | None, entry: _Entry) -> bool:
    """If-Range: send the range only if the validator still matches (strong, or exact date)."""
    if value is None:
        return True
    value = value.strip()
    if value.startswith(('"', "W/")):
        return value == entry.etag
    since = _parse_http_date(value)
    return since is not None and since == entry.mtime
