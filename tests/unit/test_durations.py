"""SPEC CFG-3: app.yaml durations in gfe_proxy/durations.py."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gfe_proxy.durations import parse_expiration, parse_idle_timeout, parse_latency

UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1, "": 1}


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("4d 5h", 363600.0),
        ("90", 90.0),
        ("30s", 30.0),
        ("10m", 600.0),
        ("1d", 86400.0),
        ("1h 30m", 5400.0),
        ("  5s  ", 5.0),
        ("1d 1h 1m 1s", 90061.0),
        ("2H 3M", 7380.0),
        ("0", 0.0),
        ("1h\t15m", 4500.0),
    ],
    ids=["reference-example", "bare-number-is-seconds", "seconds", "minutes", "day",
         "two-terms", "padding", "all-units", "uppercase-units", "zero", "tab-separated"],
)
def test_cfg_3_expiration_terms_are_summed(text: str, seconds: float) -> None:
    assert parse_expiration(text) == seconds


@pytest.mark.parametrize(
    "text",
    ["", "   ", "4x", "4d5h", "1.5h", "-1s", "d", "4 d", "abc", "1w", "9" * 13 + "s", "٣s"],
    ids=["empty", "blank", "bad-unit", "no-space", "decimal", "negative", "unit-only",
         "space-before-unit", "word", "weeks", "too-large", "non-ascii-digit"],
)
def test_cfg_3_expiration_rejects_bad_text(text: str) -> None:
    with pytest.raises(ValueError, match=r"expiration|too large"):
        parse_expiration(text)


def test_cfg_3_expiration_message_names_the_bad_term() -> None:
    with pytest.raises(ValueError, match=r"term '5x'.*like '4d 5h'"):
        parse_expiration("4d 5x")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30ms", 0.03), ("0ms", 0.0), ("1s", 1.0), ("1.5s", 1.5), ("0.125s", 0.125),
     ("automatic", None), (" 15s ", 15.0)],
    ids=["ms", "zero-ms", "s", "decimal-s", "three-decimals", "automatic", "padding"],
)
def test_cfg_3_latency(text: str, seconds: float | None) -> None:
    assert parse_latency(text) == seconds


@pytest.mark.parametrize(
    "text",
    ["30", "1.2345s", "ms", "fast", "1m", "1.5ms", "-1s", "", "Automatic", "1 s"],
    ids=["bare", "four-decimals", "no-number", "word", "minutes", "decimal-ms", "negative",
         "empty", "capitalised", "space"],
)
def test_cfg_3_latency_rejects_bad_text(text: str) -> None:
    with pytest.raises(ValueError, match="latency"):
        parse_latency(text)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10m", 600.0), ("45s", 45.0), ("0s", 0.0), (" 5m", 300.0)],
    ids=["minutes", "seconds", "zero", "padding"],
)
def test_cfg_3_idle_timeout(text: str, seconds: float) -> None:
    assert parse_idle_timeout(text) == seconds


@pytest.mark.parametrize(
    "text",
    ["10", "1h", "1.5m", "m", "", "5 m", "9" * 13 + "m"],
    ids=["bare", "hours", "decimal", "unit-only", "empty", "space", "too-large"],
)
def test_cfg_3_idle_timeout_rejects_bad_text(text: str) -> None:
    with pytest.raises(ValueError, match=r"idle_timeout|too large"):
        parse_idle_timeout(text)


@given(st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(sorted(UNITS))),
                min_size=1, max_size=6))
def test_cfg_3_expiration_is_the_sum_of_its_terms(terms: list[tuple[int, str]]) -> None:
    text = " ".join(f"{n}{unit}" for n, unit in terms)
    assert parse_expiration(text) == sum(n * UNITS[unit] for n, unit in terms)


@given(st.text(max_size=40))
def test_cfg_3_parsers_raise_only_value_error(text: str) -> None:
    for parse in (parse_expiration, parse_latency, parse_idle_timeout):
        try:
            result = parse(text)
        except ValueError as exc:
            message = str(exc)
            assert message
        else:
            assert result is None or result >= 0
