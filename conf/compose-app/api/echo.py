"""`script: api.\\1.app` with \\1 = echo: the request as this app saw it, as JSON."""

import json


def app(environ, start_response):
    headers = {
        k[5:].replace("_", "-").title(): v for k, v in environ.items() if k.startswith("HTTP_")
    }
    body = json.dumps(
        {
            "method": environ["REQUEST_METHOD"],
            "path": environ.get("PATH_INFO", ""),
            "query": environ.get("QUERY_STRING", ""),
            "remote_addr": environ.get("REMOTE_ADDR", ""),
            "headers": headers,
        },
        indent=2,
    )
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body.encode() + b"\n"]
