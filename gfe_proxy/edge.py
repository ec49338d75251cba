"""The edge: the GFE cache and compression as the request pipeline uses them (COMP-*, CACHE-*).

The decisions are pure (``compression.negotiate``, ``caching.cacheability``); the store is
``cache.EdgeCache``. This module holds the per-process state around them — the cache, the
compressed static variants, the counters — and the few steps the server calls:

* ``encode()`` compresses one response for one request, or leaves it alone;
* ``through_cache()`` answers from the cache or runs the origin (instance or static file) once
  for all concurrent misses, and stores what it produced;
* ``hit_headers()`` turns a stored entry into the headers of one response (Age, conditionals).

What is stored is the response as the first client received it, compressed or not: that is
what makes CACHE-3's documented quirk (one entry without ``Vary`` serves every client, even a
gzipped body to one that did not ask for gzip) come out the way production does it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from multidict import CIMultiDict

from gfe_proxy import compression
from gfe_proxy.cache import CachedResponse, CacheStatus, EdgeCache, ResponseLike, Served
from gfe_proxy.settings import Settings

log = logging.getLogger("gfe_proxy.cache")

MAX_OBJECT_BYTES = 10 * 1024 * 1024  # per-object limit (Cloud CDN's default cacheable size)
STATIC_VARIANTS_BYTES = 64 * 1024 * 1024  # compressed static files kept when the cache is off
_EXECUTOR_THRESHOLD = 256 * 1024  # bodies above this are compressed off the event loop


@dataclass(slots=True)
class CompressionStats:
    compressed: int = 0  # responses sent compressed
    bytes_in: int = 0  # their bodies before compression
    bytes_out: int = 0  # and after
    static_variant_hits: int = 0  # compressed static bodies reused, not recomputed

    def snapshot(self) -> dict[str, float]:
        data: dict[str, float] = dict(asdict(self))
        data["ratio"] = round(self.bytes_out / self.bytes_in, 4) if self.bytes_in else 0.0
        return data


class Edge:
    """Cache and compression state of one gfe-proxy process."""

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time) -> None:
        self.codings = settings.compression
        self.cache = EdgeCache(
            settings.cache_size,
            max_object_bytes=min(MAX_OBJECT_BYTES, settings.cache_size),
            clock=clock,
        )
        self.compression = CompressionStats()
        self._variants: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._variant_bytes = 0

    # -- compression --------------------------------------------------------------------

    async def encode(
        self,
        request_headers: Mapping[str, str],
        out: CIMultiDict[str],
        body: bytes,
        *,
        status: int,
        may_compress: bool,
        origin_encoding: str | None,
        static_etag: str | None = None,
    ) -> bytes:
        """Compress ``body`` for this request when COMP-1..3 allow; rewrites ``out``."""
        if status == 206 or not body:  # a byte range of the identity body stays as is
            return body
        if "Accept-Encoding" not in request_headers:
            return body  # SPEC COMP-1: no Accept-Encoding, identity only (negotiate's answer)
        coding = compression.negotiate(
            accept_encoding=_joined(request_headers, "Accept-Encoding"),
            user_agent=request_headers.get("User-Agent"),
            content_type=out.get("Content-Type"),
            content_encoding=origin_encoding,
            cache_control=out.get("Cache-Control"),
            has_body=True,
            enabled=self.codings,
            content_type_defaulted=not may_compress,
        )
        if coding is None:
            return body
        if static_etag is not None:
            encoded = await self._static_variant(static_etag, coding, body)
        else:
            encoded = await _compress(body, coding, static=False)
        # SPEC COMP-4: Content-Encoding and a weak ETag. No Vary is added here: production's
        # edge keys entries on the app's own Vary (CACHE-3), which this keeps faithful.
        out["Content-Encoding"] = coding
        compression.weaken_etag(out)
        self.compression.compressed += 1
        self.compression.bytes_in += len(body)
        self.compression.bytes_out += len(encoded)
        return encoded

    async def _static_variant(self, etag: str, coding: compression.Encoding, body: bytes) -> bytes:
        # SPEC COMP-4: a static file is compressed once per content and coding, never per request.
        key = (etag, coding)
        found = self._variants.get(key)
        if found is not None:
            self._variants.move_to_end(key)
            self.compression.static_variant_hits += 1
            return found
        encoded = await _compress(body, coding, static=True)
        if len(encoded) <= STATIC_VARIANTS_BYTES // 8:
            self._variants[key] = encoded
            self._variant_bytes += len(encoded)
            while self._variant_bytes > STATIC_VARIANTS_BYTES:
                _, dropped = self._variants.popitem(last=False)
                self._variant_bytes -= len(dropped)
        return encoded

    # -- cache --------------------------------------------------------------------------

    async def through_cache(
        self,
        key: str,
        method: str,
        request_headers: Mapping[str, str],
        produce: Callable[[], Awaitable[Served]],
    ) -> tuple[ResponseLike, CacheStatus, int | None]:
        """The response for this request: from the cache, or from ``produce()`` (once for
        concurrent misses), with how it was served (CACHE-5, CACHE-6) and the hit's Age."""
        cache = self.cache
        found = cache.probe(key, request_headers, method=method)
        if found.status is CacheStatus.MISS and method.upper() == "GET":
            result = await cache.fetch_miss(key, request_headers, produce)
            if result.warning:
                log.warning("%s", result.warning)  # SPEC CACHE-3: production would do this too
            return result.response, result.status, result.age
        # What EdgeCache.fetch does with a hit, a BYPASS or a HEAD miss, without its frames.
        cache.count(found.status)
        if found.entry is None:
            return await produce(), found.status, None
        if found.warning:
            log.warning("%s", found.warning)  # SPEC CACHE-3
        return found.entry, found.status, found.age

    @staticmethod
    def hit_headers(
        entry: CachedResponse, request_headers: Mapping[str, str]
    ) -> tuple[int, CIMultiDict[str], bool]:
        """Status, a private copy of the headers, and whether to send the body, for a hit.

        A hit is not revalidated (CACHE-4), but the client's own ``If-None-Match`` is
        answered: a stored ETag it already has gives 304 without a body."""
        out = CIMultiDict(entry.headers)
        etag = entry.headers.get("ETag")
        inm = request_headers.get("If-None-Match")
        if etag and inm and entry.status == 200 and _etag_matches(inm, etag):
            for name in ("Content-Type", "Content-Length", "Content-Encoding"):
                out.popall(name, None)
            return 304, out, False
        return entry.status, out, True

    def purge(self, *, url: str | None = None, prefix: str | None = None) -> int:
        return self.cache.purge(url=url, prefix=prefix)

    def stats(self) -> dict[str, Any]:
        data: dict[str, Any] = dict(self.cache.stats.snapshot())
        data["max_bytes"] = self.cache.max_bytes
        for name, value in self.compression.snapshot().items():
            data[f"compression_{name}"] = value
        return data


async def _compress(body: bytes, coding: compression.Encoding, *, static: bool) -> bytes:
    """``compression.compress``, off the event loop for bodies that would stall it."""
    if len(body) <= _EXECUTOR_THRESHOLD:
        return compression.compress(body, coding, static=static)
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(
        None, lambda: compression.compress(body, coding, static=static)
    )


def _joined(headers: Mapping[str, str], name: str) -> str | None:
    getall = getattr(headers, "getall", None)
    if getall is not None:
        values = getall(name, None)
        return ", ".join(values) if values else None
    return headers.get(name)


def _etag_matches(if_none_match: str, etag: str) -> bool:
    if if_none_match.strip() == "*":
        return True
    want = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == want for tag in if_none_match.split(","))
