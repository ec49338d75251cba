"""Static files (SPEC STATIC-1…5, CFG-5) against real app directories on disk."""

from __future__ import annotations

import contextlib
import email.utils
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from gfe_proxy.config import DEFAULT_SKIP_FILES, Handler
from gfe_proxy.errors import Forbidden, NotFound
from gfe_proxy.mimetable import DEFAULT_TYPE, guess_type
from gfe_proxy.routing import RouteMatch, Router, route_path
from gfe_proxy.static import StaticFiles, StaticResponse

NOW = 1_700_000_000.0
MTIME = 1_600_000_000  # whole seconds, set on every file
INDEX = b"<!doctype html><title>hi</title>\n"
CSS = b"body { color: red }\n" * 10

DIR = Handler(url="/static", static_dir="static")
IMAGES = Handler(
    url="/img/(.*\\.(png|gif))$", static_files="static/img/\\1", upload="static/img/.*\\.(png|gif)"
)
CSS_ONLY = Handler(url="/u/(.*)", static_files="static/\\1", upload="static/.*\\.css")
EVERYTHING = Handler(url="/all/(.*)", static_files="\\1", upload=".*")
TYPED = Handler(url="/typed", static_dir="static", mime_type="text/x-custom")
HANDLERS = (DIR, IMAGES, CSS_ONLY, EVERYTHING, TYPED)


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (MTIME, MTIME))


@pytest.fixture
def app(tmp_path: Path) -> Path:
    root = tmp_path / "app"
    _write(root / "app.yaml", b"runtime: python312\n")
    _write(root / "secret.txt", b"inside the app, outside static\n")
    _write(root / "static" / "index.html", INDEX)
    _write(root / "static" / "style.css", CSS)
    _write(root / "static" / "img" / "a.png", b"\x89PNG....")
    _write(root / "static" / "noext", b"x")
    _write(root / "static" / "empty.txt", b"")
    _write(root / "static" / "a b.txt", b"space")
    _write(root / "static" / "%41.txt", b"percent")
    for skipped in (".hidden", "notes~", "#draft#", "mod.pyc", ".git/config", "RCS/x,v", "x.bak"):
        _write(root / "static" / skipped, b"skipped?")
    _write(tmp_path / "outside" / "secret.txt", b"outside the app\n")
    (root / "static" / "link_out").symlink_to(tmp_path / "outside" / "secret.txt")
    (root / "static" / "dir_out").symlink_to(tmp_path / "outside")
    (root / "static" / "link_in").symlink_to(root / "secret.txt")
    (root / "static" / "link_loop").symlink_to(root / "static" / "link_loop")
    os.mkfifo(root / "static" / "fifo")
    return root


@pytest.fixture
def files(app: Path) -> StaticFiles:
    return StaticFiles(app, DEFAULT_SKIP_FILES)


def serve(
    files: StaticFiles,
    raw_path: str,
    headers: dict[str, str] | None = None,
    *,
    method: str = "GET",
    default_expiration: float | None = None,
    handlers: tuple[Handler, ...] = HANDLERS,
) -> StaticResponse:
    match = Router.from_handlers(handlers).match(route_path(raw_path))
    assert match is not None, raw_path
    return files.respond(
        method, CIMultiDict(headers or {}), match, default_expiration=default_expiration, now=NOW
    )


def test_static_1_serves_a_file(files: StaticFiles) -> None:
    r = serve(files, "/static/index.html")
    assert (r.status, r.body) == (200, INDEX)
    assert r.headers["Content-Type"] == "text/html"
    assert r.headers["Accept-Ranges"] == "bytes"
    for absent in ("Date", "Server", "Content-Length"):
        assert absent not in r.headers


@pytest.mark.parametrize("method", ["HEAD", "POST", "PUT", "DELETE", "OPTIONS"])
def test_static_1_every_method_answers_as_get(files: StaticFiles, method: str) -> None:
    get = serve(files, "/static/style.css")
    other = serve(files, "/static/style.css", method=method)
    assert (other.status, dict(other.headers), other.body) == (get.status, dict(get.headers), CSS)


# -- STATIC-5 / CFG-5: what may be served ------------------------------------------------------

NOT_FOUND_CASES = [
    ("dotdot", "/static/../app.yaml"),
    ("encoded-dotdot", "/static/%2e%2e/app.yaml"),
    ("encoded-dotdot-upper", "/static/%2E%2E/secret.txt"),
    ("dot-segment", "/static/./index.html"),
    ("encoded-slash", "/static/img%2fa.png"),
    ("encoded-backslash", "/static/img%5ca.png"),
    ("backslash-dotdot", "/static/..%5capp.yaml"),
    ("nul", "/static/index.html%00.png"),
    ("empty-segment", "/static//index.html"),
    ("trailing-slash-is-directory", "/static/"),
    ("directory", "/static/img"),
    ("directory-slash", "/static/img/"),
    ("missing", "/static/nope.css"),
    ("symlink-out", "/static/link_out"),
    ("symlink-dir-out", "/static/dir_out/secret.txt"),
    ("symlink-loop", "/static/link_loop"),
    ("fifo-not-regular", "/static/fifo"),
    ("file-as-directory", "/static/index.html/x"),
    ("upload-mismatch", "/u/index.html"),
    ("upload-traversal", "/all/static/../app.yaml"),
    ("skip-dotfile", "/static/.hidden"),
    ("skip-backup", "/static/notes~"),
    ("skip-emacs-autosave", "/static/%23draft%23"),
    ("skip-pyc", "/static/mod.pyc"),
    ("skip-dot-directory", "/static/.git/config"),
    ("skip-rcs", "/static/RCS/x,v"),
    ("skip-dotfile-by-files-handler", "/all/static/.hidden"),
]


@pytest.mark.parametrize(
    "raw_path", [c[1] for c in NOT_FOUND_CASES], ids=[c[0] for c in NOT_FOUND_CASES]
)
def test_static_5_unsafe_or_not_uploaded_is_404(files: StaticFiles, raw_path: str) -> None:
    with pytest.raises(NotFound):
        serve(files, raw_path)


RAW_FILE_CASES = [
    # RouteMatch.file as a router fed an undecoded path would build it
    ("raw-encoded-dotdot", "static/%2e%2e/app.yaml"),
    ("raw-encoded-slash", "static/img%2Fa.png"),
    ("raw-encoded-nul", "static/index.html%00"),
    ("raw-encoded-backslash", "static/%5C..%5Capp.yaml"),
    ("absolute", "/etc/passwd"),
    ("absolute-inside", "/static/index.html"),
    ("empty", ""),
]


@pytest.mark.parametrize("file", [c[1] for c in RAW_FILE_CASES], ids=[c[0] for c in RAW_FILE_CASES])
def test_static_5_guard_holds_for_undecoded_paths(files: StaticFiles, file: str) -> None:
    match = RouteMatch(handler=EVERYTHING, index=3, file=file)
    with pytest.raises(NotFound):
        files.respond("GET", CIMultiDict(), match, default_expiration=None, now=NOW)


OK_CASES = [
    ("static-dir", "/static/style.css", CSS),
    ("static-files-backref", "/img/a.png", b"\x89PNG...."),
    ("upload-match", "/u/style.css", CSS),
    ("symlink-inside-root", "/static/link_in", b"inside the app, outside static\n"),
    ("encoded-space", "/static/a%20b.txt", b"space"),
    ("literal-percent-name", "/static/%2541.txt", b"percent"),
    ("custom-skip-not-default", "/static/x.bak", b"skipped?"),
    ("empty-file", "/static/empty.txt", b""),
]


@pytest.mark.parametrize(
    ("raw_path", "body"), [c[1:] for c in OK_CASES], ids=[c[0] for c in OK_CASES]
)
def test_static_5_uploaded_files_inside_the_app_are_served(
    files: StaticFiles, raw_path: str, body: bytes
) -> None:
    r = serve(files, raw_path)
    assert (r.status, r.body) == (200, body)


def test_cfg_5_custom_skip_files_replace_the_defaults(app: Path) -> None:
    files = StaticFiles(app, [r"^(.*/)?.*\.bak$"])
    with pytest.raises(NotFound):
        serve(files, "/static/x.bak")
    assert serve(files, "/static/.hidden").body == b"skipped?"


def test_cfg_5_skipped_reports_directories_above(files: StaticFiles) -> None:
    assert files.skipped(".git/objects/ab")
    assert files.skipped("static/.well-known/x")
    assert not files.skipped("static/well-known/x")


@contextlib.contextmanager
def _as_nobody() -> Iterator[None]:
    """Run the block without root's permission override (CAP_DAC_OVERRIDE ignores chmod)."""
    if os.geteuid() != 0:
        yield
        return
    try:
        os.seteuid(65534)
    except PermissionError:  # pragma: no cover - a container without CAP_SETUID
        pytest.skip("running as root without the right to drop privileges")
    try:
        yield
    finally:
        os.seteuid(0)


@pytest.fixture
def world_traversable_app() -> Iterator[Path]:
    # tmp_path's parents are private to root, so an unprivileged euid could not even stat;
    # this app lives in a directory anyone may traverse, so only the file itself is unreadable.
    base = Path(tempfile.mkdtemp(prefix="gfe-static-"))
    try:
        base.chmod(0o755)
        _write(base / "static" / "locked.css", CSS)
        (base / "static").chmod(0o755)
        (base / "static" / "locked.css").chmod(0o000)
        _write(base / "static" / "open.css", CSS)
        (base / "static" / "open.css").chmod(0o644)
        yield base
    finally:
        shutil.rmtree(base)


def test_static_5_unreadable_file_is_403(world_traversable_app: Path) -> None:
    files = StaticFiles(world_traversable_app, DEFAULT_SKIP_FILES)
    with _as_nobody():
        assert serve(files, "/static/open.css").status == 200
        with pytest.raises(Forbidden):
            serve(files, "/static/locked.css")


def test_static_5_changed_file_is_read_again(app: Path, files: StaticFiles) -> None:
    first = serve(files, "/static/style.css")
    _write(app / "static" / "style.css", b"p { margin: 0 }\n")
    second = serve(files, "/static/style.css")
    assert second.body == b"p { margin: 0 }\n"
    assert second.headers["ETag"] != first.headers["ETag"]


def test_static_5_symlink_retargeted_outside_is_404(app: Path, files: StaticFiles) -> None:
    link = app / "static" / "moving"
    link.symlink_to(app / "secret.txt")
    assert serve(files, "/static/moving").status == 200
    link.unlink()
    link.symlink_to(app.parent / "outside" / "secret.txt")
    with pytest.raises(NotFound):
        serve(files, "/static/moving")


def test_static_5_cache_stays_within_its_byte_budget(app: Path) -> None:
    files = StaticFiles(app, DEFAULT_SKIP_FILES, max_cached_file=200, max_cache_bytes=250)
    for path in ("/static/style.css", "/static/index.html", "/static/style.css"):
        assert serve(files, path).status == 200
    assert "cached=" in repr(files)
    assert int(repr(files).split("cached=")[1].rstrip("B>")) <= 250


# -- STATIC-2: Content-Type --------------------------------------------------------------------

MIME_CASES = [
    ("html", "a.html", "text/html"),
    ("css", "a.css", "text/css"),
    ("js", "a.js", "text/javascript"),
    ("mjs", "a.mjs", "text/javascript"),
    ("json", "a.json", "application/json"),
    ("map", "a.js.map", "application/json"),
    ("txt", "a.txt", "text/plain"),
    ("xml", "a.xml", "text/xml"),
    ("svg", "a.svg", "image/svg+xml"),
    ("png", "a.png", "image/png"),
    ("jpg", "a.jpg", "image/jpeg"),
    ("jpeg-upper", "A.JPEG", "image/jpeg"),
    ("gif", "a.gif", "image/gif"),
    ("webp", "a.webp", "image/webp"),
    ("avif", "a.avif", "image/avif"),
    ("ico", "favicon.ico", "image/x-icon"),
    ("woff", "f.woff", "font/woff"),
    ("woff2", "f.woff2", "font/woff2"),
    ("ttf", "f.ttf", "font/ttf"),
    ("otf", "f.otf", "font/otf"),
    ("eot", "f.eot", "application/vnd.ms-fontobject"),
    ("pdf", "a.pdf", "application/pdf"),
    ("zip", "a.zip", "application/zip"),
    ("gz", "a.tar.gz", "application/gzip"),
    ("mp3", "a.mp3", "audio/mpeg"),
    ("mp4", "a.mp4", "video/mp4"),
    ("webm", "a.webm", "video/webm"),
    ("ogg", "a.ogg", "audio/ogg"),
    ("wasm", "a.wasm", "application/wasm"),
    ("csv", "a.csv", "text/csv"),
    ("md", "README.md", "text/markdown"),
    ("webmanifest", "site.webmanifest", "application/manifest+json"),
    ("no-extension", "static/noext", DEFAULT_TYPE),
    ("unknown-extension", "a.unknownext", DEFAULT_TYPE),
    ("dotfile-is-no-extension", ".htaccess", DEFAULT_TYPE),
    ("dot-in-directory-only", "a.d/file", DEFAULT_TYPE),
]


@pytest.mark.parametrize(
    ("name", "mime"), [c[1:] for c in MIME_CASES], ids=[c[0] for c in MIME_CASES]
)
def test_static_2_fixed_mime_table(name: str, mime: str) -> None:
    assert guess_type(name) == mime


def test_static_2_unknown_extension_is_octet_stream(files: StaticFiles) -> None:
    assert serve(files, "/static/noext").headers["Content-Type"] == "application/octet-stream"


def test_static_2_handler_mime_type_wins(files: StaticFiles) -> None:
    r = serve(files, "/typed/index.html", handlers=(TYPED,))
    assert r.headers.getall("Content-Type") == ["text/x-custom"]


# -- STATIC-3: freshness and http_headers ------------------------------------------------------

EXPIRATION_CASES = [
    # (id, handler expiration, default_expiration, max-age)
    ("default-10-minutes", None, None, 600),
    ("app-default", None, 3600.0, 3600),
    ("handler-wins", 60.0, 3600.0, 60),
    ("handler-zero", 0.0, 3600.0, 0),
    ("four-days-five-hours", 363600.0, None, 363600),
    ("fraction-floored", 90.5, None, 90),
]


@pytest.mark.parametrize(
    ("expiration", "default", "max_age"),
    [c[1:] for c in EXPIRATION_CASES],
    ids=[c[0] for c in EXPIRATION_CASES],
)
def test_static_3_expiration_precedence(
    files: StaticFiles, expiration: float | None, default: float | None, max_age: int
) -> None:
    h = Handler(url="/static", static_dir="static", expiration=expiration)
    r = serve(files, "/static/style.css", default_expiration=default, handlers=(h,))
    assert r.headers["Cache-Control"] == f"public, max-age={max_age}"
    assert r.headers["Expires"] == email.utils.formatdate(NOW + max_age, usegmt=True)


def test_static_3_http_headers_replace_defaults_case_insensitively(files: StaticFiles) -> None:
    h = Handler(
        url="/static",
        static_dir="static",
        http_headers=(
            ("cache-control", "no-cache"),
            ("Access-Control-Allow-Origin", "https://example.com"),
            ("Vary", "Origin"),
            ("Content-Type", "text/plain; charset=utf-8"),
        ),
    )
    r = serve(files, "/static/index.html", handlers=(h,))
    assert r.headers.getall("Cache-Control") == ["no-cache"]
    assert r.headers.getall("Content-Type") == ["text/plain; charset=utf-8"]
    assert r.headers["Access-Control-Allow-Origin"] == "https://example.com"
    assert r.headers["Vary"] == "Origin"
    assert "Expires" in r.headers  # untouched defaults stay


# -- STATIC-4: validators, conditional requests, ranges ---------------------------------------

LAST_MODIFIED = email.utils.formatdate(MTIME, usegmt=True)


def test_static_4_strong_etag_from_content(app: Path, files: StaticFiles) -> None:
    r = serve(files, "/static/style.css")
    etag = r.headers["ETag"]
    assert re.fullmatch(r'"[A-Za-z0-9_=-]+"', etag)  # quoted, so strong (no W/)
    assert r.headers["Last-Modified"] == LAST_MODIFIED
    _write(app / "static" / "copy.css", CSS)
    assert serve(files, "/static/copy.css").headers["ETag"] == etag  # same bytes, same tag


def _etag(files: StaticFiles) -> str:
    return serve(files, "/static/style.css").headers["ETag"]


MakeHeaders = Callable[[str], dict[str, str]]
CONDITIONAL_CASES: list[tuple[str, MakeHeaders, int]] = [
    # (id, headers builder, status)
    ("inm-match", lambda t: {"If-None-Match": t}, 304),
    ("inm-star", lambda t: {"If-None-Match": "*"}, 304),
    ("inm-list", lambda t: {"If-None-Match": f'"nope", {t}'}, 304),
    ("inm-weak-compares-weakly", lambda t: {"If-None-Match": f"W/{t}"}, 304),
    ("inm-mismatch", lambda t: {"If-None-Match": '"nope"'}, 200),
    ("inm-comma-inside-tag", lambda t: {"If-None-Match": '"a,b"'}, 200),
    ("if-match-ok", lambda t: {"If-Match": t}, 200),
    ("if-match-star", lambda t: {"If-Match": "*"}, 200),
    ("if-match-fails", lambda t: {"If-Match": '"other"'}, 412),
    ("if-match-weak-fails", lambda t: {"If-Match": f"W/{t}"}, 412),
    ("ims-same-time", lambda t: {"If-Modified-Since": LAST_MODIFIED}, 304),
    (
        "ims-later",
        lambda t: {"If-Modified-Since": email.utils.formatdate(MTIME + 60, usegmt=True)},
        304,
    ),
    (
        "ims-earlier",
        lambda t: {"If-Modified-Since": email.utils.formatdate(MTIME - 60, usegmt=True)},
        200,
    ),
    ("ims-garbage", lambda t: {"If-Modified-Since": "yesterday"}, 200),
    (
        "ims-ignored-with-inm",
        lambda t: {"If-None-Match": '"nope"', "If-Modified-Since": LAST_MODIFIED},
        200,
    ),
    (
        "ius-earlier-fails",
        lambda t: {"If-Unmodified-Since": email.utils.formatdate(MTIME - 60, usegmt=True)},
        412,
    ),
    ("ius-same-ok", lambda t: {"If-Unmodified-Since": LAST_MODIFIED}, 200),
    ("if-match-beats-inm", lambda t: {"If-Match": '"other"', "If-None-Match": t}, 412),
]


@pytest.mark.parametrize(
    ("make", "status"), [c[1:] for c in CONDITIONAL_CASES], ids=[c[0] for c in CONDITIONAL_CASES]
)
def test_static_4_conditional_requests(files: StaticFiles, make: MakeHeaders, status: int) -> None:
    r = serve(files, "/static/style.css", make(_etag(files)))
    assert r.status == status
    if status != 200:
        assert r.body == b""


def test_static_4_not_modified_keeps_validators_and_freshness(files: StaticFiles) -> None:
    etag = _etag(files)
    r = serve(files, "/static/style.css", {"If-None-Match": etag})
    assert r.status == 304
    assert r.headers["ETag"] == etag
    assert r.headers["Cache-Control"] == "public, max-age=600"
    assert r.headers["Expires"] == email.utils.formatdate(NOW + 600, usegmt=True)
    assert "Content-Type" not in r.headers


def test_static_4_repeated_if_none_match_headers_form_one_list(files: StaticFiles) -> None:
    headers: CIMultiDict[str] = CIMultiDict(
        [("If-None-Match", '"x"'), ("If-None-Match", _etag(files))]
    )
    match = Router.from_handlers(HANDLERS).match("/static/style.css")
    assert match is not None
    r = files.respond("GET", headers, match, default_expiration=None, now=NOW)
    assert r.status == 304


SIZE = len(CSS)
RANGE_CASES = [
    # (id, Range, status, Content-Range, body)
    ("first-bytes", "bytes=0-9", 206, f"bytes 0-9/{SIZE}", CSS[0:10]),
    ("middle", "bytes=5-14", 206, f"bytes 5-14/{SIZE}", CSS[5:15]),
    ("open-ended", "bytes=190-", 206, f"bytes 190-{SIZE - 1}/{SIZE}", CSS[190:]),
    ("suffix", "bytes=-5", 206, f"bytes {SIZE - 5}-{SIZE - 1}/{SIZE}", CSS[-5:]),
    ("suffix-longer-than-file", "bytes=-5000", 206, f"bytes 0-{SIZE - 1}/{SIZE}", CSS),
    ("end-past-size-clamped", "bytes=195-9999", 206, f"bytes 195-{SIZE - 1}/{SIZE}", CSS[195:]),
    ("unit-case-and-spaces", "Bytes = 0 - 0", 206, f"bytes 0-0/{SIZE}", CSS[:1]),
    ("start-past-end", f"bytes={SIZE}-", 416, f"bytes */{SIZE}", b""),
    ("zero-suffix", "bytes=-0", 416, f"bytes */{SIZE}", b""),
    ("multiple-ranges", "bytes=0-1,5-6", 200, None, CSS),
    ("reversed", "bytes=9-5", 200, None, CSS),
    ("other-unit", "items=0-5", 200, None, CSS),
    ("garbage", "bytes=abc", 200, None, CSS),
    ("empty-spec", "bytes=-", 200, None, CSS),
]


@pytest.mark.parametrize(
    ("range_value", "status", "content_range", "body"),
    [c[1:] for c in RANGE_CASES],
    ids=[c[0] for c in RANGE_CASES],
)
def test_static_4_single_byte_range(
    files: StaticFiles, range_value: str, status: int, content_range: str | None, body: bytes
) -> None:
    r = serve(files, "/static/style.css", {"Range": range_value})
    assert (r.status, r.headers.get("Content-Range"), r.body) == (status, content_range, body)
    if status == 206:
        assert r.headers["ETag"] == _etag(files)


def test_static_4_range_on_empty_file(files: StaticFiles) -> None:
    assert serve(files, "/static/empty.txt", {"Range": "bytes=0-"}).status == 416
    assert serve(files, "/static/empty.txt", {"Range": "bytes=-5"}).status == 200


IF_RANGE_CASES: list[tuple[str, Callable[[str], str], int]] = [
    ("matching-etag", lambda t: t, 206),
    ("other-etag", lambda t: '"other"', 200),
    ("weak-etag-never", lambda t: f"W/{t}", 200),
    ("exact-date", lambda t: LAST_MODIFIED, 206),
    ("other-date", lambda t: email.utils.formatdate(MTIME + 1, usegmt=True), 200),
]


@pytest.mark.parametrize(
    ("make", "status"), [c[1:] for c in IF_RANGE_CASES], ids=[c[0] for c in IF_RANGE_CASES]
)
def test_static_4_if_range(files: StaticFiles, make: Callable[[str], str], status: int) -> None:
    r = serve(files, "/static/style.css", {"Range": "bytes=0-3", "If-Range": make(_etag(files))})
    assert r.status == status


@pytest.fixture(scope="module")
def range_files(tmp_path_factory: pytest.TempPathFactory) -> StaticFiles:
    root = tmp_path_factory.mktemp("range-app")
    _write(root / "static" / "style.css", CSS)
    return StaticFiles(root, DEFAULT_SKIP_FILES)


@settings(max_examples=200, deadline=None)
@given(value=st.text(max_size=30))
def test_static_4_any_range_header_gives_a_sane_answer(
    range_files: StaticFiles, value: str
) -> None:
    match = RouteMatch(handler=DIR, index=0, file="static/style.css")
    headers = CIMultiDict({"Range": value})
    r = range_files.respond("GET", headers, match, default_expiration=None, now=NOW)
    assert r.status in (200, 206, 416)
    if r.status == 206:
        span = r.headers["Content-Range"].removeprefix("bytes ").split("/")[0]
        first, last = (int(x) for x in span.split("-"))
        assert r.body == CSS[first : last + 1]
        assert 0 < len(r.body) <= SIZE
