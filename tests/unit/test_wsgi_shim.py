"""The gen1 WSGI shim (SPEC INST-1): real WSGI calls against a real app directory on disk."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gfe_proxy import wsgi_shim
from gfe_proxy.wsgi_shim import ScriptDispatcher, ScriptError, parse_cgi_output

Response = tuple[str, list[tuple[str, str]], bytes]

ECHO_APP = """
def app(environ, start_response):
    seen = environ.get("HTTP_X_GOOGLE_GFE_SCRIPT", "-")
    body = "%s|%s|%s" % (__name__, environ["PATH_INFO"], seen)
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Module", __name__)])
    return [body.encode()]
"""


@pytest.fixture
def app_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty app root as the working directory; sys.path and sys.modules restored after."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        del sys.modules[name]


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def call(
    app: Any,
    path: str = "/",
    *,
    script: str | None = None,
    method: str = "GET",
    query: str = "",
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> Response:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "wsgi.input": io.BytesIO(body),
    }
    if body:
        environ["CONTENT_LENGTH"] = str(len(body))
        environ["CONTENT_TYPE"] = "application/octet-stream"
    if script is not None:
        environ["HTTP_X_GOOGLE_GFE_SCRIPT"] = script
    for name, value in (headers or {}).items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    setup_testing_defaults(environ)
    started: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(status: str, hdrs: list[tuple[str, str]], exc_info: Any = None) -> Any:
        started.append((status, hdrs))
        return lambda data: None

    chunks = app(environ, start_response)
    try:
        out = b"".join(chunks)
    finally:
        if hasattr(chunks, "close"):
            chunks.close()
    status, hdrs = started[-1]
    return status, hdrs, out


def header(headers: list[tuple[str, str]], name: str) -> str | None:
    return next((v for k, v in headers if k.lower() == name.lower()), None)


# -- dotted WSGI scripts ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("files", "script", "module"),
    [
        ({"main.py": ECHO_APP}, "main.app", "main"),
        (
            {"shop/__init__.py": "", "shop/catalog.py": ECHO_APP},
            "shop.catalog.app",
            "shop.catalog",
        ),
        (
            {"a/__init__.py": "", "a/b/__init__.py": "", "a/b/c.py": ECHO_APP},
            "a.b.c.app",
            "a.b.c",
        ),
        (
            {"nested.py": ECHO_APP + "class App:\n    wsgi = staticmethod(app)\n"},
            "nested.App.wsgi",
            "nested",
        ),
    ],
    ids=["module", "package-module", "deep-package", "nested-attribute"],
)
def test_inst_1_dotted_script_runs_named_wsgi_app(
    app_dir: Path, files: dict[str, str], script: str, module: str
) -> None:
    write(app_dir, files)
    status, headers, body = call(ScriptDispatcher(), "/x", script=script)
    assert status == "200 OK"
    assert header(headers, "X-Module") == module
    # SPEC INST-1: the internal header is consumed, the app never sees it.
    assert body == f"{module}|/x|-".encode()


def test_inst_1_back_referenced_scripts_pick_their_own_package(app_dir: Path) -> None:
    # `url: /(\w+)/.*` + `script: \1.catalog.app`: the proxy substitutes \1 before sending.
    write(
        app_dir,
        {
            "books/__init__.py": "",
            "books/catalog.py": ECHO_APP,
            "music/__init__.py": "",
            "music/catalog.py": ECHO_APP,
        },
    )
    shim = ScriptDispatcher()
    got = [call(shim, f"/{name}/1", script=f"{name}.catalog.app")[2] for name in ("books", "music")]
    assert got == [b"books.catalog|/books/1|-", b"music.catalog|/music/1|-"]


def test_inst_1_module_imported_once_even_under_concurrency(app_dir: Path) -> None:
    write(
        app_dir,
        {"counted.py": "with open('imports.log', 'a') as f:\n    f.write('x')\n" + ECHO_APP},
    )
    shim = ScriptDispatcher()
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda _: call(shim, script="counted.app")[0], range(32)))
    assert statuses == ["200 OK"] * 32
    assert (app_dir / "imports.log").read_text() == "x"
    assert shim.resolve("counted.app") is shim.resolve("counted.app")


def test_inst_1_app_root_is_put_on_sys_path(app_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(app_dir, {"rooted.py": ECHO_APP})
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(app_dir)])
    assert call(ScriptDispatcher(root=app_dir), script="rooted.app")[0] == "200 OK"
    assert sys.path[0] == str(app_dir)


def test_inst_1_module_level_application_uses_working_directory(app_dir: Path) -> None:
    write(app_dir, {"gfe_shim_cwd_probe.py": ECHO_APP})
    status, _, body = call(wsgi_shim.application, "/p", script="gfe_shim_cwd_probe.app")
    assert (status, body) == ("200 OK", b"gfe_shim_cwd_probe|/p|-")


def test_inst_1_remote_addr_is_the_forwarded_client_ip(app_dir: Path) -> None:
    write(
        app_dir,
        {
            "ip.py": """
            def app(environ, start_response):
                start_response("200 OK", [])
                return [environ["REMOTE_ADDR"].encode()]
            """
        },
    )
    _, _, body = call(
        ScriptDispatcher(), script="ip.app", headers={"X-AppEngine-User-IP": "203.0.113.9"}
    )
    assert body == b"203.0.113.9"


# -- lifecycle requests -----------------------------------------------------------------


@pytest.mark.parametrize("path", ["/_ah/warmup", "/_ah/start", "/_ah/stop", "/_ah/health"], ids=str)
def test_inst_3_lifecycle_request_without_handler_is_ok(app_dir: Path, path: str) -> None:
    status, headers, body = call(ScriptDispatcher(), path)
    assert (status, body) == ("200 OK", b"ok\n")
    assert header(headers, "Content-Type") == "text/plain; charset=utf-8"


def test_inst_3_lifecycle_request_with_handler_goes_to_the_app(app_dir: Path) -> None:
    write(app_dir, {"main.py": ECHO_APP})
    assert call(ScriptDispatcher(), "/_ah/warmup", script="main.app")[2] == b"main|/_ah/warmup|-"


# -- errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("files", "script", "reason", "traceback_logged"),
    [
        ({}, None, "request has no X-Google-Gfe-Script header", False),
        ({}, "nothere.app", "no module found for script nothere.app", False),
        ({"main.py": ECHO_APP}, "main.missing", "main has no attribute 'missing'", True),
        ({"main.py": "app = 42\n"}, "main.app", "main.app is a int, not a WSGI callable", False),
        (
            {"main.py": "import gfe_no_such_dependency\n"},
            "main.app",
            "cannot import main: ModuleNotFoundError: No module named 'gfe_no_such_dependency'",
            True,
        ),
        (
            {"main.py": "raise RuntimeError('boom at import')\n"},
            "main.app",
            "cannot import main: RuntimeError: boom at import",
            True,
        ),
        (
            {"main.py": "def app(:\n"},
            "main.app",
            "cannot import main: SyntaxError",
            True,
        ),
        ({}, "../etc.app", "script '../etc.app' is neither module.attribute nor a .py file", False),
        ({}, "main", "script 'main' is neither module.attribute nor a .py file", False),
    ],
    ids=[
        "missing-header",
        "missing-module",
        "missing-attribute",
        "not-callable",
        "missing-dependency",
        "import-raises",
        "syntax-error",
        "path-like-name",
        "bare-module",
    ],
)
def test_inst_1_unresolvable_script_is_clean_500(
    app_dir: Path,
    capsys: pytest.CaptureFixture[str],
    files: dict[str, str],
    script: str | None,
    reason: str,
    traceback_logged: bool,
) -> None:
    write(app_dir, files)
    status, headers, body = call(ScriptDispatcher(), "/page", script=script)
    assert status == "500 Internal Server Error"
    assert header(headers, "Content-Type") == "text/plain; charset=utf-8"
    assert body.startswith(f"500 Internal Server Error: {reason}".encode())
    assert body.count(b"\n") == 1  # one line; never a traceback for the client
    assert header(headers, "Content-Length") == str(len(body))
    err = capsys.readouterr().err
    assert reason.split(":")[0] in err
    assert ("Traceback" in err) is traceback_logged


def test_inst_1_failed_import_is_retried_after_fix(app_dir: Path) -> None:
    shim = ScriptDispatcher()
    write(app_dir, {"late.py": "app = None\n"})
    assert call(shim, script="late.app")[0].startswith("500")
    del sys.modules["late"]
    write(app_dir, {"late.py": ECHO_APP})
    assert call(shim, script="late.app")[0] == "200 OK"


def test_inst_1_app_exception_is_500_without_traceback(
    app_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(
        app_dir,
        {
            "main.py": """
            def app(environ, start_response):
                start_response("200 OK", [("X-Half", "done")])
                raise ValueError("secret detail")
            """
        },
    )
    status, headers, body = call(ScriptDispatcher(), script="main.app")
    assert status == "500 Internal Server Error"
    assert header(headers, "X-Half") is None
    assert body == b"500 Internal Server Error: uncaught exception in main.app\n"
    assert "ValueError: secret detail" in capsys.readouterr().err


# -- CGI scripts ------------------------------------------------------------------------

CGI_ECHO = """
import os, sys
body = sys.stdin.buffer.read()
sys.stdout.write("Content-Type: text/plain\\r\\n")
sys.stdout.write("X-Method: %s\\r\\n\\r\\n" % os.environ["REQUEST_METHOD"])
sys.stdout.flush()
for key in ("GATEWAY_INTERFACE", "PATH_INFO", "QUERY_STRING", "CONTENT_LENGTH",
            "CONTENT_TYPE", "SERVER_PROTOCOL", "HTTPS", "HTTP_X_DEMO", "HTTP_PROXY",
            "HTTP_X_GOOGLE_GFE_SCRIPT", "GFE_SHIM_TEST_PROCESS_VAR"):
    sys.stdout.write("%s=%s\\n" % (key, os.environ.get(key, "-")))
sys.stdout.flush()
sys.stdout.buffer.write(b"body=" + body)
"""


def test_inst_1_cgi_script_gets_cgi_environment_and_body(
    app_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(app_dir, {"legacy/hello.py": CGI_ECHO})
    monkeypatch.setenv("GFE_SHIM_TEST_PROCESS_VAR", "inherited")
    status, headers, body = call(
        ScriptDispatcher(),
        "/legacy/hello",
        script="legacy/hello.py",
        method="POST",
        query="a=1&b=2",
        body=b"payload bytes",
        headers={"X-Demo": "caf\xc3\xa9", "Proxy": "http://evil.example:3128"},
    )
    assert status == "200 OK"
    assert headers == [("Content-Type", "text/plain"), ("X-Method", "POST")]
    assert body.decode().splitlines() == [
        "GATEWAY_INTERFACE=CGI/1.1",
        "PATH_INFO=/legacy/hello",
        "QUERY_STRING=a=1&b=2",
        "CONTENT_LENGTH=13",
        "CONTENT_TYPE=application/octet-stream",
        "SERVER_PROTOCOL=HTTP/1.0",
        "HTTPS=off",
        "HTTP_X_DEMO=café",  # the header's UTF-8 bytes arrive intact
        "HTTP_PROXY=-",  # httpoxy: never from a client's Proxy header
        "HTTP_X_GOOGLE_GFE_SCRIPT=-",
        "GFE_SHIM_TEST_PROCESS_VAR=inherited",  # INST-2 variables reach CGI scripts
        "body=payload bytes",
    ]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            'print("Status: 404\\nContent-Type: text/html\\n\\n<p>gone</p>")',
            ("404 Not Found", [("Content-Type", "text/html")], b"<p>gone</p>\n"),
        ),
        (
            'print("Location: /elsewhere\\n")',
            ("302 Found", [("Location", "/elsewhere")], b""),
        ),
    ],
    ids=["status-header", "location-redirect"],
)
def test_inst_1_cgi_status_and_location(app_dir: Path, source: str, expected: Response) -> None:
    write(app_dir, {"cgi/run.py": source})
    assert call(ScriptDispatcher(), script="cgi/run.py") == expected


@pytest.mark.parametrize(
    ("files", "script", "reason"),
    [
        ({}, "missing.py", "CGI script missing.py not found in the app directory"),
        ({"../outside.py": "print()"}, "../outside.py", "CGI script ../outside.py not found"),
        ({"dir.py/x": ""}, "dir.py", "CGI script dir.py not found"),
        (
            {"crash.py": "raise SystemExit(3)"},
            "crash.py",
            "CGI script crash.py exited with status 3",
        ),
        ({"quiet.py": ""}, "quiet.py", "CGI script quiet.py produced no output"),
        ({"nohead.py": "print('hello')"}, "nohead.py", "printed no blank line after its headers"),
    ],
    ids=["missing", "outside-root", "directory", "nonzero-exit", "no-output", "no-header-block"],
)
def test_inst_1_bad_cgi_script_is_clean_500(
    app_dir: Path, files: dict[str, str], script: str, reason: str
) -> None:
    (app_dir / "app").mkdir()
    write(app_dir / "app", files)
    status, _, body = call(ScriptDispatcher(root=app_dir / "app"), script=script)
    assert status == "500 Internal Server Error"
    assert reason in body.decode()
    assert body.count(b"\n") == 1


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        (b"Content-Type: text/plain\n\nhi", ("200 OK", [("Content-Type", "text/plain")], b"hi")),
        (
            b"Content-Type: a/b\r\n\r\nhi\n\nthere",
            ("200 OK", [("Content-Type", "a/b")], b"hi\n\nthere"),
        ),
        (b"Status: 201 Made\nX-A: 1\nX-A: 2\n\n", ("201 Made", [("X-A", "1"), ("X-A", "2")], b"")),
        (b"Status: 599\n\n", ("599 Unknown", [], b"")),
        (b"\nbody only", ("200 OK", [], b"body only")),
        (
            b"Location: http://x/\nStatus: 301\n\n",
            ("301 Moved Permanently", [("Location", "http://x/")], b""),
        ),
    ],
    ids=[
        "lf",
        "crlf-body-keeps-blank-lines",
        "repeated-headers",
        "unknown-code",
        "no-headers",
        "status-wins",
    ],
)
def test_inst_1_parse_cgi_output(output: bytes, expected: Response) -> None:
    assert parse_cgi_output(output, script="s.py") == expected


@pytest.mark.parametrize(
    "output",
    [b"Status: abc\n\n", b"Status: 700 No\n\n", b"no colon here\n\n", b"Bad Name: x\n\n", b""],
    ids=["status-not-number", "status-out-of-range", "no-colon", "space-in-name", "empty"],
)
def test_inst_1_parse_cgi_output_rejects_malformed(output: bytes) -> None:
    with pytest.raises(ScriptError, match=r"^CGI script s\.py "):
        parse_cgi_output(output, script="s.py")


@given(st.binary(max_size=200))
def test_inst_1_parse_cgi_output_fails_only_with_script_error(output: bytes) -> None:
    try:
        status, headers, _ = parse_cgi_output(output, script="s.py")
    except ScriptError:
        return
    assert status[:3].isdigit()
    assert status[3] == " "
    assert all(name and ":" not in name for name, _ in headers)


def test_inst_1_shim_imports_nothing_of_the_proxy_stack() -> None:
    # The shim runs inside every gen1 instance; it must stay as light as the app it hosts.
    code = (
        "import sys, gfe_proxy.wsgi_shim; print(sorted({'aiohttp', 'asyncio'} & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
