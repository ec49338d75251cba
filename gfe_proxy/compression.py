"""Response compression: the decision (COMP-1…COMP-3) and the encoders (COMP-4).

Pure: no aiohttp, no asyncio. ``negotiate()`` looks at the request's ``Accept-Encoding`` and
``User-Agent`` and the response's headers and returns the coding to use, or ``None``;
``compress()`` encodes a buffered body (RESP-1: App Engine never streams, so one-shot encoding is
enough); ``apply()`` rewrites the response headers for the chosen coding.

Levels, by measurement (``python benchmarks/compression_levels.py``)
---------------------------------------------------------------------
Measured with ``--rounds 5`` on a shared 2-core VM (other jobs running; speeds +-20%)::

    machine: AMD EPYC, 2 cores, Linux 6.18.44-fc-v657, Python 3.11.7, zlib 1.2.13, brotli 1.2.1
    corpus: prose, html, json, code (equal weight); size % of input / MB/s, best of 5
                         1 KB            10 KB           100 KB             1 MB
    gzip-1      54.0%   112.8    41.3%   282.5    31.3%   150.2    30.2%   144.1
    gzip-4      53.5%   105.4    39.0%   217.0    27.5%    97.7    26.3%    95.5
    gzip-6      53.3%   103.9    38.3%   169.1    26.0%    52.7    24.8%    48.5
    gzip-9      53.3%   102.6    38.2%   122.6    25.8%    26.2    24.5%    22.7
    br-1        56.2%   135.0    42.4%   307.1    29.3%   466.3    20.6%   402.6
    br-4        51.4%    52.1    38.7%   112.8    26.1%   109.8    16.2%   148.9
    br-5        48.9%    46.9    36.7%    91.8    24.2%    69.0    14.9%    92.4
    br-6        48.9%    47.1    36.7%    89.1    24.0%    63.7    14.5%    79.6
    br-9        48.7%    36.6    36.6%    56.7    23.6%     6.4    14.0%    26.5
    br-11       43.2%     0.8    32.2%     1.2    21.3%     1.2    12.5%     1.2
    relative to gzip-6 (size x, speed x)
                         1 KB            10 KB           100 KB             1 MB
    gzip-1     x 1.01 x  1.09   x 1.08 x  1.67   x 1.20 x  2.85   x 1.22 x  2.97
    gzip-4     x 1.00 x  1.01   x 1.02 x  1.28   x 1.06 x  1.85   x 1.06 x  1.97
    gzip-6     x 1.00 x  1.00   x 1.00 x  1.00   x 1.00 x  1.00   x 1.00 x  1.00
    gzip-9     x 1.00 x  0.99   x 1.00 x  0.73   x 0.99 x  0.50   x 0.99 x  0.47
    br-1       x 1.05 x  1.30   x 1.11 x  1.82   x 1.13 x  8.84   x 0.83 x  8.30
    br-4       x 0.96 x  0.50   x 1.01 x  0.67   x 1.00 x  2.08   x 0.65 x  3.07
    br-5       x 0.92 x  0.45   x 0.96 x  0.54   x 0.93 x  1.31   x 0.60 x  1.90
    br-6       x 0.92 x  0.45   x 0.96 x  0.53   x 0.92 x  1.21   x 0.59 x  1.64
    br-9       x 0.91 x  0.35   x 0.96 x  0.34   x 0.91 x  0.12   x 0.57 x  0.55
    br-11      x 0.81 x  0.01   x 0.84 x  0.01   x 0.82 x  0.02   x 0.51 x  0.02

Chosen defaults:
- dynamic (every response compressed per request; cheap): **gzip 4, brotli 5.** gzip 4 is the
  knee: within 2-6 % of gzip 6's size at 1.3-2x its speed (>= 95 MB/s from 10 KB up), while
  gzip 1 costs 8-22 % more bytes than gzip 6. Brotli is opt-in and exists to be smaller, so its
  level must beat gzip 4 clearly: brotli 5 is 6-43 % smaller than gzip 4 at every size and
  still runs at ~47 MB/s or more; brotli 4 is barely smaller below 1 MB (<1 % at 10 KB);
  brotli 6 buys <1 % over 5.
- static/cached variants (compressed once, served many times; COMP-4): **gzip 9, brotli 11**.
  gzip 9 buys only ~1 % over 6 but the cost is paid once. Brotli 11 is ~18 % smaller than gzip
  below 1 MB, but runs at ~1.2 MB/s, so above 256 KiB (about 0.2 s) it falls back to brotli 9
  (26 MB/s, 1 MB in ~40 ms; a 32 MB body, RESP-5's limit, in ~1.3 s instead of ~27 s).

Small bodies *(decision)*: there is no minimum size. Production compresses every eligible body,
even one that gzip makes ~20 bytes larger, and a faithful emulator shows that.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable
from typing import Final, Literal, assert_never, get_args

import brotli
from multidict import CIMultiDict

Encoding = Literal["gzip", "br"]
ENCODINGS: Final[tuple[Encoding, ...]] = get_args(Encoding)
DEFAULT_ENABLED: Final[tuple[Encoding, ...]] = ("gzip",)  # SPEC §1: `--compression gzip`

# Per-request (dynamic) compression must be cheap; cached/static variants are compressed once
# (COMP-4) and served many times, so they can afford the slow levels. See the table above.
DYNAMIC_LEVELS: Final[dict[Encoding, int]] = {"gzip": 4, "br": 5}
STATIC_LEVELS: Final[dict[Encoding, int]] = {"gzip": 9, "br": 11}
STATIC_BROTLI_MAX_Q11_BYTES: Final = 256 * 1024  # above: quality 9 (q11 runs at ~1.2 MB/s)
_STATIC_BROTLI_LARGE_QUALITY: Final = 9
_LEVEL_RANGES: Final[dict[Encoding, range]] = {"gzip": range(10), "br": range(12)}

# gzip container straight from zlib (wbits 16+N). zlib writes MTIME 0 and no file name, so the
# output depends only on the input and the level (reproducible ETags and cache entries).
# The window is sized to the body (never smaller than it, so no match is lost): setting up the
# full 32 KB window and hash tables is most of the cost for a 1 KB body (about 3x, measured),
# and brotli's default 4 MB window makes quality 9 crawl on small bodies (1 vs 37 MB/s at 1 KB).
_GZIP_CONTAINER: Final = 16
_ZLIB_WBITS: Final = range(9, 16)  # zlib's deflate window, log2 bytes
_BROTLI_LGWIN: Final = range(10, 23)  # brotli's window, log2 bytes; 22 is its default

# RFC 9110 §5.6.2 token and §12.4.2 qvalue. A qvalue may carry more than three decimals here
# (tolerance), but must lie in [0, 1].
_TOKEN_RE: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_QVALUE_RE: Final = re.compile(r"[01](?:\.[0-9]*)?")

# SPEC COMP-1: Google's compressible list (Cloud CDN / Media CDN dynamic compression), beyond
# text/* and the +json/+xml suffixes. WebAssembly, woff/woff2, images and archives are binary or
# already compressed and stay out.
_COMPRESSIBLE_TYPES: Final = frozenset(
    {
        "application/javascript",
        "application/x-javascript",
        "application/ecmascript",
        "application/json",
        "application/xml",
        "application/vnd.ms-fontobject",  # .eot
        "application/x-web-app-manifest+json",
        "application/vnd.apple.mpegurl",  # HLS playlist (text)
        "application/x-mpegurl",
        "image/svg+xml",
        "image/x-icon",
        "image/vnd.microsoft.icon",
        "font/ttf",
        "font/otf",
        "font/eot",
        "font/opentype",
    }
)
_COMPRESSIBLE_PREFIXES: Final = ("application/x-font-",)  # x-font-ttf, x-font-opentype, …
_COMPRESSIBLE_SUFFIXES: Final = ("+json", "+xml")  # ld+json, manifest+json, rss+xml, atom+xml, …

# SPEC COMP-2: clients known to mishandle gzip. Kept short on purpose; each entry says why.
# - MSIE 4 and 5 (every build) and MSIE 6 before XP SP2 (no "SV1" token): the old IE gzip bugs
#   (lost first bytes of a cached compressed response, broken compressed script/CSS). This is
#   nginx's `gzip_disable "msie6"` rule; Opera, which claims "MSIE" when disguised, is exempt.
_OLD_MSIE_RE: Final = re.compile(r"MSIE [4-6]\.")
# - Netscape Navigator 4.x ("Mozilla/4.x" that is not a "compatible;" impostor such as MSIE):
#   decompresses only text/html reliably, and 4.06–4.08 not at all (Apache mod_deflate's
#   BrowserMatch ^Mozilla/4 rules).
_NETSCAPE4_PREFIX: Final = "Mozilla/4."


def parse_accept_encoding(value: str) -> dict[str, float]:
    """Parse an ``Accept-Encoding`` value into ``{coding: q}``, codings lower-cased.

    ``"gzip, br;q=0.8, *;q=0"`` -> ``{"gzip": 1.0, "br": 0.8, "*": 0.0}``. A member with an
    invalid coding or q-value is ignored (RFC 9110 leaves recovery to the recipient; since only
    codings listed by name count, ignoring one can withhold compression, never force it). When
    a coding is listed twice the lowest q wins: a refusal anywhere is a refusal (SPEC COMP-1,
    STYLE 7).
    """
    codings: dict[str, float] = {}
    for member in value.split(","):
        name, _, params = member.partition(";")
        coding = name.strip().lower()
        if not coding:
            continue
        if not _TOKEN_RE.fullmatch(coding):
            continue
        q = _member_q(params)
        if q is None:
            continue
        codings[coding] = min(q, codings.get(coding, q))
    return codings


def _member_q(params: str) -> float | None:
    """q of one member's parameters: 1.0 when absent, None when invalid."""
    q = 1.0
    for param in params.split(";"):
        key, eq, raw = param.partition("=")
        if key.strip().lower() != "q":
            continue  # other parameters (and empty ones from ";;") carry no weight
        raw = raw.strip()
        if not eq or not _QVALUE_RE.fullmatch(raw):
            return None
        q = float(raw)
        if q > 1.0:
            return None
    return q


def parse_enabled(value: str) -> tuple[Encoding, ...]:
    """Parse a ``--compression`` value: ``"br,gzip"`` -> ``("br", "gzip")``; order = preference.

    An empty value or ``none`` disables compression. Unknown codings raise ``ValueError``.
    """
    names = [part.strip().lower() for part in value.split(",") if part.strip()]
    if names == ["none"]:
        return ()
    enabled: list[Encoding] = []
    for name in names:
        encoding = _as_encoding(name)
        if encoding is None:
            supported = ", ".join(ENCODINGS)
            raise ValueError(f"unsupported compression {name!r} (supported: {supported}, none)")
        if encoding not in enabled:
            enabled.append(encoding)
    return tuple(enabled)


def _as_encoding(name: str) -> Encoding | None:
    for encoding in ENCODINGS:
        if encoding == name:
            return encoding
    return None


def media_type(content_type: str) -> str:
    """``"Text/HTML; charset=utf-8"`` -> ``"text/html"`` (parameters dropped, lower-cased)."""
    return content_type.partition(";")[0].strip().lower()


def is_compressible_type(content_type: str) -> bool:
    """SPEC COMP-1: is this ``Content-Type`` text-based (worth compressing)?"""
    mtype = media_type(content_type)
    top, slash, sub = mtype.partition("/")
    if not slash or not _TOKEN_RE.fullmatch(top) or not _TOKEN_RE.fullmatch(sub):
        return False
    return (
        top == "text"
        or mtype in _COMPRESSIBLE_TYPES
        or mtype.startswith(_COMPRESSIBLE_PREFIXES)
        or sub.endswith(_COMPRESSIBLE_SUFFIXES)
    )


def is_known_bad_client(user_agent: str) -> bool:
    """SPEC COMP-2: a browser on the short list of clients that mishandle gzip."""
    msie = _OLD_MSIE_RE.search(user_agent)
    if msie and "Opera" not in user_agent:
        return msie.group() != "MSIE 6." or "SV1" not in user_agent
    return (
        user_agent.startswith(_NETSCAPE4_PREFIX)
        and "compatible" not in user_agent
        and "MSIE" not in user_agent
    )


def _already_encoded(content_encoding: str | None) -> bool:
    if content_encoding is None:
        return False
    codings = (c.strip().lower() for c in content_encoding.split(","))
    return any(c and c != "identity" for c in codings)


def _has_no_transform(cache_control: str | None) -> bool:
    if cache_control is None:
        return False
    return any(
        part.partition("=")[0].strip().lower() == "no-transform"
        for part in cache_control.split(",")
    )


def negotiate(
    *,
    accept_encoding: str | None,
    user_agent: str | None,
    content_type: str | None,
    content_encoding: str | None,
    cache_control: str | None,
    has_body: bool,
    enabled: tuple[Encoding, ...] = DEFAULT_ENABLED,
    content_type_defaulted: bool = False,
) -> Encoding | None:
    """Choose the coding for one response, or ``None`` to send it as is.

    ``accept_encoding`` and ``user_agent`` are the request's headers (repeated lines joined with
    ``", "``); ``content_type``, ``content_encoding`` and ``cache_control`` the response's, with
    ``content_encoding`` as the app sent it, before gen1 drops it (RESP-4), so an app-encoded
    body is never encoded twice. ``has_body`` is False for HEAD, 1xx/204/304 and empty bodies.
    ``enabled`` lists the codings the server may use, most preferred first; its order breaks
    ties between equal client q-values.

    >>> negotiate(accept_encoding="gzip, br", user_agent="curl/8", content_type="text/css",
    ...           content_encoding=None, cache_control=None, has_body=True,
    ...           enabled=("br", "gzip"))
    'br'
    """
    if not has_body or not enabled:
        return None
    # SPEC RESP-2: a type the proxy defaulted to text/html is a guess; never compress it.
    if content_type_defaulted or content_type is None:
        return None
    if not is_compressible_type(content_type):
        return None
    # SPEC COMP-1 / RESP-4: the app already encoded the body (anything but identity).
    if _already_encoded(content_encoding):
        return None
    # SPEC COMP-1: RFC 9111 §5.2.2.6, intermediaries must not transform the content.
    if _has_no_transform(cache_control):
        return None
    if accept_encoding is None:
        return None
    accepted = parse_accept_encoding(accept_encoding)
    # SPEC COMP-1: the gzip token itself must be accepted; `*` and `x-gzip` do not count.
    # App Engine compresses nothing (not even br) for a request whose Accept-Encoding lacks gzip.
    if accepted.get("gzip", 0.0) <= 0.0:
        return None
    # SPEC COMP-2: a User-Agent containing "gzip" vouches for itself, even on the bad list.
    ua = user_agent or ""
    if is_known_bad_client(ua) and "gzip" not in ua.lower():
        return None
    # SPEC COMP-3: only codings the client listed by name with q > 0 and that are enabled; the
    # client's q decides, `enabled` order breaks ties (("br", "gzip") prefers the smaller br).
    best: Encoding | None = None
    best_q = 0.0
    for encoding in enabled:
        q = accepted.get(encoding, 0.0) if encoding in ENCODINGS else 0.0
        if q > best_q:
            best, best_q = encoding, q
    return best


def default_level(encoding: Encoding, size: int, *, static: bool = False) -> int:
    """The level ``compress()`` uses for a ``size``-byte body (see the table at the top)."""
    if not static:
        return DYNAMIC_LEVELS[encoding]
    if encoding == "br" and size > STATIC_BROTLI_MAX_Q11_BYTES:
        return _STATIC_BROTLI_LARGE_QUALITY
    return STATIC_LEVELS[encoding]


def compress(
    body: bytes, encoding: Encoding, level: int | None = None, *, static: bool = False
) -> bytes:
    """Encode ``body`` with ``encoding``.

    ``level`` is the gzip level (0-9) or brotli quality (0-11); by default
    ``default_level()``: the dynamic (per-request) level, or with ``static=True`` the level for
    variants compressed once and cached (COMP-4). Output is deterministic: same input, same
    bytes. CPU-bound; async callers run large bodies in an executor.
    """
    if encoding not in ENCODINGS:
        raise ValueError(f"unsupported content-coding {encoding!r}")
    if level is None:
        level = default_level(encoding, len(body), static=static)
    elif level not in _LEVEL_RANGES[encoding]:
        limits = _LEVEL_RANGES[encoding]
        raise ValueError(f"{encoding} level {level} outside {limits.start}..{limits.stop - 1}")
    match encoding:
        case "gzip":
            wbits = _GZIP_CONTAINER + _window_bits(len(body), _ZLIB_WBITS)
            compressor = zlib.compressobj(level, zlib.DEFLATED, wbits)
            return compressor.compress(body) + compressor.flush()
        case "br":
            # Brotli's window holds (1 << lgwin) - 16 bytes.
            lgwin = _window_bits(len(body) + 16, _BROTLI_LGWIN)
            encoded: bytes = brotli.compress(
                body, mode=brotli.MODE_TEXT, quality=level, lgwin=lgwin
            )
            return encoded
        case _:
            assert_never(encoding)


def _window_bits(size: int, allowed: range) -> int:
    """Smallest allowed log2 window that holds ``size`` bytes (the largest if none does)."""
    return min(max((size - 1).bit_length(), allowed.start), allowed.stop - 1)


def apply(headers: CIMultiDict[str], encoding: Encoding) -> None:
    """SPEC COMP-4: rewrite response ``headers`` in place for a body encoded with ``encoding``.

    Sets ``Content-Encoding``, weakens a strong ``ETag`` and adds ``Accept-Encoding`` to
    ``Vary``. The caller sets ``Content-Length`` from the encoded body (RESP-1).
    """
    headers["Content-Encoding"] = encoding
    weaken_etag(headers)
    add_vary(headers, "Accept-Encoding")


def weaken_etag(headers: CIMultiDict[str]) -> None:
    """``ETag: "x"`` -> ``ETag: W/"x"``; weak tags stay; a malformed tag is dropped.

    RFC 9110 §8.8.3: the encoded bytes differ from the identity bytes, so a strong validator
    would lie about byte equality. A tag that is neither quoted nor ``W/`` cannot be weakened
    and is removed (nginx does the same).
    """
    tags = headers.getall("ETag", [])
    if not tags:
        return
    kept: list[str] = []
    for raw in tags:
        tag = raw.strip()
        if tag.startswith('W/"'):
            kept.append(tag)
        elif len(tag) >= 2 and tag.startswith('"') and tag.endswith('"'):
            kept.append("W/" + tag)
    del headers["ETag"]
    for tag in kept:
        headers.add("ETag", tag)


def add_vary(headers: CIMultiDict[str], field: str) -> None:
    """Add ``field`` to ``Vary`` unless it is already named (case-insensitively) or ``*``.

    The field goes on a line of its own, as RESP-3 adds it (headers.py): repeated ``Vary`` lines
    equal one combined list (RFC 9110 §5.3), and the app's lines stay as it wrote them.
    """
    named = {member.lower() for member in _list_members(headers.getall("Vary", []))}
    if "*" in named or field.lower() in named:
        return
    headers.add("Vary", field)


def _list_members(values: Iterable[str]) -> Iterable[str]:
    for value in values:
        for member in value.split(","):
            if member := member.strip():
                yield member
