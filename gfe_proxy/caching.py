"""Edge-cache policy: what the GFE stores, for how long, and under which variant key.

Pure functions over header multidicts; no I/O, no clock (``now`` is always a parameter, in Unix
seconds). ``cache.py`` holds the store and calls these. Theory of operation:

* ``cache_key`` names the URL (SPEC CACHE-1);
* ``cacheability`` decides, from one request/response pair, whether the response is stored and
  for how long (SPEC CACHE-2); its ``reason`` is written to the log verbatim;
* ``variant_key`` picks the entry among those stored for a URL (SPEC CACHE-3);
* ``variant_warning`` says when an entry served to a request would not have been the app's answer
  to it (a gzipped body to a client that did not ask for gzip), which CACHE-3 logs;
* ``age``/``is_fresh`` implement CACHE-4 (no revalidation: a stale entry is simply refetched).

Worked example (the seed's ``Vary: Accept-Encoding`` case)::

    >>> from multidict import CIMultiDict
    >>> resp = CIMultiDict({"Cache-Control": "public, max-age=600", "Vary": "Accept-Encoding"})
    >>> c = cacheability(method="GET", status=200, response_headers=resp,
    ...                  request_headers=CIMultiDict(), body_size=10, max_object_size=1 << 20,
    ...                  now=0.0)
    >>> (c.store, c.ttl, c.vary)
    (True, 600.0, ('accept-encoding',))
    >>> variant_key(c.vary, CIMultiDict({"Accept-Encoding": "gzip,  deflate"}))
    ('gzip, deflate',)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime

from multidict import CIMultiDict, CIMultiDictProxy, MultiMapping

__all__ = [
    "CACHEABLE_STATUSES",
    "DEFAULT_PUBLIC_TTL",
    "VARY_ALLOWED",
    "CacheControl",
    "Cacheability",
    "accepts_coding",
    "age",
    "cache_key",
    "cacheability",
    "is_fresh",
    "parse_cache_control",
    "request_bypass_reason",
    "split_key",
    "variant_key",
    "variant_warning",
]

# SPEC CACHE-2: App Engine's documented rules completed with Cloud CDN's list of statuses.
CACHEABLE_STATUSES: frozenset[int] = frozenset(
    {200, 203, 204, 206, 300, 301, 302, 307, 308, 404, 405, 410, 421, 451, 501}
)

# SPEC CACHE-2: "set Vary to one or more of Accept, Accept-Encoding, Origin, X-Origin"; any
# other name (high cardinality) means the response is not cached. Lower-case.
VARY_ALLOWED: frozenset[str] = frozenset({"accept", "accept-encoding", "origin", "x-origin"})

# SPEC CACHE-2 (decision): `public` with no s-maxage/max-age/Expires is cached for Cloud CDN's
# default TTL. App Engine's docs only say `public` is required; Cloud CDN (the same edge)
# documents 3600 s as the default TTL for responses without an explicit lifetime.
DEFAULT_PUBLIC_TTL = 3600.0  # seconds; Cloud CDN default TTL

# RFC 9111 §1.2.2: delta-seconds too large to represent are taken as 2**31.
_MAX_DELTA = 2**31

_WS = re.compile(r"\s+")


def _getall(headers: Mapping[str, str], name: str) -> list[str]:
    """All values of header ``name``; works on multidicts and (case-insensitively) on dicts."""
    if isinstance(headers, MultiMapping):
        return list(headers.getall(name, ()))
    lname = name.lower()
    return [v for k, v in headers.items() if k.lower() == lname]


def _split_list(values: Iterable[str]) -> list[str]:
    """Comma-separated list elements across repeated header lines, stripped, empties dropped."""
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


# --------------------------------------------------------------------------- CACHE-1 keys


def cache_key(scheme: str, host: str, path_qs: str) -> str:
    """SPEC CACHE-1: the full URL as received: ``"http://example.com/a?b=1"``.

    Nothing is normalised (host case, query order, percent-encoding), as in production where
    the key is "the full URL of the request".
    """
    return f"{scheme}://{host}{path_qs}"


def split_key(key: str) -> tuple[str, str]:
    """``"http://h:8080/a?b"`` -> ``("http://h:8080", "/a?b")``; the inverse of ``cache_key``."""
    _, sep, rest = key.partition("://")
    if not sep:
        return "", key
    slash = rest.find("/")
    origin_len = len(key) - len(rest) + (len(rest) if slash < 0 else slash)
    return key[:origin_len], key[origin_len:]


# --------------------------------------------------------------------------- Cache-Control


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheControl:
    """The Cache-Control directives the edge cares about, duplicates already merged."""

    public: bool = False
    private: bool = False
    no_store: bool = False
    no_cache: bool = False
    no_transform: bool = False
    max_age: int | None = None  # seconds
    s_maxage: int | None = None  # seconds


def _directives(values: Iterable[str]) -> list[tuple[str, str | None]]:
    """Tokenise Cache-Control lines: commas inside quoted strings do not split."""
    out: list[tuple[str, str | None]] = []
    for line in values:
        i, n = 0, len(line)
        while i < n:
            # name
            j = i
            while j < n and line[j] not in ",=":
                j += 1
            name = line[i:j].strip().lower()
            value: str | None = None
            if j < n and line[j] == "=":
                j += 1
                while j < n and line[j] in " \t":
                    j += 1
                if j < n and line[j] == '"':
                    j += 1
                    chars: list[str] = []
                    while j < n and line[j] != '"':
                        if line[j] == "\\" and j + 1 < n:
                            j += 1
                        chars.append(line[j])
                        j += 1
                    value = "".join(chars)
                    j += 1  # closing quote (or end of line when unterminated)
                    while j < n and line[j] != ",":  # junk after the quoted string
                        j += 1
                else:
                    k = j
                    while j < n and line[j] != ",":
                        j += 1
                    value = line[k:j].strip()
            if name:
                out.append((name, value))
            i = j + 1
    return out


def _delta_seconds(value: str | None) -> int:
    # RFC 9111 §4.2.1: an invalid lifetime makes the response stale; 0 is the restrictive choice.
    if value is None or not value.strip().isdigit() or not value.strip().isascii():
        return 0
    return min(int(value.strip()), _MAX_DELTA)


def parse_cache_control(values: Iterable[str]) -> CacheControl:
    """Parse every Cache-Control line into one value; duplicates: the most restrictive wins.

    Directive names are case-insensitive; values may be quoted (``max-age="60"``). A flag that
    appears at all is set (``no-cache="Set-Cookie"`` counts as ``no-cache``); a repeated or
    invalid lifetime takes the smallest value (invalid = 0). Never raises.
    """
    flags: set[str] = set()
    lifetimes: dict[str, int] = {}
    for name, value in _directives(values):
        if name in ("max-age", "s-maxage"):
            seconds = _delta_seconds(value)
            lifetimes[name] = min(seconds, lifetimes.get(name, seconds))
        else:
            flags.add(name)
    return CacheControl(
        public="public" in flags,
        private="private" in flags,
        no_store="no-store" in flags,
        no_cache="no-cache" in flags,
        no_transform="no-transform" in flags,
        max_age=lifetimes.get("max-age"),
        s_maxage=lifetimes.get("s-maxage"),
    )


def _http_date(value: str) -> float | None:
    try:
        dt = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    try:
        return dt.timestamp() if dt.tzinfo else dt.replace(tzinfo=UTC).timestamp()
    except (OverflowError, OSError, ValueError):
        return None


def _expires_lifetime(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds from Date (or ``now``) to the earliest Expires; invalid Expires = already past."""
    values = _getall(headers, "Expires")
    if not values:
        return None
    stamps = [_http_date(v) for v in values]
    # RFC 9111 §5.3: an invalid Expires ("0") means "already expired".
    if any(s is None for s in stamps):
        return 0.0
    expires = min(s for s in stamps if s is not None)
    dates = [d for d in (_http_date(v) for v in _getall(headers, "Date")) if d is not None]
    base = dates[0] if dates else now
    return expires - base


def _initial_age(headers: Mapping[str, str]) -> int:
    # RFC 9111 §5.1: an invalid Age is ignored; several values: the largest is the safe one.
    ages = [int(v.strip()) for v in _getall(headers, "Age") if v.strip().isdigit()]
    return min(max(ages), _MAX_DELTA) if ages else 0


# --------------------------------------------------------------------------- CACHE-2 policy


@dataclass(frozen=True, slots=True, kw_only=True)
class Cacheability:
    """The verdict on one response. ``reason`` is human-readable and goes to the log as is."""

    store: bool
    ttl: float  # seconds of freshness left when stored (lifetime minus the upstream Age)
    reason: str
    vary: tuple[str, ...] = ()  # lower-case header names, sorted, deduplicated
    initial_age: int = 0  # seconds; the upstream response's own Age header


def _refuse(reason: str, vary: tuple[str, ...] = ()) -> Cacheability:
    return Cacheability(store=False, ttl=0.0, reason=f"not stored: {reason}", vary=vary)


def request_bypass_reason(method: str, request_headers: Mapping[str, str]) -> str | None:
    """Why a request can never be served from or stored into the cache, or None.

    SPEC CACHE-2: only GET is stored (HEAD may still be answered from a stored GET, see
    ``cache.py``); a request carrying Authorization is never cached.
    """
    if method.upper() not in ("GET", "HEAD"):
        return f"method {method} is not GET or HEAD"
    if _getall(request_headers, "Authorization"):
        return "request has Authorization"
    return None


def _vary_names(response_headers: Mapping[str, str]) -> tuple[tuple[str, ...], str | None]:
    names = [n.lower() for n in _split_list(_getall(response_headers, "Vary"))]
    if "*" in names:
        return (), "Vary: *"
    bad = [n for n in names if n not in VARY_ALLOWED]
    if bad:
        original = {n.lower(): n for n in _split_list(_getall(response_headers, "Vary"))}
        return (), "Vary: " + ", ".join(dict.fromkeys(original[b] for b in bad))
    return tuple(sorted(set(names))), None


def cacheability(
    *,
    method: str,
    status: int,
    response_headers: Mapping[str, str],
    request_headers: Mapping[str, str],
    body_size: int,
    max_object_size: int,
    now: float,
) -> Cacheability:
    """SPEC CACHE-2: whether the edge stores this response, its TTL and Vary names.

    Stored only if: GET; status in ``CACHEABLE_STATUSES``; Cache-Control ``public`` or an explicit
    lifetime (``s-maxage`` beats ``max-age`` beats ``Expires``, the latter measured from Date,
    else ``now``) and none of private/no-store/no-cache; no Set-Cookie; Vary naming only
    ``VARY_ALLOWED``; no Authorization on the request; ``body_size <= max_object_size``; and a
    TTL above zero. ``public`` alone gets ``DEFAULT_PUBLIC_TTL`` *(decision)*.
    """
    if method.upper() != "GET":
        return _refuse(f"method {method} is not GET")
    if _getall(request_headers, "Authorization"):
        return _refuse("request has Authorization")
    if status not in CACHEABLE_STATUSES:
        return _refuse(f"status {status} is not cacheable")
    if _getall(response_headers, "Set-Cookie"):
        return _refuse("Set-Cookie present")
    cc = parse_cache_control(_getall(response_headers, "Cache-Control"))
    for flag, directive in (
        (cc.private, "private"),
        (cc.no_store, "no-store"),
        (cc.no_cache, "no-cache"),
    ):
        if flag:
            return _refuse(f"Cache-Control {directive}")
    vary, bad_vary = _vary_names(response_headers)
    if bad_vary is not None:
        return _refuse(bad_vary)

    lifetime: float
    if cc.s_maxage is not None:
        lifetime, source = float(cc.s_maxage), f"s-maxage={cc.s_maxage}"
    elif cc.max_age is not None:
        lifetime, source = float(cc.max_age), f"max-age={cc.max_age}"
    elif (expires := _expires_lifetime(response_headers, now)) is not None:
        lifetime, source = expires, "Expires"
    elif cc.public:
        lifetime, source = DEFAULT_PUBLIC_TTL, "public, default TTL"
    else:
        return _refuse("no Cache-Control public and no explicit lifetime", vary)

    initial_age = _initial_age(response_headers)
    ttl = lifetime - initial_age
    if ttl <= 0:
        aged = f" minus Age {initial_age}" if initial_age else ""
        return _refuse(f"already stale ({source}{aged})", vary)
    if body_size > max_object_size:
        return _refuse(f"body {body_size} bytes > per-object limit {max_object_size}", vary)
    return Cacheability(
        store=True,
        ttl=ttl,
        reason=f"stored: {source} (ttl {ttl:g}s)",
        vary=vary,
        initial_age=initial_age,
    )


# --------------------------------------------------------------------------- CACHE-3 variants


def _normalise(values: list[str]) -> str:
    return ", ".join(_WS.sub(" ", item) for item in _split_list(values))


# variant_key runs on every cache lookup of a URL with a Vary; clients repeat the same few
# header values, so one header line's normalised form is remembered (bounded, short values).
_NORMALISED: dict[str, str] = {}
_NORMALISED_MAX_KEYS = 1024
_NORMALISED_MAX_VALUE = 256


def _normalise_one(value: str) -> str:
    found = _NORMALISED.get(value)
    if found is None:
        found = _normalise([value])
        if len(value) <= _NORMALISED_MAX_VALUE:
            if len(_NORMALISED) >= _NORMALISED_MAX_KEYS:
                _NORMALISED.clear()
            _NORMALISED[value] = found
    return found


def variant_key(vary: tuple[str, ...], request_headers: Mapping[str, str]) -> tuple[str, ...]:
    """SPEC CACHE-3: the request's values of the headers ``vary`` names, in ``vary``'s order.

    Repeated lines are joined, list elements re-joined with ``", "`` and runs of whitespace
    collapsed, so ``"gzip,deflate"`` and ``"gzip,  deflate"`` select the same entry; a missing
    header is ``""``. Value case is kept.
    """
    if type(request_headers) in (CIMultiDictProxy, CIMultiDict):
        headers: MultiMapping[str] = request_headers  # type: ignore[assignment]
        key: list[str] = []
        for name in vary:
            values = headers.getall(name, ())
            if not values:
                key.append("")
            elif len(values) == 1:
                key.append(_normalise_one(values[0]))
            else:
                key.append(_normalise(list(values)))
        return tuple(key)
    return tuple(_normalise(_getall(request_headers, name)) for name in vary)


def _q(params: list[str]) -> float:
    for p in params:
        k, _, v = p.partition("=")
        if k.strip().lower() == "q":
            try:
                return float(v.strip())
            except ValueError:
                return 0.0
    return 1.0


def accepts_coding(request_headers: Mapping[str, str], coding: str) -> bool:
    """Whether the request's Accept-Encoding lets the client decode ``coding`` (q-values parsed).

    ``coding;q=0`` refuses; ``*`` with q > 0 accepts codings not listed; ``x-gzip`` is ``gzip``;
    ``identity`` is always acceptable unless refused. No Accept-Encoding: only identity (the
    seed's "client that did not ask for gzip").
    """
    coding = coding.lower()
    if coding == "x-gzip":
        coding = "gzip"
    star: float | None = None
    for item in _split_list(_getall(request_headers, "Accept-Encoding")):
        name, *params = item.split(";")
        name = name.strip().lower()
        if name == "x-gzip":
            name = "gzip"
        if name == coding:
            return _q(params) > 0
        if name == "*":
            star = _q(params)
    if star is not None:
        return star > 0
    return coding == "identity"


def variant_warning(
    url: str,
    vary: tuple[str, ...],
    response_headers: Mapping[str, str],
    request_headers: Mapping[str, str],
) -> str | None:
    """SPEC CACHE-3/CACHE-6: why serving this entry to this request is the wrong variant, or None.

    *(decision)* "Wrong in a way that matters" is one of:

    * the body has a Content-Encoding the client does not accept (the seed's gzip example), and
      ``Accept-Encoding`` is not in the response's Vary;
    * the response allows one CORS origin (``Access-Control-Allow-Origin`` not ``*``) and the
      request's Origin differs, and ``Origin`` is not in the Vary.

    Harmless differences (an identity body to a gzip-capable client) are plain hits.
    """
    if "accept-encoding" not in vary:
        for coding in _split_list(_getall(response_headers, "Content-Encoding")):
            if coding.lower() != "identity" and not accepts_coding(request_headers, coding):
                return (
                    f"served cached {coding} body of {url} to a client that did not accept "
                    f"{coding} (response has no Vary: Accept-Encoding)"
                )
    if "origin" not in vary:
        allowed = [v.strip() for v in _getall(response_headers, "Access-Control-Allow-Origin")]
        origin = _normalise(_getall(request_headers, "Origin"))
        if allowed and "*" not in allowed and origin not in allowed:
            return (
                f"served cached response of {url} with Access-Control-Allow-Origin "
                f"{allowed[0]} to Origin {origin or '(none)'} (response has no Vary: Origin)"
            )
    return None


# --------------------------------------------------------------------------- CACHE-4 freshness


def age(stored_at: float, now: float, initial_age: int = 0) -> int:
    """SPEC CACHE-4: the ``Age`` header value of a hit, whole seconds, never negative."""
    return max(0, int(now - stored_at)) + max(0, initial_age)


def is_fresh(expires_at: float, now: float) -> bool:
    """SPEC CACHE-4: an entry is served until it expires, then refetched (never revalidated)."""
    return now < expires_at
