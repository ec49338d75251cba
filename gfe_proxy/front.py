"""The public listeners' HTTP/1.1 server: an asyncio protocol over httptools' C parser.

Theory of operation
-------------------
Each client connection is one ``_Connection`` (an ``asyncio.Protocol``), the mirror of
upstream.py's client side. httptools calls back as bytes arrive; at the end of a request head
the connection makes a ``Request`` and queues it. One handler task per request runs the proxy
pipeline, strictly one at a time per connection, so pipelined requests are answered in order.
The pipeline answers with a complete ``wire.Reply`` (RESP-1: App Engine buffers whole responses),
written with one ``write`` (small) or ``writelines`` (large); while the transport is above its
high-water mark the next request waits, so a slow reader never makes the proxy hold more than
one response for it.

Why not aiohttp's server: the same constant answer costs 21 µs of CPU per request through
aiohttp's ``web.Server`` and 6 µs through an httptools protocol on this machine
(benchmarks/README.md), and the issue 6 targets are ratios to aiohttp's ceiling. aiohttp still
serves the admin listener, where speed does not matter.

Request bodies are buffered as they arrive (the pipeline forwards whole bodies) up to 32 MiB;
past that the rest is discarded and ``Request.read`` raises 413 (SPEC HDR-3). A response sent
before its request's body fully arrived closes the connection, after a bounded "lingering"
read, so the client sees the answer rather than a reset. Heads over ``MAX_HEAD`` bytes and
malformed requests get a GFE 400 page and a close; idle keep-alive connections close after
``idle_timeout`` (aiohttp's 75 s default).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl as ssl_module
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import NamedTuple, cast
from urllib.parse import unquote

import httptools
from multidict import CIMultiDict

from gfe_proxy import headers as hdr
from gfe_proxy.errors import RequestRejected
from gfe_proxy.wire import Reply, error_reply

__all__ = ["FrontServer", "Handler", "HttpVersion", "Request"]

log = logging.getLogger("gfe_proxy")

_ENCODING = "utf-8"  # as aiohttp decodes request headers; surrogateescape keeps raw bytes
_ERRORS = "surrogateescape"
# A request head (line + fields) beyond this is refused with 400, as aiohttp's 64 KiB line and
# field limits did; HDR-3's 8 KB per field is the pipeline's check, with the app's error page.
MAX_HEAD = 64 * 1024
MAX_FIELDS = 256
# Raw bytes of a head still unfinished before it is refused (the exact measure, MAX_HEAD, is
# taken per field as fields end; this stops httptools buffering an endless header line).
_HEAD_GUARD = MAX_HEAD + 2048  # room for the ": " and CRLFs of MAX_FIELDS fields
_JOIN_BODY_BELOW = 16 * 1024  # head and body in one buffer up to this, else writelines
_QUEUE_HIGH = 16  # pipelined requests waiting before reading pauses
_LINGER = 10.0  # seconds a closing connection keeps reading the rest of an unwanted body
_SWEEP = 1.0  # seconds between idle-connection sweeps (as a fraction of idle_timeout, capped)


class HttpVersion(NamedTuple):
    major: int
    minor: int


_V11 = HttpVersion(1, 1)
_V10 = HttpVersion(1, 0)
_VERSIONS = {"1.1": _V11, "1.0": _V10}


class Request:
    """One client request as the pipeline sees it (the subset of aiohttp's request it used)."""

    __slots__ = (
        "_chunks",
        "_complete",
        "_conn",
        "_continue",
        "_error",
        "_keep_alive",
        "_local",
        "_size",
        "_waiter",
        "headers",
        "method",
        "raw_path",
        "remote",
        "version",
    )

    def __init__(
        self,
        method: str,
        raw_path: str,
        version: HttpVersion,
        headers: CIMultiDict[str],
        *,
        remote: str | None = None,
        local: str = "127.0.0.1:0",
        keep_alive: bool = True,
        body: bytes = b"",
    ) -> None:
        self.method = method
        self.raw_path = raw_path
        self.version = version
        self.headers = headers
        self.remote = remote
        self._local = local
        self._keep_alive = keep_alive
        self._chunks: list[bytes] = [body] if body else []
        self._size = len(body)
        self._complete = True
        self._waiter: asyncio.Future[None] | None = None
        self._error: RequestRejected | None = None
        self._conn: _Connection | None = None
        self._continue = False  # a 100 Continue is owed before the body is read

    @property
    def host(self) -> str:
        return self.headers.get("Host") or self._local

    @property
    def path(self) -> str:
        return unquote(self.raw_path.partition("?")[0])

    @property
    def query_string(self) -> str:
        return self.raw_path.partition("?")[2]

    @property
    def path_qs(self) -> str:
        path, sep, query = self.raw_path.partition("?")
        return unquote(path) + sep + query

    @property
    def content_length(self) -> int | None:
        value = self.headers.get("Content-Length")
        return int(value) if value is not None and value.isdigit() else None

    @property
    def body_exists(self) -> bool:
        return bool(self.content_length) or "Transfer-Encoding" in self.headers

    @property
    def content_type(self) -> str:
        value = self.headers.get("Content-Type", "")
        return value.partition(";")[0].strip().lower()

    @property
    def keep_alive(self) -> bool:
        """Whether the connection stays open after this response: not when the client asked
        to close, not when the body has not all arrived (it would have to be read first), and
        not once the server is closing."""
        conn = self._conn
        return self._keep_alive and self._complete and (conn is None or not conn._server.closing)

    async def read(self) -> bytes:
        """The whole body (SPEC HDR-3: 413 past 32 MiB, also for chunked bodies)."""
        if not self._complete:
            if self._continue and self._conn is not None:
                self._continue = False
                self._conn.send_continue()
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        if self._error is not None:
            raise self._error
        if len(self._chunks) > 1:
            self._chunks = [b"".join(self._chunks)]
        return self._chunks[0] if self._chunks else b""

    # -- fed by the connection --------------------------------------------------------------

    def _feed(self, chunk: bytes) -> None:
        if self._error is not None:
            return
        self._size += len(chunk)
        if self._size > hdr.MAX_REQUEST_BODY:
            # Answer now, not after the rest of the body: the reader wakes with the 413 and the
            # connection closes after it (keep_alive is False while the body is unfinished).
            self._chunks = []
            self._error = RequestRejected(413, "request body over 32 MB")
            waiter = self._waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        else:
            self._chunks.append(chunk)

    def _finish(self, error: RequestRejected | None = None) -> None:
        if error is not None and self._error is None:
            self._error = error
        self._complete = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


Handler = Callable[[Request], Awaitable[Reply]]


class _Connection(asyncio.Protocol):
    """One client connection: parse, queue, run the handler, write, repeat."""

    def __init__(self, server: FrontServer) -> None:
        self._server = server
        self._loop = server.loop
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._remote: str | None = None
        self._local = ""
        self._url = b""
        self._fields: list[tuple[bytes, bytes]] = []
        self._head_size = 0
        self._in_head = False
        self._head_reads = 0  # bytes read while the current head is unfinished
        self._began_here = False  # a head began in the read being parsed
        self._completed_here = False  # a request ended in the read being parsed
        self._reading: Request | None = None  # the request whose body is arriving
        self._queue: deque[Request | int] = deque()  # requests, or a status to refuse with
        self._task: asyncio.Task[None] | None = None
        self._queue_paused = False  # reading paused while too many requests wait
        self._drain: asyncio.Future[None] | None = None
        self._no_more = False  # no further requests are taken from this connection
        self._lingering = False  # the answer is out; reading only to discard
        self._refused = False  # a broken request: the client may still be sending
        self.last_active = server.loop.time()
        self._tls = False

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        peer = transport.get_extra_info("peername")
        self._remote = str(peer[0]) if peer else None
        local = transport.get_extra_info("sockname")
        if local:
            host = str(local[0])
            self._local = f"[{host}]:{local[1]}" if ":" in host else f"{host}:{local[1]}"
        self._tls = _is_tls(transport)
        self._server.conns.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._server._gone(self)
        self._no_more = True
        if self._reading is not None and not self._reading._complete:
            self._reading._finish(RequestRejected(400, "client closed the connection mid-body"))
        self._queue.clear()
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)
        self._transport = None

    def data_received(self, data: bytes) -> None:
        if self._no_more:
            return  # after an upgrade, a refusal or the answer: the rest is dropped
        self.last_active = self._loop.time()
        self._began_here = self._completed_here = False
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # No protocol switch behind App Engine: the request is answered as a plain one
            # and the connection then closes (what follows the head is not HTTP/1.1).
            if self._reading is not None:
                self._reading._finish()
                self._reading = None
            self._stop_reading()
        except httptools.HttpParserError:
            self._refuse(400)
            return
        if self._in_head:
            # A head still unfinished: refuse it once it is too long, without waiting for its end.
            # The whole read belongs to it unless an earlier request ended in the same read.
            if self._began_here and self._completed_here:
                self._head_reads = self._head_size
            else:
                self._head_reads += len(data)
            if self._head_reads > _HEAD_GUARD:
                self._refuse(400)

    def eof_received(self) -> bool | None:
        if self._reading is not None and not self._reading._complete:
            self._reading._finish(RequestRejected(400, "client closed the connection mid-body"))
        self._no_more = True
        if self._task is None and self._transport is not None:
            self._transport.close()
        # Keep the transport to answer what is queued (half-close); TLS cannot half-close.
        return None if self._tls else True

    def pause_writing(self) -> None:
        if self._drain is None or self._drain.done():
            self._drain = self._loop.create_future()

    def resume_writing(self) -> None:
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    # -- httptools callbacks ----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._fields = []
        self._head_size = 0
        self._in_head = True
        self._head_reads = 0
        self._began_here = True

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_size += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value)
        if self._head_size <= MAX_HEAD and len(self._fields) < MAX_FIELDS:
            self._fields.append((name, value))
        else:
            self._head_size = MAX_HEAD + 1

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._no_more:
            return
        if self._head_size > MAX_HEAD:
            self._refuse(400)
            return
        parser = self._parser
        fields: CIMultiDict[str] = CIMultiDict(
            (n.decode(_ENCODING, _ERRORS), v.decode(_ENCODING, _ERRORS)) for n, v in self._fields
        )
        target = self._url.decode(_ENCODING, _ERRORS)
        if not target.startswith("/") and "://" in target:
            # absolute-form (RFC 9112 §3.2.2): the pipeline routes on the origin-form part
            target = "/" + target.partition("://")[2].partition("/")[2]
        request = Request(
            parser.get_method().decode("ascii", _ERRORS),
            target,
            _VERSIONS.get(parser.get_http_version()) or _V11,
            fields,
            remote=self._remote,
            local=self._local,
            keep_alive=parser.should_keep_alive() and not parser.should_upgrade(),
        )
        request._complete = False
        request._conn = self
        if fields.get("Expect", "").lower() == "100-continue" and request.version == _V11:
            request._continue = True
        self._reading = request
        self._enqueue(request)

    def on_body(self, body: bytes) -> None:
        if self._reading is not None:
            self._reading._feed(body)

    def on_message_complete(self) -> None:
        self._completed_here = True
        request = self._reading
        if request is not None:
            self._reading = None
            request._continue = False
            request._finish()

    # -- answering --------------------------------------------------------------------------

    def _enqueue(self, item: Request | int) -> None:
        self._queue.append(item)
        if self._task is None:
            self._task = self._loop.create_task(self._run())
        elif len(self._queue) >= _QUEUE_HIGH and not self._queue_paused and not self._no_more:
            self._queue_paused = True
            if self._transport is not None:
                self._transport.pause_reading()

    def _refuse(self, status: int) -> None:
        """Answer ``status`` after whatever is queued, then close (a broken request stream
        cannot be resynchronised). A request already handed to the pipeline whose body broke
        (a malformed chunk) gets that answer from its own handler, whose ``read`` fails."""
        self._refused = True
        self._stop_reading()
        if self._reading is not None:
            self._reading._finish(RequestRejected(status, "malformed request body"))
            self._reading = None
            return
        self._enqueue(status)

    def _stop_reading(self) -> None:
        self._no_more = True

    def send_continue(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    async def _run(self) -> None:
        handler = self._server.handler
        keep_alive = True
        try:
            while self._queue and keep_alive:
                item = self._queue.popleft()
                if self._queue_paused and len(self._queue) < _QUEUE_HIGH // 2:
                    self._queue_paused = False
                    if self._transport is not None and not self._no_more:
                        self._transport.resume_reading()
                if isinstance(item, int):
                    self._server.refused += 1
                    self._write(_refusal(item))
                    break
                try:
                    reply = await handler(item)
                except Exception:
                    log.exception("internal error serving %s %s", item.method, item.raw_path)
                    self._write(_refusal(500))
                    keep_alive = False
                    break
                keep_alive = item.keep_alive  # False too once the server is closing
                self._server.requests += 1
                self._write(reply)
                transport = self._transport
                if transport is None or transport.is_closing():
                    return
                if self._drain is not None and not self._drain.done():
                    await self._drain
        finally:
            self._task = None
            self.last_active = self._loop.time()
        if not keep_alive or self._no_more or self._server.closing:
            self._no_more = True
            self._close()

    def _write(self, reply: Reply) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        body = reply.body
        if len(body) < _JOIN_BODY_BELOW:
            transport.write(reply.head + body if body else reply.head)
        else:
            transport.writelines((reply.head, body))

    def _close(self) -> None:
        """Close once the answer is out; first read (and drop) the rest of an unfinished body
        for a while, so the client reads our answer instead of a reset."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        unfinished = self._reading is not None or self._in_head or self._refused
        if not unfinished or self._tls:
            transport.close()
            return
        self._lingering = True
        if self._queue_paused:
            self._queue_paused = False
            transport.resume_reading()
        if transport.can_write_eof():
            transport.write_eof()
        self._loop.call_later(_LINGER, transport.close)

    def close_if_idle(self, now: float, idle_timeout: float) -> None:
        idle = self._task is None and not self._lingering
        if idle and self._transport is not None and now - self.last_active >= idle_timeout:
            self._transport.close()

    def abort(self) -> asyncio.Task[None] | None:
        """Drop the connection now; returns its handler task, if one is still running."""
        if self._transport is not None:
            self._transport.abort()
        return self._task

    def __repr__(self) -> str:
        state = "lingering" if self._lingering else "busy" if self._task else "idle"
        return f"<_Connection {self._remote} {state} queued={len(self._queue)}>"


def _is_tls(transport: asyncio.Transport) -> bool:
    return transport.get_extra_info("sslcontext") is not None


def _refusal(status: int) -> Reply:
    """The GFE page for a request refused before it reached the pipeline (ERR-1)."""
    return error_reply(status, keep_alive=False, date=hdr.http_date(time.time()))


class FrontServer:
    """A listening socket served by ``_Connection``s that hand requests to ``handler``."""

    def __init__(self, handler: Handler, idle_timeout: float) -> None:
        self.handler = handler
        self.idle_timeout = idle_timeout
        self.loop = asyncio.get_running_loop()
        self.conns: set[_Connection] = set()
        self.requests = 0  # answered by the handler (the status page's per-listener count)
        self.refused = 0  # malformed or oversized requests answered here with 400
        self.closing = False
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._drained: asyncio.Event | None = None  # set when the last connection is gone
        self._sockname = ("", 0)

    @classmethod
    async def start(
        cls,
        handler: Handler,
        sock: socket.socket,
        *,
        ssl: ssl_module.SSLContext | None = None,
        idle_timeout: float = 75.0,
    ) -> FrontServer:
        self = cls(handler, idle_timeout)
        self._server = await self.loop.create_server(
            lambda: _Connection(self), sock=sock, ssl=ssl, backlog=1024
        )
        name = sock.getsockname()
        self._sockname = (str(name[0]), int(name[1]))
        self._schedule_sweep()
        return self

    @property
    def sockname(self) -> tuple[str, int]:
        """The listening address (also after ``close()``)."""
        return self._sockname

    @property
    def connections(self) -> int:
        return len(self.conns)

    def _schedule_sweep(self) -> None:
        delay = min(_SWEEP, max(self.idle_timeout / 4, 0.01))
        self._sweeper = self.loop.call_later(delay, self._sweep)

    def _sweep(self) -> None:
        now = self.loop.time()
        for conn in list(self.conns):
            conn.close_if_idle(now, self.idle_timeout)
        if not self.closing:
            self._schedule_sweep()

    async def close(self, grace: float = 10.0) -> None:
        """Stop listening, close idle connections, let in-flight requests finish (up to
        ``grace`` seconds), then abort what is left and cancel and await its handlers."""
        self.closing = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._server is not None:
            self._server.close()
        for conn in list(self.conns):
            conn.close_if_idle(self.loop.time(), 0.0)
        if self.conns:
            # Busy connections close after their answer (keep-alive ends while closing);
            # the last one to go sets the event (connection_lost).
            self._drained = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), grace)
        tasks = [task for conn in list(self.conns) if (task := conn.abort()) is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)

    def _gone(self, conn: _Connection) -> None:
        self.conns.discard(conn)
        if not self.conns and self._drained is not None:
            self._drained.set()

    def __repr__(self) -> str:
        host, port = self._sockname
        return (
            f"<FrontServer {host}:{port} connections={len(self.conns)}"
            f" requests={self.requests} refused={self.refused}"
            f"{' closing' if self.closing else ''}>"
        )
