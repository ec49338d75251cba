"""Keep-alive HTTP/1.1 client from the front end to one instance.

Theory of operation: an ``UpstreamClient`` owns the connections to one ``host:port``. Each
connection is an ``asyncio.Protocol`` (``_Connection``) that parses with httptools' C parser; a
request writes one serialised head (plus body) and waits on a future that the protocol resolves
from its callbacks, so a small request costs one write, one read and no per-chunk Python
streams. Finished reusable connections go back to a LIFO idle pool (the most recently used
socket is the least likely to have been closed by the instance's keep-alive timer).

Framing follows RFC 9112 section 6.3: HEAD and 1xx/204/304 have no body, then chunked, then
Content-Length, else the body runs until the instance closes. httptools cannot be told that a
response answers a HEAD, so for HEAD the message ends at ``on_headers_complete`` here.

SPEC RESP-1 (whole response buffered), RESP-5 (header and body limits), HDR-4 (always
HTTP/1.1 upstream), INST-3 (``UpstreamError.sent_nothing`` tells the caller whether the
instance saw anything it answered; a stale pooled connection is retried here, once).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import cast

import httptools
from multidict import CIMultiDict

from gfe_proxy.errors import (
    DeadlineExceeded,
    GfeError,
    ResponseHeadersTooLarge,
    ResponseTooLarge,
    UpstreamError,
)

__all__ = ["IDEMPOTENT", "UpstreamClient", "UpstreamResponse"]

# RFC 9110 §9.2.2: what may be sent twice. SPEC INST-3 retries only these.
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})

# Header bytes are converted with aiohttp's own codec (its server decodes request headers and
# its client decodes response headers as UTF-8 with surrogateescape, and its writer encodes
# UTF-8), so non-ASCII header bytes cross the proxy unchanged; for ASCII this is as fast as
# latin-1.
_ENCODING = "utf-8"
_ERRORS = "surrogateescape"

# The caller's framing headers are replaced by ours: we always know the exact body length.
_FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding"})
_FRAMING_LENGTHS = frozenset(map(len, _FRAMING_HEADERS))  # a cheap pre-check
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
# Lengths of the response headers whose values the framing needs: a cheap pre-check.
_WATCHED_LENGTHS = frozenset(map(len, ("content-length", "transfer-encoding", "connection")))
# Below this, head and body are joined into one write (one syscall, one TCP segment); above it
# copying the body costs more than a second write.
_JOIN_BODY_BELOW = 16 * 1024
# Raw head bytes allowed beyond max_header_bytes before giving up on a head that has not ended:
# the exact RESP-5 measure is taken at the end of the head; this bound only stops httptools
# from buffering an endless header line.
_HEAD_SLACK = 1024


@dataclass(slots=True)
class UpstreamResponse:
    """One complete instance response (SPEC RESP-1: buffered whole)."""

    status: int
    reason: str
    headers: CIMultiDict[str]  # repeated headers preserved, original order
    body: bytes
    keep_alive: bool  # the connection went back to the pool


def _serialize_head(
    method: str, target: str, headers: Iterable[tuple[str, str]], body_len: int
) -> bytes:
    """Request line and headers as bytes; one join, one encode (SPEC HDR-4: always HTTP/1.1)."""
    parts = [method, " ", target, " HTTP/1.1\r\n"]
    lines = 1
    for name, value in headers:
        if len(name) in _FRAMING_LENGTHS and name.lower() in _FRAMING_HEADERS:
            continue
        parts += (name, ": ", value, "\r\n")
        lines += 1
    if body_len or method in _BODY_METHODS:
        parts += ("Content-Length: ", str(body_len), "\r\n")
        lines += 1
    parts.append("\r\n")
    text = "".join(parts)
    # A CR or LF inside a method, target, name or value would split the message (request
    # smuggling); counting them is cheaper than scanning each piece.
    if text.count("\n") != lines + 1 or text.count("\r") != lines + 1:
        raise ValueError("CR or LF inside the request line or a header")
    return text.encode(_ENCODING, _ERRORS)


class _Connection(asyncio.Protocol):
    """One keep-alive connection; parses a single response per ``send()``."""

    __slots__ = (
        "_body_len",
        "_chunked",
        "_chunks",
        "_client",
        "_close_token",
        "_content_length",
        "_failure",
        "_finished",
        "_head_bytes",
        "_headers",
        "_headers_done",
        "_is_head",
        "_keep_alive",
        "_loop",
        "_parser",
        "_raw_head",
        "_reason",
        "_received_any",
        "_status",
        "_timer",
        "_waiter",
        "closed",
        "idle_since",
        "transport",
    )

    def __init__(self, client: UpstreamClient, loop: asyncio.AbstractEventLoop) -> None:
        self._client = client
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = loop.create_future()
        self._waiter: asyncio.Future[UpstreamResponse] | None = None
        self._parser: httptools.HttpResponseParser | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._reset_message()
        self._is_head = False
        self._received_any = False
        self._finished = False
        self._keep_alive = False
        self._failure: GfeError | None = None

    def _reset_message(self) -> None:
        self._status = 0
        self._reason: list[bytes] = []
        self._headers: list[tuple[bytes, bytes]] = []
        self._chunks: list[bytes] = []
        self._body_len = 0
        self._head_bytes = 0  # canonical size of the head, the RESP-5 measure
        self._raw_head = 0  # bytes received while the head is incomplete
        self._headers_done = False
        self._content_length: bytes | None = None
        self._chunked = False
        self._close_token = False
        self.idle_since = 0.0  # loop time it went back to the pool

    # -- driving -------------------------------------------------------------------------------

    def send(
        self, head: bytes, body: bytes, is_head: bool, deadline: float | None
    ) -> asyncio.Future[UpstreamResponse]:
        """Write one request; the future resolves with its response or fails with a GfeError.

        ``deadline`` is in loop time; past it the future fails with DeadlineExceeded.
        """
        assert self.transport is not None
        assert self._waiter is None
        waiter: asyncio.Future[UpstreamResponse] = self._loop.create_future()
        self._waiter = waiter
        self._parser = httptools.HttpResponseParser(self)
        if deadline is not None:
            self._timer = self._loop.call_at(deadline, self._expire)
        self._reset_message()
        self._is_head = is_head
        self._received_any = False
        self._finished = False
        self._failure = None
        if self.transport.is_closing():
            # Lost between connect and now: connection_lost has run and will not settle us.
            self._fail(UpstreamError("instance closed the connection first", sent_nothing=True))
        elif not body:
            self.transport.write(head)
        elif len(body) < _JOIN_BODY_BELOW:
            self.transport.write(head + body)
        else:
            self.transport.write(head)
            self.transport.write(body)
        return waiter

    def deadline_error(self) -> DeadlineExceeded:
        client = self._client
        return DeadlineExceeded(f"instance {client.host}:{client.port} missed the deadline")

    def _expire(self) -> None:
        # SPEC SCALE-4: the stream is mid-message, so it is closed, never reused.
        self._timer = None
        self._fail(self.deadline_error())

    def _settle(self) -> asyncio.Future[UpstreamResponse] | None:
        """Detach the current request; returns its waiter."""
        waiter = self._waiter
        self._waiter = None
        self._parser = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        return waiter

    def abort(self) -> None:
        # Forget at once so open_count is right before connection_lost runs.
        self._client._forget(self)
        if self.transport is not None:
            self.transport.abort()

    def abandon(self, waiter: asyncio.Future[UpstreamResponse]) -> None:
        """The request behind ``waiter`` was given up mid-message: never reuse this stream."""
        if self._waiter is waiter:
            self._settle()
            self.abort()

    def _fail(self, exc: GfeError) -> None:
        waiter = self._settle()
        self.abort()
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def _deliver(self) -> None:
        waiter = self._settle()
        headers: CIMultiDict[str] = CIMultiDict(
            [(n.decode(_ENCODING, _ERRORS), v.decode(_ENCODING, _ERRORS)) for n, v in self._headers]
        )
        body = b"".join(self._chunks) if len(self._chunks) != 1 else self._chunks[0]
        if self._keep_alive:
            keep_alive = self._client._release(self)
        else:
            keep_alive = False
            self.abort()  # nothing left to send; the instance ends its side, or already has
        response = UpstreamResponse(
            self._status,
            b"".join(self._reason).decode(_ENCODING, _ERRORS),
            headers,
            body,
            keep_alive,
        )
        self._chunks = []
        self._headers = []
        if waiter is not None and not waiter.done():
            waiter.set_result(response)

    # -- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport quacks like asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self._client._open.add(self)  # here, not after create_connection: it may be lost first

    def data_received(self, data: bytes) -> None:
        parser = self._parser
        if parser is None:
            # Bytes nobody asked for (on an idle connection): the stream can't be trusted.
            self.abort()
            return
        self._received_any = True
        if not self._headers_done:
            self._raw_head += len(data)
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(UpstreamError("instance switched protocols", sent_nothing=False))
            return
        except httptools.HttpParserError as exc:
            if self._finished:
                # Garbage after a complete response: keep the response, drop the stream.
                self._keep_alive = False
                self._deliver()
            else:
                self._fail(self._failure or UpstreamError(f"bad response from instance: {exc}"))
            return
        if self._finished:
            self._deliver()
        elif (
            not self._headers_done and self._raw_head > self._client.max_header_bytes + _HEAD_SLACK
        ):
            self._fail(ResponseHeadersTooLarge("instance response headers too large"))

    def eof_received(self) -> bool | None:
        return False  # close our side too; connection_lost settles any waiting request

    def connection_lost(self, exc: Exception | None) -> None:
        self._client._forget(self)
        if not self.closed.done():
            self.closed.set_result(None)
        if self._waiter is None:
            return
        if (
            exc is None
            and self._headers_done
            and not self._finished
            and self._content_length is None
            and not self._chunked
        ):
            # Neither chunked nor Content-Length: the body ran until close (RFC 9112 6.3 #8).
            self._keep_alive = False
            self._deliver()
            return
        where = "mid-response" if self._received_any else "before responding"
        self._fail(
            UpstreamError(
                f"instance closed the connection {where}", sent_nothing=not self._received_any
            )
        )

    # -- httptools callbacks ---------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._finished:
            # More bytes after a complete response (e.g. a body after a HEAD answer).
            self._keep_alive = False

    def on_status(self, status: bytes) -> None:
        self._reason.append(status)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._headers_done:
            return  # chunked trailers: dropped like every hop-by-hop detail (SPEC RESP-1)
        size = len(name)
        self._head_bytes += size + len(value) + 4  # "name: value\r\n"
        self._headers.append((name, value))
        if size not in _WATCHED_LENGTHS:
            return
        name = name.lower()
        if name == b"content-length":
            self._content_length = value
        elif name == b"transfer-encoding":
            self._chunked = value.rstrip().lower().endswith(b"chunked")
        elif name == b"connection":
            self._close_token = self._close_token or b"close" in value.lower()

    def on_headers_complete(self) -> None:
        parser = self._parser
        assert parser is not None
        status = parser.get_status_code()
        if status < 200:
            return  # interim 1xx (100 Continue, 103 Early Hints): skipped, its headers too
        self._status = status
        self._headers_done = True
        client = self._client
        # Status line "HTTP/1.1 200 reason\r\n" plus the final CRLF.
        head_bytes = self._head_bytes + 15 + sum(map(len, self._reason)) + 2
        if head_bytes > client.max_header_bytes:
            self._failure = ResponseHeadersTooLarge(
                f"instance response headers are {head_bytes} bytes, over {client.max_header_bytes}"
            )
            raise self._failure
        if self._is_head:
            # SPEC RESP-5: a HEAD answer has no body whatever Content-Length says.
            self._finish(parser)
        elif self._content_length is not None and not self._chunked:
            try:
                length = int(self._content_length)
            except ValueError:
                return  # httptools has already rejected it; defensive only
            if length > client.max_body:
                # SPEC RESP-5: refuse before reading a byte of an oversized body.
                self._failure = ResponseTooLarge(
                    f"instance response body is {length} bytes, over {client.max_body}"
                )
                raise self._failure

    def on_body(self, body: bytes) -> None:
        if self._finished:
            self._keep_alive = False  # a body after a HEAD answer: don't reuse the stream
            return
        self._body_len += len(body)
        if self._body_len > self._client.max_body:
            self._failure = ResponseTooLarge(
                f"instance response body over {self._client.max_body} bytes"
            )
            raise self._failure
        self._chunks.append(body)

    def on_message_complete(self) -> None:
        parser = self._parser
        assert parser is not None
        if self._finished:
            return
        if not self._headers_done:
            # The end of an interim 1xx response: the real one follows on the same stream.
            self._reset_message()
            return
        self._finish(parser)

    def _finish(self, parser: httptools.HttpResponseParser) -> None:
        self._finished = True
        # Connection: close and HTTP/1.0 answers end the connection (SPEC HDR-4: we speak 1.1).
        if parser.get_http_version() != "1.1":
            self._keep_alive = False
        elif self._is_head:
            # llhttp thinks an unframed HEAD answer runs until close; it ended at its head.
            self._keep_alive = not self._close_token
        else:
            self._keep_alive = parser.should_keep_alive()


class UpstreamClient:
    """Keep-alive HTTP/1.1 connections to one instance at host:port."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        max_idle: int = 64,
        max_body: int = 32 * 1024 * 1024,  # bytes; SPEC RESP-5
        max_header_bytes: int = 8192,  # bytes; SPEC RESP-5
        connect_timeout: float = 5.0,  # seconds
        max_idle_age: float = 1.0,  # seconds
    ) -> None:
        self.host = host
        self.port = port
        self.max_idle = max_idle
        # A pooled connection idle longer than this is closed, not reused: below the instances'
        # keep-alive timers (gunicorn 2 s by default, uvicorn 5 s), so a reused connection is
        # never one the instance is closing, and a failure on it means the instance failed.
        self.max_idle_age = max_idle_age
        self.max_body = max_body
        self.max_header_bytes = max_header_bytes
        self.connect_timeout = connect_timeout
        self._idle: list[_Connection] = []  # LIFO: append and pop at the end
        self._open: set[_Connection] = set()
        self._closed = False

    def __repr__(self) -> str:
        return (
            f"<UpstreamClient {self.host}:{self.port} open={len(self._open)}"
            f" idle={len(self._idle)}>"
        )

    @property
    def idle_count(self) -> int:
        """Connections waiting in the pool."""
        return len(self._idle)

    @property
    def open_count(self) -> int:
        """All open connections, idle and in use."""
        return len(self._open)

    async def request(
        self,
        method: str,
        target: str,
        headers: Iterable[tuple[str, str]],
        body: bytes = b"",
        *,
        # A parameter rather than the caller's asyncio.timeout(): a deadline must also close the
        # connection and become DeadlineExceeded, which only this layer can do.
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> UpstreamResponse:
        """Send one request and return the whole response. Redirects are never followed.

        Raises UpstreamError, ResponseHeadersTooLarge, ResponseTooLarge (SPEC RESP-5) or,
        past ``timeout`` seconds for the whole exchange, DeadlineExceeded (SPEC SCALE-4).
        """
        head = _serialize_head(method, target, headers, len(body))
        is_head = method == "HEAD"
        deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
        # One coroutine frame and a timer per request on the pooled path: this is the proxy's
        # hottest loop, so no asyncio.timeout() context and no helper coroutines here.
        conn = self._take_idle()
        if conn is not None:
            waiter = conn.send(head, body, is_head, deadline)
            try:
                return await waiter
            except UpstreamError as exc:
                if not exc.sent_nothing or method not in IDEMPOTENT:
                    raise
                # SPEC INST-3: a pooled connection that fails before any response byte was
                # most likely closed by the instance just as we wrote; retried once on a new
                # connection, for idempotent methods only: the instance may have read it.
            except BaseException:
                conn.abandon(waiter)
                raise
        conn = await self._connect(deadline)
        waiter = conn.send(head, body, is_head, deadline)
        try:
            return await waiter
        except BaseException:
            conn.abandon(waiter)  # cancelled mid-message: never reuse the stream
            raise

    def _take_idle(self) -> _Connection | None:
        idle = self._idle
        while idle:
            conn = idle.pop()
            transport = conn.transport
            if transport is None or transport.is_closing():
                continue
            if conn._loop.time() - conn.idle_since > self.max_idle_age:
                # LIFO: every connection below it is older still.
                stale = [conn, *idle]
                idle.clear()
                for old in stale:
                    old.abort()
                return None
            return conn
        return None

    async def _connect(self, deadline: float | None) -> _Connection:
        if self._closed:
            raise UpstreamError("upstream client is closed", sent_nothing=True)
        loop = asyncio.get_running_loop()
        conn = _Connection(self, loop)
        connect_by = loop.time() + self.connect_timeout
        by_deadline = deadline is not None and deadline <= connect_by
        try:
            async with asyncio.timeout_at(deadline if by_deadline else connect_by):
                await loop.create_connection(lambda: conn, self.host, self.port)
        except TimeoutError:
            if by_deadline:
                raise conn.deadline_error() from None
            raise UpstreamError(
                f"connect to {self.host}:{self.port} timed out", sent_nothing=True
            ) from None
        except OSError as exc:
            raise UpstreamError(
                f"connect to {self.host}:{self.port} failed: {exc}", sent_nothing=True
            ) from exc
        if self._closed:
            conn.abort()
            raise UpstreamError("upstream client is closed", sent_nothing=True)
        return conn

    def _release(self, conn: _Connection) -> bool:
        """Pool a connection whose response ended cleanly; False if it was closed instead."""
        transport = conn.transport
        if (
            self._closed
            or len(self._idle) >= self.max_idle
            or transport is None
            or transport.is_closing()
        ):
            conn.abort()
            return False
        conn.idle_since = conn._loop.time()
        self._idle.append(conn)
        return True

    def _forget(self, conn: _Connection) -> None:
        self._open.discard(conn)
        if conn in self._idle:
            self._idle.remove(conn)

    async def close(self) -> None:
        """Close idle and in-use connections; requests in flight fail with UpstreamError."""
        self._closed = True
        conns = list(self._open)
        self._idle.clear()
        for conn in conns:
            conn.abort()
        if conns:
            await asyncio.gather(*(conn.closed for conn in conns))
