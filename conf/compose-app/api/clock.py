"""`script: api.\\1.app` with \\1 = clock: the current time as JSON."""

import json
import time


def app(environ, start_response):
    body = json.dumps(
        {"unix": time.time(), "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    )
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body.encode() + b"\n"]
