"""Test app for the integration tier: plain WSGI, standard library only."""

import gzip
import itertools
import json
import os
import threading
import time
from urllib.parse import parse_qs

_COUNTER = itertools.count(1)
_COUNTER_LOCK = threading.Lock()
TEXT = ("All work and no play makes Jack a dull boy. " * 400).encode()


def _next() -> int:
    with _COUNTER_LOCK:
        return next(_COUNTER)


def _edge(path, qs, start_response):
    """Endpoints for the edge tests (COMP-*, CACHE-*); None when ``path`` is not one."""
    n = _next()
    text = b"render %d\n" % n + TEXT
    if path == "/edge/cacheable":
        extra = [("Vary", qs["vary"][0])] if "vary" in qs else []
        time.sleep(float(qs.get("sleep", ["0"])[0]))
        start_response(
            "200 OK",
            [("Content-Type", "text/plain"), ("Cache-Control", "public, max-age=60"), *extra],
        )
        return [text]
    if path == "/edge/private":
        start_response(
            "200 OK", [("Content-Type", "text/plain"), ("Cache-Control", "private, max-age=60")]
        )
        return [text]
    if path == "/edge/cookie":
        start_response(
            "200 OK",
            [
                ("Content-Type", "text/plain"),
                ("Cache-Control", "public, max-age=60"),
                ("Set-Cookie", "s=1"),
            ],
        )
        return [text]
    if path == "/edge/app-gzip":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Encoding", "gzip")])
        return [gzip.compress(text)]
    if path == "/edge/png":
        start_response("200 OK", [("Content-Type", "image/png")])
        return [text]
    if path == "/edge/big-cacheable":
        kb = int(qs.get("kb", ["512"])[0])
        start_response(
            "200 OK",
            [
                ("Content-Type", "application/octet-stream"),
                ("Cache-Control", "public, max-age=600"),
            ],
        )
        return [os.urandom(kb * 1024)]
    return None


def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    qs = parse_qs(environ.get("QUERY_STRING", ""))
    if path.startswith("/edge/"):
        answer = _edge(path, qs, start_response)
        if answer is not None:
            return answer
    if path == "/headers":
        seen = {
            k[5:].replace("_", "-").title(): v for k, v in environ.items() if k.startswith("HTTP_")
        }
        body = json.dumps(
            {
                "headers": seen,
                "protocol": environ.get("SERVER_PROTOCOL"),
                "scheme": environ.get("wsgi.url_scheme"),
                "path": path,
                "query": environ.get("QUERY_STRING", ""),
                "content_length": environ.get("CONTENT_LENGTH"),
            }
        ).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]
    if path == "/env":
        wanted = ("GAE_", "GOOGLE_", "PORT", "GREETING")
        env = {k: v for k, v in os.environ.items() if k.startswith(wanted)}
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(env).encode()]
    if path == "/echo":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        data = environ["wsgi.input"].read(length) if length else b""
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"got %d bytes" % len(data)]
    if path == "/big":
        size = int(float(qs.get("mb", ["1"])[0]) * 1024 * 1024)
        start_response(
            "200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(size))]
        )
        return [b"x" * size]
    if path == "/many-headers":
        n = int(qs.get("n", ["10"])[0])
        start_response(
            "200 OK", [("Content-Type", "text/plain")] + [(f"X-H{i}", "v" * 100) for i in range(n)]
        )
        return [b"ok"]
    if path == "/no-type":
        start_response("200 OK", [])
        return [b"<p>typeless</p>"]
    if path == "/cookie":
        start_response(
            "200 OK",
            [
                ("Content-Type", "text/plain"),
                ("Cache-Control", "public, max-age=60"),
                ("Set-Cookie", "a=1"),
                ("Set-Cookie", "b=2"),
            ],
        )
        return [b"cookies"]
    if path == "/slow":
        time.sleep(float(qs.get("s", ["1"])[0]))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"slow done"]
    if path == "/pid":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(os.getpid()).encode()]
    if path == "/crash":
        os._exit(3)
    if path == "/status":
        code = qs.get("code", ["418"])[0]
        start_response(f"{code} Custom", [("Content-Type", "text/plain")])
        return [b"app-made status"]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"catch-all " + path.encode()]
