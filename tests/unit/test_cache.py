"""SPEC CACHE-3…CACHE-6: the byte-bounded edge cache and request coalescing (gfe_proxy/cache.py)."""

from __future__ import annotations

import asyncio
import gc
import gzip
import random
import tracemalloc
from collections.abc import Awaitable, Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from gfe_proxy.cache import (
    ENTRY_OVERHEAD,
    CachedResponse,
    CacheStatus,
    EdgeCache,
    FetchResult,
    Served,
)
from gfe_proxy.caching import cache_key

MB = 1 << 20
URL = cache_key("http", "localhost:8080", "/styles.css")
TEXT = b"body { color: red; }\n" * 50
GZ = gzip.compress(TEXT, mtime=0)


class FakeClock:
    """A clock the test moves by hand (trio's MockClock idea): no sleeping, no patching."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def H(*pairs: tuple[str, str]) -> CIMultiDict[str]:
    return CIMultiDict(pairs)


def response(*headers: tuple[str, str], body: bytes = TEXT, status: int = 200) -> Served:
    return Served(status=status, headers=H(*headers), body=body)


PUBLIC = ("Cache-Control", "public, max-age=600")
GZIP_CLIENT = H(("Accept-Encoding", "gzip, deflate"))
PLAIN_CLIENT = H()


def make_cache(
    clock: FakeClock | None = None, max_bytes: int = 16 * MB, **kwargs: float
) -> EdgeCache:
    return EdgeCache(
        max_bytes,
        max_object_bytes=int(kwargs.pop("max_object_bytes", 4 * MB)),
        clock=clock or FakeClock(),
        **kwargs,
    )


def app_response(request_headers: CIMultiDict[str], *extra: tuple[str, str]) -> Served:
    """What the seed's app returns: gzip when asked for, else identity."""
    if "gzip" in request_headers.get("Accept-Encoding", ""):
        return response(PUBLIC, ("Content-Encoding", "gzip"), *extra, body=GZ)
    return response(PUBLIC, *extra, body=TEXT)


# --------------------------------------------------------------------------- CACHE-3 seed example


def test_cache_3_seed_example_with_vary_keeps_one_entry_per_encoding() -> None:
    cache = make_cache()
    vary = ("Vary", "Accept-Encoding")
    assert cache.store(URL, GZIP_CLIENT, app_response(GZIP_CLIENT, vary))
    assert cache.lookup(URL, PLAIN_CLIENT).status is CacheStatus.MISS
    assert cache.store(URL, PLAIN_CLIENT, app_response(PLAIN_CLIENT, vary))
    assert len(cache) == 2

    gz = cache.lookup(URL, H(("Accept-Encoding", "gzip,  deflate")))
    plain = cache.lookup(URL, H())
    assert (gz.status, plain.status) == (CacheStatus.HIT, CacheStatus.HIT)
    assert gz.entry is not None
    assert plain.entry is not None
    assert (gz.entry.body, plain.entry.body) == (GZ, TEXT)
    assert (gz.warning, plain.warning) == (None, None)


def test_cache_3_seed_example_without_vary_serves_gzip_to_everyone_as_stale_variant() -> None:
    cache = make_cache()
    assert cache.store(URL, GZIP_CLIENT, app_response(GZIP_CLIENT))
    assert len(cache) == 1

    same = cache.lookup(URL, GZIP_CLIENT)
    other = cache.lookup(URL, PLAIN_CLIENT)
    assert same.status is CacheStatus.HIT
    # SPEC CACHE-3: production serves the one entry anyway; we mark it and warn.
    assert other.status is CacheStatus.STALE_VARIANT
    assert other.entry is not None
    assert other.entry.body == GZ
    assert other.warning is not None
    assert URL in other.warning
    assert cache.stats.snapshot()["stale_variant"] == 1
    assert cache.stats.hits == 1


def test_cache_3_without_vary_identity_entry_is_a_plain_hit_for_gzip_clients() -> None:
    cache = make_cache()
    cache.store(URL, PLAIN_CLIENT, app_response(PLAIN_CLIENT))
    found = cache.lookup(URL, GZIP_CLIENT)
    assert (found.status, found.warning) == (CacheStatus.HIT, None)


def test_cache_3_new_vary_replaces_all_old_variants() -> None:
    cache = make_cache()
    vary = ("Vary", "Accept-Encoding")
    cache.store(URL, GZIP_CLIENT, app_response(GZIP_CLIENT, vary))
    cache.store(URL, PLAIN_CLIENT, app_response(PLAIN_CLIENT, vary))
    assert len(cache) == 2
    cache.store(URL, PLAIN_CLIENT, app_response(PLAIN_CLIENT))  # the app dropped Vary
    assert len(cache) == 1
    assert cache.lookup(URL, GZIP_CLIENT).status is CacheStatus.HIT


def test_cache_3_restoring_same_variant_replaces_it_and_keeps_accounting() -> None:
    cache = make_cache()
    cache.store(URL, PLAIN_CLIENT, response(PUBLIC, body=b"one"))
    first = cache.stats.bytes
    cache.store(URL, PLAIN_CLIENT, response(PUBLIC, body=b"two"))
    found = cache.lookup(URL, PLAIN_CLIENT)
    assert found.entry is not None
    assert found.entry.body == b"two"
    assert (len(cache), cache.stats.bytes, cache.stats.entries) == (1, first, 1)


def test_cache_2_range_request_206_never_answers_a_full_request() -> None:
    cache = make_cache()
    ranged = H(("Range", "bytes=0-9"))
    assert cache.store(URL, ranged, response(PUBLIC, body=TEXT[:10], status=206))
    assert cache.lookup(URL, PLAIN_CLIENT).status is CacheStatus.MISS
    hit = cache.lookup(URL, ranged)
    assert hit.entry is not None
    assert hit.entry.status == 206


# --------------------------------------------------------------------------- CACHE-2 via the store


@pytest.mark.parametrize(
    ("request_headers", "upstream", "method"),
    [
        (H(("Authorization", "Bearer t")), response(PUBLIC), "GET"),
        (H(), response(PUBLIC, ("Set-Cookie", "sid=1")), "GET"),
        (H(), response(("Cache-Control", "public"), ("Vary", "User-Agent")), "GET"),
        (H(), response(("Cache-Control", "public"), ("Vary", "*")), "GET"),
        (H(), response(("Cache-Control", "private, max-age=60")), "GET"),
        (H(), response(("Cache-Control", "no-store")), "GET"),
        (H(), response(("Cache-Control", "public, no-cache")), "GET"),
        (H(), response(("Cache-Control", "public, max-age=0")), "GET"),
        (H(), response(("Expires", "Thu, 01 Jan 1970 00:00:00 GMT")), "GET"),
        (H(), response(PUBLIC), "POST"),
        (H(), response(PUBLIC, status=500), "GET"),
    ],
    ids=[
        "Authorization",
        "Set-Cookie",
        "Vary-User-Agent",
        "Vary-star",
        "private",
        "no-store",
        "no-cache",
        "max-age-0",
        "Expires-in-past",
        "POST",
        "status-500",
    ],
)
def test_cache_2_store_refuses(
    request_headers: CIMultiDict[str], upstream: Served, method: str
) -> None:
    cache = make_cache()
    assert not cache.store(URL, request_headers, upstream, method=method)
    assert len(cache) == 0
    assert cache.stats.bytes == 0


@pytest.mark.parametrize(
    ("method", "request_headers"),
    [("GET", H(("Authorization", "Basic eDp5"))), ("POST", H()), ("DELETE", H())],
    ids=["Authorization", "POST", "DELETE"],
)
def test_cache_2_lookup_bypasses_for_authorization_and_unsafe_methods(
    method: str, request_headers: CIMultiDict[str]
) -> None:
    cache = make_cache()
    cache.store(URL, PLAIN_CLIENT, response(PUBLIC))
    found = cache.lookup(URL, request_headers, method=method)
    assert (found.entry, found.status) == (None, CacheStatus.BYPASS)
    assert cache.stats.bypass == 1


def test_cache_2_head_is_answered_from_a_stored_get() -> None:
    cache = make_cache()
    cache.store(URL, PLAIN_CLIENT, response(PUBLIC))
    assert cache.lookup(URL, PLAIN_CLIENT, method="HEAD").status is CacheStatus.HIT


def test_cache_5_per_object_limit() -> None:
    cache = make_cache(max_object_bytes=1000)
    assert cache.store(URL, PLAIN_CLIENT, response(PUBLIC, body=b"x" * 1000))
    assert not cache.store(URL + "2", PLAIN_CLIENT, response(PUBLIC, body=b"x" * 1001))
    assert len(cache) == 1


def test_cache_5_entry_larger_than_the_whole_cache_is_not_stored() -> None:
    cache = make_cache(max_bytes=ENTRY_OVERHEAD + 500, max_object_bytes=MB)
    assert not cache.store(URL, PLAIN_CLIENT, response(PUBLIC, body=b"x" * 1000))
    assert cache.stats.bytes == 0


def test_cache_5_disabled_cache_bypasses_everything() -> None:
    cache = make_cache(max_bytes=0)
    assert not cache.store(URL, PLAIN_CLIENT, response(PUBLIC))
    assert cache.lookup(URL, PLAIN_CLIENT).status is CacheStatus.BYPASS


# --------------------------------------------------------------------------- CACHE-4 expiry, Age


def test_cache_4_entry_served_until_expiry_then_refetched() -> None:
    clock = FakeClock()
    cache = make_cache(clock)
    cache.store(URL, PLAIN_CLIENT, response(("Cache-Control", "public, max-age=60")))
    clock.advance(59.5)
    hit = cache.lookup(URL, PLAIN_CLIENT)
    assert (hit.status, hit.age) == (CacheStatus.HIT, 59)
    clock.advance(0.5)
    assert cache.lookup(URL, PLAIN_CLIENT).status is CacheStatus.MISS
    # The expired entry is removed on lookup, not kept for revalidation.
    assert (len(cache), cache.stats.bytes, cache.stats.expirations) == (0, 0, 1)


@pytest.mark.parametrize(
    ("upstream_age", "elapsed", "age", "status"),
    [
        (None, 0, 0, CacheStatus.HIT),
        (None, 30, 30, CacheStatus.HIT),
        ("10", 5, 15, CacheStatus.HIT),
        ("10", 50, None, CacheStatus.MISS),
    ],
    ids=[
        "fresh-hit-age-0",
        "age-grows-with-clock",
        "upstream-age-added",
        "upstream-age-shortens-life",
    ],
)
def test_cache_4_age_header_value(
    upstream_age: str | None, elapsed: float, age: int | None, status: CacheStatus
) -> None:
    clock = FakeClock()
    cache = make_cache(clock)
    headers = [("Cache-Control", "public, max-age=60")]
    if upstream_age is not None:
        headers.append(("Age", upstream_age))
    cache.store(URL, PLAIN_CLIENT, response(*headers))
    clock.advance(elapsed)
    found = cache.lookup(URL, PLAIN_CLIENT)
    assert (found.status, found.age) == (status, age)


def test_cache_4_prune_expired() -> None:
    clock = FakeClock()
    cache = make_cache(clock)
    cache.store(URL, PLAIN_CLIENT, response(("Cache-Control", "max-age=10")))
    cache.store(URL + "?v=2", PLAIN_CLIENT, response(("Cache-Control", "max-age=100")))
    clock.advance(10)
    assert cache.prune_expired() == 1
    assert len(cache) == 1


# --------------------------------------------------------------------------- CACHE-5 LRU by bytes


def _entry_bytes(body_size: int, key: str = URL) -> int:
    probe = make_cache()
    probe.store(key, PLAIN_CLIENT, response(PUBLIC, body=b"x" * body_size))
    return probe.stats.bytes


def test_cache_5_lru_evicts_least_recently_used_first_and_touch_protects() -> None:
    a, b, c, d = (cache_key("http", "localhost:8080", f"/{n}.css") for n in "abcd")
    size = _entry_bytes(1000, a)  # the same for each of a…d
    cache = make_cache(max_bytes=3 * size)
    for key in (a, b, c):
        assert cache.store(key, PLAIN_CLIENT, response(PUBLIC, body=b"x" * 1000))
    assert cache.stats.bytes == 3 * size
    assert cache.lookup(a, PLAIN_CLIENT).status is CacheStatus.HIT  # a is now most recent
    cache.store(d, PLAIN_CLIENT, response(PUBLIC, body=b"x" * 1000))
    statuses = {k[-5:]: cache.lookup(k, PLAIN_CLIENT).status for k in (a, b, c, d)}
    assert statuses == {"a.css": "HIT", "b.css": "MISS", "c.css": "HIT", "d.css": "HIT"}
    assert cache.stats.evictions == 1


def test_cache_5_one_large_entry_evicts_several_small_ones() -> None:
    small = _entry_bytes(100)
    cache = make_cache(max_bytes=10 * small, max_object_bytes=MB)
    keys = [f"{URL}?n={i}" for i in range(10)]
    for key in keys:
        cache.store(key, PLAIN_CLIENT, response(PUBLIC, body=b"x" * 100))
    cache.store(URL, PLAIN_CLIENT, response(PUBLIC, body=b"y" * (5 * small)))
    assert cache.stats.bytes <= cache.max_bytes
    assert cache.lookup(URL, PLAIN_CLIENT).status is CacheStatus.HIT
    survivors = [k for k in keys if cache.lookup(k, PLAIN_CLIENT).status is CacheStatus.HIT]
    assert survivors == keys[len(keys) - len(survivors) :]  # the oldest went first


def test_comp_4_attached_variant_is_accounted_and_can_evict() -> None:
    size = _entry_bytes(1000)
    cache = make_cache(max_bytes=2 * size + 600)
    other = URL + "?other"
    cache.store(other, PLAIN_CLIENT, response(PUBLIC, body=b"x" * 1000))
    cache.store(URL, PLAIN_CLIENT, response(PUBLIC, body=b"x" * 1000))
    entry = cache.lookup(URL, PLAIN_CLIENT).entry
    assert entry is not None
    before = cache.stats.bytes
    assert cache.attach_variant(entry, "gzip", b"z" * 300)
    assert entry.variants == {"gzip": b"z" * 300}
    assert cache.stats.bytes == before + (entry.size - size)
    assert cache.attach_variant(entry, "br", b"b" * 300)  # over budget: `other` goes
    assert cache.lookup(other, PLAIN_CLIENT).status is CacheStatus.MISS
    assert cache.stats.bytes == entry.size <= cache.max_bytes
    cache.purge()
    assert not cache.attach_variant(entry, "gzip", b"z")  # no longer cached


# --------------------------------------------------------------------------- purge


KEYS = [
    "http://localhost:8080/static/a.css",
    "http://localhost:8080/static/b.css?v=1",
    "https://localhost:8443/static/a.css",
    "http://api.localhost:8080/static/a.css",
    "http://localhost:8080/index.html",
]


@pytest.mark.parametrize(
    ("kwargs", "removed", "left"),
    [
        ({}, 5, []),
        (
            {"url": "http://localhost:8080/static/a.css"},
            1,
            [k for k in KEYS if k != "http://localhost:8080/static/a.css"],
        ),
        (
            {"url": "/static/a.css"},
            3,
            ["http://localhost:8080/static/b.css?v=1", "http://localhost:8080/index.html"],
        ),
        ({"url": "/static/b.css"}, 0, KEYS),
        (
            {"prefix": "http://localhost:8080/static/"},
            2,
            [
                "https://localhost:8443/static/a.css",
                "http://api.localhost:8080/static/a.css",
                "http://localhost:8080/index.html",
            ],
        ),
        ({"prefix": "/static/"}, 4, ["http://localhost:8080/index.html"]),
        ({"prefix": "https://"}, 1, [k for k in KEYS if not k.startswith("https")]),
    ],
    ids=[
        "all",
        "url-exact",
        "url-path-any-host",
        "url-needs-query",
        "prefix-full-key",
        "prefix-path-any-host",
        "prefix-scheme",
    ],
)
def test_cache_purge_by_url_prefix_or_all(
    kwargs: dict[str, str], removed: int, left: list[str]
) -> None:
    cache = make_cache()
    for key in KEYS:
        cache.store(key, PLAIN_CLIENT, response(PUBLIC))
    assert cache.purge(**kwargs) == removed
    assert [k for k in KEYS if cache.lookup(k, PLAIN_CLIENT).entry is not None] == left
    assert cache.stats.entries == len(left) == len(cache)
    assert cache.stats.purges == 1


def test_cache_purge_counts_every_variant() -> None:
    cache = make_cache()
    vary = ("Vary", "Accept-Encoding")
    cache.store(URL, GZIP_CLIENT, app_response(GZIP_CLIENT, vary))
    cache.store(URL, PLAIN_CLIENT, app_response(PLAIN_CLIENT, vary))
    assert cache.purge(url=URL) == 2
    assert cache.stats.bytes == 0


def test_cache_purge_rejects_url_and_prefix_together() -> None:
    with pytest.raises(ValueError, match="not both"):
        make_cache().purge(url="/a", prefix="/")


# --------------------------------------------------------------------------- memory bound


def _traced_cache_fill(cache: EdgeCache, total: int, seed: int) -> tuple[int, int]:
    """Store ``total`` bytes of mixed-size responses; returns (max accounted, traced bytes)."""
    rng = random.Random(seed)
    sizes = [0, 10, 300, 4_000, 20_000, 90_000]
    written = peak = 0
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        n = 0
        while written < total:
            size = rng.choice(sizes)
            headers = [PUBLIC, ("Content-Type", "text/css"), ("X-Pad", "p" * rng.randint(0, 200))]
            if n % 3 == 0:
                headers.append(("Vary", "Accept-Encoding"))
            request = H(("Accept-Encoding", rng.choice(["gzip", "br", ""])))
            cache.store(
                f"http://localhost:8080/f/{n}?x={size}",
                request,
                response(*headers, body=rng.randbytes(size)),
            )
            written += size
            n += 1
            peak = max(peak, cache.stats.bytes)
        gc.collect()
        traced = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    return peak, traced


def test_cache_5_memory_stays_within_budget_after_20x_overfill() -> None:
    budget = MB
    cache = make_cache(max_bytes=budget, max_object_bytes=budget)
    peak, traced = _traced_cache_fill(cache, 20 * budget, seed=5)
    assert cache.stats.evictions > 0
    assert peak <= budget
    assert cache.stats.bytes == sum(e.size for e in cache._lru.values())
    # Real memory (tracemalloc) of what the cache keeps: within the budget plus slack for the
    # index tables' spare capacity. Generous on purpose; the accounting is the real bound.
    assert traced <= budget + 256 * 1024


@settings(max_examples=60, deadline=None)
@given(
    ops=st.lists(
        st.one_of(
            st.tuples(
                st.just("store"),
                st.integers(0, 7),
                st.integers(0, 3000),
                st.sampled_from(["", "Accept-Encoding"]),
                st.sampled_from(["gzip", ""]),
            ),
            st.tuples(st.just("lookup"), st.integers(0, 7), st.sampled_from(["gzip", ""])),
            st.tuples(st.just("advance"), st.integers(0, 120)),
            st.tuples(st.just("variant"), st.integers(0, 7), st.integers(0, 2000)),
            st.tuples(st.just("purge"), st.integers(0, 7)),
        ),
        max_size=40,
    )
)
def test_cache_5_property_accounting_is_exact_and_bounded(ops: list[tuple[object, ...]]) -> None:
    clock = FakeClock()
    cache = make_cache(clock, max_bytes=4 * _ENTRY_4K, max_object_bytes=4000)
    for op in ops:
        match op:
            case ("store", int(n), int(size), str(vary), str(ae)):
                headers = [("Cache-Control", "max-age=60")] + ([("Vary", vary)] if vary else [])
                cache.store(
                    f"{URL}?{n}", H(("Accept-Encoding", ae)), response(*headers, body=b"x" * size)
                )
            case ("lookup", int(n), str(ae)):
                cache.lookup(f"{URL}?{n}", H(("Accept-Encoding", ae)))
            case ("advance", int(seconds)):
                clock.advance(seconds)
            case ("variant", int(n), int(size)):
                entry = cache.lookup(f"{URL}?{n}", H()).entry
                if entry is not None:
                    cache.attach_variant(entry, "gzip", b"z" * size)
            case ("purge", int(n)):
                cache.purge(url=f"{URL}?{n}")
        assert cache.stats.bytes <= cache.max_bytes
        assert cache.stats.bytes == sum(e.size for e in cache._lru.values())
        assert cache.stats.entries == len(cache._lru)
        assert all(isinstance(e, CachedResponse) for e in cache._lru.values())


_ENTRY_4K = _entry_bytes(4000)


# --------------------------------------------------------------------------- CACHE-5 coalescing


class Upstream:
    """A stand-in upstream that counts calls and can hold the first one until released."""

    def __init__(self, make: Callable[[int], Served] | None = None, *, hold_all: int = 0) -> None:
        self.calls = 0
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        # With hold_all=N, calls after the first wait until N calls are in flight at once:
        # that proves they went upstream concurrently rather than queueing.
        self.hold_all = hold_all
        self.all_in = asyncio.Event()
        self.make = make or (lambda n: response(PUBLIC, body=b"fresh"))
        self.fail_first: BaseException | None = None

    def miss(self) -> Callable[[], Awaitable[Served]]:
        async def call() -> Served:
            self.calls += 1
            n = self.calls
            if n == self.hold_all:
                self.all_in.set()
            if n == 1:
                self.started.set()
                await self.release.wait()
                if self.fail_first is not None:
                    raise self.fail_first
            elif self.hold_all:
                await self.all_in.wait()
            return self.make(n)

        return call


async def _burst(
    cache: EdgeCache, upstream: Upstream, n: int = 50
) -> list[asyncio.Task[FetchResult]]:
    """Start ``n`` concurrent fetches; return once the first holds upstream and the rest wait.

    asyncio runs ready tasks in creation order, so when ``started`` wakes us the leader is
    blocked in upstream and the ``n - 1`` others have already queued behind it.
    """
    tasks = [asyncio.create_task(cache.fetch(URL, H(), upstream.miss())) for _ in range(n)]
    await upstream.started.wait()
    assert cache.stats.coalesced == n - 1
    return tasks


async def test_cache_5_fifty_concurrent_misses_make_one_upstream_call() -> None:
    cache = make_cache()
    upstream = Upstream()
    tasks = await _burst(cache, upstream)
    upstream.release.set()
    results = await asyncio.gather(*tasks)
    assert upstream.calls == 1
    statuses = sorted(r.status for r in results)
    assert statuses == [CacheStatus.HIT] * 49 + [CacheStatus.MISS]
    assert all(r.response.body == b"fresh" for r in results)
    assert sum(r.coalesced for r in results) == 49
    leader = next(r for r in results if r.status is CacheStatus.MISS)
    assert leader.decision is not None
    assert leader.decision.store
    assert cache.stats.snapshot() | {"bytes": 0} == {
        "hits": 49,
        "misses": 1,
        "stale_variant": 0,
        "bypass": 0,
        "stores": 1,
        "evictions": 0,
        "expirations": 0,
        "coalesced": 49,
        "purges": 0,
        "bytes": 0,
        "entries": 1,
    }
    assert not cache._inflight


async def test_cache_5_leader_exception_releases_waiters_to_go_upstream() -> None:
    cache = make_cache()
    upstream = Upstream(hold_all=10)
    upstream.fail_first = ConnectionResetError("instance died")
    tasks = await _burst(cache, upstream, n=10)
    upstream.release.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[0], ConnectionResetError)  # only the leader sees its error
    waiters = [r for r in results[1:] if isinstance(r, FetchResult)]
    assert len(waiters) == 9
    assert all(r.status is CacheStatus.MISS and r.coalesced for r in waiters)
    assert upstream.calls == 10  # the 9 released waiters were upstream at the same time
    assert cache.lookup(URL, H()).status is CacheStatus.HIT  # and one of them stored
    assert not cache._inflight


async def test_cache_5_leader_cancellation_releases_waiters() -> None:
    cache = make_cache()
    upstream = Upstream(hold_all=5)
    tasks = await _burst(cache, upstream, n=5)
    tasks[0].cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError)
    assert all(isinstance(r, FetchResult) and r.status is CacheStatus.MISS for r in results[1:])
    assert upstream.calls == 5
    assert not cache._inflight


async def test_cache_5_cancelled_waiter_does_not_disturb_the_others() -> None:
    cache = make_cache()
    upstream = Upstream()
    tasks = await _burst(cache, upstream, n=5)
    tasks[2].cancel()
    upstream.release.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[2], asyncio.CancelledError)
    ok = [r for r in results if isinstance(r, FetchResult)]
    assert sorted(r.status for r in ok) == ["HIT", "HIT", "HIT", "MISS"]
    assert upstream.calls == 1


async def test_cache_5_uncacheable_leader_releases_waiters_and_is_remembered() -> None:
    clock = FakeClock()
    cache = make_cache(clock, uncacheable_memory=5.0)
    upstream = Upstream(lambda n: response(("Cache-Control", "private"), body=b"user %d" % n))
    tasks = await _burst(cache, upstream, n=4)
    upstream.release.set()
    results = await asyncio.gather(*tasks)
    # The private answer is never shared: each waiter got its own upstream response.
    assert upstream.calls == 4
    assert sorted(r.response.body for r in results) == [b"user 1", b"user 2", b"user 3", b"user 4"]
    assert results[0].decision is not None
    assert results[0].decision.reason == "not stored: Cache-Control private"

    # SPEC CACHE-5: during the memory window new requests skip coalescing entirely.
    held = Upstream(lambda n: response(("Cache-Control", "private")))
    held.release.set()
    concurrent = await asyncio.gather(*(cache.fetch(URL, H(), held.miss()) for _ in range(3)))
    assert [r.status for r in concurrent] == [CacheStatus.BYPASS] * 3
    assert held.calls == 3
    assert cache.stats.coalesced == 3  # only the first burst's waiters

    clock.advance(5.0)  # window over: the URL is tried (and coalesced) again
    assert cache.lookup(URL, H()).status is CacheStatus.MISS


async def test_cache_5_uncacheable_memory_is_per_url_and_cleared_by_a_store() -> None:
    clock = FakeClock()
    cache = make_cache(clock)
    cache.store(URL, H(), response(("Cache-Control", "no-store")))
    assert cache.lookup(URL, H()).status is CacheStatus.BYPASS
    assert cache.lookup(URL + "?other", H()).status is CacheStatus.MISS
    assert cache.store(URL, H(), response(PUBLIC))
    assert cache.lookup(URL, H()).status is CacheStatus.HIT


@pytest.mark.parametrize(
    ("request_headers", "upstream", "method"),
    [
        (H(("Authorization", "x")), response(PUBLIC), "GET"),
        (H(), response(PUBLIC), "POST"),
        (H(("If-None-Match", '"e"')), response(PUBLIC, status=304, body=b""), "GET"),
    ],
    ids=["Authorization", "POST", "304-to-conditional-request"],
)
def test_cache_5_request_made_refusals_are_not_remembered(
    request_headers: CIMultiDict[str], upstream: Served, method: str
) -> None:
    cache = make_cache()
    assert not cache.store(URL, request_headers, upstream, method=method)
    assert cache.lookup(URL, H()).status is CacheStatus.MISS


async def test_cache_5_fetch_hit_and_stale_variant_report_age_and_warning() -> None:
    clock = FakeClock()
    cache = make_cache(clock)
    first = await cache.fetch(URL, GZIP_CLIENT, _returning(app_response(GZIP_CLIENT)))
    assert first.status is CacheStatus.MISS
    clock.advance(7)
    hit = await cache.fetch(URL, GZIP_CLIENT, _unreachable)
    stale = await cache.fetch(URL, PLAIN_CLIENT, _unreachable)
    assert (hit.status, hit.age, hit.warning) == (CacheStatus.HIT, 7, None)
    assert (stale.status, stale.age) == (CacheStatus.STALE_VARIANT, 7)
    assert stale.warning is not None
    assert URL in stale.warning
    assert stale.response.body == GZ


async def test_cache_5_fetch_bypass_and_head_miss_do_not_store() -> None:
    cache = make_cache()
    auth = await cache.fetch(URL, H(("Authorization", "x")), _returning(response(PUBLIC)))
    head = await cache.fetch(URL, H(), _returning(response(PUBLIC, body=b"")), method="HEAD")
    assert (auth.status, head.status) == (CacheStatus.BYPASS, CacheStatus.MISS)
    assert len(cache) == 0


async def test_cache_5_purge_during_fetch_prevents_storing_the_old_answer() -> None:
    cache = make_cache()
    upstream = Upstream()
    task = asyncio.create_task(cache.fetch(URL, H(), upstream.miss()))
    await upstream.started.wait()
    assert cache.purge(url=URL) == 0
    upstream.release.set()
    result = await task
    assert result.decision is not None
    assert result.decision.reason == "not stored: cache purged while fetching"
    assert len(cache) == 0


def _returning(resp: Served) -> Callable[[], Awaitable[Served]]:
    async def call() -> Served:
        return resp

    return call


async def _unreachable() -> Served:
    raise AssertionError("a hit must not go upstream")


def test_cache_repr_names_the_state() -> None:
    cache = make_cache(max_bytes=1000)
    assert repr(cache) == "<EdgeCache entries=0 bytes=0/1000 inflight=0>"
