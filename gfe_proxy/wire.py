"""Responses serialised once into a prebuilt block of bytes (``Reply``) for front.py to write.

Our responses are complete before they are sent (RESP-1: App Engine buffers whole responses),
so the status line and headers are serialised once, and a cache hit reuses its entry's
serialised header lines (``prebuilt_response``), adding only the per-response lines.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import TYPE_CHECKING, NamedTuple

from multidict import CIMultiDict

from gfe_proxy.errorpages import gfe_error_page
from gfe_proxy.headers import SERVER, HeadBlock

if TYPE_CHECKING:
    from gfe_proxy.front import Request

log = logging.getLogger("gfe_proxy")


_REASONS = {s.value: s.phrase for s in HTTPStatus}
_ENCODING = "utf-8"  # as aiohttp encodes header values; surrogateescape keeps raw bytes


_STATUS_LINES: dict[tuple[int, int, int], bytes] = {}


def _status_line(version: tuple[int, int], status: int) -> bytes:
    key = (version[0], version[1], status)
    line = _STATUS_LINES.get(key)
    if line is None:
        text = f"HTTP/{version[0]}.{version[1]} {status} {_REASONS.get(status, '')}\r\n"
        line = _STATUS_LINES[key] = text.encode(_ENCODING, "surrogateescape")
    return line


def serialise_head(
    version: tuple[int, int],
    status: int,
    reason: str | None,
    headers: CIMultiDict[str],
    *,
    keep_alive: bool,
) -> bytes | None:
    """The response head as bytes, or None when a header would break the framing (a CR or
    LF inside a name or value): the caller then answers 500 instead (``response``)."""
    status_line = f"HTTP/{version[0]}.{version[1]} {status} {reason or _REASONS.get(status, '')}"
    # One C-level join per field ("name: value") and one for the lines.
    lines = [status_line, *map(": ".join, headers.items())]
    if "Connection" not in headers:
        # aiohttp's rule (web_response._prepare_headers): say what differs from the default.
        if keep_alive and version == (1, 0):
            lines.append("Connection: keep-alive")
        elif not keep_alive and version == (1, 1):
            lines.append("Connection: close")
    lines += ("", "")
    head = "\r\n".join(lines)
    # One line end per line plus the blank line: any other CR or LF is an injection.
    ends = len(lines) - 1
    if head.count("\n") != ends or head.count("\r") != ends:
        return None
    return head.encode(_ENCODING, "surrogateescape")


class Reply(NamedTuple):
    """A complete response as the front writes it (front.py): the serialised status line and
    headers, then the body; ``size`` is the Content-Length the access log reports."""

    status: int
    head: bytes
    body: bytes
    size: int


def prebuilt_response(
    request: Request,
    status: int,
    block: HeadBlock,
    body: bytes,
    extra: bytes,
) -> Reply | None:
    """The response ``response()`` would build from a stored entry's serialised header lines
    (``block``) plus the per-response lines ``extra`` (appended after them, as ``response()``
    appends new headers), byte for byte; None where the status allows no body: the caller then
    uses ``response()``.

    Content-Length sits where the entry had it, else last (RESP-5: the body's; for HEAD the
    stored one when the body is empty, as ``response()`` keeps it).
    """
    if status in (204, 304) or status < 200:
        return None
    if request.method == "HEAD":
        stored = block.content_length
        length = stored if not body and stored is not None else str(len(body))
        body = b""
    else:
        length = str(len(body))
    version = request.version
    keep_alive = bool(request.keep_alive)
    length_line = b"Content-Length: " + length.encode(_ENCODING, "surrogateescape") + b"\r\n"
    parts = [_status_line((version.major, version.minor), status), block.before]
    if block.content_length is not None:
        parts += (length_line, block.after, extra)
    else:
        parts += (extra, length_line)
    # serialise_head's Connection rule (the block never holds a Connection header).
    if keep_alive and version == (1, 0):
        parts.append(b"Connection: keep-alive\r\n")
    elif not keep_alive and version == (1, 1):
        parts.append(b"Connection: close\r\n")
    parts.append(b"\r\n")
    return Reply(status, b"".join(parts), body, int(length) if length.isdigit() else 0)


def response(
    request: Request,
    status: int,
    reason: str | None,
    headers: CIMultiDict[str],
    body: bytes,
) -> Reply:
    """The fastest correct response object for a complete response (RESP-1, RESP-5).

    Sets Content-Length: the body's, or for HEAD the one given (an instance's HEAD answer
    keeps the app's); none on 1xx/204/304, which carry no body.
    """
    if status in (204, 304) or status < 200:
        headers.popall("Content-Length", None)
        body = b""
    elif request.method == "HEAD":
        if body or "Content-Length" not in headers:
            headers["Content-Length"] = str(len(body))
        body = b""
    else:
        headers["Content-Length"] = str(len(body))
    head = serialise_head(
        (request.version.major, request.version.minor),
        status,
        reason,
        headers,
        keep_alive=bool(request.keep_alive),
    )
    if head is None:
        # A header that would break the framing (a CR or LF in it): never sent, 500 instead.
        return _framing_error(request)
    length = headers.get("Content-Length", "")
    return Reply(status, head, body, int(length) if length.isdigit() else 0)


def _framing_error(request: Request) -> Reply:
    log.error(
        "%s %s: a response header held a CR or LF; answered 500", request.method, request.path
    )
    version = (request.version.major, request.version.minor)
    return error_reply(500, version=version, keep_alive=bool(request.keep_alive))


def error_reply(
    status: int,
    *,
    version: tuple[int, int] = (1, 1),
    keep_alive: bool,
    date: str | None = None,
) -> Reply:
    """The GFE's own error page (ERR-1) as a complete reply, for answers made outside the
    pipeline (a request refused before it, a response that could not be framed)."""
    page = gfe_error_page(status)
    out: CIMultiDict[str] = CIMultiDict()
    out["Content-Type"] = "text/html; charset=UTF-8"
    out["Server"] = SERVER
    if date is not None:
        out["Date"] = date
    out["Content-Length"] = str(len(page))
    head = serialise_head(version, status, None, out, keep_alive=keep_alive)
    assert head is not None  # our own constant headers hold no CR or LF
    return Reply(status, head, page, len(page))
