"""wire.response: the bytes of a complete response (RESP-1, RESP-5) and its framing guard."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from gfe_proxy import wire
from gfe_proxy.front import HttpVersion, Request

V11 = HttpVersion(1, 1)
V10 = HttpVersion(1, 0)


def _request(method: str = "GET", version: HttpVersion = V11, keep_alive: bool = True) -> Request:
    return Request(method, "/p", version, CIMultiDict(), keep_alive=keep_alive)


@pytest.mark.parametrize(
    ("version", "keep_alive", "connection"),
    [
        (V11, True, None),
        (V11, False, "close"),
        (V10, True, "keep-alive"),
        (V10, False, None),
    ],
    ids=["1.1-kept", "1.1-closing", "1.0-kept", "1.0-closing"],
)
def test_connection_header_says_only_what_differs_from_the_version_default(
    version: HttpVersion, keep_alive: bool, connection: str | None
) -> None:
    reply = wire.response(_request("GET", version, keep_alive), 200, None, CIMultiDict(), b"ok")
    head = reply.head.decode()
    assert head.startswith(f"HTTP/{version.major}.{version.minor} 200 OK\r\n")
    assert head.endswith("\r\n\r\n")
    lines = head.split("\r\n")
    found = [line.partition(": ")[2] for line in lines if line.startswith("Connection: ")]
    assert found == ([connection] if connection else [])


def test_resp_5_content_length_is_the_body_and_head_sends_none() -> None:
    get = wire.response(_request("GET"), 200, None, CIMultiDict(), b"hello")
    assert b"\r\nContent-Length: 5\r\n" in get.head
    assert (get.body, get.size) == (b"hello", 5)
    head = wire.response(_request("HEAD"), 200, None, CIMultiDict(), b"hello")
    assert b"\r\nContent-Length: 5\r\n" in head.head
    assert (head.body, head.size) == (b"", 5)


@pytest.mark.parametrize("status", [204, 304], ids=["204", "304"])
def test_resp_5_no_body_statuses_carry_neither_body_nor_length(status: int) -> None:
    out = CIMultiDict([("Content-Length", "9")])
    reply = wire.response(_request(), status, None, out, b"ignored")
    assert b"Content-Length" not in reply.head
    assert reply.body == b""


@pytest.mark.parametrize(
    "pair",
    [("X-Bad", "a\r\nSet-Cookie: evil=1"), ("X-Bad", "a\nInjected: 1"), ("X\rBad", "v")],
    ids=["crlf-value", "lf-value", "cr-name"],
)
def test_header_breaking_the_framing_is_never_sent_500_instead(pair: tuple[str, str]) -> None:
    reply = wire.response(_request(), 200, None, CIMultiDict([pair]), b"body")
    assert reply.status == 500
    assert reply.head.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    for injected in (b"evil", b"Injected", b"X\rBad"):
        assert injected not in reply.head
    assert b"Error: Server Error" in reply.body
    assert b"\r\nContent-Length: %d\r\n" % len(reply.body) in reply.head
