"""SPEC CACHE-1…CACHE-4: the pure edge-cache policy in gfe_proxy/caching.py."""

from __future__ import annotations

from email.utils import formatdate

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict

from gfe_proxy.caching import (
    CACHEABLE_STATUSES,
    DEFAULT_PUBLIC_TTL,
    Cacheability,
    CacheControl,
    accepts_coding,
    age,
    cache_key,
    cacheability,
    is_fresh,
    parse_cache_control,
    request_bypass_reason,
    split_key,
    variant_key,
    variant_warning,
)

NOW = 1_700_000_000.0  # a fixed Unix time
MB = 1 << 20


def H(*pairs: tuple[str, str]) -> CIMultiDict[str]:
    return CIMultiDict(pairs)


def decide(
    response: CIMultiDict[str] | None = None,
    *,
    method: str = "GET",
    status: int = 200,
    request: CIMultiDict[str] | None = None,
    body_size: int = 100,
    max_object_size: int = MB,
    now: float = NOW,
) -> Cacheability:
    return cacheability(
        method=method,
        status=status,
        response_headers=response if response is not None else H(("Cache-Control", "public")),
        request_headers=request if request is not None else H(),
        body_size=body_size,
        max_object_size=max_object_size,
        now=now,
    )


def http_date(t: float) -> str:
    return formatdate(t, usegmt=True)


# --------------------------------------------------------------------------- CACHE-1


@pytest.mark.parametrize(
    ("scheme", "host", "path_qs", "key"),
    [
        ("http", "localhost:8080", "/a.css", "http://localhost:8080/a.css"),
        ("https", "app.localhost", "/x?b=2&a=1", "https://app.localhost/x?b=2&a=1"),
        ("http", "Example.COM", "/%7Euser/", "http://Example.COM/%7Euser/"),
    ],
    ids=["plain", "query-kept-in-order", "nothing-normalised"],
)
def test_cache_1_key_is_the_url_as_received(scheme: str, host: str, path_qs: str, key: str) -> None:
    assert cache_key(scheme, host, path_qs) == key
    assert split_key(key) == (f"{scheme}://{host}", path_qs)


def test_cache_1_query_order_makes_different_keys() -> None:
    assert cache_key("http", "h", "/p?a=1&b=2") != cache_key("http", "h", "/p?b=2&a=1")


@given(
    scheme=st.sampled_from(["http", "https"]),
    host=st.from_regex(r"[a-z0-9.-]{1,20}(:[0-9]{1,5})?", fullmatch=True),
    path_qs=st.from_regex(r"/[^\s]{0,40}", fullmatch=True),
)
def test_cache_1_split_key_inverts_cache_key(scheme: str, host: str, path_qs: str) -> None:
    assert split_key(cache_key(scheme, host, path_qs)) == (f"{scheme}://{host}", path_qs)


# --------------------------------------------------------------------------- Cache-Control


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (["public, max-age=600"], CacheControl(public=True, max_age=600)),
        (["PUBLIC, Max-Age=60, S-MAXAGE=30"], CacheControl(public=True, max_age=60, s_maxage=30)),
        (['max-age="120"'], CacheControl(max_age=120)),
        (['no-cache="Set-Cookie, X-Foo", max-age=5'], CacheControl(no_cache=True, max_age=5)),
        (['private="X-User"'], CacheControl(private=True)),
        (["max-age=600", "max-age=60"], CacheControl(max_age=60)),
        (["max-age=60, max-age=600"], CacheControl(max_age=60)),
        (["max-age=abc, public"], CacheControl(public=True, max_age=0)),
        (["max-age=-5"], CacheControl(max_age=0)),
        (["max-age"], CacheControl(max_age=0)),
        (["max-age = 30 , no-transform"], CacheControl(max_age=30, no_transform=True)),
        (["max-age=99999999999999999999"], CacheControl(max_age=2**31)),
        (["no-store", "public"], CacheControl(no_store=True, public=True)),
        ([",, ,public,"], CacheControl(public=True)),
        (['community="UCI", public'], CacheControl(public=True)),
        (['foo="unterminated, public'], CacheControl()),
        ([], CacheControl()),
    ],
    ids=[
        "basic",
        "case-insensitive-names",
        "quoted-lifetime",
        "comma-inside-quotes",
        "private-with-field",
        "duplicate-lines-smallest-wins",
        "duplicate-in-one-line-smallest-wins",
        "invalid-lifetime-is-zero",
        "negative-lifetime-is-zero",
        "lifetime-without-value-is-zero",
        "spaces-around-equals",
        "huge-lifetime-capped",
        "flags-across-lines",
        "empty-elements",
        "unknown-extension-ignored",
        "unterminated-quote-swallows-rest",
        "absent",
    ],
)
def test_cache_2_parse_cache_control(lines: list[str], expected: CacheControl) -> None:
    assert parse_cache_control(lines) == expected


@given(st.lists(st.text(max_size=60), max_size=4))
def test_cache_2_parse_cache_control_never_raises(lines: list[str]) -> None:
    cc = parse_cache_control(lines)
    assert cc.max_age is None or 0 <= cc.max_age <= 2**31


# --------------------------------------------------------------------------- CACHE-2 policy

CACHEABLE = sorted(CACHEABLE_STATUSES)
NOT_CACHEABLE = [100, 101, 201, 202, 205, 207, 303, 304, 305, 400, 401, 403, 406, 409, 429,
                 500, 502, 503, 504]


@pytest.mark.parametrize("status", CACHEABLE, ids=[str(s) for s in CACHEABLE])
def test_cache_2_listed_status_is_stored(status: int) -> None:
    assert decide(H(("Cache-Control", "public, max-age=60")), status=status).store


@pytest.mark.parametrize("status", NOT_CACHEABLE, ids=[str(s) for s in NOT_CACHEABLE])
def test_cache_2_unlisted_status_is_not_stored(status: int) -> None:
    c = decide(H(("Cache-Control", "public, max-age=60")), status=status)
    assert not c.store
    assert c.reason == f"not stored: status {status} is not cacheable"


@pytest.mark.parametrize(
    ("response", "request_headers", "method", "reason"),
    [
        (H(("Cache-Control", "public, max-age=60")), H(), "POST",
         "not stored: method POST is not GET"),
        (H(("Cache-Control", "public, max-age=60")), H(), "HEAD",
         "not stored: method HEAD is not GET"),
        (H(("Cache-Control", "public, max-age=60")), H(("Authorization", "Bearer x")), "GET",
         "not stored: request has Authorization"),
        (H(("Cache-Control", "public, max-age=60"), ("Set-Cookie", "a=1")), H(), "GET",
         "not stored: Set-Cookie present"),
        (H(("Cache-Control", "private, max-age=60")), H(), "GET",
         "not stored: Cache-Control private"),
        (H(("Cache-Control", 'public, private="X-User", max-age=60')), H(), "GET",
         "not stored: Cache-Control private"),
        (H(("Cache-Control", "public, max-age=60"), ("Cache-Control", "no-store")), H(), "GET",
         "not stored: Cache-Control no-store"),
        (H(("Cache-Control", "public, no-cache")), H(), "GET",
         "not stored: Cache-Control no-cache"),
        (H(("Cache-Control", 'public, no-cache="Set-Cookie", max-age=60')), H(), "GET",
         "not stored: Cache-Control no-cache"),
        (H(("Cache-Control", "public"), ("Vary", "User-Agent")), H(), "GET",
         "not stored: Vary: User-Agent"),
        (H(("Cache-Control", "public"), ("Vary", "Accept-Encoding"), ("Vary", "Cookie")), H(),
         "GET", "not stored: Vary: Cookie"),
        (H(("Cache-Control", "public"), ("Vary", "*")), H(), "GET", "not stored: Vary: *"),
        (H(("Cache-Control", "max-age=0, public")), H(), "GET",
         "not stored: already stale (max-age=0)"),
        (H(("Cache-Control", "public, max-age=60"), ("Age", "60")), H(), "GET",
         "not stored: already stale (max-age=60 minus Age 60)"),
        (H(("Expires", http_date(NOW - 10))), H(), "GET", "not stored: already stale (Expires)"),
        (H(("Cache-Control", "public"), ("Expires", "0")), H(), "GET",
         "not stored: already stale (Expires)"),
        (H(("Content-Type", "text/html")), H(), "GET",
         "not stored: no Cache-Control public and no explicit lifetime"),
        (H(("Cache-Control", "no-transform")), H(), "GET",
         "not stored: no Cache-Control public and no explicit lifetime"),
    ],
    ids=[
        "non-GET",
        "HEAD-is-not-stored",
        "request-Authorization",
        "Set-Cookie",
        "private",
        "private-with-field-form",
        "no-store-on-second-line",
        "no-cache",
        "no-cache-with-field-form",
        "Vary-User-Agent",
        "Vary-Cookie-across-lines",
        "Vary-star",
        "max-age-0",
        "upstream-Age-uses-up-lifetime",
        "Expires-in-past",
        "Expires-invalid-means-past",
        "no-cache-control",
        "no-public-no-lifetime",
    ],
)
def test_cache_2_not_stored(
    response: CIMultiDict[str], request_headers: CIMultiDict[str], method: str, reason: str
) -> None:
    c = decide(response, request=request_headers, method=method)
    assert (c.store, c.ttl, c.reason) == (False, 0.0, reason)


@pytest.mark.parametrize(
    ("response", "ttl", "reason"),
    [
        (H(("Cache-Control", "public, max-age=600, s-maxage=30")), 30.0,
         "stored: s-maxage=30 (ttl 30s)"),
        (H(("Cache-Control", "s-maxage=30")), 30.0, "stored: s-maxage=30 (ttl 30s)"),
        (H(("Cache-Control", "max-age=600"), ("Expires", http_date(NOW + 60))), 600.0,
         "stored: max-age=600 (ttl 600s)"),
        (H(("Expires", http_date(NOW + 60))), 60.0, "stored: Expires (ttl 60s)"),
        (H(("Cache-Control", "public"), ("Date", http_date(NOW - 1000)),
           ("Expires", http_date(NOW - 900))), 100.0, "stored: Expires (ttl 100s)"),
        (H(("Expires", http_date(NOW + 60)), ("Expires", http_date(NOW + 30))), 30.0,
         "stored: Expires (ttl 30s)"),
        (H(("Cache-Control", "public")), DEFAULT_PUBLIC_TTL,
         "stored: public, default TTL (ttl 3600s)"),
        (H(("Cache-Control", "public, max-age=60"), ("Age", "15")), 45.0,
         "stored: max-age=60 (ttl 45s)"),
        (H(("Cache-Control", "public, max-age=60"), ("Age", "bogus")), 60.0,
         "stored: max-age=60 (ttl 60s)"),
        (H(("cache-control", "PUBLIC, MAX-AGE=60")), 60.0, "stored: max-age=60 (ttl 60s)"),
    ],
    ids=[
        "s-maxage-beats-max-age",
        "s-maxage-alone-is-a-lifetime",
        "max-age-beats-Expires",
        "Expires-relative-to-now-without-Date",
        "Expires-relative-to-Date",
        "earliest-Expires-wins",
        "public-without-lifetime-gets-default-ttl",
        "upstream-Age-subtracted",
        "invalid-Age-ignored",
        "header-and-directive-case",
    ],
)
def test_cache_2_stored_with_ttl(response: CIMultiDict[str], ttl: float, reason: str) -> None:
    c = decide(response)
    assert (c.store, c.ttl, c.reason) == (True, ttl, reason)


def test_cache_2_per_object_limit() -> None:
    ok = decide(H(("Cache-Control", "public")), body_size=1000, max_object_size=1000)
    big = decide(H(("Cache-Control", "public")), body_size=1001, max_object_size=1000)
    assert ok.store
    assert (big.store, big.reason) == (False, "not stored: body 1001 bytes > per-object limit 1000")


@pytest.mark.parametrize(
    ("vary_lines", "expected"),
    [
        ([], ()),
        (["Accept-Encoding"], ("accept-encoding",)),
        (["Origin, accept-encoding", "X-Origin", "ACCEPT"],
         ("accept", "accept-encoding", "origin", "x-origin")),
        (["Accept-Encoding, Accept-Encoding"], ("accept-encoding",)),
        ([" , "], ()),
    ],
    ids=["absent", "one", "all-four-across-lines-any-case", "duplicates", "empty-elements"],
)
def test_cache_2_allowed_vary_names(vary_lines: list[str], expected: tuple[str, ...]) -> None:
    response = H(("Cache-Control", "public"), *(("Vary", v) for v in vary_lines))
    c = decide(response)
    assert (c.store, c.vary) == (True, expected)


@given(
    cc=st.lists(st.sampled_from(["public", "private", "no-store", "no-cache", "max-age=0",
                                 "max-age=30", "s-maxage=5", "no-transform", 'x="a,b"']),
                max_size=4),
    status=st.integers(100, 599),
    method=st.sampled_from(["GET", "HEAD", "POST", "get"]),
    vary=st.lists(st.sampled_from(["Accept", "Origin", "User-Agent", "*", "Cookie"]), max_size=2),
    cookie=st.booleans(),
    auth=st.booleans(),
)
def test_cache_2_property_stored_iff_every_condition_holds(
    cc: list[str], status: int, method: str, vary: list[str], cookie: bool, auth: bool
) -> None:
    response = H(("Cache-Control", ", ".join(cc)), *(("Vary", v) for v in vary))
    if cookie:
        response.add("Set-Cookie", "a=1")
    request = H(("Authorization", "Basic eA==")) if auth else H()
    c = decide(response, status=status, method=method, request=request)
    flags = {d.split("=")[0] for d in cc}
    expected = (
        method.upper() == "GET"
        and status in CACHEABLE_STATUSES
        and not cookie
        and not auth
        and not flags & {"private", "no-store", "no-cache"}
        and not set(vary) & {"User-Agent", "*", "Cookie"}
        and ("s-maxage=5" in cc or ("max-age=30" in cc and "max-age=0" not in cc)
             or (not flags & {"max-age", "s-maxage"} and "public" in cc))
    )
    assert c.store is expected
    assert (c.ttl > 0) is c.store
    assert c.reason.startswith("stored: " if c.store else "not stored: ")


@pytest.mark.parametrize(
    ("method", "headers", "reason"),
    [
        ("GET", H(), None),
        ("HEAD", H(), None),
        ("POST", H(), "method POST is not GET or HEAD"),
        ("GET", H(("authorization", "x")), "request has Authorization"),
    ],
    ids=["GET", "HEAD", "POST", "Authorization"],
)
def test_cache_2_request_bypass_reason(
    method: str, headers: CIMultiDict[str], reason: str | None
) -> None:
    assert request_bypass_reason(method, headers) == reason


# --------------------------------------------------------------------------- CACHE-3 variants


@pytest.mark.parametrize(
    ("vary", "request_headers", "key"),
    [
        ((), H(("Accept-Encoding", "gzip")), ()),
        (("accept-encoding",), H(("Accept-Encoding", "gzip")), ("gzip",)),
        (("accept-encoding",), H(), ("",)),
        (("accept-encoding",), H(("Accept-Encoding", "gzip,  deflate")), ("gzip, deflate",)),
        (("accept-encoding",), H(("Accept-Encoding", " gzip ,deflate ")), ("gzip, deflate",)),
        (("accept-encoding",), H(("Accept-Encoding", "gzip"), ("Accept-Encoding", "br")),
         ("gzip, br",)),
        (("accept", "origin"), H(("Origin", "https://a.example"), ("Accept", "text/html")),
         ("text/html", "https://a.example")),
        (("accept",), H(("Accept", "text/html;  q=0.9")), ("text/html; q=0.9",)),
    ],
    ids=["no-vary", "value", "missing-is-empty", "whitespace-collapsed",
         "whitespace-around-commas", "repeated-lines-joined", "vary-order", "inner-whitespace"],
)
def test_cache_3_variant_key(
    vary: tuple[str, ...], request_headers: CIMultiDict[str], key: tuple[str, ...]
) -> None:
    assert variant_key(vary, request_headers) == key


def test_cache_3_variant_key_accepts_plain_dicts_case_insensitively() -> None:
    assert variant_key(("accept-encoding",), {"ACCEPT-ENCODING": "gzip"}) == ("gzip",)


@pytest.mark.parametrize(
    ("accept_encoding", "coding", "accepted"),
    [
        (None, "gzip", False),
        (None, "identity", True),
        ("gzip", "gzip", True),
        ("GZIP;q=0.5", "gzip", True),
        ("gzip;q=0", "gzip", False),
        ("gzip; q=0.000", "gzip", False),
        ("deflate, br", "gzip", False),
        ("*", "gzip", True),
        ("*;q=0", "gzip", False),
        ("*, gzip;q=0", "gzip", False),
        ("x-gzip", "gzip", True),
        ("gzip", "x-gzip", True),
        ("identity;q=0, gzip", "identity", False),
        ("gzip;q=bad", "gzip", False),
    ],
    ids=["absent-gzip", "absent-identity", "gzip", "q-and-case", "q-zero-refuses",
         "q-zero-decimals", "not-listed", "star", "star-q-zero", "explicit-refusal-beats-star",
         "x-gzip-alias", "x-gzip-body", "identity-refused", "bad-q-is-refusal"],
)
def test_cache_3_accepts_coding_parses_q_values(
    accept_encoding: str | None, coding: str, accepted: bool
) -> None:
    request = H(("Accept-Encoding", accept_encoding)) if accept_encoding is not None else H()
    assert accepts_coding(request, coding) is accepted


URL = "http://localhost:8080/styles.css"


@pytest.mark.parametrize(
    ("vary", "response", "request_headers", "warning"),
    [
        ((), H(("Content-Encoding", "gzip")), H(),
         f"served cached gzip body of {URL} to a client that did not accept gzip "
         "(response has no Vary: Accept-Encoding)"),
        ((), H(("Content-Encoding", "gzip")), H(("Accept-Encoding", "gzip, deflate")), None),
        ((), H(("Content-Encoding", "br")), H(("Accept-Encoding", "gzip")),
         f"served cached br body of {URL} to a client that did not accept br "
         "(response has no Vary: Accept-Encoding)"),
        ((), H(), H(("Accept-Encoding", "gzip")), None),
        (("accept-encoding",), H(("Content-Encoding", "gzip")), H(), None),
        ((), H(("Access-Control-Allow-Origin", "https://a.example")),
         H(("Origin", "https://b.example")),
         f"served cached response of {URL} with Access-Control-Allow-Origin https://a.example "
         "to Origin https://b.example (response has no Vary: Origin)"),
        ((), H(("Access-Control-Allow-Origin", "*")), H(("Origin", "https://b.example")), None),
        (("origin",), H(("Access-Control-Allow-Origin", "https://a.example")),
         H(("Origin", "https://b.example")), None),
        ((), H(("Access-Control-Allow-Origin", "https://a.example")),
         H(("Origin", "https://a.example")), None),
    ],
    ids=["seed-gzip-to-client-without-gzip", "gzip-to-gzip-client", "br-to-gzip-only-client",
         "identity-to-gzip-client-is-harmless", "vary-accept-encoding-no-warning",
         "cors-origin-mismatch", "cors-star", "vary-origin-no-warning", "cors-same-origin"],
)
def test_cache_3_variant_warning(
    vary: tuple[str, ...],
    response: CIMultiDict[str],
    request_headers: CIMultiDict[str],
    warning: str | None,
) -> None:
    assert variant_warning(URL, vary, response, request_headers) == warning


# --------------------------------------------------------------------------- CACHE-4 freshness


@pytest.mark.parametrize(
    ("stored_at", "now", "initial_age", "expected"),
    [(100.0, 100.0, 0, 0), (100.0, 159.9, 0, 59), (100.0, 160.0, 10, 70), (100.0, 90.0, 0, 0)],
    ids=["fresh", "whole-seconds", "upstream-age-added", "clock-went-back"],
)
def test_cache_4_age(stored_at: float, now: float, initial_age: int, expected: int) -> None:
    assert age(stored_at, now, initial_age) == expected


def test_cache_4_fresh_until_expiry_exclusive() -> None:
    assert is_fresh(160.0, 159.999)
    assert not is_fresh(160.0, 160.0)

