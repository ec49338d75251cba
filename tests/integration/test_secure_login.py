"""Integration tier: the HTTPS listener, secure: redirects and login: over real HTTP and HTTPS.

A real `gfe-proxy serve` with both listeners; the test client trusts only the self-signed
certificate the proxy generated in a throw-away XDG_CACHE_HOME. Each test names its SPEC rule
(SEC-1, SEC-2, LOGIN-1…LOGIN-5, HDR-1).
"""

from __future__ import annotations

import re
import stat
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import pytest

from tests.proxyproc import APPS, Response, RunningProxy, free_port, start_proxy

pytestmark = pytest.mark.integration

COOKIE = "dev_appserver_login"
# SPEC LOGIN-5: the identity headers; only gfe-proxy may send them (HDR-1).
IDENTITY_HEADERS = frozenset(
    {
        "x-appengine-user-email",
        "x-appengine-user-id",
        "x-appengine-user-nickname",
        "x-appengine-user-organization",
        "x-appengine-user-is-admin",
        "x-appengine-auth-domain",
    }
)
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture(scope="module")
def door(proxy_factory) -> RunningProxy:  # type: ignore[no-untyped-def]
    return proxy_factory(str(APPS / "login"), https=True)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def behind_tls_proxy(proxy_factory) -> RunningProxy:  # type: ignore[no-untyped-def]
    """The same app as run behind Traefik or nginx: HTTP only, X-Forwarded-Proto trusted."""
    return proxy_factory(str(APPS / "login"), "--trust-forwarded-proto")  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def sdk(proxy_factory) -> RunningProxy:  # type: ignore[no-untyped-def]
    return proxy_factory(str(APPS / "users_sdk"), https=True)  # type: ignore[no-any-return]


def cookie_pair(r: Response) -> str:
    """``name=value`` of the login cookie a response sets (what a browser sends back)."""
    for value in r.headers.get_all("Set-Cookie") or []:
        if value.startswith(COOKIE + "="):
            return value.split(";", 1)[0]
    raise AssertionError(f"no {COOKIE} cookie in {r.headers.items()}")


def sign_in(proxy: RunningProxy, email: str, *, admin: bool, https: bool = False) -> str:
    """Sign in through the real /_ah/login form; returns the Cookie header value to send."""
    fields = {"action": "Login", "email": email, "continue": "/"}
    if admin:
        fields["admin"] = "True"
    r = proxy.request(
        "POST", "/_ah/login", headers=FORM, body=urlencode(fields).encode(), https=https
    )
    assert r.status == 302, r.body
    return cookie_pair(r)


@pytest.fixture(scope="module")
def identities(door: RunningProxy) -> dict[str, str | None]:
    """Cookie header per identity of the LOGIN tables."""
    return {
        "anonymous": None,
        "user": sign_in(door, "bob@example.com", admin=False),
        "admin": sign_in(door, "root@example.com", admin=True),
        # Looks like an admin's cookie, but has no user id: malformed, so anonymous (LOGIN-3).
        "malformed": f'{COOKIE}="root@example.com:True"',
    }


def get(
    proxy: RunningProxy,
    path: str,
    *,
    https: bool = False,
    cookie: str | None = None,
    **headers: str,
) -> Response:
    port = proxy.https_port if https else proxy.port
    sent = {"Host": f"localhost:{port}", **{k.replace("_", "-"): v for k, v in headers.items()}}
    if cookie is not None:
        sent["Cookie"] = cookie
    return proxy.get(path, headers=sent, https=https)


# --- the HTTPS listener ---------------------------------------------------------------------------


def test_https_listener_serves_the_app_with_the_generated_certificate(door: RunningProxy) -> None:
    r = door.get("/echo", https=True)
    assert r.status == 200
    seen = r.json()["headers"]
    assert seen["x-forwarded-proto"] == "https"
    assert seen["x-appengine-https"] == "on"
    assert door.cert is not None
    assert door.cache_home is not None
    assert door.cert.is_relative_to(door.cache_home / "gfe-proxy")
    assert any(
        f"https listening on https://127.0.0.1:{door.https_port}/" in line for line in door.stdout
    )


def test_https_certificate_is_private_and_reused_on_the_next_start(door: RunningProxy) -> None:
    assert door.cert is not None
    assert door.cache_home is not None
    assert stat.S_IMODE(door.cert.stat().st_mode) == 0o600
    assert stat.S_IMODE((door.cert.parent / "localhost-key.pem").stat().st_mode) == 0o600
    pem = door.cert.read_bytes()
    assert any("https certificate" in line and "(generated;" in line for line in door.stdout)
    again = start_proxy(
        str(APPS / "login"), https=True, env={"XDG_CACHE_HOME": str(door.cache_home)}
    )
    try:
        assert any("https certificate" in line and "(reused;" in line for line in again.stdout)
        assert again.cert == door.cert
        assert again.cert.read_bytes() == pem
        assert again.get("/echo", https=True).status == 200
    finally:
        again.stop()


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (["--cert", "cert.pem"], 2, "--cert and --key must be given together"),
        (["--cert", "bad.pem", "--key", "bad.pem"], 1, "not a PEM certificate and its private key"),
    ],
    ids=["cert-without-key", "unloadable-pair"],
)
def test_cli_3_certificate_problems_are_one_line(
    tmp_path: Path, args: list[str], status: int, message: str
) -> None:
    (tmp_path / "bad.pem").write_text("not a certificate\n")
    cmd = [sys.executable, "-m", "gfe_proxy", "serve", str(APPS / "login"), "--port", "0"]
    cmd += ["--admin-port", "0", "--https-port", str(free_port()), *args]
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == status
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert message in done.stderr
    assert "Traceback" not in done.stderr


# --- SEC-1 ----------------------------------------------------------------------------------------

CODES = ["default", "301", "302", "303", "307"]


@pytest.mark.parametrize("code", CODES)
@pytest.mark.parametrize("scheme", ["http", "https"])
@pytest.mark.parametrize("secure", ["optional", "always", "never"])
def test_sec_1_secure_table(door: RunningProxy, secure: str, scheme: str, code: str) -> None:
    path = f"/sec/{secure}/{code}/page"
    r = get(door, path + "?q=1&r=%20x", https=scheme == "https")
    status = 302 if code == "default" else int(code)
    if secure == "always" and scheme == "http":
        assert r.status == status
        assert r.header("Location") == f"https://localhost:{door.https_port}{path}?q=1&r=%20x"
    elif secure == "never" and scheme == "https":
        assert r.status == status
        assert r.header("Location") == f"http://localhost:{door.port}{path}"  # query dropped
    else:
        assert r.status == 200
        assert r.json()["path"] == path
        assert r.json()["query"] == "q=1&r=%20x"
    assert r.header("Server") == "Google Frontend"


@pytest.mark.parametrize(
    ("path", "https", "location"),
    [
        ("/static-sec/always?v=2", False, "https://localhost:{https}/static-sec/always?v=2"),
        ("/static-sec/always?v=2", True, None),
        ("/static-sec/never?v=2", True, "http://localhost:{http}/static-sec/never"),
        ("/static-sec/never?v=2", False, None),
    ],
    ids=["always-http", "always-https", "never-https", "never-http"],
)
def test_sec_1_static_handlers(
    door: RunningProxy, path: str, https: bool, location: str | None
) -> None:
    r = get(door, path, https=https)
    if location is None:
        assert r.status == 200
        assert r.body == b"hello, static\n"
    else:
        assert r.status == 301
        assert r.header("Location") == location.format(https=door.https_port, http=door.port)


def test_sec_1_redirect_keeps_the_host_name_and_lands_on_https(door: RunningProxy) -> None:
    r = door.get("/sec/always/default/x?y=1", headers={"Host": f"127.0.0.1:{door.port}"})
    assert r.status == 302
    location = r.header("Location")
    assert location == f"https://127.0.0.1:{door.https_port}/sec/always/default/x?y=1"
    parts = urlsplit(location)
    followed = door.get(f"{parts.path}?{parts.query}", https=True)
    assert followed.status == 200
    assert followed.json()["headers"]["x-forwarded-proto"] == "https"


def test_sec_1_redirect_of_head_has_no_body(door: RunningProxy) -> None:
    r = door.request("HEAD", "/sec/always/301", headers={"Host": f"localhost:{door.port}"})
    assert r.status == 301
    assert r.body == b""
    assert r.header("Location") == f"https://localhost:{door.https_port}/sec/always/301"


def test_hsts_from_http_headers_only_over_https(door: RunningProxy) -> None:
    assert get(door, "/static-hsts", https=True).header("Strict-Transport-Security") == (
        "max-age=31536000"
    )
    plain = get(door, "/static-hsts")
    assert plain.status == 200
    assert plain.header("Strict-Transport-Security") is None


# --- SEC-2 ----------------------------------------------------------------------------------------


def test_sec_2_untrusted_forwarded_proto_is_ignored(door: RunningProxy) -> None:
    r = get(door, "/sec/always/default", X_Forwarded_Proto="https")
    assert r.status == 302
    assert r.header("Location") == f"https://localhost:{door.https_port}/sec/always/default"
    seen = get(door, "/echo", X_Forwarded_Proto="https").json()["headers"]
    assert seen["x-forwarded-proto"] == "http"
    assert seen["x-appengine-https"] == "off"
    assert (
        get(door, "/static-hsts", X_Forwarded_Proto="https").header("Strict-Transport-Security")
        is None
    )


def test_sec_2_trusted_forwarded_proto_sets_the_scheme(behind_tls_proxy: RunningProxy) -> None:
    p = behind_tls_proxy
    r = get(p, "/sec/always/default?a=1", X_Forwarded_Proto="https")
    assert r.status == 200
    seen = r.json()["headers"]
    assert seen["x-forwarded-proto"] == "https"
    assert seen["x-appengine-https"] == "on"
    assert (
        get(p, "/static-hsts", X_Forwarded_Proto="https").header("Strict-Transport-Security")
        == "max-age=31536000"
    )
    # Behind the TLS proxy the public ports are the default ones: no port in the target.
    r = get(p, "/sec/always/default?a=1", X_Forwarded_Proto="http", Host="app.example.test")
    assert r.status == 302
    assert r.header("Location") == "https://app.example.test/sec/always/default?a=1"
    r = get(p, "/sec/never/default?a=1", X_Forwarded_Proto="https", Host="app.example.test")
    assert r.header("Location") == "http://app.example.test/sec/never/default"


# --- LOGIN-1, LOGIN-2, LOGIN-3, LOGIN-5 -----------------------------------------------------------

LOGIN_ROWS = [
    (login, action, who)
    for login in ("optional", "required", "admin")
    for action in ("redirect", "unauthorized")
    for who in ("anonymous", "user", "admin", "malformed")
]


def _expected(login: str, action: str, who: str) -> str:
    signed_in = who in ("user", "admin")
    if login == "optional" or (login == "required" and signed_in) or who == "admin":
        return "allow"
    if signed_in:  # a non-admin on an admin page: SPEC LOGIN-2
        return "401"
    return "302" if action == "redirect" else "401"


@pytest.mark.parametrize(
    ("login", "action", "who"), LOGIN_ROWS, ids=["-".join(r) for r in LOGIN_ROWS]
)
def test_login_1_2_3_table(
    door: RunningProxy, identities: dict[str, str | None], login: str, action: str, who: str
) -> None:
    path = f"/login/{login}/{action}/page?x=1"
    r = get(door, path, cookie=identities[who])
    expected = _expected(login, action, who)
    if expected == "allow":
        assert r.status == 200
        seen = r.json()["headers"]
        if who in ("user", "admin"):
            # SPEC LOGIN-5: the identity the bundled-services SDK reads.
            email = "bob@example.com" if who == "user" else "root@example.com"
            assert seen["x-appengine-user-email"] == email
            assert seen["x-appengine-user-nickname"] == email
            assert re.fullmatch(r"1\d{20}", seen["x-appengine-user-id"])
            assert seen["x-appengine-user-is-admin"] == ("1" if who == "admin" else "0")
            assert seen["x-appengine-auth-domain"] == "gmail.com"
        else:
            assert not IDENTITY_HEADERS & seen.keys()
    elif expected == "302":
        assert r.status == 302
        continue_url = f"http://localhost:{door.port}{path}"
        assert r.header("Location") == "/_ah/login?continue=" + quote(continue_url, safe="")
    else:
        assert r.status == 401
        assert r.header("Content-Type") == "text/html; charset=utf-8"
        message = "not authorized" if who in ("user", "admin") else "Login required"
        assert message.encode() in r.body


def test_login_1_static_handler_is_protected_too(
    door: RunningProxy, identities: dict[str, str | None]
) -> None:
    assert get(door, "/static-login/admin").status == 401
    assert get(door, "/static-login/admin", cookie=identities["user"]).status == 401
    r = get(door, "/static-login/admin", cookie=identities["admin"])
    assert r.status == 200
    assert r.body == b"hello, static\n"


def test_login_1_secure_redirect_comes_before_login(door: RunningProxy) -> None:
    # secure: is checked first, so the browser signs in on the scheme it will end up using.
    r = get(door, "/sec/always/default")
    assert r.status == 302
    assert (r.header("Location") or "").startswith("https://")


# --- LOGIN-4: sign in and out ---------------------------------------------------------------------


def test_login_4_sign_in_page_is_a_form(door: RunningProxy) -> None:
    r = get(door, "/_ah/login?continue=%2Faccount%3Fx%3D1")
    assert r.status == 200
    assert r.header("Content-Type") == "text/html; charset=utf-8"
    assert r.header("Cache-Control") == "no-store"
    assert "frame-ancestors 'none'" in (r.header("Content-Security-Policy") or "")
    page = r.body.decode()
    assert 'name="email"' in page
    assert 'name="admin" value="True"' in page
    assert 'name="continue" value="/account?x=1"' in page


def test_login_4_full_redirect_flow(door: RunningProxy) -> None:
    r = get(door, "/login/required/redirect/flow?step=1")
    assert r.status == 302
    to_login = urlsplit(r.header("Location") or "")
    assert to_login.path == "/_ah/login"
    continue_url = parse_qs(to_login.query)["continue"][0]
    assert continue_url == f"http://localhost:{door.port}/login/required/redirect/flow?step=1"
    fields = urlencode({"action": "Login", "email": "carol@example.com", "continue": continue_url})
    signed = door.request(
        "POST",
        "/_ah/login",
        headers={**FORM, "Host": f"localhost:{door.port}"},
        body=fields.encode(),
    )
    assert signed.status == 302
    assert signed.header("Location") == continue_url
    cookie = cookie_pair(signed)
    assert re.fullmatch(COOKIE + r'="carol@example\.com:False:1\d{20}"', cookie)
    back = get(door, "/login/required/redirect/flow?step=1", cookie=cookie)
    assert back.status == 200
    assert back.json()["headers"]["x-appengine-user-email"] == "carol@example.com"


def test_login_4_sign_in_by_get_as_dev_appserver_allows(door: RunningProxy) -> None:
    query = urlencode(
        {"action": "Login", "email": "dave@example.com", "admin": "True", "continue": "/x"}
    )
    r = get(door, "/_ah/login?" + query)
    assert r.status == 302
    assert r.header("Location") == "/x"
    cookie = cookie_pair(r)
    assert ":True:" in cookie
    assert get(door, "/login/admin/unauthorized", cookie=cookie).status == 200


def test_login_4_sign_in_over_https_counts_on_http(door: RunningProxy) -> None:
    cookie = sign_in(door, "erin@example.com", admin=False, https=True)
    r = get(door, "/login/required/unauthorized", cookie=cookie)
    assert r.status == 200
    assert r.json()["headers"]["x-appengine-user-email"] == "erin@example.com"


def test_login_4_continue_to_another_site_goes_home(door: RunningProxy) -> None:
    query = urlencode(
        {"action": "Login", "email": "a@example.com", "continue": "https://evil.example/"}
    )
    r = get(door, "/_ah/login?" + query)
    assert r.status == 302
    assert r.header("Location") == "/"


def test_login_4_bad_email_shows_the_form_with_an_error(door: RunningProxy) -> None:
    body = urlencode({"action": "Login", "email": "<b>not an email", "continue": "/"}).encode()
    r = door.request("POST", "/_ah/login", headers=FORM, body=body)
    assert r.status == 400
    assert b"not an email address" in r.body
    assert b"<b>not" not in r.body
    assert r.header("Set-Cookie") is None


def test_login_4_signed_in_user_sees_who_they_are(
    door: RunningProxy, identities: dict[str, str | None]
) -> None:
    r = get(door, "/_ah/login", cookie=identities["admin"])
    assert b"Signed in as <strong>root@example.com</strong> (administrator)" in r.body


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/_ah/logout?continue=%2Fbye", None),
        ("POST", "/_ah/logout", b"continue=%2Fbye"),
        ("GET", "/_ah/login?action=Logout&continue=%2Fbye", None),
        ("POST", "/_ah/login", b"action=Logout&continue=%2Fbye"),
    ],
    ids=["logout-get", "logout-post", "login-action-logout-get", "login-action-logout-post"],
)
def test_login_4_sign_out_clears_the_cookie(
    door: RunningProxy,
    identities: dict[str, str | None],
    method: str,
    path: str,
    body: bytes | None,
) -> None:
    headers = {**FORM, "Cookie": identities["user"] or ""}
    r = door.request(method, path, headers=headers, body=body)
    assert r.status == 302
    assert r.header("Location") == "/bye"
    cleared = [v for v in r.headers.get_all("Set-Cookie") or [] if v.startswith(COOKIE + "=")]
    assert len(cleared) == 1
    assert cleared[0].startswith(f'{COOKIE}="";')
    assert "Max-Age=0" in cleared[0]
    # The browser now sends the emptied cookie: anonymous again.
    assert get(door, "/login/required/unauthorized", cookie=f'{COOKIE}=""').status == 401


def test_login_4_reserved_paths_never_reach_the_app(door: RunningProxy) -> None:
    r = get(door, "/_ah/login")
    assert r.status == 200
    assert b"<form" in r.body  # ours, not the catch-all handler's JSON


# --- HDR-1: no client header is an identity -------------------------------------------------------

SPOOFED = [
    ("X-AppEngine-User-Is-Admin", "1"),
    ("x-appengine-user-is-admin", "1"),
    ("X-APPENGINE-USER-IS-ADMIN", "1"),
    ("X-AppEngine-Cron", "true"),
    ("x-Appengine-cron", "true"),
    ("X-AppEngine-User-Email", "mallory@example.com"),
    ("X-APPENGINE-USER-EMAIL", "mallory@example.com"),
    ("X-AppEngine-User-Id", "1"),
    ("X-AppEngine-Auth-Domain", "example.com"),
    ("X-Google-Apps-Metadata", "domain=example.com"),
    ("x-google-internal-skipadmincheck", "true"),
    ("X-GOOGLE-REAL-IP", "10.0.0.1"),
]
SPOOF_IDS = [f"{name}" for name, _ in SPOOFED]


@pytest.mark.parametrize(("name", "value"), SPOOFED, ids=SPOOF_IDS)
def test_hdr_1_spoofed_header_never_reaches_the_app(
    door: RunningProxy, name: str, value: str
) -> None:
    for https in (False, True):
        r = door.get("/echo", headers=[(name, value)], https=https)
        assert r.status == 200
        seen = r.json()["headers"]
        assert name.lower() not in seen
        assert not [h for h in seen if h.startswith("x-google")]
        assert not IDENTITY_HEADERS & seen.keys()
        assert "x-appengine-cron" not in seen


@pytest.mark.parametrize("action", ["redirect", "unauthorized"])
@pytest.mark.parametrize("who", ["anonymous", "user"])
def test_hdr_1_spoofed_headers_never_satisfy_login_admin(
    door: RunningProxy, identities: dict[str, str | None], action: str, who: str
) -> None:
    headers = [*SPOOFED]
    if identities[who] is not None:
        headers.append(("Cookie", identities[who] or ""))
    r = door.get(f"/login/admin/{action}", headers=headers)
    if who == "user" or action == "unauthorized":
        assert r.status == 401
    else:
        assert r.status == 302


# --- LOGIN-5 with Google's own SDK (appengine-python-standard, wrap_wsgi_app) ---------------------


def test_login_5_sdk_anonymous_over_https(sdk: RunningProxy) -> None:
    seen = sdk.get("/whoami", https=True).json()
    assert seen["signed_in"] is False
    assert seen["is_admin"] is False
    assert seen["url_scheme"] == "https"


def test_login_5_sdk_sees_the_signed_in_user(sdk: RunningProxy) -> None:
    cookie = sign_in(sdk, "alice@gmail.com", admin=False, https=True)
    value = cookie.split("=", 1)[1].strip('"')
    expected_id = value.rsplit(":", 1)[1]
    seen = sdk.get("/whoami", headers={"Cookie": cookie}, https=True).json()
    assert seen == {
        "signed_in": True,
        "email": "alice@gmail.com",
        "user_id": expected_id,
        "nickname": "alice",
        "auth_domain": "gmail.com",
        "is_admin": False,
        "url_scheme": "https",
        "https": "on",
    }
    plain = sdk.get("/whoami", headers={"Cookie": cookie}).json()
    assert plain["email"] == "alice@gmail.com"
    assert plain["url_scheme"] == "http"
    assert sdk.get("/admin-only", headers={"Cookie": cookie}, https=True).status == 401


def test_login_5_sdk_sees_an_admin(sdk: RunningProxy) -> None:
    cookie = sign_in(sdk, "root@example.com", admin=True)
    seen = sdk.get("/whoami", headers={"Cookie": cookie}, https=True).json()
    assert seen["email"] == "root@example.com"
    assert seen["nickname"] == "root@example.com"
    assert seen["is_admin"] is True
    r = sdk.get("/admin-only", headers={"Cookie": cookie}, https=True)
    assert r.status == 200
    assert r.json()["is_admin"] is True


def test_hdr_1_sdk_ignores_spoofed_identity_headers(sdk: RunningProxy) -> None:
    seen = sdk.get("/whoami", headers=SPOOFED, https=True).json()
    assert seen["signed_in"] is False
    assert seen["is_admin"] is False
    assert sdk.get("/admin-only", headers=SPOOFED).status == 302


def test_login_5_sdk_a_malformed_cookie_is_anonymous(sdk: RunningProxy) -> None:
    seen = sdk.get("/whoami", headers={"Cookie": f'{COOKIE}="root@example.com:True"'}).json()
    assert seen["signed_in"] is False
    assert seen["is_admin"] is False
