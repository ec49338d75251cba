"""gfe-proxy demo app: a plain WSGI app, Python standard library only.

gfe-proxy runs it the way App Engine runs a `python312` app without an `entrypoint`:
`gunicorn main:app`, one process per instance, behind the front end. Each page shows one
thing the front end does to requests or responses; the index page (/) lists them all.
"""

from __future__ import annotations

import html
import itertools
import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from http.cookies import SimpleCookie
from urllib.parse import parse_qs

STARTED_AT = time.time()
_cached_renders = itertools.count(1)  # counts renders of /cached: a cache HIT adds none

Headers = Sequence[tuple[str, str]]

# Request headers the front end adds; highlighted on /headers.
FRONT_END_HEADERS = (
    "x-appengine-",
    "x-cloud-trace-context",
    "traceparent",
    "x-forwarded-",
    "forwarded",
)


@dataclass
class Request:
    environ: dict[str, object]

    @property
    def path(self) -> str:
        return str(self.environ.get("PATH_INFO") or "/")

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(str(self.environ.get("QUERY_STRING", "")))

    def arg(self, name: str, default: str = "") -> str:
        return self.query.get(name, [default])[0]

    def header(self, name: str, default: str = "") -> str:
        return str(self.environ.get("HTTP_" + name.upper().replace("-", "_"), default))

    def headers(self) -> list[tuple[str, str]]:
        """Request headers in the order received (WSGI keeps no original case)."""
        out = []
        for key, value in self.environ.items():
            if key.startswith("HTTP_"):
                out.append((key[5:].replace("_", "-").title(), str(value)))
        for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            if self.environ.get(key):
                out.append((key.replace("_", "-").title(), str(self.environ[key])))
        return out

    @property
    def base_url(self) -> str:
        scheme = self.header("X-Forwarded-Proto") or str(self.environ.get("wsgi.url_scheme"))
        return f"{scheme}://{self.header('Host', 'localhost:8080')}"

    @property
    def hostname(self) -> str:
        return self.header("Host", "localhost").rsplit(":", 1)[0]


@dataclass
class Response:
    body: bytes | str = b""
    status: int = 200
    content_type: str = "text/html; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)

    def wsgi(self, start_response: Callable[..., object]) -> Iterable[bytes]:
        body = self.body.encode() if isinstance(self.body, str) else self.body
        status = HTTPStatus(self.status)
        headers = [("Content-Type", self.content_type), *self.headers]
        if status in (HTTPStatus.NO_CONTENT, HTTPStatus.NOT_MODIFIED):
            body, headers = b"", self.headers
        start_response(f"{status.value} {status.phrase}", headers)
        return [body]


def text(body: str, status: int = 200, headers: Headers = ()) -> Response:
    return Response(body, status, "text/plain; charset=utf-8", list(headers))


def esc(value: object) -> str:
    return html.escape(str(value))


# -- page layout --------------------------------------------------------------------------


def page(req: Request, title: str, body: str, status: int = 200, headers: Headers = ()) -> Response:
    doc = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)} · gfe-proxy demo</title>
<link rel="stylesheet" href="/static/css/demo.css">
<link rel="icon" href="/favicon.ico">
<link rel="manifest" href="/site.webmanifest">
<script src="/static/js/demo.js" defer></script>
</head>
<body>
<header class="top">
  <a class="brand" href="/"><img src="/images/logo.svg" alt="" width="28" height="28">
  gfe-proxy demo</a>
  <nav><a href="/headers">headers</a><a href="/env">env</a><a href="/account">account</a>
  <a href="http://{esc(req.hostname)}:8000/">admin&nbsp;↗</a></nav>
</header>
<main>
<h1>{esc(title)}</h1>
{body}
</main>
<footer>Served by <code>main.py</code> on instance
<code>{esc(os.environ.get("GAE_INSTANCE", "?")[:16])}</code>, pid {os.getpid()}.</footer>
</body>
</html>
"""
    return Response(doc, status, headers=list(headers))


def table(rows: Iterable[tuple[str, str]], head: tuple[str, str] = ("", "")) -> str:
    """A two-column table; cells are already HTML."""
    thead = f"<thead><tr><th>{head[0]}</th><th>{head[1]}</th></tr></thead>" if head[0] else ""
    body = "".join(f"<tr><td>{a}</td><td>{b}</td></tr>" for a, b in rows)
    return f"<table>{thead}<tbody>{body}</tbody></table>"


def link(url: str) -> str:
    return f'<a href="{esc(url)}"><code>{esc(url)}</code></a>'


# -- index ---------------------------------------------------------------------------------

STATIC_EXAMPLES = [
    (
        "/static/css/demo.css",
        "<code>static_dir</code>; <code>expiration: 4d 5h</code> "
        "(<code>max-age=363600</code>); <code>X-Demo-Header</code> and CORS from "
        "<code>http_headers</code>; gzip when asked",
    ),
    (
        "/static/js/demo.js",
        "content type from the extension; strong <code>ETag</code> "
        "(weak once gzipped); send <code>If-None-Match</code> for a 304",
    ),
    (
        "/images/logo.png",
        "<code>static_files: assets/img/\\1.\\2</code> with "
        "<code>upload</code>; <code>default_expiration: 1h</code>; never compressed",
    ),
    (
        "/images/logo.svg",
        "same handler, second group picks <code>.svg</code>; "
        "<code>image/svg+xml</code> is compressible",
    ),
    ("/favicon.ico", "a PNG served as <code>image/png</code> by <code>mime_type</code>"),
    ("/robots.txt", "<code>mime_type: text/plain</code>, <code>expiration: 5m</code>"),
    ("/site.webmanifest", "<code>mime_type: application/manifest+json</code>"),
    (
        "/images/missing.png",
        "matches a static handler but no file: the front end's 404, "
        "replaced by <code>errors/default.html</code> (<code>error_handlers</code>)",
    ),
]

DYNAMIC_EXAMPLES = [
    (
        "/headers",
        "what the app received: <code>X-AppEngine-*</code>, "
        "<code>X-Cloud-Trace-Context</code>, <code>traceparent</code>; spoofed ones are gone",
    ),
    ("/env", "<code>GAE_*</code> variables and <code>env_variables</code> from app.yaml"),
    ("/slow?ms=1500", "takes its time; run many at once to watch instances start"),
    (
        "/cookie",
        "sets a cookie and asks for <code>public</code>: the front end makes it "
        "<code>private</code> and adds <code>Expires</code>",
    ),
    (
        "/cached",
        "<code>Cache-Control: public, max-age=60</code>: reload and see "
        "<code>X-GFE-Cache: HIT</code> and <code>Age</code>",
    ),
    (
        "/cached?vary=1",
        "the same with <code>Vary: Accept-Encoding</code>: one entry per "
        "encoding instead of one for everyone",
    ),
    (
        "/gzip-text",
        "about 200 KB of text: compare <code>Content-Length</code> with and "
        "without <code>Accept-Encoding: gzip</code>",
    ),
    ("/large?kb=2048", "a 2 MB body, buffered whole like App Engine does"),
    ("/large?kb=33000", "over 32 MB: the front end answers 500 with an empty body"),
    ("/status/418", "the app picks the status: <code>/status/&lt;code&gt;</code>"),
    (
        "/status/503",
        "an error made by the app passes untouched; <code>error_handlers</code> "
        "only replace the front end's own error pages",
    ),
    ("/no/such/page", "the app's own 404 (the catch-all handler sent it here)"),
]

LOGIN_EXAMPLES = [
    ("/_ah/login?continue=/account", "sign in as anyone (tick admin for /admin)"),
    (
        "/account",
        "<code>login: required</code>: redirects to sign-in, then shows "
        "<code>X-AppEngine-User-*</code>",
    ),
    ("/admin", "<code>login: admin</code>: 401 for a signed-in non-admin"),
    ("/api/private", "<code>auth_fail_action: unauthorized</code>: a 401, no redirect"),
    ("/secure", "<code>secure: always</code>: a 301 to https on :8443 (self-signed)"),
    ("/_ah/logout?continue=/", "sign out"),
]


def index(req: Request) -> Response:
    def rows(examples: list[tuple[str, str]]) -> list[tuple[str, str]]:
        return [(link(url), what) for url, what in examples]

    body = f"""
<p class="lead">{esc(os.environ.get("DEMO_GREETING", "Hello"))}! This app is served the way
App Engine serves it: <strong>static files</strong> by the front end itself, everything else
by <code>gunicorn main:app</code> instances behind it, with production's header, caching,
compression and error rules in between. Watch instances and the cache on the
<a href="http://{esc(req.hostname)}:8000/">admin page</a>.</p>

<h2>Static files <small>served by gfe-proxy; main.py never sees them</small></h2>
{table(rows(STATIC_EXAMPLES), ("URL", "What it shows"))}

<h2>Dynamic pages <small>served by main.py</small></h2>
{table(rows(DYNAMIC_EXAMPLES), ("URL", "What it shows"))}

<h2>Sign-in and HTTPS</h2>
{table(rows(LOGIN_EXAMPLES), ("URL", "What it shows"))}

<h2>Try it with curl</h2>
{cheat_sheet(req)}
"""
    return page(req, "What the front end does", body)


def cheat_sheet(req: Request) -> str:
    base = req.base_url.replace("https://", "http://").replace(":8443", ":8080")
    host = req.hostname
    lines = f"""# Headers the front end sets: Server, Date, Content-Length, X-Cloud-Trace-Context
curl -sD - -o /dev/null {base}/

# Spoofed App Engine headers are stripped before the app sees them
curl -s {base}/headers?format=json -H 'X-AppEngine-Country: US' -H 'X-Google-Test: 1'

# Your own trace id is kept
curl -s {base}/headers?format=json \\
     -H 'X-Cloud-Trace-Context: 0123456789abcdef0123456789abcdef/1;o=1'

# Static caching: Cache-Control, Expires, ETag, then a conditional request (304)
curl -sD - -o /dev/null {base}/static/css/demo.css
curl -sD - -o /dev/null {base}/static/css/demo.css -H 'If-None-Match: "<ETag from above>"'

# Compression happens only when asked (add --compressed to decode the body)
curl -sD - -o /dev/null {base}/gzip-text
curl -sD - -o /dev/null {base}/gzip-text -H 'Accept-Encoding: gzip'

# The edge cache: the second response is a HIT with an Age
curl -sD - -o /dev/null {base}/cached; curl -sD - -o /dev/null {base}/cached

# A cookie makes a dynamic response private
curl -sD - -o /dev/null {base}/cookie

# Scaling: 30 slow requests at once, then look at http://{host}:8000/
seq 30 | xargs -P 30 -I{{}} curl -s -o /dev/null '{base}/slow?ms=3000'

# Deadline: restart with --request-timeout 2 and you get errors/timeout.html
curl -si '{base}/slow?ms=5000'

# Sign-in without a browser (the cookie Google's dev server used)
curl -si {base}/account
curl -si -b 'dev_appserver_login=ada@example.com:True:1' {base}/account

# secure: always redirects to the HTTPS listener (-k: the certificate is self-signed)
curl -si {base}/secure; curl -sik https://{host}:8443/secure
"""
    return f'<pre class="cheat"><code>{esc(lines)}</code></pre>'


# -- request and environment ------------------------------------------------------------


def headers_page(req: Request) -> Response:
    headers = req.headers()
    if req.arg("format") == "json":
        data = {
            "headers": [list(h) for h in headers],
            "remote_addr": req.environ.get("REMOTE_ADDR"),
        }
        return Response(json.dumps(data, indent=2) + "\n", content_type="application/json")
    rows = []
    for name, value in headers:
        mark = ' class="added"' if name.lower().startswith(FRONT_END_HEADERS) else ""
        rows.append((f"<code{mark}>{esc(name)}</code>", f"<code>{esc(value)}</code>"))
    trace_id, _, span = req.header("X-Cloud-Trace-Context").partition("/")
    trace = [
        ("trace id", f"<code>{esc(trace_id) or '–'}</code>"),
        ("span id", f"<code>{esc(span.split(';')[0]) or '–'}</code>"),
        ("traceparent", f"<code>{esc(req.header('traceparent')) or '–'}</code>"),
    ]
    body = f"""
<p>The headers <code>main.py</code> received, in order. <span class="added">Highlighted</span>
ones were added by the front end. Clients cannot spoof them: send
<code>X-AppEngine-Country: US</code> and you still see the front end's value;
<code>X-Google-*</code> headers never arrive at all.
JSON: {link("/headers?format=json")}</p>
{table(rows, ("Header", "Value"))}
<h2>Trace context</h2>
{table(trace)}
<p>The response echoes the same trace as <code>X-Cloud-Trace-Context</code>; the access log
carries it too.</p>
"""
    return page(req, "Request headers", body)


def env_page(req: Request) -> Response:
    names = sorted(n for n in os.environ if n.startswith(("GAE_", "GOOGLE_", "DEMO_")))
    names += [n for n in ("PORT", "SERVER_SOFTWARE") if n in os.environ]
    rows = [(f"<code>{esc(n)}</code>", f"<code>{esc(os.environ[n])}</code>") for n in names]
    uptime = f"{time.time() - STARTED_AT:.0f} s"
    body = f"""
<p>Set by gfe-proxy for each instance as App Engine does. <code>DEMO_*</code> come from
<code>env_variables</code> in app.yaml. This instance has been up for {uptime}.</p>
{table(rows, ("Variable", "Value"))}
"""
    return page(req, "Instance environment", body)


# -- response behaviour -----------------------------------------------------------------


def slow(req: Request) -> Response:
    try:
        ms = max(0, min(int(req.arg("ms", "1000")), 15 * 60 * 1000))
    except ValueError:
        return text("ms must be a whole number of milliseconds\n", 400)
    time.sleep(ms / 1000)
    return text(f"slept {ms} ms on instance {os.environ.get('GAE_INSTANCE', '?')[:16]}\n")


def cookie(req: Request) -> Response:
    jar = SimpleCookie()
    jar.load(req.header("Cookie"))
    previous = jar["demo_visits"].value if "demo_visits" in jar else "0"
    visits = (int(previous) if previous.isdigit() else 0) + 1
    body = f"""
<p>This response set <code>demo_visits={visits}</code> and asked for
<code>Cache-Control: public, max-age=300</code>. A shared cache must never store a response
that sets a cookie, so the front end rewrote it: look at the response headers
(<code>curl -si {esc(req.base_url)}/cookie</code>): <code>public</code> is gone,
<code>private</code> added, and <code>Expires</code> is now.</p>
<p>Reload to count visits.</p>
"""
    return page(
        req,
        "A cookie",
        body,
        headers=[
            ("Set-Cookie", f"demo_visits={visits}; Path=/; HttpOnly; SameSite=Lax"),
            ("Cache-Control", "public, max-age=300"),
        ],
    )


def cached(req: Request) -> Response:
    render = next(_cached_renders)
    stamp = time.strftime("%H:%M:%S", time.gmtime())
    vary = req.arg("vary") == "1"
    body = f"""
<p>Rendered at <strong>{stamp} UTC</strong> (render #{render} on this instance).
This response says <code>Cache-Control: public, max-age=60</code>, so the front end keeps it
for a minute: reload, and the time stays put while the response carries
<code>X-GFE-Cache: HIT</code> and a growing <code>Age</code>.</p>
<p>{"With" if vary else "Without"} <code>Vary: Accept-Encoding</code>. Without it, one cached
entry serves every client, gzipped or not: production does the same, and gfe-proxy logs a
warning when it happens. Compare {link("/cached")} and {link("/cached?vary=1")}.</p>
"""
    headers = [("Cache-Control", "public, max-age=60")]
    if vary:
        headers.append(("Vary", "Accept-Encoding"))
    return page(req, "A cacheable page", body, headers=headers)


def gzip_text(req: Request) -> Response:
    stanza = (
        "The front end compresses text when the client sends Accept-Encoding: gzip.\n"
        "Static files are compressed once and kept; dynamic responses on the way out.\n"
        "Repetitive text like this shrinks a lot, which makes the effect easy to see.\n\n"
    )
    return text(stanza * 800)


def large(req: Request) -> Response:
    try:
        kb = max(0, min(int(req.arg("kb", "1024")), 40 * 1024))
    except ValueError:
        return text("kb must be a whole number of kilobytes\n", 400)
    line = b"0123456789abcdef" * 63 + b"0123456789abcde\n"  # 1024 bytes
    return Response(line * kb, content_type="text/plain; charset=utf-8")


def status(req: Request) -> Response:
    code_text = req.path.removeprefix("/status/")
    try:
        code = HTTPStatus(int(code_text))
    except ValueError:
        return text(f"unknown status {code_text!r}\n", 404)
    if code < 200:
        return text("1xx statuses are not final responses; try 200-599\n", 400)
    location = [("Location", "/")] if 300 <= code < 400 and code != 304 else []
    return text(f"{code.value} {code.phrase}, returned by main.py\n", code.value, location)


# -- sign-in and HTTPS ------------------------------------------------------------------


def user_rows(req: Request) -> list[tuple[str, str]]:
    names = ("Email", "Id", "Nickname", "Organization", "Is-Admin")
    rows = [(f"X-AppEngine-User-{n}", req.header(f"X-AppEngine-User-{n}")) for n in names]
    rows.append(("X-AppEngine-Auth-Domain", req.header("X-AppEngine-Auth-Domain")))
    return [(f"<code>{esc(k)}</code>", f"<code>{esc(v) or '–'}</code>") for k, v in rows]


def account(req: Request) -> Response:
    admin = req.header("X-AppEngine-User-Is-Admin") == "1"
    body = f"""
<p>You are signed in as <strong>{esc(req.header("X-AppEngine-User-Email"))}</strong>
{"(an admin)" if admin else ""}. The front end checked <code>login: required</code> and
passed who you are in these headers, the ones
<code>google.appengine.api.users.get_current_user()</code> reads:</p>
{table(user_rows(req), ("Header", "Value"))}
<p>{link("/admin")} needs an admin. {link("/_ah/logout?continue=/")} signs you out.</p>
"""
    return page(req, "Your account", body)


def admin(req: Request) -> Response:
    body = f"""
<p>Only admins get here (<code>login: admin</code>). Signed-in non-admins get a 401 from the
front end, whatever <code>auth_fail_action</code> says.</p>
{table(user_rows(req), ("Header", "Value"))}
"""
    return page(req, "Admin area", body)


def private_api(req: Request) -> Response:
    data = {"email": req.header("X-AppEngine-User-Email"), "path": req.path}
    return Response(json.dumps(data) + "\n", content_type="application/json")


def secure(req: Request) -> Response:
    https = req.header("X-AppEngine-Https")
    body = f"""
<p>This handler has <code>secure: always</code>: plain-HTTP requests for it are redirected
here with a 301 (<code>redirect_http_response_code</code>).
<code>X-AppEngine-Https: {esc(https) or "–"}</code>,
<code>X-Forwarded-Proto: {esc(req.header("X-Forwarded-Proto")) or "–"}</code>.</p>
"""
    return page(req, "Over HTTPS", body)


def warmup(req: Request) -> Response:
    # SPEC INST-3: sent once per new instance because app.yaml lists inbound_services: warmup.
    print(f"warmup request received by pid {os.getpid()}", flush=True)
    return text("warm\n")


def not_found(req: Request) -> Response:
    body = f"""
<p>No page at <code>{esc(req.path)}</code>. This 404 comes from <code>main.py</code>: the
catch-all handler (<code>url: /.*</code>) sent the request here, and app-made errors pass
through the front end untouched. Compare {link("/images/missing.png")}, a 404 made by the
front end and replaced by <code>errors/default.html</code>.</p>
<p>{link("/")}</p>
"""
    return page(req, "Not found", body, status=404)


# -- routing ------------------------------------------------------------------------------

ROUTES: dict[str, Callable[[Request], Response]] = {
    "/": index,
    "/headers": headers_page,
    "/env": env_page,
    "/slow": slow,
    "/cookie": cookie,
    "/cached": cached,
    "/gzip-text": gzip_text,
    "/large": large,
    "/account": account,
    "/admin": admin,
    "/api/private": private_api,
    "/secure": secure,
    "/_ah/warmup": warmup,
}


def app(environ: dict[str, object], start_response: Callable[..., object]) -> Iterable[bytes]:
    """The WSGI entry point gunicorn loads as `main:app`."""
    req = Request(environ)
    path = req.path
    handler: Callable[[Request], Response]
    if path.startswith("/status/"):
        handler = status
    elif path.startswith("/admin/"):
        handler = admin
    else:
        handler = ROUTES.get(path.rstrip("/") or "/", not_found)
    return handler(req).wsgi(start_response)


if __name__ == "__main__":
    # Without the front end, for a quick look: python main.py, then http://localhost:8081/
    from wsgiref.simple_server import make_server

    port = int(os.environ.get("PORT", "8081"))
    print(f"main.py alone on http://localhost:{port}/ (no front end in between)")
    make_server("127.0.0.1", port, app).serve_forever()
