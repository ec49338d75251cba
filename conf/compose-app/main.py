"""Home page of the compose example: a plain WSGI app named by `script: main.app`."""

import html
import os

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>gfe-proxy compose example</title>
<link rel="stylesheet" href="/static/style.css">
</head>
<body>
<h1>Your app, mounted on /app</h1>
<p>This is <code>conf/compose-app</code>, a gen1-style (<code>runtime: python27</code>) app.
Each <code>script:</code> handler names a WSGI app; gfe-proxy runs them all in one gunicorn
process per instance through its WSGI shim.</p>
<ul>
  <li><a href="/api/clock"><code>/api/clock</code></a>: <code>script: api.\\1.app</code>
      picked <code>api.clock.app</code></li>
  <li><a href="/api/echo?hello=world"><code>/api/echo</code></a>: the same handler,
      <code>api.echo.app</code></li>
  <li><a href="/static/style.css"><code>/static/style.css</code></a>: served by the proxy</li>
  <li><a href="http://{host}:8000/">admin page</a> on port 8000</li>
</ul>
<p>You asked for <code>{path}</code>; instance <code>{instance}</code>.</p>
</body>
</html>
"""


def app(environ, start_response):
    host = environ.get("HTTP_HOST", "localhost").rsplit(":", 1)[0]
    body = PAGE.format(
        host=html.escape(host),
        path=html.escape(environ.get("PATH_INFO", "/")),
        instance=html.escape(os.environ.get("INSTANCE_ID", "?")[:16]),
    )
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
    return [body.encode()]
