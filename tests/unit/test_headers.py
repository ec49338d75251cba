"""SPEC HDR-1…HDR-4 and RESP-1…RESP-5: the pure header rules."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict

from gfe_proxy.errors import RequestRejected, ResponseHeadersTooLarge, ResponseTooLarge
from gfe_proxy.headers import (
    MAX_HEADER_FIELD,
    MAX_REQUEST_BODY,
    MAX_RESPONSE_BODY,
    MAX_RESPONSE_HEADERS,
    ForwardContext,
    Geo,
    RequestLogIds,
    ResponseHead,
    Trace,
    UserInfo,
    check_request_body_length,
    check_request_headers,
    check_response_body_length,
    check_response_headers,
    hop_by_hop,
    http_date,
    new_trace,
    parse_cloud_trace_context,
    parse_http_date,
    parse_trace,
    parse_traceparent,
    request_trace,
    response_headers,
    split_directives,
    upstream_request_headers,
)

TRACE = Trace(trace_id="4bf92f3577b34da6a3ce929d0e0e4736", span_id=123, sampled=True)
NOW = 1_795_000_000.0  # a fixed "now"; tests never read the clock
DATE = http_date(NOW)


def ctx(**overrides: object) -> ForwardContext:
    values: dict[str, object] = {
        "client_ip": "203.0.113.7",
        "scheme": "https",
        "trace": TRACE,
        "request_log_id": "6a8e1b0000000000deadbeefcafef00d",
        "default_version_hostname": "app.localhost:8080",
        "timeout_ms": 600_000,
    }
    values.update(overrides)
    return ForwardContext(**values)  # type: ignore[arg-type]


def forward(pairs: list[tuple[str, str]], **overrides: object) -> CIMultiDict[str]:
    return CIMultiDict(upstream_request_headers(CIMultiDict(pairs), ctx(**overrides)))


def respond(
    pairs: list[tuple[str, str]],
    *,
    generation: int = 2,
    status: int = 200,
    method: str = "GET",
    body_length: int = 5,
    trace: Trace | None = TRACE,
) -> ResponseHead:
    return response_headers(
        CIMultiDict(pairs),
        generation=generation,
        trace=trace,
        date=DATE,
        body_length=body_length,
        method=method,
        status=status,
        now=NOW,
    )


# --- purity --------------------------------------------------------------------------------------


def test_headers_module_is_pure() -> None:
    code = (
        "import sys, gfe_proxy.headers, gfe_proxy.errorpages, gfe_proxy.accesslog;"
        "assert 'aiohttp' not in sys.modules and 'asyncio' not in sys.modules, sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- HDR-1: what the instance never sees ---------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "X-AppEngine-User-Email",
        "x-appengine-user-email",
        "X-AppEngine-User-Is-Admin",
        "x-appengine-cron",
        "X-AppEngine-Cron",
        "X-AppEngine-TaskName",
        "X-AppEngine-QueueName",
        "X-Appengine-Inbound-Appid",
        "X-APPENGINE-COUNTRY",
        "X-AppEngine-Something-New",
        "X-Google-Foo",
        "x-google-apps-metadata",
    ],
)
def test_hdr_1_client_app_engine_and_google_headers_never_arrive(name: str) -> None:
    out = upstream_request_headers(CIMultiDict([(name, "spoofed"), ("Host", "a")]), ctx())
    assert all(value != "spoofed" for _, value in out)


@pytest.mark.parametrize(
    "name",
    [
        "Connection",
        "Keep-Alive",
        "Proxy-Authorization",
        "Proxy-Connection",
        "TE",
        "Trailer",
        "Transfer-Encoding",
        "Upgrade",
        "Content-Length",
        "Expect",
    ],
)
def test_hdr_1_hop_by_hop_and_framing_headers_removed(name: str) -> None:
    out = forward([("Host", "a"), (name, "x")])
    assert name not in out


def test_hdr_1_headers_named_in_connection_removed() -> None:
    out = forward(
        [
            ("Host", "a"),
            ("Connection", "close, X-Foo"),
            ("Connection", " x-bar "),
            ("X-Foo", "1"),
            ("X-BAR", "2"),
            ("X-Baz", "3"),
        ]
    )
    assert "X-Foo" not in out
    assert "X-Bar" not in out
    assert out["X-Baz"] == "3"


@pytest.mark.parametrize(
    ("generation", "kept"), [(1, False), (2, True)], ids=["gen1-removes", "gen2-passes"]
)
def test_hdr_1_accept_encoding_by_generation(generation: int, kept: bool) -> None:
    out = forward([("Accept-Encoding", "gzip")], generation=generation)
    assert ("Accept-Encoding" in out) is kept


def test_hdr_1_end_to_end_headers_pass_in_order_with_spelling() -> None:
    pairs = [
        ("Host", "app.localhost:8080"),
        ("Cookie", "a=1"),
        ("accept", "text/html"),
        ("Cookie", "b=2"),
        ("tracestate", "k=v"),
    ]
    out = upstream_request_headers(CIMultiDict(pairs), ctx())
    assert out[: len(pairs)] == pairs


def test_hdr_1_spoofed_user_headers_replaced_by_signed_in_user() -> None:
    user = UserInfo(email="real@example.com", user_id="42", nickname="real", is_admin=False)
    out = forward(
        [("X-AppEngine-User-Email", "admin@evil"), ("X-AppEngine-User-Is-Admin", "1")],
        user=user,
    )
    assert out.getall("X-AppEngine-User-Email") == ["real@example.com"]
    assert out.getall("X-AppEngine-User-Is-Admin") == ["0"]


_PREFIXES = ["x-appengine-", "x-google-", "X-AppEngine-", "X-Google-", "X-APPENGINE-"]
_SUFFIXES = [
    "user-email",
    "user-is-admin",
    "cron",
    "taskname",
    "queuename",
    "country",
    "city",
    "request-log-id",
    "https",
    "user-ip",
    "auth-domain",
    "foo",
]
_client_header = st.tuples(
    st.builds(
        lambda p, s, flips: "".join(c.swapcase() if i in flips else c for i, c in enumerate(p + s)),
        st.sampled_from(_PREFIXES),
        st.sampled_from(_SUFFIXES) | st.from_regex(r"[A-Za-z0-9-]{1,12}", fullmatch=True),
        st.sets(st.integers(0, 30)),
    ),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=20),
)
_other_header = st.tuples(
    st.sampled_from(["Host", "Cookie", "Accept", "Connection", "X-Forwarded-For", "X-Other"]),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=20),
)


@given(
    headers=st.lists(_client_header | _other_header, max_size=12),
    generation=st.sampled_from([1, 2]),
    with_user=st.booleans(),
    trusted=st.booleans(),
)
def test_hdr_1_property_no_client_app_engine_or_google_header_passes(
    headers: list[tuple[str, str]], generation: int, with_user: bool, trusted: bool
) -> None:
    user = UserInfo(email="u@example.com", user_id="1", nickname="u") if with_user else None
    context = ctx(generation=generation, user=user, trusted_forwarded_for=trusted)

    def ours(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
        return [
            (n.lower(), v)
            for n, v in upstream_request_headers(CIMultiDict(pairs), context)
            if n.lower().startswith(("x-appengine-", "x-google-"))
        ]

    # Whatever the client sends, the x-appengine-*/x-google-* headers are exactly the ones the
    # front end makes from the context alone.
    assert ours(headers) == ours([])


# --- HDR-2: what the front end adds --------------------------------------------------------------


def test_hdr_2_added_headers_defaults() -> None:
    out = forward([("Host", "app.localhost:8080")])
    assert out["Host"] == "app.localhost:8080"
    assert out["X-AppEngine-Country"] == "ZZ"
    assert out["X-AppEngine-Region"] == "?"
    assert out["X-AppEngine-City"] == "?"
    assert out["X-AppEngine-CityLatLong"] == "0.000000,0.000000"
    assert out["X-Cloud-Trace-Context"] == "4bf92f3577b34da6a3ce929d0e0e4736/123;o=1"
    assert out["traceparent"] == "00-4bf92f3577b34da6a3ce929d0e0e4736-000000000000007b-01"
    assert out["X-Forwarded-For"] == "203.0.113.7, 169.254.1.1"
    assert out["X-Forwarded-Proto"] == "https"
    assert out["Forwarded"] == 'for="203.0.113.7";proto=https'
    assert out["X-AppEngine-Https"] == "on"
    assert out["X-AppEngine-User-IP"] == "203.0.113.7"
    assert out["X-AppEngine-Request-Log-Id"] == "6a8e1b0000000000deadbeefcafef00d"
    assert out["X-AppEngine-Default-Version-Hostname"] == "app.localhost:8080"
    assert out["X-AppEngine-Timeout-Ms"] == "600000"
    assert "X-AppEngine-User-Email" not in out


def test_hdr_2_geo_overridable() -> None:
    geo = Geo(country="DE", region="be", city="berlin", city_lat_long="52.520008,13.404954")
    out = forward([], geo=geo)
    assert (out["X-AppEngine-Country"], out["X-AppEngine-Region"]) == ("DE", "be")
    assert (out["X-AppEngine-City"], out["X-AppEngine-CityLatLong"]) == (
        "berlin",
        "52.520008,13.404954",
    )


@pytest.mark.parametrize(
    ("scheme", "https"), [("http", "off"), ("https", "on")], ids=["http", "https"]
)
def test_hdr_2_scheme_headers(scheme: str, https: str) -> None:
    out = forward([("X-Forwarded-Proto", "https" if scheme == "http" else "http")], scheme=scheme)
    assert out.getall("X-Forwarded-Proto") == [scheme]
    assert out["X-AppEngine-Https"] == https
    assert out["Forwarded"].endswith(f";proto={scheme}")


@pytest.mark.parametrize(
    ("incoming", "trusted", "expected"),
    [
        ([], False, "203.0.113.7, 169.254.1.1"),
        ([], True, "203.0.113.7, 169.254.1.1"),
        (["10.0.0.1"], False, "203.0.113.7, 169.254.1.1"),
        (["10.0.0.1"], True, "10.0.0.1, 203.0.113.7, 169.254.1.1"),
        (["10.0.0.1, 10.0.0.2", " 10.0.0.3 "], True,
         "10.0.0.1, 10.0.0.2, 10.0.0.3, 203.0.113.7, 169.254.1.1"),
    ],
    ids=["none", "none-trusted", "untrusted-replaced", "trusted-appended", "trusted-many-lines"],
)  # fmt: skip
def test_hdr_2_x_forwarded_for(incoming: list[str], trusted: bool, expected: str) -> None:
    out = forward([("X-Forwarded-For", v) for v in incoming], trusted_forwarded_for=trusted)
    assert out.getall("X-Forwarded-For") == [expected]


def test_hdr_2_forwarded_trusted_appends_ipv6_bracketed() -> None:
    out = forward(
        [("Forwarded", "for=192.0.2.60;proto=http")],
        client_ip="2001:db8::1",
        scheme="http",
        trusted_forwarded_for=True,
    )
    assert out.getall("Forwarded") == ['for=192.0.2.60;proto=http, for="[2001:db8::1]";proto=http']
    assert out["X-Forwarded-For"] == "2001:db8::1, 169.254.1.1"


def test_hdr_2_timeout_and_hostname_omitted_when_unknown() -> None:
    out = forward([], timeout_ms=None, default_version_hostname="")
    assert "X-AppEngine-Timeout-Ms" not in out
    assert "X-AppEngine-Default-Version-Hostname" not in out


@pytest.mark.parametrize(("admin", "flag"), [(True, "1"), (False, "0")], ids=["admin", "user"])
def test_hdr_2_login_5_user_headers(admin: bool, flag: str) -> None:
    user = UserInfo(
        email="a@example.com", user_id="185804764220139124118", nickname="a",
        organization="example.com", is_admin=admin,
    )  # fmt: skip
    out = forward([], user=user)
    assert out["X-AppEngine-User-Email"] == "a@example.com"
    assert out["X-AppEngine-User-Id"] == "185804764220139124118"
    assert out["X-AppEngine-User-Nickname"] == "a"
    assert out["X-AppEngine-User-Organization"] == "example.com"
    assert out["X-AppEngine-User-Is-Admin"] == flag
    assert out["X-AppEngine-Auth-Domain"] == "gmail.com"


def test_hdr_2_client_trace_headers_replaced_not_duplicated() -> None:
    out = forward([("X-Cloud-Trace-Context", "abc/1;o=1"), ("traceparent", "junk")])
    assert out.getall("X-Cloud-Trace-Context") == [TRACE.cloud_trace_context]
    assert out.getall("traceparent") == [TRACE.traceparent]


# --- HDR-2: trace context ------------------------------------------------------------------------

VALID_TRACE = "105445aa7843bc8bf206b12000100000"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (f"{VALID_TRACE}/1;o=1", Trace(trace_id=VALID_TRACE, span_id=1, sampled=True)),
        (f"{VALID_TRACE}/18446744073709551615;o=0",
         Trace(trace_id=VALID_TRACE, span_id=2**64 - 1, sampled=False)),
        (f"{VALID_TRACE}", Trace(trace_id=VALID_TRACE, span_id=0, sampled=True)),
        (f"{VALID_TRACE.upper()}/7", Trace(trace_id=VALID_TRACE, span_id=7, sampled=True)),
        ("0" * 32 + "/1;o=1", None),
        (f"{VALID_TRACE[:-1]}/1;o=1", None),
        (f"{VALID_TRACE}x/1;o=1", None),
        (f"{VALID_TRACE}/18446744073709551616;o=1", None),
        (f"{VALID_TRACE}/-1;o=1", None),
        ("", None),
    ],
    ids=["full", "max-span-unsampled", "trace-only", "uppercase", "all-zero", "short",
         "trailing-junk", "span-overflow", "negative-span", "empty"],
)  # fmt: skip
def test_hdr_2_parse_cloud_trace_context(value: str, expected: Trace | None) -> None:
    assert parse_cloud_trace_context(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (f"00-{VALID_TRACE}-00f067aa0ba902b7-01",
         Trace(trace_id=VALID_TRACE, span_id=0x00F067AA0BA902B7, sampled=True)),
        (f"00-{VALID_TRACE}-00f067aa0ba902b7-00",
         Trace(trace_id=VALID_TRACE, span_id=0x00F067AA0BA902B7, sampled=False)),
        (f"01-{VALID_TRACE}-00f067aa0ba902b7-01-extra",
         Trace(trace_id=VALID_TRACE, span_id=0x00F067AA0BA902B7, sampled=True)),
        (f"00-{VALID_TRACE}-00f067aa0ba902b7-01-extra", None),
        (f"ff-{VALID_TRACE}-00f067aa0ba902b7-01", None),
        (f"00-{'0' * 32}-00f067aa0ba902b7-01", None),
        (f"00-{VALID_TRACE}-0000000000000000-01", None),
        (f"00-{VALID_TRACE.upper()}-00f067aa0ba902b7-01", None),
        ("00-abc-def-01", None),
    ],
    ids=["sampled", "unsampled", "future-version", "v00-extra-field", "version-ff",
         "zero-trace", "zero-span", "uppercase", "short"],
)  # fmt: skip
def test_hdr_2_parse_traceparent(value: str, expected: Trace | None) -> None:
    assert parse_traceparent(value) == expected


@pytest.mark.parametrize(
    ("pairs", "trace_id"),
    [
        ([("X-Cloud-Trace-Context", f"{VALID_TRACE}/5;o=1")], VALID_TRACE),
        ([("traceparent", f"00-{VALID_TRACE}-00f067aa0ba902b7-01")], VALID_TRACE),
        ([("X-Cloud-Trace-Context", f"{VALID_TRACE}/5;o=1"),
          ("traceparent", f"00-{'a' * 32}-00f067aa0ba902b7-01")], VALID_TRACE),
        ([("X-Cloud-Trace-Context", "bad"),
          ("traceparent", f"00-{VALID_TRACE}-00f067aa0ba902b7-01")], VALID_TRACE),
        ([("x-cloud-trace-context", "0" * 32 + "/1;o=1")], None),
        ([], None),
    ],
    ids=["cloud", "w3c", "cloud-wins", "bad-cloud-falls-back", "zero-rejected", "none"],
)  # fmt: skip
def test_hdr_2_parse_trace_precedence(pairs: list[tuple[str, str]], trace_id: str | None) -> None:
    trace = parse_trace(CIMultiDict(pairs))
    assert (trace.trace_id if trace else None) == trace_id


def test_hdr_2_request_trace_keeps_incoming_id_with_new_span() -> None:
    headers = CIMultiDict([("X-Cloud-Trace-Context", f"{VALID_TRACE}/5;o=1")])
    trace = request_trace(headers, random.Random(1))
    assert trace.trace_id == VALID_TRACE
    assert trace.span_id != 5
    assert trace.sampled


def test_hdr_2_request_trace_generates_when_absent_or_invalid() -> None:
    for headers in (CIMultiDict[str](), CIMultiDict([("traceparent", "00-bad")])):
        trace = request_trace(headers, random.Random(2))
        assert trace == new_trace(random.Random(2))
        assert len(trace.trace_id) == 32
        assert trace.trace_id == trace.trace_id.lower()
        assert trace.trace_id != "0" * 32
        assert 0 < trace.span_id < 2**63


@given(seed=st.integers())
def test_hdr_2_generated_trace_round_trips_through_both_headers(seed: int) -> None:
    trace = new_trace(random.Random(seed))
    assert parse_cloud_trace_context(trace.cloud_trace_context) == trace
    assert parse_traceparent(trace.traceparent) == trace


def test_resp_1_trace_echo_value() -> None:
    assert TRACE.response_echo == "4bf92f3577b34da6a3ce929d0e0e4736;o=1"


# --- HDR-2: request log ids ----------------------------------------------------------------------


def test_hdr_2_request_log_ids_unique_ordered_and_time_prefixed() -> None:
    ids = RequestLogIds(random.Random(3))
    times = [NOW, NOW, NOW + 0.5, NOW + 1, NOW + 1.2, NOW + 30, NOW + 30]
    issued = [ids.next(t) for t in times]
    assert len(set(issued)) == len(issued)
    assert issued == sorted(issued)
    for value, t in zip(issued, times, strict=True):
        assert int(value[:8], 16) == int(t)
        assert value == value.lower()
        int(value, 16)  # all hex


def test_hdr_2_request_log_ids_stay_ordered_when_clock_steps_back() -> None:
    ids = RequestLogIds(random.Random(4))
    first = ids.next(NOW + 10)
    second = ids.next(NOW)
    assert second > first


def test_hdr_2_request_log_ids_differ_between_generators() -> None:
    a = RequestLogIds(random.Random(5)).next(NOW)
    b = RequestLogIds(random.Random(6)).next(NOW)
    assert a != b


# --- HDR-3: request limits -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value_len", "ok"),
    [
        ("X-Big", MAX_HEADER_FIELD - len("X-Big"), True),
        ("X-Big", MAX_HEADER_FIELD - len("X-Big") + 1, False),
        ("Cookie", 100, True),
    ],
    ids=["8192-ok", "8193-rejected", "small"],
)
def test_hdr_3_header_field_limit_at_boundary(name: str, value_len: int, ok: bool) -> None:
    headers = [("Host", "a"), (name, "v" * value_len)]
    if ok:
        check_request_headers(headers)
    else:
        with pytest.raises(RequestRejected) as err:
            check_request_headers(headers)
        assert err.value.status == 400


def test_hdr_3_field_size_counts_utf8_bytes() -> None:
    # 2100 three-byte characters: 6300 bytes fits; 2800 (8400 bytes) does not.
    check_request_headers([("X-A", "€" * 2100)])
    with pytest.raises(RequestRejected):
        check_request_headers([("X-A", "€" * 2800)])


@pytest.mark.parametrize(
    ("length", "ok"),
    [(None, True), (0, True), (MAX_REQUEST_BODY, True), (MAX_REQUEST_BODY + 1, False)],
    ids=["unknown", "empty", "32MiB-ok", "32MiB+1-rejected"],
)
def test_hdr_3_request_body_limit(length: int | None, ok: bool) -> None:
    if ok:
        check_request_body_length(length)
    else:
        with pytest.raises(RequestRejected) as err:
            check_request_body_length(length)
        assert err.value.status == 413


# --- HDR-4 ---------------------------------------------------------------------------------------


def test_hdr_4_http10_request_without_host_gets_one() -> None:
    out = forward([("Connection", "keep-alive")], host="app.localhost:8080")
    assert out.getall("Host") == ["app.localhost:8080"]
    assert "Connection" not in out
    assert "Keep-Alive" not in out


def test_hdr_4_existing_host_not_duplicated() -> None:
    out = forward([("Host", "api.localhost")], host="app.localhost:8080")
    assert out.getall("Host") == ["api.localhost"]


# --- RESP-1: headers the front end owns ----------------------------------------------------------


def test_resp_1_front_end_headers_replace_apps() -> None:
    head = respond(
        [
            ("Content-Type", "text/plain"),
            ("Server", "gunicorn"),
            ("Date", "Mon, 01 Jan 2001 00:00:00 GMT"),
            ("Content-Length", "999"),
            ("Transfer-Encoding", "chunked"),
            ("Connection", "close, X-Internal"),
            ("Keep-Alive", "timeout=5"),
            ("X-Internal", "secret"),
            ("X-Cloud-Trace-Context", "app-made"),
            ("X-App", "kept"),
        ],
        body_length=5,
    )
    h = head.headers
    assert h.getall("Server") == ["Google Frontend"]
    assert h.getall("Date") == [DATE]
    assert h.getall("Content-Length") == ["5"]
    assert h.getall("X-Cloud-Trace-Context") == ["4bf92f3577b34da6a3ce929d0e0e4736;o=1"]
    assert h["X-App"] == "kept"
    for gone in ("Transfer-Encoding", "Connection", "Keep-Alive", "X-Internal"):
        assert gone not in h
    assert head.send_body
    assert head.may_compress


def test_resp_1_no_trace_no_echo() -> None:
    head = respond([("Content-Type", "text/plain")], trace=None)
    assert "X-Cloud-Trace-Context" not in head.headers


def test_resp_1_repeated_set_cookie_and_vary_preserved() -> None:
    head = respond(
        [
            ("Content-Type", "text/plain"),
            ("Cache-Control", "private"),
            ("Set-Cookie", "a=1"),
            ("Vary", "Cookie"),
            ("Set-Cookie", "b=2"),
            ("Vary", "Origin"),
        ]
    )
    assert head.headers.getall("Set-Cookie") == ["a=1", "b=2"]
    assert head.headers.getall("Vary") == ["Cookie", "Origin"]


def test_hop_by_hop_includes_connection_tokens() -> None:
    names = hop_by_hop(CIMultiDict([("Connection", "Keep-Alive, X-A"), ("connection", "x-b")]))
    assert {"x-a", "x-b", "keep-alive", "transfer-encoding", "upgrade"} <= names


# --- RESP-2 --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "content_type", "may_compress"),
    [(200, "text/html", False), (404, "text/html", False), (204, None, True), (304, None, True)],
    ids=["200", "404", "204-untouched", "304-untouched"],
)
def test_resp_2_missing_content_type_is_html_and_never_compressed(
    status: int, content_type: str | None, may_compress: bool
) -> None:
    head = respond([("Cache-Control", "no-store")], status=status)
    assert head.headers.get("Content-Type") == content_type
    assert head.may_compress is may_compress


def test_resp_2_app_content_type_kept() -> None:
    head = respond([("Content-Type", "application/json")])
    assert head.headers.getall("Content-Type") == ["application/json"]
    assert head.may_compress


# --- RESP-3 --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pairs", "cache_control", "vary"),
    [
        ([], ["private"], ["Accept-Encoding"]),
        ([("Vary", "Cookie")], ["private"], ["Cookie", "Accept-Encoding"]),
        ([("Vary", "accept-encoding")], ["private"], ["accept-encoding"]),
        ([("Vary", "*")], ["private"], ["*"]),
        ([("Cache-Control", "public, max-age=60")], ["public, max-age=60"], []),
    ],
    ids=["none", "vary-other", "vary-already", "vary-star", "app-cache-control-untouched"],
)
def test_resp_3_default_cache_control(
    pairs: list[tuple[str, str]], cache_control: list[str], vary: list[str]
) -> None:
    head = respond([("Content-Type", "text/plain"), *pairs])
    assert head.headers.getall("Cache-Control") == cache_control
    assert head.headers.getall("Vary", []) == vary
    assert "Expires" not in head.headers


PAST = http_date(NOW - 3600)
FUTURE = http_date(NOW + 3600)


@pytest.mark.parametrize(
    ("pairs", "cache_control", "expires"),
    [
        ([], "private", DATE),
        ([("Cache-Control", "public, max-age=300")], "max-age=300, private", DATE),
        ([("Cache-Control", "Public")], "private", DATE),
        ([("Cache-Control", "public"), ("Cache-Control", "no-cache")], "no-cache", DATE),
        ([("Cache-Control", "no-store")], "no-store", DATE),
        ([("Cache-Control", "private, max-age=5")], "private, max-age=5", DATE),
        ([("Cache-Control", 'no-cache="Set-Cookie, X", public')], 'no-cache="Set-Cookie, X"', DATE),
        ([("Cache-Control", "max-age=60"), ("Expires", FUTURE)], "max-age=60, private", DATE),
        ([("Cache-Control", "max-age=60"), ("Expires", PAST)], "max-age=60, private", PAST),
        ([("Cache-Control", "max-age=60"), ("Expires", "0")], "max-age=60, private", "0"),
    ],
    ids=["no-cache-control", "public-removed", "public-case", "two-lines", "no-store-kept",
         "private-kept", "quoted-comma", "future-expires-now", "past-expires-kept",
         "invalid-expires-kept"],
)  # fmt: skip
def test_resp_3_set_cookie_makes_response_private(
    pairs: list[tuple[str, str]], cache_control: str, expires: str
) -> None:
    head = respond([("Content-Type", "text/plain"), ("Set-Cookie", "sid=1"), *pairs])
    assert head.headers.getall("Cache-Control") == [cache_control]
    assert head.headers.getall("Expires") == [expires]
    assert head.headers.getall("Set-Cookie") == ["sid=1"]


# --- RESP-4 --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("generation", "encoding", "may_compress"),
    [(1, None, True), (2, "gzip", False)],
    ids=["gen1-drops", "gen2-keeps-never-recompress"],
)
def test_resp_4_app_content_encoding(
    generation: int, encoding: str | None, may_compress: bool
) -> None:
    head = respond(
        [("Content-Type", "text/plain"), ("Content-Encoding", "gzip")], generation=generation
    )
    assert head.headers.get("Content-Encoding") == encoding
    assert head.may_compress is may_compress


# --- RESP-5 --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "method", "app_length", "length", "send_body"),
    [
        (200, "HEAD", "1234", "1234", False),
        (200, "HEAD", None, None, False),
        (200, "HEAD", "junk", None, False),
        (204, "GET", "10", None, False),
        (304, "GET", "10", None, False),
        (101, "GET", None, None, False),
        (200, "GET", "999", "5", True),
        (404, "POST", None, "5", True),
    ],
    ids=["head-keeps-app-length", "head-without-length", "head-bad-length", "204", "304",
         "1xx", "get-length-corrected", "post-404"],
)  # fmt: skip
def test_resp_5_bodyless_responses_and_content_length(
    status: int, method: str, app_length: str | None, length: str | None, send_body: bool
) -> None:
    pairs = [("Content-Type", "text/plain")]
    if app_length is not None:
        pairs.append(("Content-Length", app_length))
    head = respond(pairs, status=status, method=method, body_length=5)
    assert head.headers.get("Content-Length") == length
    assert head.send_body is send_body


def _headers_of_total(total: int) -> list[tuple[str, str]]:
    # One "X-Fill: vvv\r\n" line sized so that all lines add up to `total` bytes.
    fixed = len("X-Fill") + 4
    return [("X-Fill", "v" * (total - fixed))]


@pytest.mark.parametrize(
    ("total", "ok"),
    [(MAX_RESPONSE_HEADERS, True), (MAX_RESPONSE_HEADERS + 1, False)],
    ids=["8192-ok", "8193-502"],
)
def test_resp_5_response_header_limit_at_boundary(total: int, ok: bool) -> None:
    pairs = _headers_of_total(total)
    if ok:
        check_response_headers(pairs)
        respond(pairs)
    else:
        with pytest.raises(ResponseHeadersTooLarge) as err:
            respond(pairs)
        assert err.value.status == 502


def test_resp_5_response_header_limit_counts_many_lines() -> None:
    pairs = [(f"X-H{i}", "v" * 100) for i in range(80)]  # 80 * (4|5 + 100 + 4) > 8192
    with pytest.raises(ResponseHeadersTooLarge):
        check_response_headers(pairs)


def test_resp_5_response_body_limit() -> None:
    check_response_body_length(MAX_RESPONSE_BODY)
    with pytest.raises(ResponseTooLarge) as err:
        check_response_body_length(MAX_RESPONSE_BODY + 1)
    assert err.value.status == 500


# --- dates and lists -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ts", "text"),
    [
        (784111777, "Sun, 06 Nov 1994 08:49:37 GMT"),
        (0, "Thu, 01 Jan 1970 00:00:00 GMT"),
        (1_795_000_000.9, "Wed, 18 Nov 2026 11:06:40 GMT"),
    ],
    ids=["rfc-example", "epoch", "fraction-truncated"],
)
def test_http_date_imf_fixdate(ts: float, text: str) -> None:
    assert http_date(ts) == text
    assert parse_http_date(text) == float(int(ts))


@pytest.mark.parametrize(
    "text",
    ["Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994"],
    ids=["rfc850", "asctime"],
)
def test_parse_http_date_obsolete_forms(text: str) -> None:
    assert parse_http_date(text) == 784111777.0


@pytest.mark.parametrize("text", ["0", "-1", "", "garbage"], ids=["0", "-1", "empty", "junk"])
def test_parse_http_date_invalid(text: str) -> None:
    assert parse_http_date(text) is None


def test_split_directives_respects_quotes() -> None:
    assert split_directives(['a, b="x, y" ,c', "", " d "]) == ["a", 'b="x, y"', "c", "d"]
