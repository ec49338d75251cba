"""The gen1 WSGI shim: one gunicorn app that runs whichever script the matched handler names.

SPEC INST-1: gen1-style handlers (``script: package.module.app``, or a CGI ``path/to/x.py``)
run in gunicorn, started by the supervisor as::

    python -m gunicorn --bind 127.0.0.1:PORT --chdir <app root> gfe_proxy.wsgi_shim:application

Theory of operation: the proxy routes each request (ROUTE-1) and tells the instance which
handler won with the internal header ``X-Google-Gfe-Script: <script>``, back-references already
substituted. Clients can never send it, because the proxy strips every ``X-Google-*`` header
(HDR-1). The shim takes the header out of the environ and then

* ``a.b.c`` -> imports the longest importable prefix (``a.b``) once, walks the remaining
  attributes (``c``; ``mod.App.wsgi`` works too) and calls the result as a WSGI app;
* ``dir/x.py`` -> runs the file as a CGI script in a child Python, body on stdin;
* anything that cannot be resolved -> a plain-text 500 with a one-line reason; the traceback
  goes to stderr, which the supervisor logs with the instance id (INST-3), never to the client.

The process environment (``GAE_*``, ``SERVER_SOFTWARE``, ``CURRENT_VERSION_ID``, the app's
``env_variables``; INST-2) is set by the supervisor; the shim leaves ``os.environ`` alone,
except that it puts back the ``SERVER_SOFTWARE`` gunicorn's arbiter overwrote with its own.
"""

from __future__ import annotations

import http
import importlib
import os
import re
import subprocess
import sys
import threading
import traceback
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

    from _typeshed import OptExcInfo

SCRIPT_HEADER = "X-Google-Gfe-Script"
SCRIPT_ENVIRON_KEY = "HTTP_X_GOOGLE_GFE_SCRIPT"

# SPEC INST-3 / ROUTE-4: requests the supervisor itself sends to instances: lifecycle ones and
# its readiness probe (/_ah/health, App Engine's legacy health check path). With no handler
# mapped for them (no script header) the shim answers itself, so they succeed at once.
LIFECYCLE_PATHS = frozenset({"/_ah/warmup", "/_ah/start", "/_ah/stop", "/_ah/health"})

# SPEC HDR-2: the client address the proxy forwards; REMOTE_ADDR is the proxy's own socket.
_USER_IP_KEY = "HTTP_X_APPENGINE_USER_IP"

_STATUS_RE = re.compile(r"^([1-5][0-9][0-9])(?:\s+(.*))?$")


class ScriptError(Exception):
    """A handler's script could not be turned into a response; ``str()`` is the reason."""


class ScriptDispatcher:
    """WSGI app dispatching each request to the script named in ``X-Google-Gfe-Script``.

    ``root`` is the app directory; ``None`` means the working directory at call time, which is
    what ``gunicorn --chdir`` sets. Resolved WSGI apps are cached per script string.
    """

    def __init__(self, root: Path | None = None) -> None:
        self._root = root
        self._apps: dict[str, WSGIApplication] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<ScriptDispatcher root={self.root} cached={sorted(self._apps)}>"

    @property
    def root(self) -> Path:
        return (self._root if self._root is not None else Path.cwd()).resolve()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        script = environ.pop(SCRIPT_ENVIRON_KEY, None)
        if _SERVER_SOFTWARE:
            environ["SERVER_SOFTWARE"] = _SERVER_SOFTWARE
        # Gen1 apps saw the client's address in REMOTE_ADDR (webapp2's request.remote_addr).
        user_ip = environ.get(_USER_IP_KEY)
        if user_ip:
            environ["REMOTE_ADDR"] = user_ip
        if not script:
            if environ.get("PATH_INFO") in LIFECYCLE_PATHS:
                return _plain(start_response, "200 OK", "ok")
            return _fail(start_response, f"request has no {SCRIPT_HEADER} header")
        if script.endswith(".py"):
            try:
                status, headers, body = run_cgi(self.root, script, environ)
            except ScriptError as exc:
                return _fail(start_response, str(exc))
            start_response(status, headers)
            return [body]
        try:
            app = self.resolve(script)
        except ScriptError as exc:
            return _fail(start_response, str(exc))
        try:
            return app(environ, start_response)
        except Exception:
            traceback.print_exc(file=sys.stderr)
            reason = f"uncaught exception in {script}"
            return _fail(start_response, reason, exc_info=sys.exc_info(), log=False)

    def resolve(self, script: str) -> WSGIApplication:
        """Return the WSGI app named by a dotted ``script``, importing it on first use.

        ``shop.catalog.app`` imports ``shop.catalog`` and returns its ``app``; with
        ``mod.App.wsgi`` where ``mod.App`` is not a module, ``mod`` is imported and
        ``App.wsgi`` is looked up. Raises ScriptError with a one-line reason.
        """
        app = self._apps.get(script)
        if app is not None:
            return app
        # One import at a time: two threads importing one module can see it half-initialised.
        with self._lock:
            app = self._apps.get(script)
            if app is None:
                app = _import_wsgi_app(self.root, script)
                self._apps[script] = app
        return app


def _import_wsgi_app(root: Path, script: str) -> WSGIApplication:
    parts = script.split(".")
    if len(parts) < 2 or not all(p.isidentifier() for p in parts):
        raise ScriptError(f"script {script!r} is neither module.attribute nor a .py file")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    # Files may have been written after the interpreter scanned the directory.
    importlib.invalidate_caches()
    for split in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:split])
        try:
            obj: object = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            # Only "this prefix is not a module" means try a shorter one; a missing module
            # imported *inside* the app is the app's own error.
            if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
                continue
            raise _script_error(f"cannot import {module_name}", exc) from exc
        except Exception as exc:
            raise _script_error(f"cannot import {module_name}", exc) from exc
        for attr in parts[split:]:
            try:
                obj = getattr(obj, attr)
            except AttributeError as exc:
                owner = getattr(obj, "__name__", type(obj).__name__)
                raise _script_error(f"{owner} has no attribute {attr!r}", exc) from exc
        if not callable(obj):
            raise ScriptError(f"{script} is a {type(obj).__name__}, not a WSGI callable")
        app: WSGIApplication = obj
        return app
    raise ScriptError(f"no module found for script {script} under {root}")


def _script_error(reason: str, exc: BaseException) -> ScriptError:
    # The traceback is for the developer's log (stderr), never for the HTTP client.
    traceback.print_exception(exc, file=sys.stderr)
    return ScriptError(f"{reason}: {type(exc).__name__}: {exc}".splitlines()[0])


def run_cgi(
    root: Path, script: str, environ: WSGIEnvironment
) -> tuple[str, list[tuple[str, str]], bytes]:
    """Run ``script`` (a ``.py`` path relative to ``root``) as CGI; return status, headers, body.

    The child gets the process environment plus the CGI variables of RFC 3875, the request
    body on stdin, and its stderr is the instance's stderr. Raises ScriptError.
    """
    root = root.resolve()
    path = (root / script).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise ScriptError(f"CGI script {script} not found in the app directory")
    body = _read_body(environ)
    try:
        done = subprocess.run(
            [sys.executable, str(path)],
            input=body,
            stdout=subprocess.PIPE,
            env=cgi_environment(environ, content_length=len(body)),
            cwd=root,
            check=False,
        )
    except OSError as exc:
        raise _script_error(f"cannot run CGI script {script}", exc) from exc
    if done.returncode != 0:
        raise ScriptError(f"CGI script {script} exited with status {done.returncode}")
    return parse_cgi_output(done.stdout, script=script)


def cgi_environment(environ: WSGIEnvironment, *, content_length: int) -> dict[str, str]:
    """The child environment for a CGI script: ``os.environ`` plus RFC 3875 variables."""
    env = dict(os.environ)
    env.update(
        GATEWAY_INTERFACE="CGI/1.1",
        REQUEST_METHOD=environ.get("REQUEST_METHOD", "GET"),
        SCRIPT_NAME=environ.get("SCRIPT_NAME", ""),
        PATH_INFO=environ.get("PATH_INFO", ""),
        QUERY_STRING=environ.get("QUERY_STRING", ""),
        CONTENT_TYPE=environ.get("CONTENT_TYPE", ""),
        CONTENT_LENGTH=str(content_length) if content_length else "",
        SERVER_NAME=environ.get("SERVER_NAME", "localhost"),
        SERVER_PORT=str(environ.get("SERVER_PORT", "")),
        SERVER_PROTOCOL=environ.get("SERVER_PROTOCOL", "HTTP/1.1"),
        REMOTE_ADDR=environ.get("REMOTE_ADDR", ""),
        HTTPS="on" if environ.get("wsgi.url_scheme") == "https" else "off",
    )
    for key, value in environ.items():
        # httpoxy: a client's `Proxy:` header must not become the child's HTTP_PROXY.
        if key.startswith("HTTP_") and key != "HTTP_PROXY" and isinstance(value, str):
            env[key] = value
    # WSGI strings are bytes decoded as latin-1; re-encode so the child sees the same bytes.
    return {key: _native(value) for key, value in env.items() if "\x00" not in value}


def _native(value: str) -> str:
    try:
        return value.encode("latin-1").decode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # already a native str (from os.environ)
        return value


def _read_body(environ: WSGIEnvironment) -> bytes:
    stream = environ.get("wsgi.input")
    if stream is None:
        return b""
    length = environ.get("CONTENT_LENGTH") or ""
    if length.isdigit():
        return bytes(stream.read(int(length))) if int(length) else b""
    return bytes(stream.read())


def parse_cgi_output(output: bytes, *, script: str) -> tuple[str, list[tuple[str, str]], bytes]:
    """Split a CGI response into a WSGI status line, header list and body (RFC 3875 §6).

    ``Status: 404`` sets the status (reason filled in when missing); a ``Location`` without
    ``Status`` is a 302. Raises ScriptError when the output has no header block.
    """
    if not output:
        raise ScriptError(f"CGI script {script} produced no output")
    ends = [(i, len(sep)) for sep in (b"\r\n\r\n", b"\n\n") if (i := output.find(sep)) >= 0]
    if output.startswith((b"\r\n", b"\n")):
        ends.append((0, 2 if output.startswith(b"\r\n") else 1))
    if not ends:
        raise ScriptError(f"CGI script {script} printed no blank line after its headers")
    end, sep_len = min(ends)
    head, body = output[:end], output[end + sep_len :]
    status: str | None = None
    headers: list[tuple[str, str]] = []
    for line in head.decode("latin-1").splitlines():
        name, colon, value = line.partition(":")
        name, value = name.strip(), value.strip()
        if not colon or not name or " " in name:
            raise ScriptError(f"CGI script {script} printed a malformed header line {line!r}")
        if name.lower() == "status":
            status = _status_line(value, script)
        else:
            headers.append((name, value))
    if status is None:
        located = any(name.lower() == "location" for name, _ in headers)
        status = "302 Found" if located else "200 OK"
    return status, headers, body


def _status_line(value: str, script: str) -> str:
    match = _STATUS_RE.match(value)
    if match is None:
        raise ScriptError(f"CGI script {script} printed a bad Status {value!r}")
    code, reason = int(match[1]), match[2]
    if not reason:
        try:
            reason = http.HTTPStatus(code).phrase
        except ValueError:
            reason = "Unknown"
    return f"{code} {reason}"


def _plain(start_response: StartResponse, status: str, text: str) -> list[bytes]:
    body = (text + "\n").encode()
    start_response(
        status,
        [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
    )
    return [body]


def _fail(
    start_response: StartResponse,
    reason: str,
    *,
    exc_info: OptExcInfo | None = None,
    log: bool = True,
) -> list[bytes]:
    if log:
        print(f"gfe_proxy.wsgi_shim: 500: {reason}", file=sys.stderr, flush=True)
    body = f"500 Internal Server Error: {reason}\n".encode()
    headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
    # The app may already have called start_response; WSGI allows a second call only with
    # exc_info, and only before any byte was sent (true here: nothing was returned yet).
    start_response("500 Internal Server Error", headers, exc_info)
    return [body]


# What gunicorn loads: `gfe_proxy.wsgi_shim:application`.
# gunicorn's arbiter sets SERVER_SOFTWARE=gunicorn/x.y before the worker imports us; gen1 apps
# read it (e.g. to tell the dev server from production), so restore what the proxy gave.
_SERVER_SOFTWARE = os.environ.get("GFE_SERVER_SOFTWARE")
if _SERVER_SOFTWARE:
    os.environ["SERVER_SOFTWARE"] = _SERVER_SOFTWARE

application = ScriptDispatcher()
