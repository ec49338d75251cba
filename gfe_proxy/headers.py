"""Request and response header rules (SPEC HDR-1…HDR-4, RESP-1…RESP-5). Pure: no I/O.

Theory of operation: the request pipeline calls, per request,

1. ``check_request_headers`` / ``check_request_body_length`` (HDR-3) before routing;
2. ``request_trace`` and ``RequestLogIds.next`` to name the request, then builds a
   ``ForwardContext`` and calls ``upstream_request_headers`` (HDR-1, HDR-2) for the instance;
3. ``response_headers`` on what the instance answered (RESP-1…RESP-5), which returns the
   headers to send plus two facts the later stages need: whether a body is sent at all and
   whether compression may touch it.

Time and randomness are parameters. Header sizes are measured in bytes of the UTF-8 encoding
(with ``surrogateescape``, the way aiohttp decodes header bytes), so an ASCII header's size is
simply the length of its strings.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from email.utils import mktime_tz, parsedate_tz
from typing import Literal, NamedTuple

from multidict import CIMultiDict, MultiMapping

from gfe_proxy.errors import RequestRejected, ResponseHeadersTooLarge, ResponseTooLarge

# --- limits (SPEC HDR-3, RESP-5; "How requests are handled": request/response limits) ----------

MAX_HEADER_FIELD = 8192  # bytes per request header field, len(name) + len(value)
MAX_REQUEST_BODY = 32 * 1024 * 1024  # bytes
MAX_RESPONSE_HEADERS = 8192  # bytes of all response header lines, "Name: value\r\n" each
MAX_RESPONSE_BODY = 32 * 1024 * 1024  # bytes

SERVER = "Google Frontend"  # SPEC RESP-1
GFE_HOP = "169.254.1.1"  # SPEC HDR-2: the front end's own hop in X-Forwarded-For
AUTH_DOMAIN = "gmail.com"  # SPEC LOGIN-5
UPSTREAM_HTTP_VERSION = "HTTP/1.1"  # SPEC HDR-4: every request reaches instances as HTTP/1.1

# RFC 9110 §7.6.1 plus the legacy names proxies still meet. Each header named in a message's
# own Connection header is hop-by-hop too (see hop_by_hop()).
HOP_BY_HOP: frozenset[str] = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)

# SPEC HDR-1: names a client may never set, because the front end sets them (HDR-2) or they
# describe this hop only. X-AppEngine-* and X-Google-* go by prefix (below); production never
# lets a client-sent X-AppEngine-* header through, so neither do we.
_REPLACED_ON_REQUEST: frozenset[str] = frozenset(
    {
        "x-cloud-trace-context",
        "traceparent",
        "x-forwarded-for",
        "x-forwarded-proto",
        "forwarded",
        # The pipeline buffers the body and sets Content-Length itself; the front end has
        # already answered any `Expect: 100-continue`, so the instance must not see it.
        "content-length",
        "expect",
    }
)
_STRIP_PREFIXES = ("x-appengine-", "x-google-")
_DROP_REQUEST_GEN2: frozenset[str] = HOP_BY_HOP | _REPLACED_ON_REQUEST
# SPEC HDR-1 (decision: observed in production): gen1 instances never see Accept-Encoding.
_DROP_REQUEST_GEN1: frozenset[str] = _DROP_REQUEST_GEN2 | {"accept-encoding"}

# SPEC RESP-1: what the front end sets itself on every response.
_DROP_RESPONSE: frozenset[str] = HOP_BY_HOP | {"server", "date", "content-length"}
_DROP_RESPONSE_TRACED: frozenset[str] = _DROP_RESPONSE | {"x-cloud-trace-context"}
_NO_BODY_STATUSES = frozenset({204, 304})  # plus every 1xx


# --- HDR-3: request limits ---------------------------------------------------------------------


def _field_size(name: str, value: str) -> int:
    if name.isascii() and value.isascii():
        return len(name) + len(value)
    return len(name.encode("utf-8", "surrogateescape")) + len(
        value.encode("utf-8", "surrogateescape")
    )


def check_request_headers(headers: Iterable[tuple[str, str]]) -> None:
    """SPEC HDR-3: raise ``RequestRejected(400)`` when one field's name + value exceeds 8 KB.

    The field size is ``len(name) + len(value)`` in bytes (without ``": "`` and CRLF):
    8192 is accepted, 8193 rejected.
    """
    for name, value in headers:
        if len(name) + len(value) > MAX_HEADER_FIELD // 4 and (
            _field_size(name, value) > MAX_HEADER_FIELD
        ):
            raise RequestRejected(
                400, f"request header field {name!r} exceeds {MAX_HEADER_FIELD} bytes"
            )


def check_request_body_length(length: int | None) -> None:
    """SPEC HDR-3: raise ``RequestRejected(413)`` when a body of ``length`` bytes is over 32 MB.

    Call it with ``Content-Length`` before reading, and with the running total while reading a
    chunked body. ``None`` (length unknown yet) passes.
    """
    if length is not None and length > MAX_REQUEST_BODY:
        raise RequestRejected(413, f"request body of {length} bytes exceeds {MAX_REQUEST_BODY}")


# --- HDR-2: values the front end adds ----------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Geo:
    """SPEC HDR-2: the location headers; production's "unknown" values unless overridden."""

    country: str = "ZZ"  # ISO 3166-1 alpha-2; ZZ = unknown
    region: str = "?"
    city: str = "?"
    city_lat_long: str = "0.000000,0.000000"


@dataclass(frozen=True, slots=True, kw_only=True)
class UserInfo:
    """SPEC LOGIN-5: the signed-in user, as the bundled-services ``users`` API reads it."""

    email: str
    user_id: str
    nickname: str
    organization: str = ""
    is_admin: bool = False


_HEX32 = re.compile(r"[0-9a-fA-F]{32}")
_CLOUD_TRACE = re.compile(r"([0-9a-fA-F]{32})(?:/(\d{0,20}))?(?:;o=(\d+))?")
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_ZERO_TRACE = "0" * 32
_MAX_SPAN = 2**64 - 1


class Trace(NamedTuple):
    """A trace context: 32 lowercase hex trace id, 64-bit span id, sampling flag.

    A NamedTuple, not a frozen dataclass: one or two are built per forwarded request and a
    tuple costs a third as much to make (benchmarks/results/profile-*.md)."""

    trace_id: str
    span_id: int
    sampled: bool = True

    @property
    def cloud_trace_context(self) -> str:
        """SPEC HDR-2: ``X-Cloud-Trace-Context`` value, ``<trace>/<decimal span>;o=1``."""
        return f"{self.trace_id}/{self.span_id};o={1 if self.sampled else 0}"

    @property
    def traceparent(self) -> str:
        """SPEC HDR-2: W3C ``traceparent`` value, ``00-<trace>-<16 hex span>-01``."""
        return f"00-{self.trace_id}-{self.span_id:016x}-{'01' if self.sampled else '00'}"

    @property
    def response_echo(self) -> str:
        """SPEC RESP-1: the ``X-Cloud-Trace-Context`` the client gets back, ``<trace>;o=1``."""
        return f"{self.trace_id};o={1 if self.sampled else 0}"


def _new_span(rand: random.Random) -> int:
    # Non-zero (traceparent forbids an all-zero parent id) and below 2**63, so parsers that
    # read the decimal span as a signed int64 accept it too.
    return rand.randrange(1, 2**63)


def new_trace(rand: random.Random) -> Trace:
    """A fresh sampled trace for a request that brought none."""
    trace_id = f"{rand.getrandbits(128):032x}"
    if trace_id == _ZERO_TRACE:  # astronomically unlikely, but never emit an invalid id
        trace_id = "0" * 31 + "1"
    return Trace(trace_id=trace_id, span_id=_new_span(rand), sampled=True)


def parse_cloud_trace_context(value: str) -> Trace | None:
    """``TRACE[/SPAN][;o=N]`` -> Trace, or None when malformed or the trace id is all zero.

    A missing span reads as 0. Upper-case hex is accepted and normalised.
    """
    m = _CLOUD_TRACE.fullmatch(value.strip())
    if m is None:
        return None
    trace_id = m.group(1).lower()
    if trace_id == _ZERO_TRACE:
        return None
    span = int(m.group(2)) if m.group(2) else 0
    if span > _MAX_SPAN:
        return None
    option = m.group(3)
    return Trace(trace_id=trace_id, span_id=span, sampled=option is None or int(option) & 1 == 1)


def parse_traceparent(value: str) -> Trace | None:
    """W3C ``traceparent`` -> Trace, or None when invalid (version ff, all-zero ids, bad form).

    Version 00 must be exactly four fields; a later version may append fields (W3C §3.2.4).
    """
    m = _TRACEPARENT.fullmatch(value.strip())
    if m is None:
        return None
    version, trace_id, span_hex, flags, rest = m.groups()
    if version == "ff" or (version == "00" and rest is not None):
        return None
    span = int(span_hex, 16)
    if trace_id == _ZERO_TRACE or span == 0:
        return None
    return Trace(trace_id=trace_id, span_id=span, sampled=int(flags, 16) & 1 == 1)


def parse_trace(headers: Mapping[str, str]) -> Trace | None:
    """The client's trace context, if it sent a valid one; ``headers`` is case-insensitive.

    *(decision)* ``X-Cloud-Trace-Context`` (the header the GFE has always read) wins over
    ``traceparent``; an invalid one falls back to ``traceparent``.
    """
    value = headers.get("X-Cloud-Trace-Context")
    if value is not None:
        trace = parse_cloud_trace_context(value)
        if trace is not None:
            return trace
    value = headers.get("traceparent")
    if value is not None:
        return parse_traceparent(value)
    return None


def request_trace(headers: Mapping[str, str], rand: random.Random) -> Trace:
    """SPEC HDR-2: the trace the instance sees: the client's trace id kept when valid (with its
    sampling flag), else a new one. The span is always new: it is the front end's own span,
    as in production, where the app never sees the client's span id."""
    incoming = parse_trace(headers)
    if incoming is None:
        return new_trace(rand)
    return Trace(trace_id=incoming.trace_id, span_id=_new_span(rand), sampled=incoming.sampled)


class RequestLogIds:
    """SPEC HDR-2: ``X-AppEngine-Request-Log-Id`` values.

    Lowercase hex: 8 digits of start time (Unix seconds), 8 of a counter, then 16 random
    digits fixed per process. Unique and ordered as strings in the order issued: the counter
    only grows, and the time part never goes back even if the clock does.
    """

    __slots__ = ("_counter", "_last_second", "_node")

    def __init__(self, rand: random.Random) -> None:
        self._node = f"{rand.getrandbits(64):016x}"
        self._last_second = 0
        self._counter = 0

    def next(self, now: float) -> str:
        """The id of a request that started at ``now`` (Unix seconds)."""
        second = int(now)
        if second > self._last_second:
            self._last_second = second
            self._counter = 0
        else:
            self._counter += 1
        return f"{self._last_second:08x}{self._counter:08x}{self._node}"


# --- HDR-1, HDR-2: the request an instance receives --------------------------------------------


class ForwardContext(NamedTuple):
    """Everything ``upstream_request_headers`` adds; built once per request by the pipeline
    (a NamedTuple for the same reason as ``Trace``; build it with keywords)."""

    client_ip: str
    scheme: Literal["http", "https"]  # the listener's (or a trusted X-Forwarded-Proto, SEC-2)
    trace: Trace
    request_log_id: str
    default_version_hostname: str
    timeout_ms: int | None = None  # SPEC HDR-2: the deadline left; None = header not sent
    geo: Geo = Geo()
    generation: int = 2  # 1 = python27, 2 = python3*
    trusted_forwarded_for: bool = False  # keep and append to an incoming X-Forwarded-For list
    user: UserInfo | None = None  # SPEC LOGIN-5
    host: str = ""  # Host to send when the request carried none (HTTP/1.0 client, HDR-4)


def connection_tokens(values: Iterable[str]) -> frozenset[str]:
    """Lowercased header names listed in ``Connection`` header values."""
    return frozenset(
        token.strip().lower() for value in values for token in value.split(",") if token.strip()
    )


def hop_by_hop(headers: MultiMapping[str]) -> frozenset[str]:
    """Lowercased names that must not cross this hop: the fixed list plus ``Connection`` tokens."""
    connection = headers.getall("Connection", None)
    if not connection:
        return HOP_BY_HOP
    return HOP_BY_HOP | connection_tokens(connection)


def _xff_join(values: list[str], tail: str) -> str:
    parts = [v.strip() for v in values]
    parts = [p for p in parts if p]
    parts.append(tail)
    return ", ".join(parts)


def _forwarded_node(ip: str) -> str:
    # RFC 7239 §6: an IPv6 node is bracketed and therefore quoted.
    return f'"[{ip}]"' if ":" in ip else f'"{ip}"'


def upstream_request_headers(
    incoming: MultiMapping[str], ctx: ForwardContext
) -> list[tuple[str, str]]:
    """SPEC HDR-1, HDR-2: the client's headers as the instance receives them.

    One pass over ``incoming``: what HDR-1 removes is dropped, the rest keep their order and
    spelling (Host passes unchanged), then the front end's headers are appended. Example: a
    request with ``X-AppEngine-User-Email: a@b`` and ``Connection: close, X-Foo`` reaches the
    instance with neither those nor ``X-Foo``, but with ``X-AppEngine-Country: ZZ`` etc.
    """
    connection = incoming.getall("Connection", None)
    named = connection_tokens(connection) if connection else frozenset()
    drop = _DROP_REQUEST_GEN1 if ctx.generation == 1 else _DROP_REQUEST_GEN2
    out: list[tuple[str, str]] = []
    forwarded_for: list[str] = []
    forwarded: list[str] = []
    has_host = False
    for name, value in incoming.items():
        lname = name.lower()
        if lname in drop or lname.startswith(_STRIP_PREFIXES) or lname in named:
            if lname not in named:
                if lname == "x-forwarded-for":
                    forwarded_for.append(value)
                elif lname == "forwarded":
                    forwarded.append(value)
            continue
        if lname == "host":
            has_host = True
        out.append((name, value))

    if not has_host and ctx.host:
        out.append(("Host", ctx.host))
    client = ctx.client_ip
    trusted = ctx.trusted_forwarded_for
    geo = ctx.geo
    trace = ctx.trace
    node = f"for={_forwarded_node(client)};proto={ctx.scheme}"
    out += (
        ("X-AppEngine-Country", geo.country),
        ("X-AppEngine-Region", geo.region),
        ("X-AppEngine-City", geo.city),
        ("X-AppEngine-CityLatLong", geo.city_lat_long),
        ("X-Cloud-Trace-Context", trace.cloud_trace_context),
        ("traceparent", trace.traceparent),
        (
            "X-Forwarded-For",
            _xff_join(forwarded_for if trusted else [], f"{client}, {GFE_HOP}"),
        ),
        ("X-Forwarded-Proto", ctx.scheme),
        ("Forwarded", _xff_join(forwarded if trusted else [], node)),
        ("X-AppEngine-Https", "on" if ctx.scheme == "https" else "off"),
        ("X-AppEngine-User-IP", client),
        ("X-AppEngine-Request-Log-Id", ctx.request_log_id),
    )
    if ctx.default_version_hostname:
        out.append(("X-AppEngine-Default-Version-Hostname", ctx.default_version_hostname))
    if ctx.timeout_ms is not None:
        out.append(("X-AppEngine-Timeout-Ms", str(max(ctx.timeout_ms, 0))))
    user = ctx.user
    if user is not None:
        # SPEC LOGIN-5: the headers google.appengine.api.users reads on gen2.
        out += (
            ("X-AppEngine-User-Email", user.email),
            ("X-AppEngine-User-Id", user.user_id),
            ("X-AppEngine-User-Nickname", user.nickname),
            ("X-AppEngine-User-Organization", user.organization),
            ("X-AppEngine-User-Is-Admin", "1" if user.is_admin else "0"),
            ("X-AppEngine-Auth-Domain", AUTH_DOMAIN),
        )
    return out


# --- the serialised header block of a stored response (cache-hit fast path) -------------------


class HeadBlock(NamedTuple):
    """A stored response's header lines, serialised once so a hit sends them without a copy.

    ``before`` and ``after`` are the ``Name: value\\r\\n`` lines around the response's one
    ``Content-Length`` (all lines are in ``before`` when it has none); ``content_length`` is
    that header's value, or None.
    """

    before: bytes
    after: bytes
    content_length: str | None


# Set, replaced or removed per response on a hit (CACHE-4 Age, RESP-1 Server/Date, CACHE-6
# X-GFE-Cache, HSTS by scheme, Connection by the client's keep-alive): an entry carrying one
# of these is sent by the general path, which applies the rule to it.
_PER_RESPONSE = frozenset(
    {"age", "server", "date", "x-gfe-cache", "strict-transport-security", "connection"}
)
_WIRE_ENCODING = "utf-8"  # as aiohttp encodes header values; surrogateescape keeps raw bytes


def _breaks_framing(text: str) -> bool:
    return "\r" in text or "\n" in text


def head_block(headers: Iterable[tuple[str, str]]) -> HeadBlock | None:
    """The header lines of a stored response, serialised once, or None when one of them must
    be decided per response (Age, Server, Date, X-GFE-Cache, Strict-Transport-Security,
    Connection, a repeated Content-Length) or would break the framing (a CR or LF)."""
    before: list[str] = []
    after: list[str] = []
    lines = before
    length: str | None = None
    for name, value in headers:
        lname = name.lower()
        if lname in _PER_RESPONSE or _breaks_framing(name) or _breaks_framing(value):
            return None
        if lname == "content-length":
            if length is not None:
                return None
            length = value
            lines = after
            continue
        lines.append(f"{name}: {value}\r\n")
    return HeadBlock(
        "".join(before).encode(_WIRE_ENCODING, "surrogateescape"),
        "".join(after).encode(_WIRE_ENCODING, "surrogateescape"),
        length,
    )


# --- RESP-1…RESP-5: the response the client receives -------------------------------------------

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def http_date(ts: float) -> str:
    """RFC 9110 IMF-fixdate: ``http_date(784111777) == "Sun, 06 Nov 1994 08:49:37 GMT"``."""
    t = time.gmtime(ts)
    return (
        f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year:04d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    )


def parse_http_date(value: str) -> float | None:
    """IMF-fixdate, RFC 850 or asctime -> Unix seconds; None when unparsable."""
    try:
        parsed = parsedate_tz(value)
        return None if parsed is None else float(mktime_tz(parsed))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def check_response_headers(headers: Iterable[tuple[str, str]]) -> None:
    """SPEC RESP-5: raise ``ResponseHeadersTooLarge`` (502) when the header lines
    (``Name: value\\r\\n`` each) exceed 8 KB in total: 8192 bytes pass, 8193 do not."""
    total = 0
    for name, value in headers:
        total += _field_size(name, value) + 4
    if total > MAX_RESPONSE_HEADERS:
        # nginx's wording, which production's logs show for this case.
        raise ResponseHeadersTooLarge(
            f"upstream sent too big header while reading response header from upstream "
            f"({total} bytes > {MAX_RESPONSE_HEADERS})"
        )


def check_response_body_length(length: int) -> None:
    """SPEC RESP-5: raise ``ResponseTooLarge`` (500, empty body) over 32 MB."""
    if length > MAX_RESPONSE_BODY:
        raise ResponseTooLarge(f"response body of {length} bytes exceeds {MAX_RESPONSE_BODY}")


def split_directives(values: Iterable[str]) -> list[str]:
    """Comma-separated list values -> stripped items; commas inside quotes do not split."""
    out: list[str] = []
    for value in values:
        if '"' not in value:
            out.extend(part.strip() for part in value.split(",") if part.strip())
            continue
        start, quoted = 0, False
        for i, ch in enumerate(value):
            if ch == '"':
                quoted = not quoted
            elif ch == "," and not quoted:
                part = value[start:i].strip()
                if part:
                    out.append(part)
                start = i + 1
        part = value[start:].strip()
        if part:
            out.append(part)
    return out


def _directive_name(directive: str) -> str:
    return directive.split("=", 1)[0].strip().lower()


class ResponseHead(NamedTuple):
    """What ``response_headers`` decided.

    ``headers`` is the caller's to finish (compression and the cache add to it).
    ``send_body``: False for HEAD, 1xx, 204 and 304 (RESP-5).
    ``may_compress``: False when RESP-2 supplied the Content-Type or RESP-4 kept an app-set
    Content-Encoding; compression must then leave the body alone.
    """

    headers: CIMultiDict[str]
    send_body: bool
    may_compress: bool


def _set_cookie_rules(out: CIMultiDict[str], now: float) -> None:
    # SPEC RESP-3: a response that sets a cookie must not be cached by shared caches.
    values = out.getall("Cache-Control", [])
    directives = split_directives(values)
    kept = [d for d in directives if _directive_name(d) != "public"]
    names = {_directive_name(d) for d in kept}
    if not names & {"private", "no-cache", "no-store"}:
        kept.append("private")
    if kept != directives or len(values) != 1:
        out["Cache-Control"] = ", ".join(kept)
    expires = out.get("Expires")
    if expires is None:
        out["Expires"] = http_date(now)
        return
    when = parse_http_date(expires)
    # An unparsable Expires already means "expired" (RFC 9111 §5.3), so it stays.
    if when is not None and when > now:
        out["Expires"] = http_date(now)


def response_headers(
    upstream: MultiMapping[str],
    *,
    generation: int,
    trace: Trace | None,
    date: str,
    body_length: int,
    method: str,
    status: int,
    now: float,
    front_end: bool = True,
) -> ResponseHead:
    """SPEC RESP-1…RESP-5: an instance's (dynamic) response headers as the client gets them.

    ``body_length`` is the length of the buffered body; ``date`` the current ``Date`` value
    (the server refreshes it once a second); ``now`` is used for ``Expires`` (RESP-3).
    ``front_end=False`` leaves out Server, Date and the trace echo (RESP-1), for a caller that
    adds them to each response it sends (the app's own are dropped either way).
    Raises ``ResponseHeadersTooLarge`` for headers over 8 KB (RESP-5).
    """
    check_response_headers(upstream.items())
    # SPEC RESP-1: with a trace, the app's own X-Cloud-Trace-Context gives way to the echo.
    drop = _DROP_RESPONSE_TRACED if trace is not None else _DROP_RESPONSE
    connection = upstream.getall("Connection", None)
    if connection:
        named = connection_tokens(connection) - drop
        if named:
            drop = drop | named
    out: CIMultiDict[str] = CIMultiDict()
    has_type = has_cache_control = has_cookie = has_encoding = False
    app_length: str | None = None
    for name, value in upstream.items():
        lname = name.lower()
        if lname in drop:
            if lname == "content-length" and app_length is None:
                app_length = value
            continue
        if lname == "content-type":
            has_type = True
        elif lname == "cache-control":
            has_cache_control = True
        elif lname == "set-cookie":
            has_cookie = True
        elif lname == "content-encoding":
            # SPEC RESP-4: gen1 dropped an app-set Content-Encoding; gen2 keeps it.
            if generation == 1:
                continue
            has_encoding = True
        out.add(name, value)

    no_body_status = status < 200 or status in _NO_BODY_STATUSES
    may_compress = not has_encoding
    if not has_type and not no_body_status:
        # SPEC RESP-2; never on 204/304, where it would overwrite a cached representation's type.
        out["Content-Type"] = "text/html"
        may_compress = False
    if not has_cache_control:
        # SPEC RESP-3: dynamic responses default to private.
        out["Cache-Control"] = "private"
        vary = {_directive_name(v) for v in split_directives(out.getall("Vary", []))}
        if not vary & {"accept-encoding", "*"}:
            out.add("Vary", "Accept-Encoding")
    if has_cookie:
        _set_cookie_rules(out, now)

    if front_end:
        out["Server"] = SERVER
        out["Date"] = date
    is_head = method == "HEAD"
    if no_body_status:
        pass  # SPEC RESP-5: 1xx/204/304 carry neither a body nor Content-Length
    elif is_head:
        # SPEC RESP-5: HEAD keeps the app's Content-Length (the GET's length).
        if app_length is not None and app_length.strip().isdigit():
            out["Content-Length"] = app_length.strip()
    else:
        out["Content-Length"] = str(body_length)
    if trace is not None and front_end:
        out["X-Cloud-Trace-Context"] = trace.response_echo  # SPEC RESP-1
    return ResponseHead(
        headers=out, send_body=not (is_head or no_body_status), may_compress=may_compress
    )
