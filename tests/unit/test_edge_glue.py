"""The edge glue: compression applied to one response, hits turned into responses."""

from __future__ import annotations

import gzip

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from gfe_proxy.cache import CachedResponse
from gfe_proxy.edge import Edge
from gfe_proxy.settings import Settings

TEXT = b"hello world " * 100


def edge(**kw: object) -> Edge:
    return Edge(Settings(**kw), clock=lambda: 1000.0)  # type: ignore[arg-type]


async def test_comp_4_encode_sets_encoding_and_weak_etag_without_vary() -> None:
    out = CIMultiDict({"Content-Type": "text/plain", "ETag": '"abc"'})
    body = await edge().encode(
        {"Accept-Encoding": "gzip"}, out, TEXT, status=200, may_compress=True, origin_encoding=None
    )
    assert gzip.decompress(body) == TEXT
    assert out["Content-Encoding"] == "gzip"
    assert out["ETag"] == 'W/"abc"'
    # SPEC CACHE-3: the edge keys on the app's Vary only, so compression adds none.
    assert "Vary" not in out


@pytest.mark.parametrize(
    ("status", "may_compress", "origin"),
    [(206, True, None), (200, False, None), (200, True, "gzip")],
    ids=["partial", "defaulted-type", "app-encoded"],
)
async def test_comp_1_encode_leaves_body_alone(
    status: int, may_compress: bool, origin: str | None
) -> None:
    out = CIMultiDict({"Content-Type": "text/plain"})
    body = await edge().encode(
        {"Accept-Encoding": "gzip"},
        out,
        TEXT,
        status=status,
        may_compress=may_compress,
        origin_encoding=origin,
    )
    assert body == TEXT
    assert "Content-Encoding" not in out


async def test_comp_4_static_variant_is_compressed_once() -> None:
    e = edge()
    for _ in range(3):
        out = CIMultiDict({"Content-Type": "text/css", "ETag": '"v1"'})
        await e.encode(
            {"Accept-Encoding": "gzip"},
            out,
            TEXT,
            status=200,
            may_compress=True,
            origin_encoding=None,
            static_etag='"v1"',
        )
    assert e.compression.compressed == 3
    assert e.compression.static_variant_hits == 2


def entry(headers: dict[str, str], status: int = 200) -> CachedResponse:
    return CachedResponse(
        url="http://h/x",
        range="",
        variant=(),
        status=status,
        headers=CIMultiDictProxy(CIMultiDict(headers)),
        body=b"body",
        stored_at=0.0,
        expires_at=60.0,
        vary=(),
    )


@pytest.mark.parametrize(
    ("inm", "status"),
    [('"a"', 304), ('W/"a"', 304), ('"b", "a"', 304), ("*", 304), ('"b"', 200), (None, 200)],
    ids=["strong", "weak", "list", "star", "other", "none"],
)
def test_cache_4_hit_answers_if_none_match(inm: str | None, status: int) -> None:
    request = {"If-None-Match": inm} if inm else {}
    code, out, send_body = Edge.hit_headers(
        entry({"ETag": '"a"', "Content-Type": "text/plain"}), request
    )
    assert code == status
    assert send_body is (status == 200)
    assert ("Content-Type" in out) is (status == 200)


def test_cache_4_hit_headers_are_a_private_copy() -> None:
    stored = entry({"ETag": '"a"'})
    _, out, _ = Edge.hit_headers(stored, {})
    out["Age"] = "3"
    assert "Age" not in stored.headers


def test_cache_6_stats_name_cache_and_compression_counters() -> None:
    stats = edge(cache_size=1024).stats()
    assert stats["max_bytes"] == 1024
    assert {"hits", "misses", "evictions", "coalesced", "compression_ratio"} <= stats.keys()
