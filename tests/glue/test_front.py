"""FrontServer (gfe_proxy/front.py), the HTTP/1.1 server on the public listeners, over real
sockets on 127.0.0.1: raw-byte clients write exact requests and read exact answers; aiohttp's
client covers the happy paths and TLS. A selection runs again under uvloop, the loop
production uses.

SPEC HDR-3 (request body over 32 MB → 413, checked from Content-Length and while reading a
chunked body), HDR-4 (HTTP/1.0 requests), RESP-1 (complete responses on keep-alive
connections), RESP-5 (HEAD answers carry no body).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
import uvloop
from multidict import CIMultiDict

from gfe_proxy.errors import RequestRejected
from gfe_proxy.front import FrontServer, HttpVersion, Request
from gfe_proxy.headers import MAX_REQUEST_BODY
from gfe_proxy.tls import generate, server_context
from gfe_proxy.wire import Reply, response

HOST = "127.0.0.1"
DEADLINE = 10.0  # seconds: a hang fails under the test's own name, never a pass/fail threshold
MIB = 1024 * 1024
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

T = TypeVar("T")
Handler = Callable[[Request], Awaitable[Reply]]


# -- harness -------------------------------------------------------------------------------------


async def within(aw: Awaitable[T]) -> T:
    """``aw``, or a TimeoutError after DEADLINE."""
    return await asyncio.wait_for(aw, DEADLINE)


def pattern(size: int) -> bytes:
    """``size`` bytes with a period (251, prime) that lines up with no buffer size, so a lost,
    repeated or reordered piece changes the bytes."""
    return (bytes(range(251)) * (size // 251 + 1))[:size]


def request_bytes(method: str, target: str, *headers: str, version: str = "1.1") -> bytes:
    """A request head; HTTP/1.1 requests get ``Host: front.test`` unless one is given."""
    lines = [f"{method} {target} HTTP/{version}", *headers]
    if version == "1.1" and not any(h.lower().startswith("host:") for h in headers):
        lines.insert(1, "Host: front.test")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def chunked(body: bytes, size: int) -> list[bytes]:
    """``body`` in the chunked transfer coding, one list item per chunk, then the last chunk."""
    pieces = [
        b"%x\r\n" % len(body[i : i + size]) + body[i : i + size] + b"\r\n"
        for i in range(0, len(body), size)
    ]
    return [*pieces, b"0\r\n\r\n"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """One HTTP answer as read off the wire."""

    head: bytes  # status line and header lines, without the blank line
    status: int
    headers: CIMultiDict[str]
    body: bytes


async def read_answer(
    reader: asyncio.StreamReader, *, head_request: bool = False, piece: int = 0
) -> Answer:
    """One answer framed by Content-Length (none after HEAD, 1xx, 204 and 304). With
    ``piece``, the body is read that many bytes at a time, as a slow client would."""
    async with asyncio.timeout(DEADLINE):
        raw = (await reader.readuntil(b"\r\n\r\n"))[:-4]
        status_line, *lines = raw.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        headers: CIMultiDict[str] = CIMultiDict()
        for line in lines:
            name, _, value = line.partition(":")
            headers.add(name.strip(), value.strip())
        bodyless = head_request or status < 200 or status in (204, 304)
        length = 0 if bodyless else int(headers.get("Content-Length", "0"))
        if not piece:
            return Answer(
                head=raw, status=status, headers=headers, body=await reader.readexactly(length)
            )
        parts = []
        while length:
            part = await reader.readexactly(min(piece, length))
            parts.append(part)
            length -= len(part)
        return Answer(head=raw, status=status, headers=headers, body=b"".join(parts))


async def assert_closed(reader: asyncio.StreamReader) -> None:
    """The server ends the connection (FIN or reset) and sends nothing more first."""
    try:
        rest = await within(reader.read())
    except ConnectionResetError:
        return
    assert rest == b""


async def refused(port: int) -> bool:
    """Whether a new connection to ``port`` is refused."""
    try:
        _, writer = await within(asyncio.open_connection(HOST, port))
    except ConnectionRefusedError:
        return True
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return False


def reply(request: Request, status: int = 200, body: bytes = b"") -> Reply:
    return response(request, status, None, CIMultiDict(), body)


async def hello(request: Request) -> Reply:
    """Answers with the request target, so a test can tell answers apart."""
    return reply(request, 200, request.raw_path.encode())


async def echo_body(request: Request) -> Reply:
    """Answers with the request body; a refused body becomes an answer with its status."""
    try:
        body = await request.read()
    except RequestRejected as e:
        return reply(request, e.status)
    return reply(request, 200, body)


async def refuse_long_bodies(request: Request) -> Reply:
    """SPEC HDR-3 as the pipeline does it: a Content-Length over the limit is answered 413
    without reading the body; otherwise ``echo_body``."""
    if request.content_length is not None and request.content_length > MAX_REQUEST_BODY:
        return reply(request, 413)
    return await echo_body(request)


class Front:
    """A running FrontServer, the requests its handler got, and the raw connections a test
    opened (closed at the end)."""

    def __init__(self, server: FrontServer, calls: list[Request]) -> None:
        self.server = server
        self.calls = calls
        self.closed = False
        self.writers: list[asyncio.StreamWriter] = []

    @property
    def port(self) -> int:
        return int(self.server.sockname[1])

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    async def connect(
        self, *, limit: int = 2**16
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await within(asyncio.open_connection(HOST, self.port, limit=limit))
        self.writers.append(writer)
        return reader, writer

    async def close(self, grace: float = 10.0) -> None:
        self.closed = True
        await self.server.close(grace)


@contextlib.asynccontextmanager
async def serving(handler: Handler = hello, **kw: Any) -> AsyncIterator[Front]:
    """A FrontServer on an ephemeral port calling ``handler``, recording each request."""
    calls: list[Request] = []

    async def recording(request: Request) -> Reply:
        calls.append(request)
        return await handler(request)

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((HOST, 0))
        sock.listen(128)
        front = Front(await FrontServer.start(recording, sock, **kw), calls)
        try:
            yield front
        finally:
            for writer in front.writers:
                writer.close()
            for writer in front.writers:
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
            if not front.closed:
                await within(front.server.close(grace=0))
    finally:
        sock.close()  # the server's duty, but a no-op then, and no leak when start() failed


# -- keep-alive (RESP-1, HDR-4) ------------------------------------------------------------------


async def test_http11_connection_answers_two_requests_in_turn() -> None:
    async with serving() as front:
        reader, writer = await front.connect()
        for target in ("/one", "/two?x=1"):
            writer.write(request_bytes("GET", target))
            answer = await read_answer(reader)
            assert (answer.status, answer.body) == (200, target.encode())
            assert "Connection" not in answer.headers
        assert [r.keep_alive for r in front.calls] == [True, True]
        assert front.server.connections == 1


CLOSING = [
    pytest.param(
        request_bytes("GET", "/", "Connection: close"), "close", id="http11-connection-close"
    ),
    pytest.param(request_bytes("GET", "/", version="1.0"), None, id="http10-default"),
    pytest.param(
        request_bytes("GET", "/", "Connection: close", version="1.0"),
        None,
        id="http10-connection-close",
    ),
]


@pytest.mark.parametrize(("raw", "connection"), CLOSING)
async def test_request_that_ends_the_connection_is_answered_then_closed(
    raw: bytes, connection: str | None
) -> None:
    async with serving() as front:
        reader, writer = await front.connect()
        writer.write(raw)
        answer = await read_answer(reader)
        assert answer.status == 200
        assert answer.headers.get("Connection") == connection
        await assert_closed(reader)
        assert [r.keep_alive for r in front.calls] == [False]


async def test_pipelined_request_after_connection_close_is_not_answered() -> None:
    async with serving() as front:
        reader, writer = await front.connect()
        writer.write(
            request_bytes("GET", "/last", "Connection: close") + request_bytes("GET", "/never")
        )
        answer = await read_answer(reader)
        assert (answer.status, answer.body) == (200, b"/last")
        await assert_closed(reader)
        assert [r.path for r in front.calls] == ["/last"]


async def test_client_half_close_after_its_request_still_gets_the_answer() -> None:
    async with serving() as front:
        reader, writer = await front.connect()
        writer.write(request_bytes("GET", "/half", version="1.0"))
        writer.write_eof()
        answer = await read_answer(reader)
        assert (answer.status, answer.body) == (200, b"/half")
        await assert_closed(reader)


async def test_hdr_4_http10_keep_alive_is_acknowledged_and_the_connection_stays_open() -> None:
    async with serving() as front:
        reader, writer = await front.connect()
        for target in ("/first", "/second"):
            writer.write(request_bytes("GET", target, "Connection: keep-alive", version="1.0"))
            answer = await read_answer(reader)
            assert (answer.status, answer.body) == (200, target.encode())
            assert answer.headers["Connection"] == "keep-alive"
        assert [r.version for r in front.calls] == [HttpVersion(1, 0)] * 2
        assert front.server.connections == 1


async def test_pipelined_requests_are_answered_in_order_though_the_first_is_slowest() -> None:
    first_entered, release_first = asyncio.Event(), asyncio.Event()

    async def handler(request: Request) -> Reply:
        if request.path == "/1":
            first_entered.set()
            await release_first.wait()
        return await hello(request)

    async with serving(handler) as front:
        reader, writer = await front.connect()
        writer.write(b"".join(request_bytes("GET", f"/{i}") for i in (1, 2, 3)))
        await within(first_entered.wait())
        release_first.set()
        bodies = [(await read_answer(reader)).body for _ in range(3)]
        assert bodies == [b"/1", b"/2", b"/3"]
        assert [r.path for r in front.calls] == ["/1", "/2", "/3"]
        assert front.server.connections == 1


# -- request bodies (HDR-3) ----------------------------------------------------------------------

SMALL = b"hello world"
BIG = pattern(3 * MIB + 17)
MEDIUM = pattern(MIB - 1)  # aiohttp's client warns (an error here) about bytes bodies ≥ 1 MiB
BODIES = [
    pytest.param("Content-Length: 11", [b"hello", b" world"], SMALL, id="content-length"),
    pytest.param(
        "Transfer-Encoding: chunked",
        [b"5\r\nhello\r\n", b"6\r\n world\r\n", b"0\r\n\r\n"],
        SMALL,
        id="chunked",
    ),
    pytest.param(
        "Transfer-Encoding: chunked",
        [b"5;name=value\r\nhello\r\n6\r\n world\r\n", b"0\r\nX-Trailer: t\r\n\r\n"],
        SMALL,
        id="chunked-extension-and-trailer",
    ),
    pytest.param(
        f"Content-Length: {len(BIG)}",
        [BIG[i : i + 100_000] for i in range(0, len(BIG), 100_000)],
        BIG,
        id="content-length-3-MiB",
    ),
    pytest.param("Transfer-Encoding: chunked", chunked(BIG, 7_919), BIG, id="chunked-3-MiB"),
]


@pytest.mark.parametrize(("framing", "pieces", "body"), BODIES)
async def test_request_body_sent_in_pieces_reaches_read_whole(
    framing: str, pieces: list[bytes], body: bytes
) -> None:
    entered = asyncio.Event()

    async def handler(request: Request) -> Reply:
        if request.method == "GET":
            return await hello(request)
        entered.set()
        return await echo_body(request)

    async with serving(handler) as front:
        reader, writer = await front.connect()
        writer.write(request_bytes("POST", "/upload", framing))
        # The handler runs once the head is in; the body follows in separate writes.
        await within(entered.wait())
        for piece in pieces:
            writer.write(piece)
            await writer.drain()
        answer = await read_answer(reader)
        assert answer.status == 200
        assert answer.body == body
        (request,) = front.calls
        assert request.body_exists
        # The body was consumed exactly: the connection reads the next request right.
        writer.write(request_bytes("GET", "/after"))
        assert (await read_answer(reader)).body == b"/after"


async def test_body_sent_with_the_head_reaches_read_whole() -> None:
    async with serving(echo_body) as front:
        reader, writer = await front.connect()
        writer.write(request_bytes("PUT", "/", "Content-Length: 11") + SMALL)
        answer = await read_answer(reader)
        assert (answer.status, answer.body) == (200, SMALL)


async def test_request_without_body_reads_empty() -> None:
    async with serving(echo_body) as front:
        reader, writer = await front.connect()
        writer.write(request_bytes("POST", "/", "Content-Length: 0"))
        writer.write(request_bytes("GET", "/"))
        assert [(await read_answer(reader)).body for _ in range(2)] == [b"", b""]
        assert [r.body_exists for r in front.calls] == [False, False]


async def test_body_the_handler_never_read_is_skipped_before_the_next_request() -> None:
    async with serving() as front:  # hello never reads the body
        reader, writer = await front.connect()
        writer.write(
            request_bytes("POST", "/ignored", "Content-Length: 5")
            + b"GET /"
            + request_bytes("POST", "/ignored-too", "Transfer-Encoding: chunked")
            + b"3\r\nabc\r\n0\r\n\r\n"
            + request_bytes("GET", "/next")
        )
        bodies = [(await read_answer(reader)).body for _ in range(3)]
        assert bodies == [b"/ignored", b"/ignored-too", b"/next"]
        assert front.server.connections == 1


async def _body_size(request: Request) -> Reply:
    try:
        body = await request.read()
    except RequestRejected as e:
        return reply(request, e.status)
    return reply(request, 200, str(len(body)).encode())


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_hdr_3_body_of_exactly_32_mib_is_accepted(framing: str) -> None:
    body = pattern(MAX_REQUEST_BODY)
    if framing == "chunked":
        head = request_bytes("POST", "/", "Transfer-Encoding: chunked")
        pieces = chunked(body, MIB)
    else:
        head = request_bytes("POST", "/", f"Content-Length: {len(body)}")
        pieces = [body]
    async with serving(_body_size) as front:
        reader, writer = await front.connect()
        writer.write(head)
        writer.writelines(pieces)
        answer = await read_answer(reader)
        assert (answer.status, answer.body) == (200, str(MAX_REQUEST_BODY).encode())


async def test_hdr_3_chunked_body_past_32_mib_is_refused_with_413_then_closed() -> None:
    async with serving(echo_body) as front:
        reader, writer = await front.connect()
        writer.write(request_bytes("POST", "/", "Transfer-Encoding: chunked"))
        chunk = b"%x\r\n" % MIB + pattern(MIB) + b"\r\n"

        async def stream() -> None:
            # The server may stop reading and close once it refused: writes then fail.
            with contextlib.suppress(ConnectionError):
                for _ in range(MAX_REQUEST_BODY // MIB + 8):
                    writer.write(chunk)
                    await writer.drain()

        streaming = asyncio.create_task(stream())
        try:
            answer = await read_answer(reader)
        finally:
            streaming.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await streaming
        assert answer.status == 413
        await assert_closed(reader)


async def test_hdr_3_content_length_past_32_mib_is_answered_413_before_the_body() -> None:
    async with serving(refuse_long_bodies) as front:
        reader, writer = await front.connect()
        writer.write(request_bytes("POST", "/", f"Content-Length: {MAX_REQUEST_BODY + 1}"))
        answer = await read_answer(reader)
        assert answer.status == 413
        await assert_closed(reader)
        (request,) = front.calls
        assert request.content_length == MAX_REQUEST_BODY + 1
        assert request.body_exists


# -- Expect: 100-continue ------------------------------------------------------------------------


async def test_expect_100_continue_is_answered_before_the_client_sends_the_body() -> None:
    async with serving(echo_body) as front:
        reader, writer = await front.connect()
        writer.write(request_bytes("POST", "/", "Content-Length: 5", "Expect: 100-continue"))
        assert await within(reader.readexactly(len(CONTINUE))) == CONTINUE
        writer.write(b"hello")
        answer = await read_answer(reader)
        assert (answer.status, answer.body) == (200, b"hello")


async def test_expect_100_continue_is_not_sent_when_the_body_came_with_the_head() -> None:
    async with serving(echo_body) as front:
        reader, writer = await front.connect()
        head = request_bytes("POST", "/", "Content-Length: 5", "Expect: 100-continue")
        writer.write(head + b"hello")
        answer = await read_answer(reader)
        assert (answer.status, answer.body) == (200, b"hello")


async def test_hdr_3_expect_100_continue_refused_by_length_gets_413_without_continue() -> None:
    async with serving(refuse_long_bodies) as front:
        reader, writer = await front.connect()
        length = f"Content-Length: {MAX_REQUEST_BODY + 1}"
        writer.write(request_bytes("POST", "/", length, "Expect: 100-continue"))
        answer = await read_answer(reader)
        assert answer.status == 413
        await assert_closed(reader)


# -- malformed requests --------------------------------------------------------------------------

MALFORMED = [
    pytest.param(b"GARBAGE\r\n\r\n", id="request-line-garbage"),
    pytest.param(
        b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * (70 * 1024) + b"\r\n\r\n",
        id="one-header-over-64-KiB",
    ),
    pytest.param(
        b"GET / HTTP/1.1\r\nHost: t\r\n"
        + b"".join(b"X-H%d: %s\r\n" % (i, b"b" * 4000) for i in range(20))
        + b"\r\n",
        id="head-over-64-KiB-in-small-headers",
    ),
    pytest.param(b"GET / HTTP/1.1\r\nHost: t\r\nno colon here\r\n\r\n", id="header-without-colon"),
    pytest.param(
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\n",
        id="content-length-and-chunked",
    ),
]


@pytest.mark.parametrize("raw", MALFORMED)
async def test_malformed_request_gets_400_and_close_without_reaching_the_handler(
    raw: bytes,
) -> None:
    async with serving() as front:
        reader, writer = await front.connect()
        writer.write(raw)
        answer = await read_answer(reader)
        assert answer.head.startswith(b"HTTP/1.1 400"), answer.head
        await assert_closed(reader)
        assert front.calls == []


@pytest.mark.parametrize("size", [70 * 1024, 2 * MIB], ids=["70-KiB", "2-MiB"])
async def test_head_past_64_kib_is_refused_without_waiting_for_its_end(size: int) -> None:
    async with serving() as front:
        reader, writer = await front.connect()
        writer.write(b"GET / HTTP/1.1\r\nHost: t\r\nX-Endless: " + b"a" * size)
        answer = await read_answer(reader)  # no blank line was ever sent
        assert answer.head.startswith(b"HTTP/1.1 400"), answer.head
        await assert_closed(reader)
        assert front.calls == []


# -- request attributes --------------------------------------------------------------------------


async def test_request_attributes_from_the_wire() -> None:
    async with serving() as front:
        reader, writer = await front.connect()
        writer.write(
            b"GET /a%20b/caf%C3%A9?x=1&y=two HTTP/1.1\r\n"
            b"Host: example.com:8080\r\n"
            b"X-Rep: one\r\n"
            b"Content-Type: Text/HTML; Charset=UTF-8\r\n"
            b"x-rep: two\r\n"
            b"X-CASE: Value\r\n"
            b"X-Rep: three\r\n"
            b"\r\n"
        )
        assert (await read_answer(reader)).status == 200
        (r,) = front.calls
        assert r.method == "GET"
        assert r.raw_path == "/a%20b/caf%C3%A9?x=1&y=two"
        assert r.path == "/a b/café"
        assert r.query_string == "x=1&y=two"
        assert r.path_qs.endswith("?x=1&y=two")
        assert r.host == "example.com:8080"
        assert r.remote == HOST
        assert r.version == HttpVersion(1, 1)
        assert r.headers.getall("X-Rep") == ["one", "two", "three"]
        assert r.headers["x-case"] == r.headers["X-Case"] == "Value"
        assert r.content_type == "text/html"
        assert r.content_length is None
        assert not r.body_exists
        assert r.keep_alive


async def test_hdr_4_http10_request_without_host_falls_back_to_the_listener_address() -> None:
    async with serving() as front:
        reader, writer = await front.connect()
        writer.write(b"GET /x HTTP/1.0\r\n\r\n")
        assert (await read_answer(reader)).status == 200
        (r,) = front.calls
        assert r.host == f"{HOST}:{front.port}"
        assert r.version == HttpVersion(1, 0)
        assert "Host" not in r.headers


ATTRIBUTES = [
    pytest.param({}, "content_length", None, id="no-length"),
    pytest.param({}, "body_exists", False, id="no-body"),
    pytest.param({"Content-Length": "0"}, "body_exists", False, id="zero-length-no-body"),
    pytest.param({"Content-Length": "3"}, "content_length", 3, id="length"),
    pytest.param({"Content-Length": "3"}, "body_exists", True, id="length-body"),
    pytest.param({"Transfer-Encoding": "chunked"}, "body_exists", True, id="chunked-body"),
    pytest.param({"Transfer-Encoding": "chunked"}, "content_length", None, id="chunked-length"),
    pytest.param({}, "content_type", "", id="no-content-type"),
    pytest.param(
        {"Content-Type": "Application/JSON ; charset=utf-8"},
        "content_type",
        "application/json",
        id="content-type-lowercased-without-params",
    ),
    pytest.param({"Host": "app.test"}, "host", "app.test", id="host-header"),
    pytest.param({}, "host", "10.1.2.3:8080", id="host-from-listener"),
]


@pytest.mark.parametrize(("headers", "attribute", "expected"), ATTRIBUTES)
def test_request_properties(headers: dict[str, str], attribute: str, expected: object) -> None:
    request = Request("POST", "/", HttpVersion(1, 1), CIMultiDict(headers), local="10.1.2.3:8080")
    assert getattr(request, attribute) == expected


PATHS = [
    pytest.param("/a%20b?x=1", "/a b", "x=1", id="decoded-path-and-query"),
    pytest.param("/plain", "/plain", "", id="no-query"),
    pytest.param("/caf%C3%A9/", "/café/", "", id="utf8-path"),
    pytest.param("/p?", "/p", "", id="empty-query"),
    pytest.param("/p?a=1&a=2&b", "/p", "a=1&a=2&b", id="repeated-query"),
]


@pytest.mark.parametrize(("raw_path", "path", "query"), PATHS)
def test_request_path_is_decoded_and_split_from_the_query(
    raw_path: str, path: str, query: str
) -> None:
    request = Request("GET", raw_path, HttpVersion(1, 1), CIMultiDict())
    assert (request.raw_path, request.path, request.query_string) == (raw_path, path, query)


async def test_constructed_request_reads_its_body_and_keeps_its_flags() -> None:
    request = Request(
        "PUT",
        "/x",
        HttpVersion(1, 0),
        CIMultiDict({"Content-Length": "3"}),
        remote="192.0.2.7",
        keep_alive=False,
        body=b"abc",
    )
    assert await request.read() == b"abc"
    assert (request.remote, request.keep_alive, request.version) == (
        "192.0.2.7",
        False,
        HttpVersion(1, 0),
    )


# -- responses: large, slow, HEAD (RESP-1, RESP-5) -----------------------------------------------

FIVE_MB = pattern(5_000_000)


async def big_or_hello(request: Request) -> Reply:
    return reply(request, 200, FIVE_MB) if request.path == "/big" else await hello(request)


async def test_resp_1_five_megabyte_answer_reaches_a_slow_reader_whole() -> None:
    async with serving(big_or_hello) as front:
        # A small reader buffer: the client stops reading from its socket long before the
        # answer is in, so the server's transport must pause and resume writing.
        reader, writer = await front.connect(limit=4096)
        writer.write(request_bytes("GET", "/big"))
        answer = await read_answer(reader, piece=4096)
        assert answer.status == 200
        assert answer.headers["Content-Length"] == str(len(FIVE_MB))
        assert answer.body == FIVE_MB
        writer.write(request_bytes("GET", "/next"))
        assert (await read_answer(reader)).body == b"/next"


async def test_resp_5_head_answer_has_the_length_but_no_body() -> None:
    async with serving(big_or_hello) as front:
        reader, writer = await front.connect()
        writer.write(request_bytes("HEAD", "/big") + request_bytes("GET", "/next"))
        head = await read_answer(reader, head_request=True)
        assert head.status == 200
        assert head.headers["Content-Length"] == str(len(FIVE_MB))
        # Had any body byte been sent, this answer would not parse as /next's.
        assert (await read_answer(reader)).body == b"/next"


async def test_aiohttp_client_gets_a_large_answer_and_reuses_its_connection() -> None:
    async with serving(big_or_hello) as front, aiohttp.ClientSession() as session:
        for _ in range(2):
            async with session.get(f"{front.url}/big") as r:
                assert r.status == 200
                assert await r.read() == FIVE_MB
        assert front.server.connections == 1


async def test_aiohttp_client_posts_bodies_on_one_connection() -> None:
    async with serving(echo_body) as front, aiohttp.ClientSession() as session:
        for body in (b"first", MEDIUM, b""):
            async with session.post(f"{front.url}/echo", data=body) as r:
                assert r.status == 200
                assert await r.read() == body
        assert front.server.connections == 1
        assert [r.method for r in front.calls] == ["POST"] * 3


# -- Upgrade -------------------------------------------------------------------------------------


UPGRADE = request_bytes(
    "GET",
    "/ws",
    "Connection: Upgrade",
    "Upgrade: websocket",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version: 13",
)


async def test_upgrade_request_is_answered_as_a_plain_request_then_closed() -> None:
    async with serving() as front:
        reader, writer = await front.connect()
        writer.write(UPGRADE + b"\x81\x05hello")  # a WebSocket frame: not HTTP, never parsed
        answer = await read_answer(reader)
        assert (answer.status, answer.body) == (200, b"/ws")
        await assert_closed(reader)
        (r,) = front.calls
        assert r.headers["Upgrade"] == "websocket"


async def test_upgrade_request_is_not_keep_alive_so_its_answer_says_close() -> None:
    # The connection closes after the answer, so the answer must say so (Request.keep_alive
    # is what wire.response() reads).
    async with serving() as front:
        reader, writer = await front.connect()
        writer.write(UPGRADE)
        answer = await read_answer(reader)
        (r,) = front.calls
        assert not r.keep_alive
        assert answer.headers.get("Connection") == "close"


# -- failures ------------------------------------------------------------------------------------


async def test_client_gone_mid_body_makes_read_raise_400_and_the_server_serves_on() -> None:
    entered = asyncio.Event()
    outcome: asyncio.Future[object] = asyncio.get_running_loop().create_future()

    async def handler(request: Request) -> Reply:
        if request.method != "POST":
            return await hello(request)
        entered.set()
        try:
            outcome.set_result(await request.read())
        except RequestRejected as e:
            outcome.set_result(e)
            return reply(request, e.status)
        return reply(request)

    async with serving(handler) as front:
        reader, writer = await front.connect()
        writer.write(request_bytes("POST", "/", "Content-Length: 100") + b"0123456789")
        await within(entered.wait())
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        error = await within(outcome)
        assert isinstance(error, RequestRejected)
        assert error.status == 400
        reader, writer = await front.connect()
        writer.write(request_bytes("GET", "/still-serving"))
        answer = await read_answer(reader)
        assert (answer.status, answer.body) == (200, b"/still-serving")


async def test_handler_exception_becomes_500_and_the_server_serves_on() -> None:
    async def handler(request: Request) -> Reply:
        if request.path == "/boom":
            raise RuntimeError("a bug in the handler")
        return await hello(request)

    async with serving(handler) as front:
        reader, writer = await front.connect()
        writer.write(request_bytes("GET", "/boom"))
        assert (await read_answer(reader)).status == 500
        reader, writer = await front.connect()
        writer.write(request_bytes("GET", "/fine"))
        answer = await read_answer(reader)
        assert (answer.status, answer.body) == (200, b"/fine")


async def test_500_for_a_handler_exception_says_close_and_closes() -> None:
    async def handler(request: Request) -> Reply:
        raise RuntimeError("a bug in the handler")

    async with serving(handler) as front:
        reader, writer = await front.connect()
        writer.write(request_bytes("GET", "/boom"))
        answer = await read_answer(reader)
        assert answer.status == 500
        assert answer.headers["Connection"] == "close"
        await assert_closed(reader)


# -- close() and idle_timeout --------------------------------------------------------------------


async def test_close_closes_an_idle_keep_alive_connection_and_stops_listening() -> None:
    async with serving() as front:
        reader, writer = await front.connect()
        writer.write(request_bytes("GET", "/"))
        assert (await read_answer(reader)).status == 200
        port = front.port  # the listening address is gone after close()
        await within(front.close())
        await assert_closed(reader)
        assert front.server.connections == 0
        assert await refused(port)


async def test_close_lets_an_in_flight_request_finish_then_closes_its_connection() -> None:
    entered, release = asyncio.Event(), asyncio.Event()

    async def handler(request: Request) -> Reply:
        entered.set()
        await release.wait()
        return await hello(request)

    async with serving(handler) as front:
        reader, writer = await front.connect()
        writer.write(request_bytes("GET", "/in-flight"))
        await within(entered.wait())
        closing = asyncio.create_task(front.close(grace=3 * DEADLINE))
        # call_soon runs after the task's first step: close() has begun when release is set.
        asyncio.get_running_loop().call_soon(release.set)
        answer = await read_answer(reader)
        assert (answer.status, answer.body) == (200, b"/in-flight")
        # The connection closes after this answer (close() began), so the answer says so.
        assert answer.headers.get("Connection") == "close"
        await within(closing)
        await assert_closed(reader)
        assert front.server.connections == 0


async def test_close_aborts_a_request_still_running_after_the_grace_and_cancels_it() -> None:
    entered, cancelled = asyncio.Event(), asyncio.Event()

    async def handler(request: Request) -> Reply:
        entered.set()
        try:
            await asyncio.Event().wait()  # never answers
        except asyncio.CancelledError:
            cancelled.set()
            raise
        raise AssertionError("unreachable")

    async with serving(handler) as front:
        reader, writer = await front.connect()
        writer.write(request_bytes("GET", "/stuck"))
        await within(entered.wait())
        await within(front.close(grace=0.1))
        assert cancelled.is_set()  # close() owns the handler: cancelled and awaited, not left
        await assert_closed(reader)
        assert front.server.connections == 0


IDLE = [
    pytest.param(request_bytes("GET", "/"), id="after-a-request"),
    pytest.param(b"", id="before-any-request"),
]


@pytest.mark.parametrize("first", IDLE)
async def test_idle_connection_is_closed_after_idle_timeout(first: bytes) -> None:
    async with serving(idle_timeout=0.2) as front:
        reader, writer = await front.connect()
        if first:
            writer.write(first)
            assert (await read_answer(reader)).status == 200
        await assert_closed(reader)  # well within DEADLINE, far past 0.2 s


async def test_idle_timeout_does_not_cut_a_request_in_flight() -> None:
    async def slow(request: Request) -> Reply:
        await asyncio.sleep(1.0)  # the handler's work, five idle timeouts long
        return await hello(request)

    async with serving(slow, idle_timeout=0.2) as front:
        reader, writer = await front.connect()
        writer.write(request_bytes("GET", "/slow"))
        answer = await read_answer(reader)
        assert (answer.status, answer.body) == (200, b"/slow")


# -- TLS -----------------------------------------------------------------------------------------


@pytest.fixture
def tls_context(tmp_path: Path) -> ssl.SSLContext:
    cert_pem, key_pem = generate(time.time())
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_bytes(cert_pem)
    key.write_bytes(key_pem)
    return server_context(cert, key)


async def test_tls_listener_serves_https(tls_context: ssl.SSLContext) -> None:
    async with (
        serving(echo_body, ssl=tls_context) as front,
        aiohttp.ClientSession() as session,
    ):
        url = f"https://{HOST}:{front.port}"
        async with session.get(f"{url}/tls", ssl=False) as r:
            assert r.status == 200
            assert await r.read() == b""
        async with session.post(f"{url}/tls", data=MEDIUM, ssl=False) as r:
            assert r.status == 200
            assert await r.read() == MEDIUM
        assert front.server.connections == 1
        assert [r.path for r in front.calls] == ["/tls", "/tls"]


# -- uvloop --------------------------------------------------------------------------------------

UVLOOP_SCENARIOS: dict[str, Callable[[], Awaitable[None]]] = {
    "keep-alive": test_http11_connection_answers_two_requests_in_turn,
    "pipelining": test_pipelined_requests_are_answered_in_order_though_the_first_is_slowest,
    "chunked-body": functools.partial(
        test_request_body_sent_in_pieces_reaches_read_whole,
        "Transfer-Encoding: chunked",
        chunked(BIG, 7_919),
        BIG,
    ),
    "body-over-limit": test_hdr_3_chunked_body_past_32_mib_is_refused_with_413_then_closed,
    "expect-continue": test_expect_100_continue_is_answered_before_the_client_sends_the_body,
    "malformed": functools.partial(
        test_malformed_request_gets_400_and_close_without_reaching_the_handler,
        b"GARBAGE\r\n\r\n",
    ),
    "slow-reader": test_resp_1_five_megabyte_answer_reaches_a_slow_reader_whole,
    "upgrade": test_upgrade_request_is_answered_as_a_plain_request_then_closed,
    "client-gone": test_client_gone_mid_body_makes_read_raise_400_and_the_server_serves_on,
    "close-in-flight": test_close_lets_an_in_flight_request_finish_then_closes_its_connection,
    "idle-timeout": functools.partial(
        test_idle_connection_is_closed_after_idle_timeout, request_bytes("GET", "/")
    ),
}


@pytest.fixture
def uvloop_runner() -> Iterator[asyncio.Runner]:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        yield runner


@pytest.mark.parametrize("name", list(UVLOOP_SCENARIOS))
def test_front_works_under_uvloop(uvloop_runner: asyncio.Runner, name: str) -> None:
    async def run() -> None:
        assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
        await UVLOOP_SCENARIOS[name]()

    uvloop_runner.run(run())


def test_tls_works_under_uvloop(uvloop_runner: asyncio.Runner, tls_context: ssl.SSLContext) -> None:
    uvloop_runner.run(test_tls_listener_serves_https(tls_context))


async def test_malformed_chunk_in_a_handled_request_gets_one_400_then_close() -> None:
    async with serving(echo_body) as front:
        reader, writer = await front.connect()
        writer.write(request_bytes("POST", "/", "Transfer-Encoding: chunked") + b"5\r\nhel")
        writer.write(b"lo\r\nZZZ-not-a-chunk-size\r\n\r\n")
        answer = await read_answer(reader)
        assert answer.status == 400
        await assert_closed(reader)  # nothing after the one answer: no second 400
        assert len(front.calls) == 1


async def _tls_client_closes_after_its_answer(tls_context: ssl.SSLContext) -> None:
    client = ssl.create_default_context()
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    async with serving(hello, ssl=tls_context) as front:
        reader, writer = await within(asyncio.open_connection(HOST, front.port, ssl=client))
        writer.write(request_bytes("GET", "/tls"))
        assert (await read_answer(reader)).body == b"/tls"
        writer.close()  # close_notify: the server sees the end of the stream ...
        await within(writer.wait_closed())  # ... and answers with its own once it has


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_tls_client_closing_logs_no_half_close_warning(
    loop: str, tls_context: ssl.SSLContext, caplog: pytest.LogCaptureFixture
) -> None:
    # A TLS stream cannot be half-closed; asking for it made asyncio log a warning per client.
    factory = uvloop.new_event_loop if loop == "uvloop" else asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(_tls_client_closes_after_its_answer(tls_context))
    assert not [r for r in caplog.records if "eof_received" in r.getMessage()]
