"""SPEC LOG-1: the access log line, text and JSON."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gfe_proxy.accesslog import AccessRecord, format_json, format_text

T = 1_795_000_000.25  # Wed, 18 Nov 2026 11:06:40.25 UTC


def record(**overrides: object) -> AccessRecord:
    values: dict[str, object] = {
        "time": T,
        "method": "GET",
        "url": "/x?y=1",
        "host": "app.localhost:8080",
        "status": 200,
        "response_size": 123,
        "latency_s": 0.0031,
        "user_agent": "curl/8",
        "remote_ip": "127.0.0.1",
        "request_log_id": "6a8e1b0000000000deadbeefcafef00d",
        "trace": "projects/demo/traces/4bf92f3577b34da6a3ce929d0e0e4736",
        "instance": "i-1",
        "pending_ms": 2,
        "loading_request": True,
        "cache": "MISS",
        "service": "default",
        "version": "v1",
    }
    values.update(overrides)
    return AccessRecord(**values)  # type: ignore[arg-type]


def test_log_1_text_is_app_engine_request_log_shape() -> None:
    assert format_text(record()) == (
        '127.0.0.1 - - [18/Nov/2026:11:06:40 +0000] "GET /x?y=1 HTTP/1.1" 200 123 - "curl/8" '
        '"app.localhost:8080" ms=3 pending_ms=2 loading_request=1 instance=i-1 cache=MISS '
        "trace_id=4bf92f3577b34da6a3ce929d0e0e4736"
    )


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"referer": "https://a.example/"}, ' "https://a.example/" "curl/8" '),
        ({"user_agent": ""}, " 123 - - "),
        ({"remote_ip": ""}, "- - - ["),
        ({"trace": ""}, "cache=MISS"),
        ({"trace": "4bf92f3577b34da6a3ce929d0e0e4736"},
         "trace_id=4bf92f3577b34da6a3ce929d0e0e4736"),
        ({"instance": "static", "cache": "HIT"}, "instance=static cache=HIT"),
        ({"loading_request": False}, "loading_request=0"),
        ({"latency_s": 1.2345}, " ms=1234 "),
    ],
    ids=["referer-quoted", "no-user-agent", "no-ip", "no-trace", "bare-trace", "static-hit",
         "not-loading", "ms-rounded"],
)  # fmt: skip
def test_log_1_text_fields(overrides: dict[str, object], fragment: str) -> None:
    line = format_text(record(**overrides))
    assert fragment in line
    if not overrides.get("trace", "x"):
        assert line.endswith(fragment)


@pytest.mark.parametrize(
    ("field", "value", "escaped"),
    [
        ("user_agent", 'evil" 500 "x', '"evil\\" 500 \\"x"'),
        ("url", "/a\nb", "/a\\nb"),
        ("referer", "back\\slash", '"back\\\\slash"'),
        ("user_agent", "bad\udcffbyte", '"bad\\udcffbyte"'),
    ],
    ids=["quote", "newline", "backslash", "surrogate"],
)
def test_log_1_text_escapes_client_text(field: str, value: str, escaped: str) -> None:
    line = format_text(record(**{field: value}))
    assert escaped in line
    assert "\n" not in line


@given(
    user_agent=st.text(max_size=30),
    url=st.text(max_size=30),
    referer=st.text(max_size=30),
)
def test_log_1_text_is_always_one_line(user_agent: str, url: str, referer: str) -> None:
    line = format_text(record(user_agent=user_agent, url=url, referer=referer))
    assert len(line.splitlines()) == 1
    line.encode("utf-8")  # writable to a UTF-8 stream whatever the client sent


def test_log_1_json_has_cloud_logging_http_request() -> None:
    entry = json.loads(format_json(record(request_size=10, referer="https://r/")))
    assert entry["httpRequest"] == {
        "requestMethod": "GET",
        "requestUrl": "/x?y=1",
        "requestSize": "10",
        "status": 200,
        "responseSize": "123",
        "userAgent": "curl/8",
        "remoteIp": "127.0.0.1",
        "referer": "https://r/",
        "latency": "0.0031s",
        "protocol": "HTTP/1.1",
        "cacheLookup": True,
        "cacheHit": False,
    }
    assert entry["timestamp"] == "2026-11-18T11:06:40.250000Z"
    assert entry["severity"] == "INFO"
    assert entry["request_log_id"] == "6a8e1b0000000000deadbeefcafef00d"
    assert entry["trace"] == "projects/demo/traces/4bf92f3577b34da6a3ce929d0e0e4736"
    assert entry["logging.googleapis.com/trace"] == entry["trace"]
    assert entry["instance"] == "i-1"
    assert entry["pending_ms"] == 2
    assert entry["loading_request"] is True
    assert entry["cache"] == "MISS"
    assert (entry["service"], entry["version"], entry["host"]) == (
        "default",
        "v1",
        "app.localhost:8080",
    )


@pytest.mark.parametrize(
    ("cache", "lookup", "hit"),
    [("HIT", True, True), ("MISS", True, False), ("STALE-VARIANT", True, False),
     ("BYPASS", False, False), ("-", False, False)],
    ids=["hit", "miss", "stale-variant", "bypass", "none"],
)  # fmt: skip
def test_log_1_json_cache_flags(cache: str, lookup: bool, hit: bool) -> None:
    http_request = json.loads(format_json(record(cache=cache)))["httpRequest"]
    assert (http_request["cacheLookup"], http_request["cacheHit"]) == (lookup, hit)


@pytest.mark.parametrize(
    ("status", "severity"),
    [(200, "INFO"), (304, "INFO"), (404, "WARNING"), (500, "ERROR"), (503, "ERROR")],
    ids=["200", "304", "404", "500", "503"],
)
def test_log_1_json_severity_from_status(status: int, severity: str) -> None:
    assert json.loads(format_json(record(status=status)))["severity"] == severity


@pytest.mark.parametrize(
    ("latency", "text"),
    [(0.0, "0s"), (0.003, "0.003s"), (1.5, "1.5s"), (12.0, "12s"), (-1.0, "0s")],
    ids=["zero", "ms", "fraction", "whole", "negative-clamped"],
)
def test_log_1_json_latency_is_a_duration(latency: float, text: str) -> None:
    assert json.loads(format_json(record(latency_s=latency)))["httpRequest"]["latency"] == text


def test_log_1_json_is_one_line_and_omits_unknowns() -> None:
    rec = replace(record(), trace="", request_size=None, user_agent='a"\n\udcff')
    line = format_json(rec)
    assert "\n" not in line
    line.encode("ascii")
    entry = json.loads(line)
    assert "requestSize" not in entry["httpRequest"]
    assert "logging.googleapis.com/trace" not in entry
    assert entry["httpRequest"]["userAgent"] == 'a"\n\udcff'
