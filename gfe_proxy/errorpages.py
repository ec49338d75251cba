"""Error pages the front end makes itself (SPEC ERR-1, ERR-2).

``gfe_error_page`` reproduces the Google Front End's own error page: a small HTML document
titled ``<status> <title>`` with ``Error: <title>`` and a one-sentence message. ``ErrorPages``
applies an app's ``error_handlers``: the files are read once, when it is built, so rendering
is pure. Pages made by the app itself are never passed through here (ERR-2).
"""

from __future__ import annotations

from html import escape
from http import HTTPStatus

from gfe_proxy.config import AppConfig, ErrorHandler
from gfe_proxy.errors import ConfigError, Problem

GFE_CONTENT_TYPE = "text/html; charset=UTF-8"  # what production sends with these pages

_RETRY = "<p>Please try again in 30 seconds."

# status -> (title, message). `{path}` is " <code>escaped path</code>", `{method}` likewise;
# either may be empty. Wording follows the pages production's front end returns.
_PAGES: dict[int, tuple[str, str]] = {
    400: ("Bad Request", "Your client has issued a malformed or illegal request."),
    401: (
        "Unauthorized",
        "Your client does not have permission to get URL{path} from this server.",
    ),
    403: ("Forbidden", "Your client does not have permission to get URL{path} from this server."),
    404: ("Not Found", "The requested URL{path} was not found on this server."),
    405: (
        "Method Not Allowed",
        "The request method{method} is inappropriate for the URL{path}.",
    ),
    408: ("Request Timeout", "Your client has taken too long to issue its request."),
    411: ("Length Required", "POST requests require a <code>Content-length</code> header."),
    412: (
        "Precondition Failed",
        "The precondition on the request for the URL{path} evaluated to false.",
    ),
    413: ("Request Entity Too Large", "Your client issued a request that was too large."),
    416: (
        "Requested Range Not Satisfiable",
        "The requested range cannot be satisfied for the URL{path}.",
    ),
    500: (
        "Server Error",
        "The server encountered an error and could not complete your request." + _RETRY,
    ),
    502: (
        "Server Error",
        "The server encountered a temporary error and could not complete your request." + _RETRY,
    ),
    503: (
        "Service Unavailable",
        "The service you requested is not available at this time." + _RETRY,
    ),
    504: (
        "Gateway Timeout",
        "The server did not respond in time to complete your request." + _RETRY,
    ),
}

_TEMPLATE = (
    "<html><head>\n"
    '<meta http-equiv="content-type" content="text/html;charset=utf-8">\n'
    "<title>{status} {title}</title>\n"
    "</head>\n"
    "<body text=#000000 bgcolor=#ffffff>\n"
    "<h1>Error: {title}</h1>\n"
    "<h2>{message}</h2>\n"
    "<h2></h2>\n"
    "</body></html>\n"
)


def _title_and_message(status: int) -> tuple[str, str]:
    page = _PAGES.get(status)
    if page is not None:
        return page
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Server Error" if status >= 500 else "Error"
    if status >= 500:
        return title, _PAGES[500][1]
    return title, "Your client has issued a request this server cannot process."


def gfe_error_page(status: int, *, path: str = "", method: str = "") -> bytes:
    """SPEC ERR-1: the GFE error page for ``status``, e.g. ``404`` for ``/x``::

        <title>404 Not Found</title> … <h1>Error: Not Found</h1>
        <h2>The requested URL <code>/x</code> was not found on this server.</h2>

    ``path`` and ``method`` are HTML-escaped; without them the sentence leaves them out.
    """
    title, message = _title_and_message(status)
    # Each placeholder brings its own leading space, so an empty one leaves a clean sentence.
    code_path = f" <code>{escape(path)}</code>" if path else ""
    code_method = f" <code>{escape(method)}</code>" if method else ""
    message = message.format(path=code_path, method=code_method)
    return _TEMPLATE.format(status=status, title=title, message=message).encode()


class ErrorPages:
    """SPEC ERR-2: proxy-made error pages, with the app's ``error_handlers`` applied.

    ``timeout`` replaces the deadline page, ``default`` every other page the proxy makes.
    ``over_quota`` and ``dos_api_denial`` never happen locally and are ignored.
    """

    __slots__ = ("_default", "_timeout")

    def __init__(self, config: AppConfig) -> None:
        self._default = self._load(config, config.error_handler("default"))
        self._timeout = self._load(config, config.error_handler("timeout"))

    @staticmethod
    def _load(config: AppConfig, handler: ErrorHandler | None) -> tuple[bytes, str] | None:
        if handler is None:
            return None
        path = config.root / handler.file
        try:
            body = path.read_bytes()
        except OSError as exc:
            # CFG-2 checks the file exists; this covers it vanishing or being unreadable.
            raise ConfigError(
                Problem(
                    file=str(config.path),
                    line=1,
                    column=1,
                    message=f"error_handlers: cannot read {handler.file}: {exc.strerror or exc}",
                )
            ) from exc
        return body, handler.mime_type

    def render(
        self, status: int, *, path: str = "", method: str = "", timeout: bool = False
    ) -> tuple[bytes, str]:
        """(body, Content-Type) for a proxy-made error; ``timeout`` marks the deadline page."""
        custom = self._timeout if timeout else None
        if custom is None:
            custom = self._default
        if custom is not None:
            return custom
        return gfe_error_page(status, path=path, method=method), GFE_CONTENT_TYPE
