"""WSGI test app for the scaling tier (gunicorn gthread): slow, hung, hungry and lifecycle
handlers. Each instance is one process group; ``/whoami`` names it by ``os.getpgrp()``."""

import json
import os
import sys
import time
from urllib.parse import parse_qs

if os.path.exists("BROKEN"):  # a test's switch for an app that fails to boot
    raise RuntimeError("this instance refuses to start: BROKEN exists")

VERSION = "v1"
MIB = 1024 * 1024
_state = {"warmed": False, "started": False}
_hoard = []


def _arg(environ, name, default):
    return parse_qs(environ.get("QUERY_STRING", "")).get(name, [default])[0]


def app(environ, start_response):
    path = environ["PATH_INFO"]
    status, body = "200 OK", b"ok"
    if path == "/_ah/warmup":
        _state["warmed"] = True
        body = b"warm"
    elif path == "/_ah/start":
        _state["started"] = True
        print("got /_ah/start", flush=True)
    elif path == "/_ah/stop":
        print("got /_ah/stop", flush=True)
        sys.stdout.flush()
    elif path == "/sleep":
        time.sleep(float(_arg(environ, "s", "0.2")))
        body = b"slept"
    elif path == "/hang":
        time.sleep(3600)
    elif path == "/mem":
        _hoard.append(b"x" * (int(_arg(environ, "mb", "1")) * MIB))  # touched pages: real RSS
        body = b"hoarding"
    elif path in ("/", "/whoami"):
        body = json.dumps(
            {
                "version": VERSION,
                "pgid": os.getpgrp(),
                "warmed": _state["warmed"],
                "started": _state["started"],
                "gae_instance": os.environ.get("GAE_INSTANCE"),
            }
        ).encode()
    else:
        status, body = "404 Not Found", b"no such page"
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
