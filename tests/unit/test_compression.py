"""SPEC COMP-1…COMP-4 and their RESP-2/RESP-4 interplay: the compression decision and encoders."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path
from typing import Any

import brotli
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from gfe_proxy.compression import (
    DYNAMIC_LEVELS,
    ENCODINGS,
    STATIC_BROTLI_MAX_Q11_BYTES,
    STATIC_LEVELS,
    Encoding,
    add_vary,
    apply,
    compress,
    default_level,
    is_compressible_type,
    is_known_bad_client,
    negotiate,
    parse_accept_encoding,
    parse_enabled,
)

REPO = Path(__file__).resolve().parents[2]
CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0"
IE6 = "Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1)"
IE6_SV1 = "Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1; SV1)"
NETSCAPE4 = "Mozilla/4.76 [en] (X11; U; Linux 2.4.2 i686)"
TEXT = (
    b"<!doctype html><title>gfe_proxy</title>"
    + b"<p>App Engine compresses text-based responses for clients that accept gzip.</p>" * 40
)


def decide(**overrides: Any) -> Encoding | None:
    """negotiate() for an eligible gzip response from a modern browser, with overrides."""
    kwargs: dict[str, Any] = {
        "accept_encoding": "gzip, deflate",
        "user_agent": CHROME,
        "content_type": "text/html; charset=utf-8",
        "content_encoding": None,
        "cache_control": None,
        "has_body": True,
        "enabled": ("gzip",),
        "content_type_defaulted": False,
    }
    kwargs.update(overrides)
    return negotiate(**kwargs)


def decode(body: bytes, encoding: Encoding) -> bytes:
    if encoding == "gzip":
        return gzip.decompress(body)
    out: bytes = brotli.decompress(body)
    return out


# --- parse_accept_encoding ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("gzip", {"gzip": 1.0}),
        ("gzip, deflate, br", {"gzip": 1.0, "deflate": 1.0, "br": 1.0}),
        ("br;q=1.0, gzip;q=0.8, *;q=0.1", {"br": 1.0, "gzip": 0.8, "*": 0.1}),
        ("GZIP;Q=0.5", {"gzip": 0.5}),
        ("  gzip ; q = 0.5 ,br", {"gzip": 0.5, "br": 1.0}),
        (",,gzip,, ,", {"gzip": 1.0}),
        ("", {}),
        ("gzip;q=0", {"gzip": 0.0}),
        ("gzip;q=0.000", {"gzip": 0.0}),
        ("gzip;q=1.", {"gzip": 1.0}),
        ("gzip;q=0.12345", {"gzip": 0.12345}),
        ("gzip;level=9", {"gzip": 1.0}),
        ("gzip;q=2, br", {"br": 1.0}),
        ("gzip;q=1.001", {}),
        ("gzip;q=-1", {}),
        ("gzip;q=abc", {}),
        ("gzip;q=", {}),
        ("gzip;q", {}),
        ('gzip;q="0.5"', {}),
        ("gzip;q=nan", {}),
        ("gz ip, br", {"br": 1.0}),
        ("gzip, gzip;q=0", {"gzip": 0.0}),
        ("gzip;q=0.5, gzip;q=0.9", {"gzip": 0.5}),
        ("identity", {"identity": 1.0}),
    ],
    ids=[
        "bare-token",
        "list",
        "q-values-and-star",
        "case-insensitive",
        "whitespace",
        "empty-members",
        "empty-header",
        "q-zero",
        "q-zero-decimals",
        "q-one-dot",
        "q-many-decimals-tolerated",
        "other-params-ignored",
        "q-above-one-ignored",
        "q-just-above-one-ignored",
        "q-negative-ignored",
        "q-garbage-ignored",
        "q-empty-ignored",
        "q-without-value-ignored",
        "q-quoted-ignored",
        "q-nan-ignored",
        "bad-token-ignored",
        "duplicate-refusal-wins",
        "duplicate-lowest-q-wins",
        "identity",
    ],
)
def test_comp_1_parse_accept_encoding(value: str, expected: dict[str, float]) -> None:
    assert parse_accept_encoding(value) == expected


# --- COMP-1: who may receive gzip ---------------------------------------------------------------


def test_comp_1_q_zero_excludes_gzip() -> None:
    assert decide(accept_encoding="gzip;q=0") is None
    assert decide(accept_encoding="deflate, gzip;q=0.0") is None


@pytest.mark.parametrize(
    ("accept_encoding", "expected"),
    [
        ("gzip", "gzip"),
        ("gzip, deflate, br, zstd", "gzip"),
        ("GZip", "gzip"),
        ("gzip;q=0.001", "gzip"),
        ("*", None),
        ("*;q=1, gzip;q=0", None),
        ("gzip;q=0, *", None),
        ("identity", None),
        ("deflate", None),
        ("x-gzip", None),
        ("", None),
        (None, None),
        ("gzip;q=7", None),
    ],
    ids=[
        "gzip",
        "browser-list",
        "case-insensitive",
        "tiny-q",
        "star-alone",
        "star-with-gzip-refused",
        "gzip-refused-then-star",
        "identity-only",
        "deflate-only",
        "x-gzip-is-not-gzip",
        "empty-header",
        "no-header",
        "invalid-q-ignores-member",
    ],
)
def test_comp_1_gzip_needs_its_own_token_with_q_above_zero(
    accept_encoding: str | None, expected: Encoding | None
) -> None:
    assert decide(accept_encoding=accept_encoding) == expected


@pytest.mark.parametrize(
    "content_type",
    [
        "text/html",
        "text/html; charset=utf-8",
        "TEXT/Plain; Charset=UTF-8",
        "text/css",
        "text/csv",
        "text/javascript",
        "application/javascript; charset=utf-8",
        "application/x-javascript",
        "application/ecmascript",
        "application/json",
        "application/ld+json",
        "application/manifest+json",
        "application/vnd.api+json",
        "application/problem+json",
        "application/xml",
        "application/xhtml+xml",
        "application/rss+xml",
        "application/atom+xml",
        "image/svg+xml",
        "image/x-icon",
        "font/ttf",
        "font/otf",
        "application/x-font-ttf",
        "application/vnd.ms-fontobject",
        "application/vnd.apple.mpegurl",
    ],
)
def test_comp_1_text_based_types_are_compressed(content_type: str) -> None:
    assert is_compressible_type(content_type)
    assert decide(content_type=content_type) == "gzip"


@pytest.mark.parametrize(
    "content_type",
    [
        "image/png",
        "image/jpeg",
        "image/webp",
        "video/mp4",
        "application/octet-stream",
        "application/pdf",
        "application/zip",
        "application/gzip",
        "application/wasm",
        "font/woff",
        "font/woff2",
        "",
        "html",
        "text/",
        "/html",
        "text /html",
    ],
)
def test_comp_1_binary_and_malformed_types_are_not_compressed(content_type: str) -> None:
    assert not is_compressible_type(content_type)
    assert decide(content_type=content_type) is None


@pytest.mark.parametrize(
    ("content_encoding", "expected"),
    [
        ("gzip", None),
        ("br", None),
        ("GZIP", None),
        ("deflate", None),
        ("gzip, identity", None),
        ("identity", "gzip"),
        ("", "gzip"),
        (None, "gzip"),
    ],
    ids=["gzip", "br", "case", "deflate", "listed", "identity", "empty", "absent"],
)
def test_comp_1_resp_4_app_encoded_body_is_never_compressed_again(
    content_encoding: str | None, expected: Encoding | None
) -> None:
    assert decide(content_encoding=content_encoding) == expected


@pytest.mark.parametrize(
    ("cache_control", "expected"),
    [
        ("no-transform", None),
        ("public, No-Transform, max-age=60", None),
        ("public,no-transform", None),
        ("public, max-age=60", "gzip"),
        ("no-store", "gzip"),
        ("", "gzip"),
    ],
    ids=["alone", "in-list-any-case", "no-space", "other-directives", "no-store", "empty"],
)
def test_comp_1_no_transform_is_respected(cache_control: str, expected: Encoding | None) -> None:
    assert decide(cache_control=cache_control) == expected


def test_comp_1_no_body_is_never_compressed() -> None:
    assert decide(has_body=False) is None
    assert decide(has_body=False, accept_encoding="gzip", enabled=("br", "gzip")) is None


def test_resp_2_defaulted_content_type_is_never_compressed() -> None:
    assert decide(content_type="text/html", content_type_defaulted=True) is None
    assert decide(content_type=None) is None


def test_comp_1_nothing_enabled_means_no_compression() -> None:
    assert decide(enabled=()) is None


# --- COMP-2: known-bad clients and the "gzip" User-Agent ----------------------------------------


@pytest.mark.parametrize(
    ("user_agent", "expected"),
    [
        (IE6, None),
        ("Mozilla/4.0 (compatible; MSIE 5.5; Windows 98)", None),
        ("Mozilla/4.0 (compatible; MSIE 4.01; Windows 95)", None),
        (NETSCAPE4, None),
        (IE6_SV1, "gzip"),
        ("Mozilla/4.0 (compatible; MSIE 7.0; Windows NT 6.0)", "gzip"),
        ("Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1) Opera 7.54  [en]", "gzip"),
        (CHROME, "gzip"),
        ("curl/8.4.0", "gzip"),
        ("", "gzip"),
        (None, "gzip"),
        (IE6 + " gzip", "gzip"),
        (NETSCAPE4 + " (GZIP)", "gzip"),
        ("gzip", "gzip"),
    ],
    ids=[
        "msie6-without-sv1",
        "msie5",
        "msie4",
        "netscape4",
        "msie6-sv1",
        "msie7",
        "opera-disguised-as-msie6",
        "chrome",
        "curl",
        "empty",
        "absent",
        "gzip-forces-msie6",
        "gzip-forces-netscape4-any-case",
        "custom-client-gzip",
    ],
)
def test_comp_2_known_bad_clients_unless_user_agent_says_gzip(
    user_agent: str | None, expected: Encoding | None
) -> None:
    assert decide(user_agent=user_agent) == expected


def test_comp_2_gzip_user_agent_still_needs_accept_encoding_gzip() -> None:
    assert decide(user_agent="gzip", accept_encoding="deflate") is None
    assert decide(user_agent="gzip", accept_encoding="gzip;q=0") is None
    assert decide(user_agent="gzip", accept_encoding=None) is None


def test_comp_2_gzip_user_agent_forces_text_types_only() -> None:
    assert decide(user_agent=IE6 + " gzip", content_type="image/png") is None
    assert decide(user_agent=IE6 + " gzip", cache_control="no-transform") is None


def test_comp_2_known_bad_list_is_short() -> None:
    assert is_known_bad_client(IE6)
    assert is_known_bad_client(NETSCAPE4)
    assert not is_known_bad_client(IE6_SV1)
    assert not is_known_bad_client(CHROME)


# --- COMP-3: brotli ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept_encoding", "enabled", "expected"),
    [
        ("gzip, deflate, br", ("br", "gzip"), "br"),
        ("BR, GZIP", ("br", "gzip"), "br"),
        ("gzip, br", ("gzip", "br"), "gzip"),
        ("gzip;q=1, br;q=0.5", ("br", "gzip"), "gzip"),
        ("gzip;q=0.5, br;q=1", ("gzip", "br"), "br"),
        ("gzip", ("br", "gzip"), "gzip"),
        ("gzip, *", ("br", "gzip"), "gzip"),
        ("gzip, br;q=0", ("br", "gzip"), "gzip"),
        ("gzip, br", ("gzip",), "gzip"),
        ("gzip, br", ("br",), "br"),
        ("gzip", ("br",), None),
        ("br", ("br", "gzip"), None),
        ("gzip;q=0, br", ("br", "gzip"), None),
        ("*", ("br", "gzip"), None),
    ],
    ids=[
        "listed-and-enabled-prefers-br",
        "case-insensitive",
        "tie-follows-server-order",
        "client-prefers-gzip",
        "client-prefers-br-over-server-order",
        "br-not-listed-gzip",
        "star-does-not-list-br",
        "br-q-zero-gzip",
        "br-disabled-gzip",
        "gzip-disabled-br",
        "only-br-enabled-not-listed",
        "br-without-gzip-token-none",
        "gzip-refused-none",
        "star-alone-none",
    ],
)
def test_comp_3_brotli_only_when_enabled_and_listed(
    accept_encoding: str, enabled: tuple[Encoding, ...], expected: Encoding | None
) -> None:
    assert decide(accept_encoding=accept_encoding, enabled=enabled) == expected


def test_comp_3_brotli_obeys_the_same_response_rules() -> None:
    br_client = {"accept_encoding": "gzip, br", "enabled": ("br", "gzip")}
    assert decide(**br_client, content_type="image/png") is None
    assert decide(**br_client, content_encoding="gzip") is None
    assert decide(**br_client, user_agent=IE6) is None


# --- encoders ------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize(
    "body",
    [b"", b"x", TEXT, bytes(range(256)) * 300],
    ids=["empty", "one-byte", "text", "binary-77KB"],
)
@pytest.mark.parametrize("level", [None, 0, 1, 9], ids=["default", "l0", "l1", "l9"])
def test_comp_4_compress_round_trips(encoding: Encoding, body: bytes, level: int | None) -> None:
    assert decode(compress(body, encoding, level), encoding) == body


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_comp_4_static_variant_round_trips_and_is_smaller(encoding: Encoding) -> None:
    dynamic = compress(TEXT, encoding)
    static = compress(TEXT, encoding, static=True)
    assert decode(static, encoding) == TEXT
    assert len(static) <= len(dynamic) < len(TEXT)


def test_comp_4_gzip_is_reproducible_with_mtime_zero() -> None:
    first = compress(TEXT, "gzip")
    assert first == compress(TEXT, "gzip")
    assert first[:3] == b"\x1f\x8b\x08"  # gzip magic, deflate
    assert first[4:8] == b"\x00\x00\x00\x00"  # MTIME


@pytest.mark.parametrize(
    ("encoding", "level"),
    [("gzip", -1), ("gzip", 10), ("br", -1), ("br", 12)],
    ids=["gzip-low", "gzip-high", "br-low", "br-high"],
)
def test_compress_rejects_levels_out_of_range(encoding: Encoding, level: int) -> None:
    with pytest.raises(ValueError, match="level"):
        compress(TEXT, encoding, level)


def test_compress_rejects_unknown_coding() -> None:
    coding: Any = "deflate"
    with pytest.raises(ValueError, match="deflate"):
        compress(TEXT, coding)


@pytest.mark.parametrize(
    ("encoding", "size", "static", "expected"),
    [
        ("gzip", 1000, False, DYNAMIC_LEVELS["gzip"]),
        ("br", 1000, False, DYNAMIC_LEVELS["br"]),
        ("gzip", 10**7, True, STATIC_LEVELS["gzip"]),
        ("br", STATIC_BROTLI_MAX_Q11_BYTES, True, 11),
        ("br", STATIC_BROTLI_MAX_Q11_BYTES + 1, True, 9),
    ],
    ids=["gzip-dynamic", "br-dynamic", "gzip-static", "br-static-small", "br-static-large"],
)
def test_comp_4_default_levels(encoding: Encoding, size: int, static: bool, expected: int) -> None:
    assert default_level(encoding, size, static=static) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("gzip", ("gzip",)),
        ("br,gzip", ("br", "gzip")),
        (" BR , gzip, br ", ("br", "gzip")),
        ("gzip,br", ("gzip", "br")),
        ("", ()),
        ("none", ()),
    ],
    ids=["production", "brotli-first", "spaces-case-duplicates", "gzip-first", "empty", "none"],
)
def test_comp_3_parse_enabled(value: str, expected: tuple[Encoding, ...]) -> None:
    assert parse_enabled(value) == expected


def test_comp_3_parse_enabled_rejects_unknown_codings() -> None:
    with pytest.raises(ValueError, match="'zstd'"):
        parse_enabled("br,zstd")


# --- COMP-4: response headers -------------------------------------------------------------------


def H(*pairs: tuple[str, str]) -> CIMultiDict[str]:
    return CIMultiDict(pairs)


@pytest.mark.parametrize(
    ("etags", "expected"),
    [
        (['"abc"'], ['W/"abc"']),
        (['W/"abc"'], ['W/"abc"']),
        ([' "abc" '], ['W/"abc"']),
        (['""'], ['W/""']),
        (["abc"], []),
        (['w/"abc"'], []),
        (['"'], []),
        ([], []),
    ],
    ids=[
        "strong",
        "weak-kept",
        "spaces",
        "empty-tag",
        "unquoted-dropped",
        "lower-w-dropped",
        "lone-quote-dropped",
        "absent",
    ],
)
def test_comp_4_strong_etag_becomes_weak(etags: list[str], expected: list[str]) -> None:
    headers = H(*(("ETag", tag) for tag in etags))
    apply(headers, "gzip")
    assert headers.getall("ETag", []) == expected


@pytest.mark.parametrize(
    ("vary", "expected"),
    [
        ([], ["Accept-Encoding"]),
        (["Cookie"], ["Cookie", "Accept-Encoding"]),
        (["Cookie", "Origin"], ["Cookie", "Origin", "Accept-Encoding"]),
        (["accept-encoding"], ["accept-encoding"]),
        (["Origin, ACCEPT-ENCODING"], ["Origin, ACCEPT-ENCODING"]),
        (["Cookie", "Accept-Encoding"], ["Cookie", "Accept-Encoding"]),
        (["*"], ["*"]),
        (["Origin, *"], ["Origin, *"]),
        ([""], ["", "Accept-Encoding"]),
    ],
    ids=[
        "absent",
        "one-field",
        "two-lines",
        "present-lowercase",
        "present-in-list",
        "present-on-second-line",
        "star",
        "star-in-list",
        "empty-line",
    ],
)
def test_comp_4_vary_names_accept_encoding_once(vary: list[str], expected: list[str]) -> None:
    headers = H(*(("Vary", v) for v in vary))
    apply(headers, "br")
    assert headers.getall("Vary") == expected


def test_comp_4_apply_sets_content_encoding_and_keeps_other_headers() -> None:
    headers = H(
        ("Content-Type", "text/html"),
        ("Set-Cookie", "a=1"),
        ("Set-Cookie", "b=2"),
        ("ETag", '"v1"'),
        ("Content-Length", "1234"),
    )
    apply(headers, "gzip")
    assert headers["Content-Encoding"] == "gzip"
    assert headers.getall("Set-Cookie") == ["a=1", "b=2"]
    assert headers["ETag"] == 'W/"v1"'
    assert headers["Vary"] == "Accept-Encoding"
    assert headers["Content-Length"] == "1234"  # the caller sets it from the encoded body


def test_comp_4_add_vary_other_fields() -> None:
    headers = H(("Vary", "Accept-Encoding"))
    add_vary(headers, "Origin")
    assert headers.getall("Vary") == ["Accept-Encoding", "Origin"]


# --- properties ----------------------------------------------------------------------------------

_CODINGS = st.sampled_from(["gzip", "GZIP", "br", "Br", "*", "identity", "deflate", "x-gzip"])
_QS = st.one_of(
    st.just(""),
    st.sampled_from([";q=0", ";q=1", ";q=0.5", ";q=0.000", ";q=1.5", ";q=abc", ";Q=0.2", ";q="]),
    st.floats(0, 1).map(lambda q: f";q={q:.3f}"),
)
_MEMBER = st.tuples(_CODINGS | st.text(max_size=8), _QS).map("".join)
ACCEPT_ENCODINGS = st.one_of(
    st.none(),
    st.lists(_MEMBER, max_size=6).map(", ".join),
    st.text(max_size=40),
)
USER_AGENTS = st.one_of(
    st.none(), st.sampled_from([CHROME, IE6, IE6_SV1, NETSCAPE4, IE6 + " gzip"]), st.text()
)
CONTENT_TYPES = st.one_of(
    st.none(),
    st.sampled_from(["text/html", "application/json; charset=utf-8", "image/png", "font/woff2"]),
    st.text(max_size=30),
)
ENABLED = st.lists(st.sampled_from(ENCODINGS), unique=True).map(tuple)


@settings(max_examples=300, deadline=None)
@given(
    accept_encoding=ACCEPT_ENCODINGS,
    user_agent=USER_AGENTS,
    content_type=CONTENT_TYPES,
    content_encoding=st.one_of(st.none(), st.sampled_from(["gzip", "identity", ""]), st.text()),
    cache_control=st.one_of(st.none(), st.sampled_from(["no-transform", "public"]), st.text()),
    has_body=st.booleans(),
    enabled=ENABLED,
    content_type_defaulted=st.booleans(),
)
def test_comp_3_negotiate_never_raises_nor_picks_unlisted_or_disabled_codings(
    accept_encoding: str | None,
    user_agent: str | None,
    content_type: str | None,
    content_encoding: str | None,
    cache_control: str | None,
    has_body: bool,
    enabled: tuple[Encoding, ...],
    content_type_defaulted: bool,
) -> None:
    chosen = negotiate(
        accept_encoding=accept_encoding,
        user_agent=user_agent,
        content_type=content_type,
        content_encoding=content_encoding,
        cache_control=cache_control,
        has_body=has_body,
        enabled=enabled,
        content_type_defaulted=content_type_defaulted,
    )
    if chosen is None:
        return
    assert accept_encoding is not None
    accepted = parse_accept_encoding(accept_encoding)
    assert chosen in enabled
    assert accepted.get(chosen, 0.0) > 0.0  # listed by name with q > 0 (COMP-1, COMP-3)
    assert accepted.get("gzip", 0.0) > 0.0
    assert has_body
    assert not content_type_defaulted


@given(st.text())
def test_comp_1_parse_accept_encoding_never_raises_and_q_in_range(value: str) -> None:
    assert all(0.0 <= q <= 1.0 for q in parse_accept_encoding(value).values())


@settings(max_examples=50, deadline=None)
@given(body=st.binary(max_size=4096), encoding=st.sampled_from(ENCODINGS))
def test_comp_4_compress_round_trips_any_bytes(body: bytes, encoding: Encoding) -> None:
    assert decode(compress(body, encoding), encoding) == body


def test_compression_module_is_pure() -> None:
    code = (
        "import sys, gfe_proxy.compression as c; print({'aiohttp', 'asyncio'} & set(sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    ).stdout
    assert out.strip() == "set()"
