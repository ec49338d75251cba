import json
import os


def app(environ, start_response):
    data = {
        "handler": "main.app",
        "accept_encoding": environ.get("HTTP_ACCEPT_ENCODING"),
        "gfe_script_seen": environ.get("HTTP_X_GOOGLE_GFE_SCRIPT"),
        "server_software": os.environ.get("SERVER_SOFTWARE"),
        "current_version_id": os.environ.get("CURRENT_VERSION_ID"),
    }
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Encoding", "identity")]
    )
    return [json.dumps(data).encode()]
