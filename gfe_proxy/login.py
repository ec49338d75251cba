"""``secure:`` redirects and ``login:`` emulation (SPEC SEC-1, SEC-2, LOGIN-1…LOGIN-5). Pure.

Theory of operation. For one request the pipeline

1. takes the scheme once (``effective_scheme``, SEC-2): the listener's, or a trusted
   ``X-Forwarded-Proto``;
2. reads the signed-in user from the ``dev_appserver_login`` cookie (``user_from_cookies``,
   LOGIN-3) and nowhere else: the client's ``X-AppEngine-*`` headers were never an identity
   (HDR-1 strips them before the instance sees anything);
3. after routing, asks the matched handler ``secure_redirect`` (SEC-1) and then
   ``login_decision`` (LOGIN-1, LOGIN-2); the first that objects answers the request;
4. answers ``/_ah/login`` and ``/_ah/logout`` from ``login_action`` and the page builders
   (LOGIN-4).

The cookie is the one Google's dev server (dev_appserver) sets, ``"email:True|False:id"``,
with the same user id, so cookies and tools made for it work here too. It is not signed:
this is a local emulator, and anyone who can reach it may sign in as anyone.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Literal, TypeAlias
from urllib.parse import quote, urlsplit

from gfe_proxy.config import Handler
from gfe_proxy.headers import AUTH_DOMAIN, UserInfo

__all__ = [
    "COOKIE_NAME",
    "LOGIN_PATH",
    "LOGOUT_PATH",
    "Allow",
    "Decision",
    "LoginAction",
    "Redirect",
    "ShowForm",
    "SignIn",
    "SignOut",
    "Unauthorized",
    "clear_cookie",
    "cookie_value",
    "effective_scheme",
    "host_name",
    "login_action",
    "login_decision",
    "login_page_html",
    "login_url",
    "parse_cookie_value",
    "redirect_html",
    "request_url",
    "safe_continue",
    "secure_redirect",
    "set_cookie",
    "unauthorized_html",
    "user_from_cookies",
    "user_id_for",
    "user_info",
    "valid_email",
]

Scheme: TypeAlias = Literal["http", "https"]

COOKIE_NAME = "dev_appserver_login"  # SPEC LOGIN-3: Google's dev server's cookie
LOGIN_PATH = "/_ah/login"
LOGOUT_PATH = "/_ah/logout"
DEFAULT_HOST = "localhost"  # redirect target when the Host header has no usable name
_DEFAULT_PORTS: dict[str, int] = {"http": 80, "https": 443}
# Cookie attributes: HttpOnly and SameSite=Lax cost dev_appserver tools nothing (they read the
# value only). Never Secure: a cookie set over HTTPS must still sign in plain-HTTP requests.
_COOKIE_ATTRIBUTES = "Path=/; HttpOnly; SameSite=Lax"
_EPOCH = "Thu, 01 Jan 1970 00:00:00 GMT"

# An address made of RFC 5322 atext and a plain ASCII domain: every character is a legal
# cookie-octet and a legal header value, and none is the cookie's ":" separator.
_EMAIL = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)
_MAX_EMAIL = 254  # RFC 5321 path limit
_USER_ID = re.compile(r"[0-9]{1,32}")
_HOSTNAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9._-]{0,251}[A-Za-z0-9_])?")
# Characters a continue URL keeps as they are; anything else (non-ASCII) is percent-encoded,
# so the Location header stays ASCII.
_URL_SAFE = "!#$%&'()*+,-./:;=?@[]_~"


# --- identity (LOGIN-3, LOGIN-5) ---------------------------------------------------------------


def valid_email(email: str) -> bool:
    """True for an address gfe_proxy will put in its cookie and in the instance's headers."""
    return len(email) <= _MAX_EMAIL and _EMAIL.fullmatch(email) is not None


def user_id_for(email: str) -> str:
    """The user id Google's dev server derives from an email: 21 decimal digits, stable.

    It is ``"1"`` followed by the first 20 digits of the MD5 digest of the lowercased email,
    each byte written in decimal with at least two digits. ``user_id_for("test@example.com")
    == "185804764220139124118"``.
    """
    digest = hashlib.md5(email.lower().encode("utf-8"), usedforsecurity=False).digest()
    return "1" + "".join(f"{byte:02d}" for byte in digest)[:20]


def user_info(email: str, admin: bool, *, user_id: str | None = None) -> UserInfo:
    """SPEC LOGIN-5: what the instance is told about a signed-in user.

    The nickname follows the ``users`` API: the part before ``@`` for an address in the auth
    domain (``gmail.com``), the whole address otherwise.
    """
    suffix = "@" + AUTH_DOMAIN
    nickname = email[: -len(suffix)] if email.lower().endswith(suffix) else email
    return UserInfo(
        email=email,
        user_id=user_id if user_id is not None else user_id_for(email),
        nickname=nickname,
        is_admin=admin,
    )


def cookie_value(email: str, admin: bool) -> str:
    """The cookie payload, ``email:True|False:user_id``, as dev_appserver writes it."""
    return f"{email}:{admin}:{user_id_for(email)}"


def set_cookie(email: str, admin: bool) -> str:
    """SPEC LOGIN-4: the ``Set-Cookie`` value that signs ``email`` in.

    Quoted as Python's ``http.cookies`` (and so dev_appserver) quotes it, since ``@`` is not a
    token character.
    """
    return f'{COOKIE_NAME}="{cookie_value(email, admin)}"; {_COOKIE_ATTRIBUTES}'


def clear_cookie() -> str:
    """SPEC LOGIN-4: the ``Set-Cookie`` value that signs out."""
    return f'{COOKIE_NAME}=""; Max-Age=0; Expires={_EPOCH}; {_COOKIE_ATTRIBUTES}'


def parse_cookie_value(value: str) -> UserInfo | None:
    """SPEC LOGIN-3: ``"email:True|False:id"`` (quoted or not) -> the user; None if malformed.

    Malformed means anything but exactly three fields, a valid email, ``True``/``False``
    spelled so, and a decimal id. The id is taken as written, as dev_appserver does.
    """
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    parts = value.split(":")
    if len(parts) != 3:
        return None
    email, admin, user_id = parts
    if admin not in ("True", "False") or not valid_email(email):
        return None
    if _USER_ID.fullmatch(user_id) is None:
        return None
    return user_info(email, admin == "True", user_id=user_id)


def user_from_cookies(cookie_headers: Iterable[str]) -> UserInfo | None:
    """SPEC LOGIN-3: the signed-in user from the request's ``Cookie`` header values.

    The first ``dev_appserver_login`` cookie counts (browsers send the most specific one
    first); if it is malformed the request is anonymous.
    """
    for header in cookie_headers:
        for pair in header.split(";"):
            name, sep, value = pair.partition("=")
            if sep and name.strip() == COOKIE_NAME:
                return parse_cookie_value(value.strip())
    return None


# --- hosts and URLs ------------------------------------------------------------------------------


def host_name(host: str) -> str | None:
    """The name part of a ``Host`` header value, lowercased; IPv6 literals keep brackets.

    None when the value is not a host name with an optional numeric port:
    ``host_name("LocalHost:8080") == "localhost"``, ``host_name("[::1]:8443") == "[::1]"``.
    """
    host = host.strip()
    if host.startswith("["):
        end = host.find("]")
        rest = host[end + 1 :]
        if end < 0 or (rest and not (rest[0] == ":" and rest[1:].isdigit())):
            return None
        try:
            ip = ipaddress.IPv6Address(host[1:end])
        except ValueError:
            return None
        return f"[{ip.compressed}]"
    name, sep, port = host.partition(":")
    if (sep and not (port.isascii() and port.isdigit())) or not _HOSTNAME.fullmatch(name):
        return None
    return name.lower()


def _origin(scheme: str, name: str, port: int | None) -> str:
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{name}"
    return f"{scheme}://{name}:{port}"


def _path_qs(target: str) -> str:
    # The request target as received; an absolute-form target keeps only its path and query.
    if target.startswith("/"):
        return target
    parts = urlsplit(target)
    path = parts.path if parts.path.startswith("/") else "/" + parts.path
    return path + (f"?{parts.query}" if parts.query else "")


def request_url(scheme: Scheme, host: str, path_qs: str) -> str:
    """The URL the client asked for, as LOGIN-1's ``continue`` carries it."""
    authority = host.strip() if host_name(host) is not None else DEFAULT_HOST
    return f"{scheme}://{authority}{_path_qs(path_qs)}"


def effective_scheme(listener: Scheme, forwarded_proto: Sequence[str], *, trusted: bool) -> Scheme:
    """SPEC SEC-2: the request's scheme: the listener's, unless ``--trust-forwarded-proto``.

    With trust, the last ``X-Forwarded-Proto`` value counts (a proxy that appends puts its own
    last; one that overwrites sends only one); anything but http/https is ignored.
    """
    if not trusted or not forwarded_proto:
        return listener
    values = [v.strip().lower() for header in forwarded_proto for v in header.split(",")]
    last = values[-1] if values else ""
    if last == "http":
        return "http"
    if last == "https":
        return "https"
    return listener


# --- SEC-1 ---------------------------------------------------------------------------------------


def door_open(handler: Handler, scheme: Scheme) -> bool:
    """True when neither SEC-1 nor LOGIN-1/LOGIN-2 can act on ``handler`` for ``scheme``:
    ``login: optional`` and no ``secure`` redirect to the other scheme."""
    if handler.login != "optional":
        return False
    secure = handler.secure
    return not (
        (secure == "always" and scheme == "http") or (secure == "never" and scheme == "https")
    )


def secure_redirect(
    handler: Handler, scheme: Scheme, host: str, path_qs: str, other_port: int | None
) -> tuple[int, str] | None:
    """SPEC SEC-1: ``(status, location)`` when the handler wants the other scheme, else None.

    ``secure: always`` sends plain HTTP to HTTPS with path and query kept; ``secure: never``
    sends HTTPS to HTTP and drops the query. The target keeps the Host header's name and uses
    ``other_port`` (the other listener's port; None or the scheme's default port is left out).
    Status: ``redirect_http_response_code`` (default 302). Example: ``secure: always``,
    ``http``, ``Host: localhost:8080``, ``/a?b=1``, 8443 -> ``(302,
    "https://localhost:8443/a?b=1")``.
    """
    path_qs = _path_qs(path_qs)
    if handler.secure == "always" and scheme == "http":
        target = "https"
    elif handler.secure == "never" and scheme == "https":
        target = "http"
        path_qs = path_qs.partition("?")[0]
    else:
        return None
    name = host_name(host) or DEFAULT_HOST
    return handler.redirect_http_response_code, _origin(target, name, other_port) + path_qs


# --- LOGIN-1, LOGIN-2 ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Allow:
    """The request goes on to the handler."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Redirect:
    """302 to the sign-in page (LOGIN-1, ``auth_fail_action: redirect``)."""

    location: str
    status: int = 302


@dataclass(frozen=True, slots=True, kw_only=True)
class Unauthorized:
    """401 with a short HTML message (LOGIN-1 ``unauthorized``, LOGIN-2)."""

    message: str
    login_url: str
    status: int = 401


Decision: TypeAlias = Allow | Redirect | Unauthorized
ALLOW = Allow()


def login_url(continue_url: str) -> str:
    """``/_ah/login?continue=<url-encoded continue_url>`` (SPEC LOGIN-1)."""
    return f"{LOGIN_PATH}?continue={quote(continue_url, safe='')}"


def login_decision(handler: Handler, user: UserInfo | None, url: str) -> Decision:
    """SPEC LOGIN-1, LOGIN-2: may ``user`` (None = anonymous) see ``handler``?

    ``url`` is the original request URL, where the sign-in page continues to.

    ======== ============ ================= =================
    login    anonymous    signed in          admin
    ======== ============ ================= =================
    optional Allow        Allow             Allow
    required fail action  Allow             Allow
    admin    fail action  Unauthorized      Allow
    ======== ============ ================= =================

    "fail action" is ``auth_fail_action``: ``redirect`` -> Redirect, ``unauthorized`` ->
    Unauthorized. A signed-in non-admin on an admin page gets 401 whatever it says (LOGIN-2).
    """
    if handler.login == "optional":
        return ALLOW
    to_login = login_url(url)
    if user is None:
        if handler.auth_fail_action == "unauthorized":
            return Unauthorized(message="Login required to view page.", login_url=to_login)
        return Redirect(location=to_login)
    if handler.login == "admin" and not user.is_admin:
        return Unauthorized(
            message=f"Current logged in user {user.email} is not authorized to view this page.",
            login_url=to_login,
        )
    return ALLOW


# --- LOGIN-4: /_ah/login and /_ah/logout --------------------------------------------------------


def safe_continue(url: str | None, host: str) -> str:
    """Where sign-in and sign-out may send the browser: ``url`` if it stays on this host.

    Accepted: a path (``/x?y``, not ``//x``), or an http/https URL whose host name is the
    request's (any port: the two listeners share the name). Anything else -> ``/``, so the
    sign-in page cannot be used to bounce a browser to another site.
    """
    if not url or "\\" in url or any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        return "/"
    if url.startswith("/"):
        return "/" if url.startswith("//") else quote(url, safe=_URL_SAFE)
    try:
        parts = urlsplit(url)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        return "/"
    if parts.scheme not in ("http", "https") or parts.username is not None or not port_ok:
        return "/"
    name = host_name(host)
    if name is None or host_name(parts.netloc) != name:
        return "/"
    return quote(url, safe=_URL_SAFE)


@dataclass(frozen=True, slots=True, kw_only=True)
class ShowForm:
    """Show the sign-in form (GET without an action, or a sign-in that failed)."""

    continue_url: str
    email: str = ""
    error: str = ""

    @property
    def status(self) -> int:
        return 400 if self.error else 200


@dataclass(frozen=True, slots=True, kw_only=True)
class SignIn:
    """Set the cookie for ``user`` and redirect to ``continue_url``."""

    user: UserInfo
    continue_url: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SignOut:
    """Clear the cookie and redirect to ``continue_url``."""

    continue_url: str


LoginAction: TypeAlias = ShowForm | SignIn | SignOut
_TRUE = frozenset({"true", "on", "1", "yes"})


def login_action(
    page: Literal["login", "logout"], params: Mapping[str, str], host: str
) -> LoginAction:
    """SPEC LOGIN-4: what ``/_ah/login`` or ``/_ah/logout`` does with these parameters.

    ``params`` are the query and form fields (``action``, ``email``, ``admin``,
    ``continue``). ``action`` is read as dev_appserver reads it: ``Login``/``Log In`` and
    ``Logout``/``Log Out``, any case. ``admin=True`` (or a ticked box: ``on``) makes an admin.
    """
    continue_url = safe_continue(params.get("continue"), host)
    action = params.get("action", "").replace(" ", "").lower()
    if page == "logout" or action == "logout":
        return SignOut(continue_url=continue_url)
    if action != "login":
        return ShowForm(continue_url=continue_url)
    email = params.get("email", "").strip()
    if not email:
        return ShowForm(continue_url=continue_url, error="Enter an email address.")
    if not valid_email(email):
        return ShowForm(
            continue_url=continue_url,
            email=email,
            error="That is not an email address gfe-proxy can sign in (like test@example.com).",
        )
    admin = params.get("admin", "").strip().lower() in _TRUE
    return SignIn(user=user_info(email, admin), continue_url=continue_url)


_STYLE = """\
body{margin:0;min-height:100vh;display:grid;place-items:center;background:#f1f3f4;\
color:#202124;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
main{background:#fff;border:1px solid #dadce0;border-radius:8px;padding:2rem 2.25rem;\
width:min(22rem,86vw)}
h1{font-size:1.375rem;font-weight:500;margin:0 0 .25rem}
p{margin:.25rem 0 1rem;color:#5f6368;font-size:.875rem}
label{display:block;margin:1rem 0 .25rem;font-size:.875rem}
input[type=email]{box-sizing:border-box;width:100%;padding:.6rem .75rem;font:inherit;\
border:1px solid #dadce0;border-radius:4px}
label.box{display:flex;gap:.5rem;align-items:center}
button{margin-top:1.25rem;padding:.5rem 1.5rem;font:inherit;font-weight:500;border:0;\
border-radius:4px;background:#1a73e8;color:#fff;cursor:pointer}
button.link{background:none;color:#1a73e8;padding:0;margin:0}
.error{color:#d93025}
.user{border-top:1px solid #dadce0;margin-top:1.5rem;padding-top:1rem}
code{word-break:break-all}"""


def login_page_html(
    continue_url: str, *, current: UserInfo | None = None, email: str = "", error: str = ""
) -> str:
    """SPEC LOGIN-4: the local sign-in page: email, an administrator box, the continue URL.

    Every value is HTML-escaped. ``current`` adds a "signed in as … / sign out" line.
    """
    cont = escape(continue_url)
    error_html = f'<p class="error" role="alert">{escape(error)}</p>\n' if error else ""
    signed_in = ""
    if current is not None:
        role = " (administrator)" if current.is_admin else ""
        signed_in = (
            f'<form class="user" method="post" action="{LOGOUT_PATH}">'
            f'<input type="hidden" name="continue" value="{cont}">'
            f"Signed in as <strong>{escape(current.email)}</strong>{role}. "
            '<button class="link" type="submit">Sign out</button></form>\n'
        )
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        "<title>Sign in · gfe-proxy</title>\n"
        f"<style>\n{_STYLE}\n</style>\n</head>\n<body>\n<main>\n"
        "<h1>Sign in</h1>\n"
        "<p>Local sign-in for <code>login:</code> handlers. Any email, no password: "
        "this is gfe-proxy, not a Google account.</p>\n"
        f"{error_html}"
        f'<form method="post" action="{LOGIN_PATH}">\n'
        f'<input type="hidden" name="continue" value="{cont}">\n'
        '<label for="email">Email</label>\n'
        f'<input id="email" type="email" name="email" value="{escape(email)}" '
        'placeholder="test@example.com" required autofocus>\n'
        '<label class="box"><input type="checkbox" name="admin" value="True"> '
        "Sign in as administrator</label>\n"
        '<button type="submit" name="action" value="Login">Sign in</button>\n'
        "</form>\n"
        f"<p>Then continue to <code>{cont}</code></p>\n"
        f"{signed_in}"
        "</main>\n</body>\n</html>\n"
    )


def unauthorized_html(message: str, login_url: str) -> str:
    """SPEC LOGIN-1, LOGIN-2: the short 401 page, with a link to sign in (as someone else)."""
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        "<title>401 Unauthorized</title>\n</head>\n<body>\n"
        f"<h1>401 Unauthorized</h1>\n<p>{escape(message)}</p>\n"
        f'<p><a href="{escape(login_url)}">Sign in</a></p>\n</body>\n</html>\n'
    )


def redirect_html(location: str) -> str:
    """The small body a redirect carries, for clients that do not follow it."""
    href = escape(location)
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        "<title>Moved</title>\n</head>\n<body>\n"
        f'<p>This page is at <a href="{href}">{href}</a>.</p>\n</body>\n</html>\n'
    )
