"""UpstreamClient against real backends: aiohttp test servers, and raw asyncio servers for the
malformed and edge behaviour an aiohttp server would never produce.

SPEC RESP-1 (buffered responses, repeated headers), RESP-5 (limits, bodyless responses),
HDR-4 (HTTP/1.1 upstream), INST-3 (sent_nothing, stale keep-alive retry), SCALE-4 (deadline).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import uvloop
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from gfe_proxy.errors import (
    DeadlineExceeded,
    ResponseHeadersTooLarge,
    ResponseTooLarge,
    UpstreamError,
)
from gfe_proxy.upstream import UpstreamClient, UpstreamResponse

HOST = "127.0.0.1"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


# -- raw backend ---------------------------------------------------------------------------------


class RawConn:
    """One accepted connection of a RawBackend, handed to the backend's script."""

    def __init__(
        self, backend: RawBackend, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.backend = backend
        self.reader = reader
        self.writer = writer
        self.index = backend.connections  # 1 for the first connection

    async def read_request(self) -> bytes:
        """One request, head and Content-Length body, as bytes; b"" at EOF."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return b""
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        request = head + await self.reader.readexactly(length)
        self.backend.requests.append(request)
        self.backend.request_seen.set()
        return request

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def wait_for_eof(self) -> None:
        """Hold the connection open until the client closes it."""
        with contextlib.suppress(ConnectionError):
            while await self.reader.read(65536):
                pass
        self.backend.client_closed.set()

    def reset(self) -> None:
        """Close with an RST instead of a FIN."""
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()


Script = Callable[[RawConn], Awaitable[None]]


class RawBackend:
    """An asyncio.start_server backend that runs ``script`` for each connection."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.connections = 0
        self.requests: list[bytes] = []
        self.request_seen = asyncio.Event()
        self.client_closed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def __aenter__(self) -> RawBackend:
        self._server = await asyncio.start_server(self._handle, HOST, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        try:
            await self.script(RawConn(self, reader, writer))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            self._tasks.discard(task)


def answer_each(*responses: bytes, then: str = "wait") -> Script:
    """A script answering successive requests on one connection with ``responses``."""

    async def script(conn: RawConn) -> None:
        for response in responses:
            if not await conn.read_request():
                return
            await conn.send(response)
        if then == "wait":
            await conn.wait_for_eof()

    return script


async def keep_answering(conn: RawConn) -> None:
    while await conn.read_request():
        await conn.send(OK)


async def get(client: UpstreamClient, target: str = "/", **kwargs: Any) -> UpstreamResponse:
    return await client.request("GET", target, [("Host", "instance")], timeout=30, **kwargs)


@contextlib.asynccontextmanager
async def upstream(port: int, **kwargs: Any) -> AsyncIterator[UpstreamClient]:
    client = UpstreamClient(HOST, port, **kwargs)
    try:
        yield client
    finally:
        await client.close()


# -- aiohttp backends ----------------------------------------------------------------------------


class Peers:
    """Which client connections an aiohttp backend saw."""

    def __init__(self) -> None:
        self.seen: set[object] = set()

    def note(self, request: web.Request) -> None:
        assert request.transport is not None
        self.seen.add(request.transport.get_extra_info("peername"))


async def start_app(aiohttp_server: Any, routes: list[web.RouteDef]) -> Any:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.add_routes(routes)
    return await aiohttp_server(app)


async def test_resp_1_sequential_requests_reuse_one_keep_alive_connection(
    aiohttp_server: Any,
) -> None:
    peers = Peers()

    async def hello(request: web.Request) -> web.Response:
        peers.note(request)
        return web.Response(text="hello")

    server = await start_app(aiohttp_server, [web.get("/", hello)])
    async with upstream(server.port) as client:
        for _ in range(5):
            response = await get(client)
            assert (response.status, response.body, response.keep_alive) == (200, b"hello", True)
        assert len(peers.seen) == 1
        assert (client.open_count, client.idle_count) == (1, 1)


async def test_concurrent_requests_open_one_connection_each(aiohttp_server: Any) -> None:
    peers = Peers()
    all_arrived = asyncio.Event()

    async def barrier(request: web.Request) -> web.Response:
        peers.note(request)
        if len(peers.seen) == 4:
            all_arrived.set()
        await all_arrived.wait()
        return web.Response(text="done")

    server = await start_app(aiohttp_server, [web.get("/", barrier)])
    async with upstream(server.port) as client:
        responses = await asyncio.gather(*(get(client) for _ in range(4)))
        assert [r.body for r in responses] == [b"done"] * 4
        assert len(peers.seen) == 4
        assert (client.open_count, client.idle_count) == (4, 4)


async def test_pool_keeps_at_most_max_idle_connections(aiohttp_server: Any) -> None:
    peers = Peers()
    all_arrived = asyncio.Event()

    async def barrier(request: web.Request) -> web.Response:
        peers.note(request)
        if len(peers.seen) == 3:
            all_arrived.set()
        await all_arrived.wait()
        return web.Response(text="done")

    server = await start_app(aiohttp_server, [web.get("/", barrier)])
    async with upstream(server.port, max_idle=1) as client:
        responses = await asyncio.gather(*(get(client) for _ in range(3)))
        assert sorted(r.keep_alive for r in responses) == [False, False, True]
        assert (client.open_count, client.idle_count) == (1, 1)


async def test_resp_1_chunked_body_is_reassembled(aiohttp_server: Any) -> None:
    pieces = [b"alpha-", b"", b"beta-" * 1000, b"gamma"]

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for piece in pieces:
            await response.write(piece)
        await response.write_eof()
        return response

    server = await start_app(aiohttp_server, [web.get("/", stream)])
    async with upstream(server.port) as client:
        response = await get(client)
        assert response.headers["Transfer-Encoding"] == "chunked"
        assert response.body == b"".join(pieces)
        assert response.keep_alive


async def test_resp_1_large_bodies_cross_both_ways(aiohttp_server: Any) -> None:
    async def echo(request: web.Request) -> web.Response:
        return web.Response(body=await request.read())

    server = await start_app(aiohttp_server, [web.post("/", echo)])
    payload = bytes(range(256)) * 12_000  # 3 MB: written apart from the head, read in pieces
    async with upstream(server.port) as client:
        response = await client.request("POST", "/", [("Host", "x")], payload, timeout=30)
        assert response.body == payload


async def test_resp_1_repeated_set_cookie_preserved_in_order(aiohttp_server: Any) -> None:
    async def cookies(request: web.Request) -> web.Response:
        headers: CIMultiDict[str] = CIMultiDict()
        headers.add("Set-Cookie", "a=1")
        headers.add("X-Between", "yes")
        headers.add("Set-Cookie", "b=2; Path=/")
        return web.Response(text="c", headers=headers)

    server = await start_app(aiohttp_server, [web.get("/", cookies)])
    async with upstream(server.port) as client:
        response = await get(client)
        assert response.headers.getall("set-cookie") == ["a=1", "b=2; Path=/"]
        names = [n for n, _ in response.headers.items() if n in ("Set-Cookie", "X-Between")]
        assert names == ["Set-Cookie", "X-Between", "Set-Cookie"]


async def test_resp_5_head_keeps_content_length_and_has_no_body(aiohttp_server: Any) -> None:
    peers = Peers()

    async def page(request: web.Request) -> web.Response:
        peers.note(request)
        return web.Response(text="x" * 50)

    server = await start_app(aiohttp_server, [web.get("/", page)])
    async with upstream(server.port) as client:
        head = await client.request("HEAD", "/", [("Host", "x")], timeout=30)
        assert (head.status, head.headers["Content-Length"], head.body) == (200, "50", b"")
        assert (await get(client)).body == b"x" * 50
        assert len(peers.seen) == 1


@pytest.mark.parametrize(
    ("method", "response"),
    [
        ("HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n"),
        ("HEAD", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
        ("HEAD", b"HTTP/1.1 200 OK\r\n\r\n"),
        ("GET", b"HTTP/1.1 204 No Content\r\n\r\n"),
        ("GET", b'HTTP/1.1 304 Not Modified\r\nContent-Length: 20\r\nETag: "e"\r\n\r\n'),
    ],
    ids=["head-content-length", "head-chunked", "head-unframed", "204", "304-content-length"],
)
async def test_resp_5_bodyless_responses_end_at_their_head(method: str, response: bytes) -> None:
    async with (
        RawBackend(answer_each(response, OK)) as backend,
        upstream(backend.port) as client,
    ):
        first = await client.request(method, "/", [("Host", "x")], timeout=30)
        assert (first.body, first.keep_alive) == (b"", True)
        assert (await get(client)).body == b"ok"  # the stream is still in step
        assert backend.connections == 1


@pytest.mark.parametrize(
    "interim",
    [
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
    ],
    ids=["100-continue", "103-early-hints", "both"],
)
async def test_interim_1xx_responses_are_skipped(interim: bytes) -> None:
    final = b"HTTP/1.1 201 Created\r\nX-Final: 1\r\nContent-Length: 4\r\n\r\ndone"
    async with RawBackend(answer_each(interim + final)) as backend, upstream(backend.port) as c:
        response = await c.request("POST", "/", [("Host", "x")], b"data", timeout=30)
        assert (response.status, response.reason, response.body) == (201, "Created", b"done")
        assert list(response.headers.items()) == [("X-Final", "1"), ("Content-Length", "4")]


async def test_resp_1_body_runs_until_close_without_framing() -> None:
    response = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the very end"
    async with (
        RawBackend(answer_each(response, then="close")) as backend,
        upstream(backend.port) as client,
    ):
        result = await get(client)
        assert (result.body, result.keep_alive) == (b"until the very end", False)
        assert client.open_count == 0


@pytest.mark.parametrize(
    "response",
    [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
    ],
    ids=["connection-close", "http-1.0", "http-1.0-keep-alive"],
)
async def test_hdr_4_connection_close_and_http_1_0_answers_are_not_reused(
    response: bytes,
) -> None:
    async with (
        RawBackend(answer_each(response, then="wait")) as backend,
        upstream(backend.port) as client,
    ):
        for _ in range(2):
            result = await get(client)
            assert (result.body, result.keep_alive) == (b"ok", False)
            assert client.open_count == 0
        assert backend.connections == 2


async def test_hdr_4_connection_close_from_aiohttp_is_honoured(aiohttp_server: Any) -> None:
    peers = Peers()

    async def closing(request: web.Request) -> web.Response:
        peers.note(request)
        response = web.Response(text="bye")
        response.force_close()
        return response

    server = await start_app(aiohttp_server, [web.get("/", closing)])
    async with upstream(server.port) as client:
        for _ in range(2):
            assert (await get(client)).keep_alive is False
        assert len(peers.seen) == 2


# -- limits (RESP-5) -----------------------------------------------------------------------------

LIMIT = 1024
# "HTTP/1.1 200 OK\r\n" + "Content-Length: 2\r\n" + "X-Pad: <v>\r\n" + "\r\n" = 47 + len(v)
PAD_AT_LIMIT = LIMIT - 47


@pytest.mark.parametrize(
    ("pad", "too_large"),
    [(PAD_AT_LIMIT, False), (PAD_AT_LIMIT + 1, True)],
    ids=["exactly-at-limit", "one-byte-over"],
)
async def test_resp_5_header_limit_counts_the_whole_head(pad: int, too_large: bool) -> None:
    response = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Pad: " + b"p" * pad + b"\r\n\r\nok"
    async with (
        RawBackend(answer_each(response)) as backend,
        upstream(backend.port, max_header_bytes=LIMIT) as client,
    ):
        if too_large:
            with pytest.raises(ResponseHeadersTooLarge) as caught:
                await get(client)
            assert caught.value.status == 502
            assert client.open_count == 0
        else:
            assert (await get(client)).body == b"ok"


async def test_resp_5_endless_header_fails_without_waiting_for_its_end() -> None:
    async def endless_header(conn: RawConn) -> None:
        await conn.read_request()
        await conn.send(b"HTTP/1.1 200 OK\r\nX-Endless: " + b"e" * 5 * LIMIT)
        await conn.wait_for_eof()

    async with (
        RawBackend(endless_header) as backend,
        upstream(backend.port, max_header_bytes=LIMIT) as client,
    ):
        with pytest.raises(ResponseHeadersTooLarge):
            await get(client)
        await backend.client_closed.wait()


async def stream_forever(conn: RawConn, head: bytes, piece: bytes) -> None:
    await conn.read_request()
    await conn.send(head)
    with contextlib.suppress(ConnectionError):
        while True:
            await conn.send(piece)


async def test_resp_5_body_over_limit_by_content_length_fails_before_reading_it() -> None:
    async def announce_big(conn: RawConn) -> None:
        await conn.read_request()
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (LIMIT + 1))
        await conn.wait_for_eof()  # sends no body: the client must not wait for one

    async with RawBackend(announce_big) as backend, upstream(backend.port, max_body=LIMIT) as c:
        with pytest.raises(ResponseTooLarge) as caught:
            await get(c)
        assert caught.value.status == 500
        await backend.client_closed.wait()
        assert c.open_count == 0


@pytest.mark.parametrize(
    ("head", "piece"),
    [
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"100\r\n" + b"c" * 256 + b"\r\n",
        ),
        (b"HTTP/1.1 200 OK\r\n\r\n", b"u" * 256),
    ],
    ids=["chunked", "until-close"],
)
async def test_resp_5_streamed_body_over_limit_stops_reading(head: bytes, piece: bytes) -> None:
    async def endless_body(conn: RawConn) -> None:
        await stream_forever(conn, head, piece)

    async with RawBackend(endless_body) as backend, upstream(backend.port, max_body=LIMIT) as c:
        with pytest.raises(ResponseTooLarge):
            await get(c)
        assert c.open_count == 0


async def test_resp_5_body_exactly_at_limit_is_accepted() -> None:
    response = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % LIMIT + b"b" * LIMIT
    async with (
        RawBackend(answer_each(response)) as backend,
        upstream(backend.port, max_body=LIMIT) as client,
    ):
        assert len((await get(client)).body) == LIMIT


# -- failures and retries (INST-3) ---------------------------------------------------------------


async def close_after_request(conn: RawConn) -> None:
    await conn.read_request()


async def reset_after_request(conn: RawConn) -> None:
    await conn.read_request()
    conn.reset()


async def close_at_once(conn: RawConn) -> None:
    pass


@pytest.mark.parametrize(
    "script",
    [close_at_once, close_after_request, reset_after_request],
    ids=["closed-on-accept", "fin", "rst"],
)
async def test_inst_3_failure_before_any_byte_is_sent_nothing(script: Script) -> None:
    async with RawBackend(script) as backend, upstream(backend.port) as client:
        with pytest.raises(UpstreamError) as caught:
            await get(client)
        assert caught.value.sent_nothing is True
        assert backend.connections == 1  # a fresh connection is never retried


@pytest.mark.parametrize(
    "partial",
    [
        b"HTTP/1.1 200 OK\r\nContent-Len",
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        b"NOT HTTP AT ALL\r\n\r\n",
    ],
    ids=["mid-head", "mid-body", "mid-chunked", "garbage"],
)
async def test_inst_3_failure_after_a_response_byte_is_not_sent_nothing(partial: bytes) -> None:
    async def die_midway(conn: RawConn) -> None:
        await conn.read_request()
        await conn.send(partial)

    async with RawBackend(die_midway) as backend, upstream(backend.port) as client:
        with pytest.raises(UpstreamError) as caught:
            await get(client)
        assert caught.value.sent_nothing is False
        assert client.open_count == 0


async def test_inst_3_connect_refused_is_sent_nothing() -> None:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        async with upstream(port) as client:
            with pytest.raises(UpstreamError) as caught:
                await get(client)
            assert caught.value.sent_nothing is True


async def _first_goes_stale(conn: RawConn) -> None:
    if conn.index == 1:
        await conn.read_request()
        await conn.send(OK)
        await conn.read_request()  # closed "while idle": read, never answered
        return
    await keep_answering(conn)


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_inst_3_stale_pooled_connection_is_retried_once_when_idempotent(method: str) -> None:
    async with RawBackend(_first_goes_stale) as backend, upstream(backend.port) as client:
        assert (await get(client)).body == b"ok"
        body = b"x" if method == "PUT" else b""
        response = await client.request(method, "/", [("Host", "x")], body, timeout=30)
        assert response.body == b"ok"
        assert backend.connections == 2
        assert backend.requests[1] == backend.requests[2]  # the same request, resent whole


@pytest.mark.parametrize("method", ["POST", "PATCH"])
async def test_inst_3_stale_pooled_connection_never_resends_a_non_idempotent_request(
    method: str,
) -> None:
    # The instance read it: it may have acted on it, so it is not sent again (SPEC INST-3).
    async with RawBackend(_first_goes_stale) as backend, upstream(backend.port) as client:
        assert (await get(client)).body == b"ok"
        with pytest.raises(UpstreamError) as caught:
            await client.request(method, "/", [("Host", "x")], b"form=1", timeout=30)
        assert caught.value.sent_nothing is True
        assert backend.connections == 1
        assert len(backend.requests) == 2


async def test_inst_3_connection_idle_past_max_idle_age_is_not_reused() -> None:
    async with (
        RawBackend(keep_answering) as backend,
        upstream(backend.port, max_idle_age=0.0) as client,
    ):
        assert (await get(client)).keep_alive is True
        assert client.idle_count == 1
        assert (await get(client)).body == b"ok"
        assert backend.connections == 2  # the pooled one was too old: closed, a new one opened
    async with RawBackend(keep_answering) as backend, upstream(backend.port) as client:
        await get(client)
        await get(client)
        assert backend.connections == 1  # within the default second: reused


async def test_inst_3_pooled_connection_closed_while_idle_is_not_used() -> None:
    async with (
        RawBackend(answer_each(OK, then="close")) as backend,
        upstream(backend.port) as client,
    ):
        assert (await get(client)).keep_alive is True
        # Whether or not the client has seen the FIN yet, the request must succeed.
        assert (await get(client)).body == b"ok"
        assert backend.connections == 2


async def test_inst_3_pooled_connection_failing_mid_response_is_not_retried() -> None:
    async def fail_second(conn: RawConn) -> None:
        await conn.read_request()
        await conn.send(OK)
        await conn.read_request()
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nhal")

    async with RawBackend(fail_second) as backend, upstream(backend.port) as client:
        await get(client)
        with pytest.raises(UpstreamError) as caught:
            await get(client)
        assert caught.value.sent_nothing is False
        assert backend.connections == 1


async def silent(conn: RawConn) -> None:
    await conn.read_request()
    await conn.wait_for_eof()


async def test_scale_4_deadline_raises_and_closes_the_connection() -> None:
    async with RawBackend(silent) as backend, upstream(backend.port) as client:
        with pytest.raises(DeadlineExceeded) as caught:
            await client.request("GET", "/", [("Host", "x")], timeout=0.05)
        assert caught.value.status == 500
        assert client.open_count == 0
        await backend.client_closed.wait()


async def test_cancelled_request_closes_its_connection() -> None:
    async with RawBackend(silent) as backend, upstream(backend.port) as client:
        task = asyncio.create_task(get(client))
        await backend.request_seen.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert client.open_count == 0
        await backend.client_closed.wait()


async def test_close_closes_idle_and_in_use_connections() -> None:
    async def answer_once_then_hang(conn: RawConn) -> None:
        if conn.index == 1:
            await conn.read_request()
            await conn.send(OK)
        await silent(conn)

    async with RawBackend(answer_once_then_hang) as backend:
        client = UpstreamClient(HOST, backend.port)
        await get(client)
        backend.request_seen.clear()
        idle_reuse = asyncio.create_task(get(client, "/on-the-pooled-connection"))
        await backend.request_seen.wait()
        backend.request_seen.clear()
        fresh = asyncio.create_task(get(client, "/on-a-new-connection"))
        await backend.request_seen.wait()
        assert (client.open_count, client.idle_count) == (2, 0)
        await client.close()
        assert (client.open_count, client.idle_count) == (0, 0)
        for task in (idle_reuse, fresh):
            with pytest.raises(UpstreamError):
                await task
        with pytest.raises(UpstreamError):
            await get(client)


# -- the request we send (HDR-4) -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "headers", "body", "expected"),
    [
        (
            "GET",
            [("Host", "a"), ("Accept", "*/*")],
            b"",
            b"GET /p?q=1 HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n",
        ),
        (
            "POST",
            [("Host", "a")],
            b"",
            b"POST /p?q=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
        ),
        (
            "PUT",
            [("Host", "a"), ("Transfer-Encoding", "chunked"), ("content-length", "99")],
            b"12345",
            b"PUT /p?q=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n12345",
        ),
        (
            "DELETE",
            [("Host", "a"), ("X-Dup", "1"), ("X-Dup", "2")],
            b"",
            b"DELETE /p?q=1 HTTP/1.1\r\nHost: a\r\nX-Dup: 1\r\nX-Dup: 2\r\n\r\n",
        ),
        (
            "GET",
            [("Host", "a"), ("X-Name", "caf\u00e9")],
            b"",
            "GET /p?q=1 HTTP/1.1\r\nHost: a\r\nX-Name: caf\u00e9\r\n\r\n".encode(),
        ),
    ],
    ids=["get-no-length", "post-empty-length-0", "caller-framing-replaced", "repeated", "utf8"],
)
async def test_hdr_4_request_is_http_1_1_with_our_framing(
    method: str, headers: list[tuple[str, str]], body: bytes, expected: bytes
) -> None:
    async with RawBackend(answer_each(OK)) as backend, upstream(backend.port) as client:
        await client.request(method, "/p?q=1", headers, body, timeout=30)
        assert backend.requests == [expected]


async def test_non_ascii_response_header_bytes_decode_like_aiohttp() -> None:
    response = "HTTP/1.1 200 OK\r\nX-Name: caf\u00e9\r\nContent-Length: 0\r\n\r\n".encode()
    async with RawBackend(answer_each(response)) as backend, upstream(backend.port) as client:
        assert (await get(client)).headers["X-Name"] == "caf\u00e9"


@pytest.mark.parametrize(
    ("target", "headers"),
    [
        ("/a HTTP/1.1\r\nX-Evil: 1", [("Host", "a")]),
        ("/", [("Host", "a\r\nX-Evil: 1")]),
        ("/", [("X-Evil\n", "1")]),
        ("/", [("Host", "a\rb")]),
    ],
    ids=["target", "value-crlf", "name-lf", "bare-cr"],
)
async def test_hdr_4_cr_or_lf_in_request_is_refused(
    target: str, headers: list[tuple[str, str]]
) -> None:
    async with RawBackend(answer_each(OK)) as backend, upstream(backend.port) as client:
        with pytest.raises(ValueError, match="CR or LF"):
            await client.request("GET", target, headers, timeout=30)
        assert backend.connections == 0


# -- properties ----------------------------------------------------------------------------------


async def _segmented_round_trip(body: bytes, cuts: list[int], chunked: bool) -> UpstreamResponse:
    if chunked:
        framed = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (body[:7], body[7:]) if p)
        wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + framed + b"0\r\n\r\n"
    else:
        wire = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    bounds = sorted({0, len(wire), *(c % (len(wire) + 1) for c in cuts)})

    async def trickle(conn: RawConn) -> None:
        await conn.read_request()
        for start, end in itertools.pairwise(bounds):
            await conn.send(wire[start:end])
        await conn.wait_for_eof()

    async with RawBackend(trickle) as backend, upstream(backend.port) as client:
        return await get(client)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=st.binary(max_size=300),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=8),
    chunked=st.booleans(),
)
def test_resp_1_body_survives_any_segmentation(body: bytes, cuts: list[int], chunked: bool) -> None:
    response = asyncio.run(_segmented_round_trip(body, cuts, chunked))
    assert (response.status, response.body, response.keep_alive) == (200, body, True)


# -- uvloop --------------------------------------------------------------------------------------


async def _scenario_keep_alive_and_chunked() -> None:
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    async with RawBackend(answer_each(OK, chunked)) as backend, upstream(backend.port) as c:
        assert (await get(c)).body == b"ok"
        assert (await get(c)).body == b"abc"
        assert backend.connections == 1


async def _scenario_head_and_until_close() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n"
    tail = b"HTTP/1.1 200 OK\r\n\r\nto the end"
    async with (
        RawBackend(answer_each(head, tail, then="close")) as backend,
        upstream(backend.port) as client,
    ):
        assert (await client.request("HEAD", "/", [], timeout=30)).body == b""
        assert (await get(client)).body == b"to the end"


async def _scenario_stale_retry() -> None:
    await test_inst_3_stale_pooled_connection_is_retried_once_when_idempotent("GET")
    await test_inst_3_stale_pooled_connection_never_resends_a_non_idempotent_request("POST")


async def _scenario_deadline() -> None:
    await test_scale_4_deadline_raises_and_closes_the_connection()


async def _scenario_limits() -> None:
    await test_resp_5_body_over_limit_by_content_length_fails_before_reading_it()
    await test_resp_5_endless_header_fails_without_waiting_for_its_end()


async def _scenario_failures() -> None:
    await test_inst_3_failure_before_any_byte_is_sent_nothing(reset_after_request)
    await test_inst_3_failure_after_a_response_byte_is_not_sent_nothing(b"HTTP/1.1 2")


async def _scenario_close() -> None:
    await test_close_closes_idle_and_in_use_connections()


UVLOOP_SCENARIOS = [
    _scenario_keep_alive_and_chunked,
    _scenario_head_and_until_close,
    _scenario_stale_retry,
    _scenario_deadline,
    _scenario_limits,
    _scenario_failures,
    _scenario_close,
]


@pytest.fixture
def uvloop_runner() -> Iterator[asyncio.Runner]:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        yield runner


@pytest.mark.parametrize(
    "scenario",
    UVLOOP_SCENARIOS,
    ids=[s.__name__.removeprefix("_scenario_") for s in UVLOOP_SCENARIOS],
)
def test_client_works_under_uvloop(
    uvloop_runner: asyncio.Runner, scenario: Callable[[], Awaitable[None]]
) -> None:
    async def run() -> None:
        assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
        await scenario()

    uvloop_runner.run(run())
