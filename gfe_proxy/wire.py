"""Responses written as one prebuilt block of bytes: the lean path past aiohttp's writer.

aiohttp's ``web.Response`` costs ~17 µs per response before its writer does the same
serialisation again (benchmarks/results/profile-*.md). Our responses are complete before they
are sent (RESP-1: App Engine buffers whole responses), so the status line, headers and body can
be serialised once and handed to the transport in a single write. ``RawResponse`` does that
inside aiohttp's own request loop (keep-alive, pipelining and errors stay aiohttp's), for
bodies small enough not to need flow control; larger ones keep ``web.Response``.
"""

from __future__ import annotations

from http import HTTPStatus

from aiohttp import web
from multidict import CIMultiDict

from gfe_proxy.headers import HeadBlock

RAW_MAX_BODY = 64 * 1024 * 1024  # every complete response (bodies are ≤ 32 MB, RESP-5)
_JOIN_MAX = 16 * 1024  # up to this, head and body are joined into one buffer

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
    LF inside a name or value): the caller then lets aiohttp refuse it."""
    lines = [f"HTTP/{version[0]}.{version[1]} {status} {reason or _REASONS.get(status, '')}\r\n"]
    lines += [f"{name}: {value}\r\n" for name, value in headers.items()]
    count = len(headers)
    if "Connection" not in headers:
        # aiohttp's rule (web_response._prepare_headers): say what differs from the default.
        if keep_alive and version == (1, 0):
            lines.append("Connection: keep-alive\r\n")
            count += 1
        elif not keep_alive and version == (1, 1):
            lines.append("Connection: close\r\n")
            count += 1
    lines.append("\r\n")
    head = "".join(lines)
    # count + 2 line ends (status line, blank line): any other CR or LF is an injection.
    if head.count("\n") != count + 2 or head.count("\r") != count + 2:
        return None
    return head.encode(_ENCODING, "surrogateescape")


class RawResponse(web.StreamResponse):
    """A complete response sent with one write from ``prepare()``: the head and the body in
    one buffer when small, as one ``writelines`` (writev under uvloop) when large, then the
    same flow control aiohttp's writer applies (wait while the transport is over its high-water
    mark), so a slow client never makes the proxy buffer more than one response."""

    def __init__(
        self,
        *,
        status: int,
        headers: CIMultiDict[str],
        head: bytes,
        body: bytes,
        keep_alive: bool,
    ):
        super().__init__(status=status, _real_headers=headers)
        self._head = head
        self._raw_body = body
        self._keep_alive = keep_alive

    async def prepare(self, request: web.BaseRequest) -> None:
        if self._eof_sent:
            return None
        transport = request.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("client went away")
        body = self._raw_body
        if len(body) <= _JOIN_MAX:
            transport.write(self._head + body if body else self._head)
        else:
            transport.writelines((self._head, body))
        self._eof_sent = True
        self._body_length = len(self._head) + len(body)
        if len(body) > _JOIN_MAX:
            # aiohttp's StreamWriter.drain: waits only while the protocol is paused for writing.
            await request._payload_writer.drain()
        return None

    async def write_eof(self, data: bytes = b"") -> None:
        return None

    @property
    def wire_bytes(self) -> bytes:
        """Everything ``prepare()`` writes: the serialised head and the body."""
        return self._head + self._raw_body


def prebuilt_response(
    request: web.BaseRequest,
    status: int,
    block: HeadBlock,
    body: bytes,
    extra: bytes,
) -> web.StreamResponse | None:
    """The response ``response()`` would build from a stored entry's serialised header lines
    (``block``) plus the per-response lines ``extra`` (appended after them, as ``response()``
    appends new headers), byte for byte; None where it would not be a ``RawResponse`` (no
    body allowed, or a body past ``RAW_MAX_BODY``): the caller then uses ``response()``.

    Content-Length sits where the entry had it, else last (RESP-5: the body's; for HEAD the
    stored one when the body is empty, as ``response()`` keeps it).
    """
    if status in (204, 304) or status < 200:
        return None
    if request.method == "HEAD":
        stored = block.content_length
        length = stored if not body and stored is not None else str(len(body))
        body = b""
    elif len(body) > RAW_MAX_BODY:
        return None
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
    # Only Content-Length in the headers object: it is what the access log reads back.
    return RawResponse(
        status=status,
        headers=CIMultiDict((("Content-Length", length),)),
        head=b"".join(parts),
        body=body,
        keep_alive=keep_alive,
    )


def response(
    request: web.BaseRequest,
    status: int,
    reason: str | None,
    headers: CIMultiDict[str],
    body: bytes,
) -> web.StreamResponse:
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
    if len(body) <= RAW_MAX_BODY:
        keep_alive = bool(request.keep_alive)
        head = serialise_head(
            (request.version.major, request.version.minor),
            status,
            reason,
            headers,
            keep_alive=keep_alive,
        )
        if head is not None:
            return RawResponse(
                status=status, headers=headers, head=head, body=body, keep_alive=keep_alive
            )
    # A header that would break the framing: aiohttp refuses it with its own error.
    if not body:
        return web.Response(status=status, reason=reason, headers=headers)
    headers.popall("Content-Length", None)  # aiohttp sets it from the body
    return web.Response(status=status, reason=reason, headers=headers, body=body)
