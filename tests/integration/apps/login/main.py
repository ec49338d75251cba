"""Echo app for the secure:/login: tests: what reached the instance, as JSON. Stdlib only."""

import json


def app(environ, start_response):
    seen = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
    body = json.dumps(
        {
            "path": environ.get("PATH_INFO", ""),
            "query": environ.get("QUERY_STRING", ""),
            "headers": seen,
        }
    ).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
