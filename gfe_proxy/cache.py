"""The GFE edge cache: a byte-bounded LRU store with request coalescing (SPEC CACHE-1…CACHE-6).

Policy lives in ``caching.py`` (pure); this module holds the entries, accounts their memory and
makes concurrent misses for one URL share one upstream request. It imports asyncio only for the
``Event`` that waiters block on; it never imports aiohttp and never reads the time itself (the
``clock`` is injected, tests pass a ``FakeClock``).

Theory of operation
-------------------
* Entries are indexed by ``(url, range, variant)``: ``url`` is the CACHE-1 key, ``variant`` the
  request's values of the headers the response's ``Vary`` named (CACHE-3), and ``range`` the
  request's ``Range`` header *(decision: so a stored 206, which CACHE-2 allows, never answers a
  request for the whole object)*. Every entry of one URL shares that URL's ``Vary``; a response
  with a different ``Vary`` replaces them all.
* Without ``Vary`` the URL has one entry that serves every request (CACHE-3), even when that is
  wrong for the request (a gzipped body to a client that did not ask for gzip). Such a hit is
  reported as ``STALE-VARIANT`` with a warning naming the URL, for the server to log.
* Lookups move an entry to the LRU end; an insert evicts from the front until the accounted
  bytes fit ``max_bytes`` (CACHE-5). An expired entry found on lookup is dropped and the request
  is a miss: nothing is revalidated (CACHE-4).
* ``fetch`` coalesces: the first miss for a URL goes upstream ("leader"); later misses wait on
  it and are then served from the stored entry. If the leader's response was not stored (not
  cacheable, another variant, an error, a cancellation) the waiters go upstream themselves,
  concurrently. A URL whose response was not cacheable is remembered for
  ``uncacheable_memory`` seconds, during which its requests skip the cache (``BYPASS``) instead
  of queueing behind each other (CACHE-5).

``purge(url=…)`` / ``purge(prefix=…)``: a value starting with ``/`` is matched against the path
and query of every key (any scheme and host); anything else against the whole key
(``http://host:8080/path?q``). ``url`` must be equal, ``prefix`` a string prefix. ``purge()``
removes everything.
"""

from __future__ import annotations

import asyncio
import sys
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import NamedTuple, Protocol

from multidict import CIMultiDict, CIMultiDictProxy

from gfe_proxy import caching
from gfe_proxy.caching import Cacheability
from gfe_proxy.headers import HeadBlock, head_block

__all__ = [
    "ENTRY_OVERHEAD",
    "CacheLookup",
    "CacheStats",
    "CacheStatus",
    "CachedResponse",
    "EdgeCache",
    "FetchResult",
    "ResponseLike",
    "Served",
]

# Accounting constants. The budget must bound real memory, so every entry is charged the real
# size of its strings and bytes (sys.getsizeof) plus these fixed costs for the objects around
# them. Measured with tracemalloc on CPython 3.11 / multidict 6 (see tests/unit/test_cache.py).
ENTRY_OVERHEAD = 1024  # bytes: CachedResponse, CIMultiDict, index dicts/sets, key tuples
HEADER_OVERHEAD = 128  # bytes per header: the multidict item and its lower-cased identity
VARIANT_OVERHEAD = 96  # bytes per precomputed compressed variant: dict slot
HEAD_BLOCK_OVERHEAD = 64  # bytes: the HeadBlock tuple around its two byte strings
UNCACHEABLE_MAX_KEYS = 10_000  # remembered-uncacheable URLs kept at most (oldest dropped)


class CacheStatus(StrEnum):
    """SPEC CACHE-6: how a response was served, as in ``X-GFE-Cache`` and the access log."""

    HIT = "HIT"
    MISS = "MISS"
    BYPASS = "BYPASS"
    STALE_VARIANT = "STALE-VARIANT"


class ResponseLike(Protocol):
    """What the cache needs from an upstream response (any object with these attributes)."""

    @property
    def status(self) -> int: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def body(self) -> bytes: ...


class Served(NamedTuple):
    """A complete (buffered, RESP-1) response as the origin (instance or static file) produced
    it, before per-request headers (Date, Server, trace echo, Age, X-GFE-Cache) are added.
    A NamedTuple: one is made per request, cheaper than a frozen dataclass."""

    status: int
    headers: CIMultiDict[str]
    body: bytes
    reason: str | None = None


@dataclass(slots=True, kw_only=True)
class CachedResponse:
    """One stored variant. Headers are an immutable snapshot taken when it was stored."""

    url: str  # SPEC CACHE-1 key
    range: str  # the request's Range header ("" for none)
    variant: tuple[str, ...]  # SPEC CACHE-3 request values of the ``vary`` headers
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes
    stored_at: float  # clock seconds
    expires_at: float  # clock seconds
    vary: tuple[str, ...]  # lower-case names from the response's Vary
    initial_age: int = 0  # seconds; the upstream's Age when stored
    size: int = 0  # accounted bytes, including ``variants``
    # SPEC COMP-4: compressed bodies computed once per entry, keyed by coding ("gzip", "br").
    variants: dict[str, bytes] = field(default_factory=dict)
    # The header lines serialised once for the hit fast path (server.py), None when a line is
    # decided per response; accounted in ``size``.
    head: HeadBlock | None = None
    # SPEC CACHE-3: only a Content-Encoding or Access-Control-Allow-Origin can make a hit the
    # wrong variant (caching.variant_warning); without both the check is skipped.
    may_warn: bool = True

    def age(self, now: float) -> int:
        """SPEC CACHE-4: the ``Age`` a hit carries at ``now``."""
        return caching.age(self.stored_at, now, self.initial_age)

    def __repr__(self) -> str:
        return (
            f"<CachedResponse {self.url} {self.status} {len(self.body)}B "
            f"vary={','.join(self.vary) or '-'} size={self.size}>"
        )


class CacheLookup(NamedTuple):
    """The answer of ``EdgeCache.lookup``: an entry for HIT/STALE-VARIANT, else None."""

    entry: CachedResponse | None
    status: CacheStatus
    age: int | None = None  # seconds, for the Age header of a hit
    warning: str | None = None  # SPEC CACHE-3: set for STALE-VARIANT, names the URL


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchResult:
    """The answer of ``EdgeCache.fetch``: what to send and how it was served."""

    response: ResponseLike  # a CachedResponse on HIT/STALE-VARIANT, else the upstream response
    status: CacheStatus
    age: int | None = None
    warning: str | None = None
    decision: Cacheability | None = None  # the CACHE-2 verdict when this request went upstream
    coalesced: bool = False  # waited for another request's upstream fetch


@dataclass(slots=True)
class CacheStats:
    """Counters for /metrics and the status page. ``bytes``/``entries`` are gauges."""

    hits: int = 0
    misses: int = 0
    stale_variant: int = 0
    bypass: int = 0
    stores: int = 0
    evictions: int = 0
    expirations: int = 0
    coalesced: int = 0
    purges: int = 0
    bytes: int = 0
    entries: int = 0

    def snapshot(self) -> dict[str, int]:
        """A copy of every counter, by name."""
        return asdict(self)


@dataclass(slots=True)
class _Flight:
    """One in-progress upstream fetch that later misses for the same URL wait on."""

    done: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(slots=True)
class _Url:
    vary: tuple[str, ...]
    slots: set[tuple[str, tuple[str, ...]]] = field(default_factory=set)


_Index = tuple[str, str, tuple[str, ...]]  # (url, range, variant)


def _entry_size(
    url: str,
    range_: str,
    variant: tuple[str, ...],
    headers: Mapping[str, str],
    body: bytes,
) -> int:
    size = ENTRY_OVERHEAD + sys.getsizeof(url) + sys.getsizeof(range_) + sys.getsizeof(body)
    size += sum(sys.getsizeof(v) for v in variant)
    size += sum(
        2 * sys.getsizeof(k) + sys.getsizeof(v) + HEADER_OVERHEAD for k, v in headers.items()
    )
    return size


def _head_block_size(block: HeadBlock | None) -> int:
    if block is None:
        return 0
    return HEAD_BLOCK_OVERHEAD + sys.getsizeof(block.before) + sys.getsizeof(block.after)


# Request header types whose ``in`` is case-insensitive (what the server passes); for them
# the probe skips the general Range/Vary/Authorization parsing when the headers are absent.
_CI_HEADERS = (CIMultiDictProxy, CIMultiDict)


def _variant_size(coding: str, body: bytes) -> int:
    return VARIANT_OVERHEAD + sys.getsizeof(coding) + sys.getsizeof(body)


class EdgeCache:
    """SPEC CACHE-1…CACHE-6: the edge cache. ``max_bytes <= 0`` disables it (every request BYPASS).

    ``clock`` returns Unix seconds (``time.time``): ``Expires`` without ``Date`` is compared to it.
    """

    def __init__(
        self,
        max_bytes: int,
        *,
        max_object_bytes: int,
        clock: Callable[[], float],
        uncacheable_memory: float = 5.0,  # seconds a not-cacheable URL skips coalescing
    ) -> None:
        self.max_bytes = max_bytes
        self.max_object_bytes = max_object_bytes
        self.uncacheable_memory = uncacheable_memory
        self.stats = CacheStats()
        self._clock = clock
        self._lru: OrderedDict[_Index, CachedResponse] = OrderedDict()
        self._urls: dict[str, _Url] = {}
        self._uncacheable: OrderedDict[str, float] = OrderedDict()  # url -> until
        self._inflight: dict[str, _Flight] = {}
        self._generation = 0  # bumped by purge: a fetch begun before it must not store

    def __repr__(self) -> str:
        return (
            f"<EdgeCache entries={len(self._lru)} bytes={self.stats.bytes}/{self.max_bytes} "
            f"inflight={len(self._inflight)}>"
        )

    def __len__(self) -> int:
        return len(self._lru)

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    # ------------------------------------------------------------------ lookup

    def lookup(
        self, key: str, request_headers: Mapping[str, str], *, method: str = "GET"
    ) -> CacheLookup:
        """Find the entry serving this request now; counts the outcome in ``stats``.

        HIT / STALE-VARIANT carry the entry, its Age and (STALE-VARIANT) a warning; MISS means
        go upstream and ``store``; BYPASS means go upstream and do not store (cache disabled,
        method other than GET/HEAD, Authorization, or a URL recently found uncacheable).
        """
        found = self._probe(key, request_headers, method, self._clock())
        self._count(found.status)
        return found

    def _probe(
        self, key: str, request_headers: Mapping[str, str], method: str, now: float
    ) -> CacheLookup:
        plain = type(request_headers) in _CI_HEADERS
        if not self.enabled:
            return CacheLookup(None, CacheStatus.BYPASS)
        if not (
            plain and method in ("GET", "HEAD") and "Authorization" not in request_headers
        ) and caching.request_bypass_reason(method, request_headers):
            return CacheLookup(None, CacheStatus.BYPASS)
        url = self._urls.get(key)
        if url is not None:
            if plain and not url.vary and "Range" not in request_headers:
                index: _Index = (key, "", ())  # what _range and variant_key give here
            else:
                index = (
                    key,
                    _range(request_headers),
                    caching.variant_key(url.vary, request_headers),
                )
            entry = self._lru.get(index)
            if entry is not None:
                if caching.is_fresh(entry.expires_at, now):
                    self._lru.move_to_end(index)
                    warning = (
                        caching.variant_warning(key, entry.vary, entry.headers, request_headers)
                        if entry.may_warn
                        else None
                    )
                    status = CacheStatus.STALE_VARIANT if warning else CacheStatus.HIT
                    return CacheLookup(entry, status, entry.age(now), warning)
                # SPEC CACHE-4: expired entries are refetched, never revalidated.
                self._remove(index)
                self.stats.expirations += 1
        until = self._uncacheable.get(key)
        if until is not None:
            if now < until:
                return CacheLookup(None, CacheStatus.BYPASS)
            del self._uncacheable[key]
        return CacheLookup(None, CacheStatus.MISS)

    def probe(
        self, key: str, request_headers: Mapping[str, str], *, method: str = "GET"
    ) -> CacheLookup:
        """``lookup`` without counting: ``fetch``'s first step, for a caller that runs the
        rest itself: it ``count``s a HIT, STALE-VARIANT, BYPASS or HEAD MISS and goes upstream
        for the last two, and hands a GET MISS to ``fetch_miss``."""
        return self._probe(key, request_headers, method, self._clock())

    def count(self, status: CacheStatus) -> None:
        """Count one request served with ``status`` in ``stats``."""
        self._count(status)

    def _count(self, status: CacheStatus) -> None:
        match status:
            case CacheStatus.HIT:
                self.stats.hits += 1
            case CacheStatus.STALE_VARIANT:
                self.stats.stale_variant += 1
            case CacheStatus.MISS:
                self.stats.misses += 1
            case CacheStatus.BYPASS:
                self.stats.bypass += 1

    # ------------------------------------------------------------------ store

    def store(
        self,
        key: str,
        request_headers: Mapping[str, str],
        response: ResponseLike,
        *,
        method: str = "GET",
    ) -> bool:
        """Store ``response`` for this request if CACHE-2 allows it; True when stored."""
        return self._store(key, request_headers, response, method, self._generation).store

    def _store(
        self,
        key: str,
        request_headers: Mapping[str, str],
        response: ResponseLike,
        method: str,
        generation: int,
    ) -> Cacheability:
        if not self.enabled:
            return Cacheability(store=False, ttl=0.0, reason="not stored: cache disabled")
        now = self._clock()
        decision = caching.cacheability(
            method=method,
            status=response.status,
            response_headers=response.headers,
            request_headers=request_headers,
            body_size=len(response.body),
            max_object_size=self.max_object_bytes,
            now=now,
        )
        if not decision.store:
            # SPEC CACHE-5: remember what the *response* made uncacheable. A request-made
            # refusal (method, Authorization) or a 304 answering a conditional request says
            # nothing about the URL.
            if (
                caching.request_bypass_reason(method, request_headers) is None
                and method.upper() == "GET"
                and response.status != 304
            ):
                self._remember_uncacheable(key, now)
            return decision
        if generation != self._generation:
            return Cacheability(
                store=False, ttl=0.0, reason="not stored: cache purged while fetching"
            )
        range_ = _range(request_headers)
        variant = caching.variant_key(decision.vary, request_headers)
        headers = CIMultiDict(response.headers)
        block = head_block(headers.items())
        size = _entry_size(key, range_, variant, headers, response.body) + _head_block_size(block)
        if size > self.max_bytes:
            return Cacheability(
                store=False,
                ttl=0.0,
                reason=f"not stored: entry {size} bytes > cache size {self.max_bytes}",
                vary=decision.vary,
            )
        index = (key, range_, variant)
        if index in self._lru:
            self._remove(index)
        url = self._urls.get(key)
        if url is not None and url.vary != decision.vary:
            # The app changed its Vary: the old variants are keyed by other headers.
            self._remove_url(key)
            url = None
        if url is None:
            url = self._urls[key] = _Url(decision.vary)
        self._lru[index] = CachedResponse(
            url=key,
            range=range_,
            variant=variant,
            status=response.status,
            headers=CIMultiDictProxy(headers),
            body=response.body,
            stored_at=now,
            expires_at=now + decision.ttl,
            vary=decision.vary,
            initial_age=decision.initial_age,
            size=size,
            head=block,
            may_warn="Content-Encoding" in headers or "Access-Control-Allow-Origin" in headers,
        )
        url.slots.add((range_, variant))
        self.stats.bytes += size
        self.stats.entries += 1
        self.stats.stores += 1
        self._uncacheable.pop(key, None)
        self._evict()
        return decision

    def attach_variant(self, entry: CachedResponse, coding: str, body: bytes) -> bool:
        """SPEC COMP-4: keep ``entry``'s body compressed with ``coding``, accounted in the budget.

        False (nothing kept) when the entry is no longer cached or would outgrow the cache.
        """
        index = (entry.url, entry.range, entry.variant)
        if self._lru.get(index) is not entry:
            return False
        old = entry.variants.get(coding)
        extra = _variant_size(coding, body) - (_variant_size(coding, old) if old is not None else 0)
        if entry.size + extra > self.max_bytes:
            return False
        entry.variants[coding] = body
        entry.size += extra
        self.stats.bytes += extra
        self._lru.move_to_end(index)
        self._evict()
        return True

    def _remember_uncacheable(self, key: str, now: float) -> None:
        if self.uncacheable_memory <= 0:
            return
        self._uncacheable[key] = now + self.uncacheable_memory
        self._uncacheable.move_to_end(key)
        while len(self._uncacheable) > UNCACHEABLE_MAX_KEYS:
            self._uncacheable.popitem(last=False)

    def _evict(self) -> None:
        # SPEC CACHE-5: least recently used first until the accounted bytes fit. The newest
        # entry is last and no larger than max_bytes, so it is never evicted here.
        while self.stats.bytes > self.max_bytes and self._lru:
            index = next(iter(self._lru))
            self._remove(index)
            self.stats.evictions += 1

    def _remove(self, index: _Index) -> None:
        entry = self._lru.pop(index)
        self.stats.bytes -= entry.size
        self.stats.entries -= 1
        url = self._urls.get(entry.url)
        if url is not None:
            url.slots.discard((entry.range, entry.variant))
            if not url.slots:
                del self._urls[entry.url]

    def _remove_url(self, key: str) -> int:
        url = self._urls.get(key)
        if url is None:
            return 0
        indexes = [(key, r, v) for r, v in url.slots]
        for index in indexes:
            self._remove(index)
        return len(indexes)

    # ------------------------------------------------------------------ purge / expiry

    def purge(self, *, url: str | None = None, prefix: str | None = None) -> int:
        """Remove entries (admin ``POST /api/cache/purge``); returns how many were removed.

        ``url``: entries whose key equals it; ``prefix``: keys starting with it. A value that
        starts with ``/`` is compared with the path-and-query part of every key instead, so
        ``purge(prefix="/static/")`` clears that directory on every host. Neither: everything.
        """
        if url is not None and prefix is not None:
            raise ValueError("purge takes url or prefix, not both")
        self.stats.purges += 1
        self._generation += 1
        if url is None and prefix is None:
            removed = len(self._lru)
            self._lru.clear()
            self._urls.clear()
            self._uncacheable.clear()
            self.stats.bytes = 0
            self.stats.entries = 0
            return removed

        def matches(key: str) -> bool:
            if url is not None:
                return (caching.split_key(key)[1] if url.startswith("/") else key) == url
            assert prefix is not None
            target = caching.split_key(key)[1] if prefix.startswith("/") else key
            return target.startswith(prefix)

        removed = sum(self._remove_url(k) for k in [k for k in self._urls if matches(k)])
        for k in [k for k in self._uncacheable if matches(k)]:
            del self._uncacheable[k]
        return removed

    def prune_expired(self) -> int:
        """Drop every expired entry now (for a periodic tick); returns how many."""
        now = self._clock()
        expired = [i for i, e in self._lru.items() if not caching.is_fresh(e.expires_at, now)]
        for index in expired:
            self._remove(index)
        self.stats.expirations += len(expired)
        return len(expired)

    # ------------------------------------------------------------------ coalescing

    async def fetch(
        self,
        key: str,
        request_headers: Mapping[str, str],
        miss: Callable[[], Awaitable[ResponseLike]],
        *,
        method: str = "GET",
    ) -> FetchResult:
        """Serve from the cache, or call ``miss()`` (the upstream request) and store its answer.

        SPEC CACHE-5: while one ``miss()`` for ``key`` is running, other misses for ``key`` wait
        for it instead of going upstream, then are served from what it stored. If nothing usable
        was stored (uncacheable, another variant, ``miss()`` raised or was cancelled) each waiter
        calls its own ``miss()``, concurrently; the leader's exception goes to the leader only.
        """
        found = self._probe(key, request_headers, method, self._clock())
        if found.entry is not None:
            self._count(found.status)
            return FetchResult(
                response=found.entry, status=found.status, age=found.age, warning=found.warning
            )
        if found.status is CacheStatus.BYPASS or method.upper() != "GET":
            # BYPASS, or a HEAD miss (a HEAD response is never stored): straight upstream.
            self._count(found.status)
            return FetchResult(response=await miss(), status=found.status)

        return await self.fetch_miss(key, request_headers, miss)

    async def fetch_miss(
        self,
        key: str,
        request_headers: Mapping[str, str],
        miss: Callable[[], Awaitable[ResponseLike]],
    ) -> FetchResult:
        """``fetch`` after ``probe`` found a GET MISS: lead the upstream fetch for ``key`` or
        wait for the one in flight (CACHE-5 coalescing); counts the outcome."""
        flight = self._inflight.get(key)
        if flight is None:
            return await self._lead(key, request_headers, miss)

        self.stats.coalesced += 1
        await flight.done.wait()
        found = self._probe(key, request_headers, "GET", self._clock())
        if found.entry is not None:
            self._count(found.status)
            return FetchResult(
                response=found.entry,
                status=found.status,
                age=found.age,
                warning=found.warning,
                coalesced=True,
            )
        # Released without a usable entry: go upstream ourselves; never queue a second time.
        self._count(CacheStatus.MISS)
        generation = self._generation
        response = await miss()
        decision = self._store(key, request_headers, response, "GET", generation)
        return FetchResult(
            response=response, status=CacheStatus.MISS, decision=decision, coalesced=True
        )

    async def _lead(
        self,
        key: str,
        request_headers: Mapping[str, str],
        miss: Callable[[], Awaitable[ResponseLike]],
    ) -> FetchResult:
        flight = self._inflight[key] = _Flight()
        generation = self._generation
        self._count(CacheStatus.MISS)
        try:
            response = await miss()
            decision = self._store(key, request_headers, response, "GET", generation)
        finally:
            # Whatever happened (stored, uncacheable, exception, cancellation) the waiters
            # are released: they either find the entry or go upstream themselves.
            if self._inflight.get(key) is flight:
                del self._inflight[key]
            flight.done.set()
        return FetchResult(response=response, status=CacheStatus.MISS, decision=decision)


def _range(request_headers: Mapping[str, str]) -> str:
    return caching.variant_key(("range",), request_headers)[0]
