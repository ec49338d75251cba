"""Integration tier: a real `gfe-proxy serve` in front of real gunicorn/uvicorn instances.

Each test names the SPEC rule it checks over real HTTP.
"""

from __future__ import annotations

import gzip
import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.proxyproc import APPS, ROOT, RunningProxy, free_port, pid_alive

pytestmark = pytest.mark.integration

MB = 1024 * 1024


@pytest.fixture(scope="module")
def wsgi(proxy_factory) -> RunningProxy:  # type: ignore[no-untyped-def]
    return proxy_factory(str(APPS / "wsgi"))  # type: ignore[no-any-return]


def raw_exchange(port: int, data: bytes, *, read_timeout: float = 10) -> bytes:
    """Send raw bytes, return everything the proxy answers until it closes or goes quiet."""
    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout) as s:
        s.sendall(data)
        chunks = []
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                if b"\r\n\r\n" in b"".join(chunks) and b"Content-Length: 0" not in chunks[0]:
                    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
                    m = re.search(rb"Content-Length: (\d+)", head)
                    if m and len(body) >= int(m.group(1)):
                        break
        except (TimeoutError, ConnectionResetError):
            pass
        return b"".join(chunks)


# -- static files -------------------------------------------------------------------------


def test_route_2_static_dir_serves_files_with_expiration_and_headers(wsgi: RunningProxy) -> None:
    r = wsgi.get("/static/css/site.css")
    assert r.status == 200
    assert r.body == b"body { color: #222; }\n"
    assert r.header("Content-Type") == "text/css"
    # SPEC CFG-3/STATIC-3: "4d 5h" = 363600 s; http_headers added.
    assert r.header("Cache-Control") == "public, max-age=363600"
    assert r.header("X-Static") == "yes"
    assert r.header("Server") == "Google Frontend"
    assert r.header("ETag")


def test_route_1_static_files_back_reference(wsgi: RunningProxy) -> None:
    r = wsgi.get("/img/dot.png")
    assert r.status == 200
    assert r.body.startswith(b"\x89PNG")
    assert r.header("Content-Type") == "image/png"
    assert r.header("Cache-Control") == "public, max-age=3600"  # default_expiration 1h


def test_cfg_5_file_not_matching_upload_is_404(wsgi: RunningProxy) -> None:
    r = wsgi.get("/img/readme.txt")  # url matches, but upload only allows .png
    assert r.status == 404
    assert b"Error: Not Found" in r.body


@pytest.mark.parametrize("path", ["/static/.hidden", "/static/notes~"], ids=["dotfile", "backup"])
def test_cfg_5_skip_files_are_404(wsgi: RunningProxy, path: str) -> None:
    assert wsgi.get(path).status == 404


def test_static_2_mime_type_overrides_extension(wsgi: RunningProxy) -> None:
    r = wsgi.get("/robots.txt")
    assert r.status == 200
    assert (
        r.header(
            "Content-Type",
        )
        == "text/plain"
    )


def test_route_2_static_dir_itself_is_404(wsgi: RunningProxy) -> None:
    assert wsgi.get("/static/").status == 404


@pytest.mark.parametrize(
    "path",
    [
        "/static/../app.yaml",
        "/static/%2e%2e/app.yaml",
        "/static/..%2fapp.yaml",
        "/static/css/%2e%2e/%2e%2e/main.py",
        "/files/..%2f..%2fconftest.py",
        "/files/%2e%2e/main.py",
        "/static//css/site.css",
        "/static/css%00/site.css",
        "/static/..%5capp.yaml",
    ],
)
def test_static_5_traversal_never_serves_outside_files(wsgi: RunningProxy, path: str) -> None:
    r = wsgi.get(path)
    for secret in (b"runtime:", b"def app", b"import"):
        assert secret not in r.body
    assert r.status in (400, 404) or r.body.startswith(b"catch-all")


def test_static_4_conditional_get_returns_304(wsgi: RunningProxy) -> None:
    etag = wsgi.get("/static/css/site.css").header("ETag")
    assert etag
    r = wsgi.get("/static/css/site.css", headers={"If-None-Match": etag})
    assert r.status == 304
    assert r.body == b""


# -- dynamic requests ---------------------------------------------------------------------


def test_inst_1_script_catch_all_reaches_gunicorn(wsgi: RunningProxy) -> None:
    r = wsgi.get("/some/page?x=1")
    assert r.status == 200
    assert r.body == b"catch-all /some/page"


def test_hdr_1_spoofed_platform_headers_never_reach_the_app(wsgi: RunningProxy) -> None:
    spoofed = [
        ("X-AppEngine-User-Email", "evil@example.com"),
        ("X-Appengine-User-Is-Admin", "1"),
        ("x-appengine-cron", "true"),
        ("X-AppEngine-Country", "US"),
        ("X-Google-Internal", "1"),
        ("Connection", "keep-alive, X-Drop-Me"),
        ("X-Drop-Me", "hop"),
        ("X-Kept", "yes"),
    ]
    seen = wsgi.get("/headers", headers=spoofed).json()["headers"]
    lower = {k.lower(): v for k, v in seen.items()}
    assert "x-appengine-user-email" not in lower
    assert "x-appengine-user-is-admin" not in lower
    assert "x-appengine-cron" not in lower
    assert "x-google-internal" not in lower
    assert "x-drop-me" not in lower
    assert lower["x-kept"] == "yes"
    assert lower["x-appengine-country"] == "ZZ"  # ours, not the client's


def test_hdr_2_platform_headers_added(wsgi: RunningProxy) -> None:
    seen = {k.lower(): v for k, v in wsgi.get("/headers").json()["headers"].items()}
    assert seen["x-appengine-region"] == "?"
    assert seen["x-appengine-city"] == "?"
    assert seen["x-appengine-citylatlong"] == "0.000000,0.000000"
    assert seen["x-appengine-https"] == "off"
    assert seen["x-forwarded-proto"] == "http"
    assert seen["x-forwarded-for"] == "127.0.0.1, 169.254.1.1"
    assert re.fullmatch(r"[0-9a-f]{32}/\d+;o=1", seen["x-cloud-trace-context"])
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", seen["traceparent"])
    assert re.fullmatch(r"[0-9a-f]{8,}", seen["x-appengine-request-log-id"])
    assert int(seen["x-appengine-timeout-ms"]) > 0


def test_hdr_2_incoming_trace_is_kept_and_echoed(wsgi: RunningProxy) -> None:
    trace = "105445aa7843bc8bf206b12000100000"
    r = wsgi.get("/headers", headers={"X-Cloud-Trace-Context": f"{trace}/1;o=1"})
    seen = {k.lower(): v for k, v in r.json()["headers"].items()}
    assert seen["x-cloud-trace-context"].startswith(trace + "/")
    assert r.header("X-Cloud-Trace-Context") == f"{trace};o=1"  # SPEC RESP-1


def test_hdr_3_header_field_over_8kb_is_400(wsgi: RunningProxy) -> None:
    r = wsgi.get("/headers", headers={"X-Big": "a" * (9 * 1024)})
    assert r.status == 400
    assert b"Error: Bad Request" in r.body


def test_hdr_3_body_over_32mb_by_content_length_is_413(wsgi: RunningProxy) -> None:
    head = (f"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {33 * MB}\r\n\r\n").encode()
    answer = raw_exchange(wsgi.port, head)
    assert answer.startswith(b"HTTP/1.1 413")


def test_hdr_3_chunked_body_over_32mb_is_413(wsgi: RunningProxy) -> None:
    with socket.create_connection(("127.0.0.1", wsgi.port), timeout=30) as s:
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"%x\r\n%s\r\n" % (MB, b"z" * MB)
        try:
            for _ in range(34):
                s.sendall(chunk)
            s.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = s.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413")


def test_hdr_3_body_under_limit_is_forwarded(wsgi: RunningProxy) -> None:
    r = wsgi.request("POST", "/echo", body=b"q" * (2 * MB))
    assert r.status == 200
    assert r.body == b"got %d bytes" % (2 * MB)


def test_hdr_4_http10_request_reaches_instance_as_http11(wsgi: RunningProxy) -> None:
    answer = raw_exchange(wsgi.port, b"GET /headers HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
    assert b'"protocol": "HTTP/1.1"' in answer


def test_resp_1_server_date_and_length_set_by_front_end(wsgi: RunningProxy) -> None:
    r = wsgi.get("/some")
    assert r.header("Server") == "Google Frontend"
    assert r.header("Date")
    assert r.header("Content-Length") == str(len(r.body))


def test_resp_2_missing_content_type_becomes_text_html(wsgi: RunningProxy) -> None:
    assert wsgi.get("/no-type").header("Content-Type") == "text/html"


def test_resp_3_dynamic_defaults_to_private(wsgi: RunningProxy) -> None:
    r = wsgi.get("/headers")
    assert r.header("Cache-Control") == "private"
    assert "Accept-Encoding" in (r.header("Vary") or "")


def test_resp_3_set_cookie_makes_public_private(wsgi: RunningProxy) -> None:
    r = wsgi.get("/cookie")
    cc = r.header("Cache-Control") or ""
    assert "public" not in cc
    assert "private" in cc
    assert r.header("Expires")
    assert r.headers.get_all("Set-Cookie") == ["a=1", "b=2"]


def test_resp_5_response_body_over_32mb_is_empty_500(wsgi: RunningProxy) -> None:
    r = wsgi.get("/big?mb=33")
    assert r.status == 500
    assert r.body == b""


def test_resp_5_response_headers_over_8kb_is_502(wsgi: RunningProxy) -> None:
    r = wsgi.get("/many-headers?n=100")
    assert r.status == 502


def test_err_2_app_made_errors_pass_untouched(wsgi: RunningProxy) -> None:
    r = wsgi.get("/status?code=418")
    assert r.status == 418
    assert r.body == b"app-made status"


def test_inst_2_instance_environment(wsgi: RunningProxy) -> None:
    env = wsgi.get("/env").json()
    assert env["GAE_ENV"] == "standard"
    assert env["GAE_SERVICE"] == "default"
    assert env["GAE_RUNTIME"] == "python312"
    assert env["GAE_MEMORY_MB"] == "384"
    assert env["GREETING"] == "hello from app.yaml"
    assert env["PORT"].isdigit()
    assert env["GAE_APPLICATION"].startswith("s~")


def test_route_4_ah_start_is_not_accepted_from_clients(wsgi: RunningProxy) -> None:
    assert wsgi.get("/_ah/start").status == 404
    assert wsgi.get("/_ah/warmup").status == 404


def test_log_1_access_line_per_request(wsgi: RunningProxy) -> None:
    wsgi.get("/logged-path?q=1")
    line = wsgi.wait_for(
        lambda: next((x for x in wsgi.stdout if "/logged-path?q=1" in x), None),
        what="access log line",
    )
    assert '"GET /logged-path?q=1 HTTP/1.1" 200' in line


def test_inst_3_crashed_instance_is_replaced(wsgi: RunningProxy) -> None:
    before = wsgi.get("/pid").body
    r = wsgi.request("POST", "/crash", body=b"")
    assert r.status in (502, 503)
    assert b"Traceback" not in r.body
    after = wsgi.wait_for(
        lambda: (lambda x: x.body if x.status == 200 else None)(wsgi.get("/pid")),
        what="a replacement instance",
    )
    assert after != before


# -- other instance kinds -----------------------------------------------------------------


@pytest.fixture(scope="module")
def two_services(proxy_factory) -> RunningProxy:  # type: ignore[no-untyped-def]
    return proxy_factory(str(APPS / "wsgi"), str(APPS / "asgi"))  # type: ignore[no-any-return]


def test_route_5_host_picks_uvicorn_service(two_services: RunningProxy) -> None:
    r = two_services.get(
        "/x", headers={"Host": "api.localhost", "X-AppEngine-User-Email": "evil@example.com"}
    )
    data = r.json()
    assert data["asgi"] is True
    assert data["service"] == "api"
    assert data["http_version"] == "1.1"
    assert "x-appengine-user-email" not in data["headers"]
    assert two_services.get("/x", headers={"Host": "localhost"}).body == b"catch-all /x"


@pytest.fixture(scope="module")
def gen1(proxy_factory) -> RunningProxy:  # type: ignore[no-untyped-def]
    return proxy_factory(str(APPS / "gen1"))  # type: ignore[no-any-return]


def test_inst_1_gen1_shim_dispatches_back_referenced_script(gen1: RunningProxy) -> None:
    r = gen1.get("/shop/items")
    assert r.status == 200
    assert r.body == b"catalog for /shop/items"


def test_hdr_1_gen1_drops_accept_encoding_and_internal_header(gen1: RunningProxy) -> None:
    r = gen1.get("/", headers={"Accept-Encoding": "gzip", "X-Google-Gfe-Script": "evil.app"})
    # SPEC RESP-4: the app's "Content-Encoding: identity" is dropped; the front end compresses.
    assert r.header("Content-Encoding") == "gzip"
    data = json.loads(gzip.decompress(r.body))
    assert data["handler"] == "main.app"
    assert data["accept_encoding"] is None
    assert data["gfe_script_seen"] is None
    assert data["server_software"].startswith("Development/")


def test_static_1_gen1_static_dir(gen1: RunningProxy) -> None:
    assert gen1.get("/static/hello.txt").body == b"gen1 static\n"


# -- startup and shutdown -----------------------------------------------------------------


def _serve_once(
    *args: str, port: int | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run `gfe-proxy serve ARGS` expecting it to exit on its own (a start-up failure)."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "gfe_proxy",
            "serve",
            *args,
            "--port",
            str(port or free_port()),
            "--admin-port",
            "0",
            "--https-port",
            "0",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_cli_3_app_crashing_at_import_exits_1_with_one_line() -> None:
    done = _serve_once(str(APPS / "broken"))
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("gfe-proxy: ")
    assert "exited with code" in last
    assert "this app fails at import" in last


def test_cli_3_missing_entrypoint_command_exits_1(tmp_path: Path) -> None:
    (tmp_path / "app.yaml").write_text(
        "runtime: python312\nentrypoint: no-such-server-binary --port $PORT\n"
    )
    done = _serve_once(str(tmp_path))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "gfe-proxy: service default: command not found: 'no-such-server-binary'"
    )


def test_cli_3_port_taken_exits_1() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        done = _serve_once(str(APPS / "wsgi"), port=port)
    assert done.returncode == 1
    assert done.stderr.strip() == f"gfe-proxy: port {port} on 127.0.0.1 is already in use"


def test_cli_3_broken_app_yaml_exits_2_with_position(tmp_path: Path) -> None:
    (tmp_path / "app.yaml").write_text("runtime: python312\nhandlers:\n- url: /x\n  scrip: a.b\n")
    done = subprocess.run(
        [sys.executable, "-m", "gfe_proxy", "check", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert re.search(r"app\.yaml:4:3: .*scrip", done.stderr)


def test_cli_3_clean_stop_leaves_no_orphans(proxy_factory) -> None:  # type: ignore[no-untyped-def]
    p = proxy_factory(str(APPS / "wsgi"))
    pids = p.instance_pids()
    assert pids
    assert all(pid_alive(pid) for pid in pids)
    assert p.stop() == 0
    assert not any(pid_alive(pid) for pid in pids)


# -- ERR-2: the app's error_handlers --------------------------------------------------------


@pytest.fixture(scope="module")
def custom_errors(proxy_factory) -> RunningProxy:  # type: ignore[no-untyped-def]
    return proxy_factory(str(APPS / "errors"))  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "path",
    ["/static/missing.txt", "/no/handler/matches", "/_ah/start"],
    ids=["file", "route", "ah"],
)
def test_err_2_default_handler_replaces_proxy_made_errors(
    custom_errors: RunningProxy, path: str
) -> None:
    r = custom_errors.get(path)
    assert r.status == 404
    assert r.body == b"<h1>custom default page</h1>\n"
    assert (r.header("Content-Type") or "").startswith("text/html")


def test_err_2_default_handler_replaces_400(custom_errors: RunningProxy) -> None:
    r = custom_errors.get("/static/here.txt", headers={"X-Big": "a" * 9000})
    assert r.status == 400
    assert r.body == b"<h1>custom default page</h1>\n"


def test_err_2_app_made_404_is_not_replaced(custom_errors: RunningProxy) -> None:
    r = custom_errors.get("/app/x")
    assert r.status == 404
    assert r.body == b"the app's own 404"
    assert custom_errors.get("/static/here.txt").body == b"present\n"


def test_admin_counts_requests_refusals_and_connections_per_listener(
    proxy_factory,  # type: ignore[no-untyped-def]
) -> None:
    p: RunningProxy = proxy_factory(str(APPS / "errors"))

    def http_listener() -> dict[str, object]:
        (found,) = [li for li in p.admin("/api/status").json()["listeners"] if li["port"] == p.port]
        return found  # type: ignore[no-any-return]

    before = http_listener()
    assert before["scheme"] == "http"
    for path in ("/static/here.txt", "/static/missing.txt", "/static/here.txt"):
        p.get(path)
    assert raw_exchange(p.port, b"NOT HTTP AT ALL\r\n\r\n").startswith(b"HTTP/1.1 400")
    with socket.create_connection(("127.0.0.1", p.port)) as idle:
        idle.sendall(b"GET /static/here.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        assert idle.recv(65536).startswith(b"HTTP/1.1 200")  # answered and kept open
        after = http_listener()
        assert after["requests"] == before["requests"] + 4  # type: ignore[operator]
        assert after["refused"] == before["refused"] + 1  # type: ignore[operator]
        assert after["connections"] >= 1  # type: ignore[operator]
    metrics = p.admin("/metrics").body.decode()
    line = f'gfe_client_requests_total{{scheme="http",port="{p.port}"}} {after["requests"]}'
    assert line in metrics
    assert f'gfe_client_refused_total{{scheme="http",port="{p.port}"}} 1' in metrics
