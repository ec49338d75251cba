"""The per-request fast paths give the same answers as the general paths they skip."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict

from gfe_proxy import caching, login, wire
from gfe_proxy.cache import CacheStatus, EdgeCache, Served
from gfe_proxy.config import Handler
from gfe_proxy.edge import Edge
from gfe_proxy.front import HttpVersion, Request
from gfe_proxy.headers import SERVER, head_block
from gfe_proxy.settings import Settings

URL = "http://localhost:8080/a"
PUBLIC = ("Cache-Control", "public, max-age=600")

# --- the serialised head of a stored entry ---------------------------------------------------

_NAMES = st.sampled_from(
    ["Content-Type", "Cache-Control", "ETag", "Vary", "X-Pad", "Content-Length", "Set-Cookie"]
)
_VALUES = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF), max_size=20)


def _raw(reply: wire.Reply) -> bytes:
    return reply.head + reply.body


V11 = HttpVersion(1, 1)


def _request(method: str, *, version: HttpVersion = V11, closing: bool = False) -> Request:
    return Request(method, "/a", version, CIMultiDict(), keep_alive=not closing)


@given(
    pairs=st.lists(st.tuples(_NAMES, _VALUES), max_size=6),
    status=st.sampled_from([200, 203, 206, 301, 404]),
    body=st.binary(max_size=40),
    method=st.sampled_from(["GET", "HEAD"]),
    version=st.sampled_from([HttpVersion(1, 1), HttpVersion(1, 0)]),
    closing=st.booleans(),
    cache_header=st.sampled_from([b"", b"X-GFE-Cache: HIT\r\n"]),
)
def test_cache_4_prebuilt_hit_is_byte_for_byte_the_general_response(
    pairs: list[tuple[str, str]],
    status: int,
    body: bytes,
    method: str,
    version: HttpVersion,
    closing: bool,
    cache_header: bytes,
) -> None:
    # At most one Content-Length: an entry with two has no block (see the next test).
    seen_length = False
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in pairs:
        if name == "Content-Length":
            if seen_length:
                continue
            seen_length = True
            value = str(len(value))  # stored entries carry their body's length
        headers.add(name, value)
    block = head_block(headers.items())
    assert block is not None
    request = _request(method, version=version, closing=closing)
    date = "Sat, 21 Nov 2026 12:00:00 GMT"
    # What Edge.hit_headers + Proxy._finish + wire.response add, in their order.
    general = CIMultiDict(headers)
    general["Age"] = "7"
    general["Server"] = SERVER
    general["Date"] = date
    if cache_header:
        general["X-GFE-Cache"] = "HIT"
    extra = b"Age: 7\r\nServer: %b\r\nDate: %b\r\n" % (SERVER.encode(), date.encode())
    extra += cache_header
    fast = wire.prebuilt_response(request, status, block, body, extra)
    slow = wire.response(request, status, None, general, body)
    assert fast is not None
    assert _raw(fast) == _raw(slow)
    assert fast.size == slow.size


@pytest.mark.parametrize(
    "pairs",
    [
        [("Age", "3")],
        [("Server", "app")],
        [("Date", "x")],
        [("X-GFE-Cache", "HIT")],
        [("Strict-Transport-Security", "max-age=1")],
        [("Connection", "close")],
        [("Content-Length", "1"), ("content-length", "1")],
        [("X-Bad", "a\r\nInjected: 1")],
    ],
    ids=["age", "server", "date", "gfe-cache", "hsts", "connection", "two-lengths", "crlf"],
)
def test_cache_4_entry_with_per_response_header_has_no_block(pairs: list[tuple[str, str]]) -> None:
    assert head_block(pairs) is None


@pytest.mark.parametrize(
    ("status", "size"),
    [(204, 0), (304, 0), (101, 0)],
    ids=["204", "304", "1xx"],
)
def test_resp_5_prebuilt_hit_declines_what_the_general_path_sends_differently(
    status: int, size: int
) -> None:
    block = head_block([("Content-Type", "text/plain")])
    assert block is not None
    request = _request("GET")
    assert wire.prebuilt_response(request, status, block, b"x" * size, b"") is None


# --- CACHE-3 variant keys and the probe ------------------------------------------------------


@given(
    pairs=st.lists(
        st.tuples(
            st.sampled_from(["Accept-Encoding", "accept-encoding", "Origin", "X-Other"]),
            st.text(st.sampled_from("gzip, \t;q=0.5br"), max_size=15),
        ),
        max_size=4,
    )
)
def test_cache_3_variant_key_of_a_multidict_matches_the_general_rule(
    pairs: list[tuple[str, str]],
) -> None:
    headers = CIMultiDict(pairs)
    vary = ("accept-encoding", "origin")
    expected = tuple(caching._normalise(headers.getall(name, [])) for name in vary)
    assert caching.variant_key(vary, headers) == expected
    assert caching.variant_key(vary, headers) == expected  # the remembered form too


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def _request_cases() -> list[tuple[str, list[tuple[str, str]]]]:
    return [
        ("GET", []),
        ("HEAD", []),
        ("get", []),
        ("POST", []),
        ("GET", [("Authorization", "Bearer x")]),
        ("GET", [("Range", "bytes=0-1")]),
        ("GET", [("Accept-Encoding", "gzip")]),
        ("GET", [("range", "")]),
    ]


@pytest.mark.parametrize("vary", ["", "Accept-Encoding"], ids=["no-vary", "vary"])
@pytest.mark.parametrize(
    ("method", "pairs"),
    _request_cases(),
    ids=["get", "head", "lower-get", "post", "authorization", "range", "accept-enc", "empty-range"],
)
def test_cache_3_probe_fast_path_agrees_with_case_insensitive_dict_path(
    vary: str, method: str, pairs: list[tuple[str, str]]
) -> None:
    cache = EdgeCache(1 << 20, max_object_bytes=1 << 20, clock=Clock())
    headers = [PUBLIC] + ([("Vary", vary)] if vary else [])
    for request in (CIMultiDict(), CIMultiDict([("Accept-Encoding", "gzip")])):
        stored = Served(status=200, headers=CIMultiDict(headers), body=b"x")
        cache.store(URL, request, stored)
    multi = cache.probe(URL, CIMultiDict(pairs), method=method)
    plain = cache.probe(URL, {name.upper(): value for name, value in pairs}, method=method)
    assert (multi.entry, multi.status, multi.warning) == (plain.entry, plain.status, plain.warning)


async def test_cache_6_through_cache_counts_like_fetch() -> None:
    def produce_factory(headers: list[tuple[str, str]]) -> object:
        async def produce() -> Served:
            return Served(200, CIMultiDict(headers), b"body")

        return produce

    cases = [
        ("GET", "/public", [PUBLIC]),  # MISS, stored
        ("GET", "/public", [PUBLIC]),  # HIT
        ("HEAD", "/public", [PUBLIC]),  # HIT
        ("HEAD", "/other", [PUBLIC]),  # HEAD MISS: not stored
        ("GET", "/private", [("Cache-Control", "private")]),  # MISS, remembered
        ("GET", "/private", [("Cache-Control", "private")]),  # BYPASS
        ("GET", "/gz", [PUBLIC, ("Content-Encoding", "gzip")]),  # MISS
        ("GET", "/gz", [PUBLIC, ("Content-Encoding", "gzip")]),  # STALE-VARIANT
    ]
    a = Edge(Settings(), clock=lambda: 1000.0)
    b = Edge(Settings(), clock=lambda: 1000.0)
    seen = []
    for method, path, headers in cases:
        produce = produce_factory(headers)
        _, status, age = await a.through_cache(URL + path, method, CIMultiDict(), produce)  # type: ignore[arg-type]
        result = await b.cache.fetch(URL + path, CIMultiDict(), produce, method=method)  # type: ignore[arg-type]
        assert (status, age) == (result.status, result.age)
        seen.append(status)
    assert a.cache.stats == b.cache.stats
    assert CacheStatus.STALE_VARIANT in seen
    assert CacheStatus.BYPASS in seen


# --- SEC-1, LOGIN-1: the front door is skipped only where it has nothing to say ---------------


@pytest.mark.parametrize(
    ("secure", "login_", "scheme", "open_"),
    [
        ("optional", "optional", "http", True),
        ("optional", "optional", "https", True),
        ("always", "optional", "https", True),
        ("always", "optional", "http", False),
        ("never", "optional", "http", True),
        ("never", "optional", "https", False),
        ("optional", "required", "http", False),
        ("optional", "admin", "https", False),
    ],
    ids=[
        "plain-http",
        "plain-https",
        "always-on-https",
        "always-on-http",
        "never-on-http",
        "never-on-https",
        "login-required",
        "login-admin",
    ],
)
def test_sec_1_login_1_door_open_only_when_check_would_allow(
    secure: str, login_: str, scheme: login.Scheme, open_: bool
) -> None:
    handler = Handler(url="/.*", script="auto", secure=secure, login=login_)  # type: ignore[arg-type]
    assert login.door_open(handler, scheme) is open_
    if open_:
        moved = login.secure_redirect(handler, scheme, "localhost:8080", "/a?b=1", 8443)
        decision = login.login_decision(handler, None, "http://localhost:8080/a?b=1")
        assert moved is None
        assert decision == login.ALLOW
