"""The I/O glue of the front door: ``/_ah/login``, ``/_ah/logout`` and the secure/login
checks of a matched handler (SPEC SEC-1, LOGIN-1…LOGIN-4).

Every decision is made in ``login.py``; this module reads the request and turns the decision
into a response. The pipeline (``server.py``) calls ``signed_in_user`` for every request,
``login_page`` for the two reserved paths, and ``check`` after routing.
"""

from __future__ import annotations

from typing import Literal, assert_never
from urllib.parse import parse_qsl

from multidict import CIMultiDict

from gfe_proxy import headers, login, wire
from gfe_proxy.config import Handler
from gfe_proxy.errors import RequestRejected
from gfe_proxy.front import Request
from gfe_proxy.headers import UserInfo

__all__ = ["applies", "check", "login_page", "signed_in_user"]

MAX_FORM = 64 * 1024  # bytes; the sign-in form is a few hundred
_MAX_FIELDS = 100
_HTML = "text/html; charset=utf-8"
# The sign-in page loads nothing and may not be framed (it sets a cookie on submit).
_PAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"


def signed_in_user(request: Request) -> UserInfo | None:
    """SPEC LOGIN-3: the user of the ``dev_appserver_login`` cookie, or None (anonymous)."""
    return login.user_from_cookies(request.headers.getall("Cookie", ()))


def _reply(
    request: Request,
    status: int,
    body: str,
    date: str,
    *,
    cache_control: str,
    extra: tuple[tuple[str, str], ...] = (),
) -> wire.Reply:
    out: CIMultiDict[str] = CIMultiDict()
    out["Server"] = headers.SERVER
    out["Date"] = date
    out["Cache-Control"] = cache_control
    out["Content-Type"] = _HTML
    for name, value in extra:
        out.add(name, value)
    # For HEAD, wire.response sends no body and a Content-Length of what a GET would get.
    return wire.response(request, status, None, out, body.encode("utf-8"))


def applies(request: Request, handler: Handler, scheme: login.Scheme) -> bool:
    """Whether ``check`` may answer this request (False: it would return None, so the pipeline
    skips it). SEC-1 and LOGIN-1/LOGIN-2 act only on handlers with ``secure``/``login``
    settings that apply to ``scheme``; an origin-form target cannot fail to parse."""
    return not (login.door_open(handler, scheme) and request.raw_path.startswith("/"))


def check(
    request: Request,
    handler: Handler,
    *,
    scheme: login.Scheme,
    user: UserInfo | None,
    other_port: int | None,
    date: str,
) -> wire.Reply | None:
    """SPEC SEC-1, then LOGIN-1/LOGIN-2, for the matched ``handler``: a redirect or a 401, or
    None when the request may go on. ``other_port`` is the port of the other scheme's listener
    (None: the scheme's default port, as behind a TLS-terminating proxy)."""
    target = request.raw_path
    moved = login.secure_redirect(handler, scheme, request.host, target, other_port)
    if moved is not None:
        status, location = moved
        return _reply(
            request,
            status,
            login.redirect_html(location),
            date,
            cache_control="private",
            extra=(("Location", location),),
        )
    decision = login.login_decision(handler, user, login.request_url(scheme, request.host, target))
    match decision:
        case login.Allow():
            return None
        case login.Redirect(location=location, status=status):
            return _reply(
                request,
                status,
                login.redirect_html(location),
                date,
                cache_control="no-cache",
                extra=(("Location", location),),
            )
        case login.Unauthorized(message=message, login_url=to_login, status=status):
            return _reply(
                request,
                status,
                login.unauthorized_html(message, to_login),
                date,
                cache_control="no-cache",
            )
        case _:
            assert_never(decision)


async def _params(request: Request) -> dict[str, str]:
    """Query and urlencoded form fields; the first value of a name wins, the form's first."""
    fields: list[tuple[str, str]] = []
    try:
        if request.method == "POST" and request.body_exists:
            if (request.content_length or 0) > MAX_FORM:
                raise RequestRejected(413, "sign-in form over 64 KB")
            data = await request.read()
            if len(data) > MAX_FORM:
                raise RequestRejected(413, "sign-in form over 64 KB")
            if request.content_type == "application/x-www-form-urlencoded":
                fields += parse_qsl(
                    data.decode("utf-8", "replace"),
                    keep_blank_values=True,
                    max_num_fields=_MAX_FIELDS,
                )
        fields += parse_qsl(
            request.query_string, keep_blank_values=True, max_num_fields=_MAX_FIELDS
        )
    except ValueError:  # too many fields
        raise RequestRejected(400, "too many fields in the sign-in request") from None
    params: dict[str, str] = {}
    for name, value in fields:
        params.setdefault(name, value)
    return params


async def login_page(
    request: Request,
    page: Literal["login", "logout"],
    *,
    user: UserInfo | None,
    date: str,
) -> wire.Reply:
    """SPEC LOGIN-4: answer ``/_ah/login`` (the form, or sign in/out) or ``/_ah/logout``."""
    action = login.login_action(page, await _params(request), request.host)
    match action:
        case login.SignIn(user=new_user, continue_url=to):
            cookie = login.set_cookie(new_user.email, new_user.is_admin)
            return _signed(request, to, cookie, date)
        case login.SignOut(continue_url=to):
            return _signed(request, to, login.clear_cookie(), date)
        case login.ShowForm(continue_url=to, email=email, error=error):
            body = login.login_page_html(to, current=user, email=email, error=error)
            return _reply(
                request,
                action.status,
                body,
                date,
                cache_control="no-store",
                extra=(
                    ("Content-Security-Policy", _PAGE_CSP),
                    ("X-Frame-Options", "DENY"),
                    ("Referrer-Policy", "no-referrer"),
                ),
            )
        case _:
            assert_never(action)


def _signed(request: Request, location: str, cookie: str, date: str) -> wire.Reply:
    return _reply(
        request,
        302,
        login.redirect_html(location),
        date,
        cache_control="no-store",
        extra=(("Location", location), ("Set-Cookie", cookie)),
    )
