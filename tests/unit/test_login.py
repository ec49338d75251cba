"""SPEC SEC-1, SEC-2, LOGIN-1…LOGIN-5: the pure secure:/login: rules (gfe_proxy.login)."""

from __future__ import annotations

import subprocess
import sys
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gfe_proxy.config import Handler
from gfe_proxy.headers import UserInfo
from gfe_proxy.login import (
    COOKIE_NAME,
    Allow,
    Redirect,
    ShowForm,
    SignIn,
    SignOut,
    Unauthorized,
    clear_cookie,
    cookie_value,
    effective_scheme,
    host_name,
    login_action,
    login_decision,
    login_page_html,
    login_url,
    parse_cookie_value,
    redirect_html,
    request_url,
    safe_continue,
    secure_redirect,
    set_cookie,
    unauthorized_html,
    user_from_cookies,
    user_id_for,
    user_info,
    valid_email,
)

USER = user_info("bob@example.com", False)
ADMIN = user_info("root@example.com", True)


def handler(**kw: object) -> Handler:
    return Handler(url="/.*", script="auto", **kw)  # type: ignore[arg-type]


# --- LOGIN-3: the dev_appserver cookie ----------------------------------------------------------


def test_login_3_user_id_matches_dev_appserver() -> None:
    # dev_appserver's cookie for test@example.com reads "test@example.com:False:18580…"
    # (the value shown in public write-ups of its /_ah/login); the id is 21 digits.
    assert user_id_for("test@example.com") == "185804764220139124118"
    assert user_id_for("Test@Example.COM") == user_id_for("test@example.com")


@given(st.emails())
def test_login_3_user_id_is_21_digits_starting_with_1(email: str) -> None:
    uid = user_id_for(email)
    assert len(uid) == 21
    assert uid.isdigit()
    assert uid.startswith("1")


def test_login_3_cookie_value_is_dev_appserver_format() -> None:
    assert cookie_value("test@example.com", False) == "test@example.com:False:185804764220139124118"
    assert cookie_value("a@b.co", True).startswith("a@b.co:True:1")


def test_login_4_set_cookie_reads_back_with_python_cookies() -> None:
    # Python's http.cookies is what dev_appserver and its tools use to read the cookie.
    jar: SimpleCookie = SimpleCookie()
    jar.load(set_cookie("test@example.com", True))
    morsel = jar[COOKIE_NAME]
    assert morsel.value == "test@example.com:True:185804764220139124118"
    assert morsel["path"] == "/"
    assert morsel["httponly"] is True
    assert not morsel["secure"]  # an HTTPS sign-in must also count on plain HTTP


def test_login_4_clear_cookie_expires_it() -> None:
    jar: SimpleCookie = SimpleCookie()
    jar.load(clear_cookie())
    morsel = jar[COOKIE_NAME]
    assert morsel.value == ""
    assert morsel["max-age"] == "0"
    assert morsel["path"] == "/"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('"bob@example.com:False:123"', user_info("bob@example.com", False, user_id="123")),
        ("bob@example.com:True:123", user_info("bob@example.com", True, user_id="123")),
        (
            '"first.last+tag@sub.example.org:False:185804764220139124118"',
            user_info("first.last+tag@sub.example.org", False, user_id="185804764220139124118"),
        ),
    ],
    ids=["quoted", "unquoted-admin", "plus-and-subdomain"],
)
def test_login_3_cookie_parses(value: str, expected: UserInfo) -> None:
    assert parse_cookie_value(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        '""',
        "bob@example.com",
        "bob@example.com:True",
        "bob@example.com:True:",
        "bob@example.com:true:123",
        "bob@example.com:1:123",
        "bob@example.com:Yes:123",
        "bob@example.com:True:12a",
        "bob@example.com:True:123:extra",
        ":True:123",
        "bob:True:123",
        "bob@:True:123",
        "@example.com:True:123",
        "bob smith@example.com:True:123",
        "bob@exa mple.com:True:123",
        "bob@example.com\r\nX-Evil: 1:True:123",
        '"bob@example.com:True:123',
        "bob@example.com:True:" + "1" * 33,
        "b" * 250 + "@example.com:True:123",
        "bøb@example.com:True:123",
    ],
    ids=[
        "empty",
        "empty-quoted",
        "email-only",
        "two-fields",
        "empty-id",
        "lowercase-true",
        "numeric-admin",
        "yes-admin",
        "non-digit-id",
        "four-fields",
        "no-email",
        "no-at",
        "no-domain",
        "no-local-part",
        "space-in-local",
        "space-in-domain",
        "crlf-injection",
        "unbalanced-quote",
        "id-too-long",
        "email-too-long",
        "non-ascii",
    ],
)
def test_login_3_malformed_cookie_is_anonymous(value: str) -> None:
    assert parse_cookie_value(value) is None


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([], None),
        (["theme=dark; lang=en"], None),
        ([f'theme=dark; {COOKIE_NAME}="bob@example.com:False:1"; x=y'], "bob@example.com"),
        (["theme=dark", f"{COOKIE_NAME}=root@example.com:True:2"], "root@example.com"),
        ([f'{COOKIE_NAME}="broken"; {COOKIE_NAME}="bob@example.com:False:1"'], None),
        ([f'x{COOKIE_NAME}="bob@example.com:False:1"'], None),
        ([f"{COOKIE_NAME}"], None),
    ],
    ids=[
        "no-cookie-header",
        "other-cookies",
        "among-others",
        "second-header",
        "first-malformed-wins",
        "similar-name",
        "no-value",
    ],
)
def test_login_3_user_from_cookie_headers(headers: list[str], expected: str | None) -> None:
    user = user_from_cookies(headers)
    assert (user.email if user else None) == expected


@given(st.text())
def test_login_3_cookie_parsing_never_raises(text: str) -> None:
    user = parse_cookie_value(text)
    assert user is None or valid_email(user.email)
    user_from_cookies([text, f"{COOKIE_NAME}={text}"])


@given(st.emails(), st.booleans())
def test_login_3_cookie_round_trips(email: str, admin: bool) -> None:
    if not valid_email(email):
        return  # hypothesis' RFC 5322 addresses include forms we refuse at sign-in
    jar: SimpleCookie = SimpleCookie()
    jar.load(set_cookie(email, admin))
    assert parse_cookie_value(jar[COOKIE_NAME].value) == user_info(email, admin)
    assert user_from_cookies([jar.output(header="", attrs=[]).strip()]) == user_info(email, admin)


@pytest.mark.parametrize(
    ("email", "nickname"),
    [
        ("alice@gmail.com", "alice"),
        ("Alice@GMail.com", "Alice"),
        ("bob@example.com", "bob@example.com"),
    ],
    ids=["auth-domain", "auth-domain-any-case", "other-domain"],
)
def test_login_5_nickname_follows_users_api(email: str, nickname: str) -> None:
    assert user_info(email, False).nickname == nickname


# --- hosts, SEC-2 ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("localhost", "localhost"),
        ("LocalHost:8080", "localhost"),
        ("127.0.0.1:8443", "127.0.0.1"),
        ("[::1]:8443", "[::1]"),
        ("[0:0::1]", "[::1]"),
        ("app.localhost", "app.localhost"),
        ("v1-dot-api-dot-app.localhost:8080", "v1-dot-api-dot-app.localhost"),
        ("", None),
        ("evil.com/path", None),
        ("a b", None),
        ("host:port", None),
        ("[::1", None),
        ("[nothex]:80", None),
        ("[::1]x", None),
        ("user@host", None),
    ],
    ids=[
        "name",
        "name-port-case",
        "ipv4",
        "ipv6",
        "ipv6-normalised",
        "dotted",
        "dot-service",
        "empty",
        "slash",
        "space",
        "bad-port",
        "open-bracket",
        "bad-ipv6",
        "junk-after-bracket",
        "userinfo",
    ],
)
def test_sec_1_host_name(host: str, expected: str | None) -> None:
    assert host_name(host) == expected


@pytest.mark.parametrize(
    ("listener", "forwarded", "trusted", "expected"),
    [
        ("http", ["https"], False, "http"),
        ("https", ["http"], False, "https"),
        ("http", ["https"], True, "https"),
        ("https", ["http"], True, "http"),
        ("http", [], True, "http"),
        ("http", ["HTTPS"], True, "https"),
        ("http", ["http, https"], True, "https"),
        ("http", ["https", "http"], True, "http"),
        ("http", ["gopher"], True, "http"),
        ("https", [""], True, "https"),
    ],
    ids=[
        "untrusted-ignored",
        "untrusted-ignored-https",
        "trusted-https",
        "trusted-http",
        "trusted-absent",
        "case-insensitive",
        "last-in-list",
        "last-header",
        "unknown-value",
        "empty-value",
    ],
)
def test_sec_2_effective_scheme(
    listener: str, forwarded: list[str], trusted: bool, expected: str
) -> None:
    assert effective_scheme(listener, forwarded, trusted=trusted) == expected  # type: ignore[arg-type]


# --- SEC-1 ---------------------------------------------------------------------------------------

CODES = [None, 301, 302, 303, 307]


def _code_id(code: int | None) -> str:
    return "default" if code is None else str(code)


@pytest.mark.parametrize("code", CODES, ids=_code_id)
@pytest.mark.parametrize("scheme", ["http", "https"])
@pytest.mark.parametrize("secure", ["optional", "always", "never"])
def test_sec_1_secure_table(secure: str, scheme: str, code: int | None) -> None:
    kw: dict[str, object] = {"secure": secure}
    if code is not None:
        kw["redirect_http_response_code"] = code
    other = 8443 if scheme == "http" else 8080
    got = secure_redirect(handler(**kw), scheme, "localhost:1234", "/a/b?x=1&y=2", other)  # type: ignore[arg-type]
    status = code or 302
    if secure == "always" and scheme == "http":
        assert got == (status, "https://localhost:8443/a/b?x=1&y=2")
    elif secure == "never" and scheme == "https":
        assert got == (status, "http://localhost:8080/a/b")  # SPEC SEC-1: query dropped
    else:
        assert got is None


@pytest.mark.parametrize(
    ("secure", "scheme", "host", "target", "port", "location"),
    [
        ("always", "http", "localhost", "/p", 443, "https://localhost/p"),
        ("always", "http", "localhost", "/p", None, "https://localhost/p"),
        ("never", "https", "localhost", "/p?q", 80, "http://localhost/p"),
        ("always", "http", "[::1]:8080", "/p", 8443, "https://[::1]:8443/p"),
        ("always", "http", "App.LocalHost:8080", "/p", 8443, "https://app.localhost:8443/p"),
        ("always", "http", "evil.com/x", "/p", 8443, "https://localhost:8443/p"),
        ("always", "http", "", "/p", 8443, "https://localhost:8443/p"),
        (
            "always",
            "http",
            "localhost",
            "http://localhost/p?q=1",
            8443,
            "https://localhost:8443/p?q=1",
        ),
        (
            "always",
            "http",
            "localhost",
            "/%2e%2e/a%20b?q=%20",
            8443,
            "https://localhost:8443/%2e%2e/a%20b?q=%20",
        ),
        ("never", "https", "localhost", "/p?", 8080, "http://localhost:8080/p"),
    ],
    ids=[
        "default-https-port-omitted",
        "no-port-known",
        "default-http-port-omitted",
        "ipv6-host",
        "host-lowercased",
        "bad-host-falls-back",
        "no-host",
        "absolute-form-target",
        "encoding-kept",
        "empty-query-dropped",
    ],
)
def test_sec_1_redirect_target(
    secure: str, scheme: str, host: str, target: str, port: int | None, location: str
) -> None:
    got = secure_redirect(handler(secure=secure), scheme, host, target, port)  # type: ignore[arg-type]
    assert got == (302, location)


@given(
    st.sampled_from(["optional", "always", "never"]),
    st.sampled_from(["http", "https"]),
    st.text(),
    st.text(),
    st.one_of(st.none(), st.integers(1, 65535)),
)
def test_sec_1_redirect_never_stays_on_the_same_scheme(
    secure: str, scheme: str, host: str, target: str, port: int | None
) -> None:
    got = secure_redirect(handler(secure=secure), scheme, host, target, port)  # type: ignore[arg-type]
    if got is not None:
        parts = urlsplit(got[1])
        assert parts.scheme != scheme
        assert host_name(parts.netloc) is not None
        assert secure == ("always" if scheme == "http" else "never")
        if secure == "never":
            assert "?" not in got[1]


# --- LOGIN-1, LOGIN-2 ---------------------------------------------------------------------------

URL = "http://localhost:8080/page?x=1"
TO_LOGIN = "/_ah/login?continue=http%3A%2F%2Flocalhost%3A8080%2Fpage%3Fx%3D1"
ANON_401 = Unauthorized(message="Login required to view page.", login_url=TO_LOGIN)
USER_401 = Unauthorized(
    message="Current logged in user bob@example.com is not authorized to view this page.",
    login_url=TO_LOGIN,
)
REDIRECT = Redirect(location=TO_LOGIN)
IDENTITIES = {"anonymous": None, "user": USER, "admin": ADMIN}
LOGIN_TABLE = [
    # login, auth_fail_action, identity, decision
    ("optional", "redirect", "anonymous", Allow()),
    ("optional", "redirect", "user", Allow()),
    ("optional", "redirect", "admin", Allow()),
    ("optional", "unauthorized", "anonymous", Allow()),
    ("optional", "unauthorized", "user", Allow()),
    ("optional", "unauthorized", "admin", Allow()),
    ("required", "redirect", "anonymous", REDIRECT),
    ("required", "redirect", "user", Allow()),
    ("required", "redirect", "admin", Allow()),
    ("required", "unauthorized", "anonymous", ANON_401),
    ("required", "unauthorized", "user", Allow()),
    ("required", "unauthorized", "admin", Allow()),
    ("admin", "redirect", "anonymous", REDIRECT),
    ("admin", "redirect", "user", USER_401),  # SPEC LOGIN-2: 401 whatever the action says
    ("admin", "redirect", "admin", Allow()),
    ("admin", "unauthorized", "anonymous", ANON_401),
    ("admin", "unauthorized", "user", USER_401),
    ("admin", "unauthorized", "admin", Allow()),
]


@pytest.mark.parametrize(
    ("login", "action", "identity", "expected"),
    LOGIN_TABLE,
    ids=[f"{row[0]}-{row[1]}-{row[2]}" for row in LOGIN_TABLE],
)
def test_login_1_2_decision_table(login: str, action: str, identity: str, expected: object) -> None:
    h = handler(login=login, auth_fail_action=action)
    assert login_decision(h, IDENTITIES[identity], URL) == expected


def test_login_1_login_url_round_trips_the_continue_url() -> None:
    url = "https://localhost:8443/a b?x=1&y=%20#frag"
    query = parse_qs(urlsplit(login_url(url)).query)
    assert query == {"continue": [url]}


@pytest.mark.parametrize(
    ("scheme", "host", "target", "expected"),
    [
        ("http", "localhost:8080", "/p?x=1", "http://localhost:8080/p?x=1"),
        ("https", "[::1]:8443", "/p", "https://[::1]:8443/p"),
        ("http", "evil.com/x", "/p", "http://localhost/p"),
    ],
    ids=["host-kept", "ipv6", "bad-host"],
)
def test_login_1_request_url(scheme: str, host: str, target: str, expected: str) -> None:
    assert request_url(scheme, host, target) == expected  # type: ignore[arg-type]


# --- LOGIN-4: continue URLs and the sign-in page --------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (None, "/"),
        ("", "/"),
        ("/account?x=1", "/account?x=1"),
        ("/", "/"),
        ("http://localhost:8080/a", "http://localhost:8080/a"),
        ("https://localhost:8443/a?b=c", "https://localhost:8443/a?b=c"),
        ("HTTPS://LOCALHOST/a", "HTTPS://LOCALHOST/a"),
        ("//evil.com/a", "/"),
        ("/\\evil.com", "/"),
        ("https://evil.com/a", "/"),
        ("https://localhost.evil.com/a", "/"),
        ("https://localhost@evil.com/a", "/"),
        ("https://evil.com@localhost/a", "/"),
        ("javascript:alert(1)", "/"),
        ("ftp://localhost/a", "/"),
        ("account", "/"),
        ("?x=1", "/"),
        ("/a\r\nSet-Cookie: x=1", "/"),
        ("/a b", "/"),
        ("https://localhost:99999/a", "/"),
        ("http:///a", "/"),
        ("/café?q=ü", "/caf%C3%A9?q=%C3%BC"),
        ('/a"><script>', "/a%22%3E%3Cscript%3E"),
    ],
    ids=[
        "missing",
        "empty",
        "path",
        "root",
        "same-host-http",
        "same-host-https-other-port",
        "case-insensitive",
        "protocol-relative",
        "backslash",
        "other-host",
        "suffix-host",
        "userinfo-to-other-host",
        "userinfo",
        "javascript",
        "ftp",
        "relative-no-slash",
        "query-only",
        "header-injection",
        "space",
        "bad-port",
        "no-host",
        "non-ascii-encoded",
        "html-chars-encoded",
    ],
)
def test_login_4_continue_stays_on_this_host(url: str | None, expected: str) -> None:
    assert safe_continue(url, "localhost:8080") == expected


@given(st.text(), st.sampled_from(["localhost:8080", "127.0.0.1", "[::1]:8443"]))
def test_login_4_continue_never_leaves_the_host(url: str, host: str) -> None:
    got = safe_continue(url, host)
    assert got.isascii()
    assert not any(c in got for c in '\r\n \\"<>')
    if got.startswith("/"):
        assert not got.startswith("//")
    else:
        parts = urlsplit(got)
        assert parts.scheme.lower() in ("http", "https")
        assert host_name(parts.netloc) == host_name(host)


@pytest.mark.parametrize(
    ("page", "params", "expected"),
    [
        ("login", {}, ShowForm(continue_url="/")),
        ("login", {"continue": "/x"}, ShowForm(continue_url="/x")),
        (
            "login",
            {"action": "Login", "email": "bob@example.com", "continue": "/x"},
            SignIn(user=USER, continue_url="/x"),
        ),
        (
            "login",
            {"action": "Log In", "email": " root@example.com ", "admin": "True"},
            SignIn(user=ADMIN, continue_url="/"),
        ),
        (
            "login",
            {"action": "login", "email": "root@example.com", "admin": "on"},
            SignIn(user=ADMIN, continue_url="/"),
        ),
        (
            "login",
            {"action": "Login", "email": "bob@example.com", "admin": "False"},
            SignIn(user=USER, continue_url="/"),
        ),
        (
            "login",
            {"action": "Login", "email": "", "continue": "/x"},
            ShowForm(continue_url="/x", error="Enter an email address."),
        ),
        ("login", {"action": "Logout", "continue": "/bye"}, SignOut(continue_url="/bye")),
        ("login", {"action": "Log Out"}, SignOut(continue_url="/")),
        ("logout", {"continue": "https://evil.com/"}, SignOut(continue_url="/")),
        ("logout", {"action": "Login", "email": "bob@example.com"}, SignOut(continue_url="/")),
        ("login", {"action": "Dance"}, ShowForm(continue_url="/")),
    ],
    ids=[
        "form",
        "form-with-continue",
        "sign-in",
        "sign-in-admin-dev-appserver-spelling",
        "sign-in-admin-checkbox",
        "admin-false",
        "empty-email",
        "logout-action",
        "logout-action-spaced",
        "logout-page-unsafe-continue",
        "logout-page-ignores-login",
        "unknown-action",
    ],
)
def test_login_4_action(page: str, params: dict[str, str], expected: object) -> None:
    assert login_action(page, params, "localhost:8080") == expected  # type: ignore[arg-type]


def test_login_4_invalid_email_shows_the_form_again_with_an_error() -> None:
    got = login_action("login", {"action": "Login", "email": "not an email"}, "localhost")
    assert isinstance(got, ShowForm)
    assert got.status == 400
    assert got.email == "not an email"
    assert "not an email address" in got.error


def test_login_4_page_has_email_admin_box_and_continue() -> None:
    page = login_page_html("/account?x=1&y=2")
    assert '<form method="post" action="/_ah/login">' in page
    assert 'type="email" name="email"' in page
    assert 'type="checkbox" name="admin" value="True"' in page
    assert 'name="continue" value="/account?x=1&amp;y=2"' in page
    assert 'name="action" value="Login"' in page
    assert "Signed in as" not in page


def test_login_4_page_escapes_everything() -> None:
    evil = '"><script>alert(1)</script>'
    page = login_page_html(evil, current=user_info("bob@example.com", True), email=evil, error=evil)
    assert "<script>" not in page
    # continue (login form, shown, logout form), email, error
    assert page.count("&lt;script&gt;") == 5
    assert "Signed in as <strong>bob@example.com</strong> (administrator)" in page
    assert 'action="/_ah/logout"' in page


def test_login_1_unauthorized_page_is_short_and_escaped() -> None:
    page = unauthorized_html("user <b>@x", "/_ah/login?continue=%2F&a=b")
    assert "401 Unauthorized" in page
    assert "user &lt;b&gt;@x" in page
    assert 'href="/_ah/login?continue=%2F&amp;a=b"' in page
    assert len(page) < 500


def test_sec_1_redirect_body_links_the_target() -> None:
    assert 'href="https://localhost/a?b=1&amp;c=2"' in redirect_html("https://localhost/a?b=1&c=2")


def test_login_4_continue_keeps_ascii_paths_as_written() -> None:
    path = "/a/b;c?d=e&f=%2F&g=h+i"
    assert safe_continue(path, "localhost") == path


def test_pure_module_imports_no_aiohttp_or_asyncio() -> None:
    code = (
        "import sys, gfe_proxy.login; "
        "bad = [m for m in ('aiohttp', 'asyncio') if m in sys.modules]; "
        "assert not bad, bad"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
