"""Integration tier for the edge: compression and the GFE cache over real HTTP (COMP-*, CACHE-*)."""

from __future__ import annotations

import gzip
import threading
import uuid

import brotli
import pytest

from tests.proxyproc import APPS, RunningProxy, pid_alive

pytestmark = pytest.mark.integration

GZIP = {"Accept-Encoding": "gzip"}


@pytest.fixture(scope="module")
def proxy(proxy_factory) -> RunningProxy:  # type: ignore[no-untyped-def]
    return proxy_factory(str(APPS / "wsgi"), "--compression", "br,gzip")  # type: ignore[no-any-return]


def unique(path: str) -> str:
    sep = "&" if "?" in path else "?"
    return f"{path}{sep}u={uuid.uuid4().hex}"


def render(body: bytes) -> bytes:
    return body.split(b"\n", 1)[0]


# -- compression ----------------------------------------------------------------------------


def test_comp_1_text_is_gzipped_with_correct_length(proxy: RunningProxy) -> None:
    r = proxy.get(unique("/edge/private"), headers=GZIP)
    assert r.header("Content-Encoding") == "gzip"
    assert r.header("Content-Length") == str(len(r.body))
    assert gzip.decompress(r.body).startswith(b"render ")


@pytest.mark.parametrize(
    "accept",
    ["gzip;q=0", "identity", "*", "br;q=0, gzip;q=0"],
    ids=["q0", "identity", "star", "all-q0"],
)
def test_comp_1_refusals_get_identity(proxy: RunningProxy, accept: str) -> None:
    r = proxy.get(unique("/edge/private"), headers={"Accept-Encoding": accept})
    assert r.header("Content-Encoding") is None
    assert r.body.startswith(b"render ")


def test_comp_1_no_accept_encoding_gets_identity(proxy: RunningProxy) -> None:
    assert proxy.get(unique("/edge/private")).header("Content-Encoding") is None


def test_comp_1_binary_type_is_not_compressed(proxy: RunningProxy) -> None:
    assert proxy.get("/edge/png", headers=GZIP).header("Content-Encoding") is None


def test_resp_4_app_compressed_body_is_not_compressed_again(proxy: RunningProxy) -> None:
    r = proxy.get("/edge/app-gzip", headers=GZIP)
    assert r.header("Content-Encoding") == "gzip"
    assert gzip.decompress(r.body).startswith(b"render ")  # exactly one layer


def test_comp_3_brotli_when_enabled_and_preferred(proxy: RunningProxy) -> None:
    r = proxy.get(unique("/edge/private"), headers={"Accept-Encoding": "gzip, br"})
    assert r.header("Content-Encoding") == "br"
    assert brotli.decompress(r.body).startswith(b"render ")


def test_comp_3_brotli_never_sent_unasked(proxy: RunningProxy) -> None:
    r = proxy.get(unique("/edge/private"), headers=GZIP)
    assert r.header("Content-Encoding") == "gzip"


def test_comp_4_static_etag_becomes_weak(proxy: RunningProxy) -> None:
    r = proxy.get("/static/css/site.css", headers={"Accept-Encoding": "gzip", "X-Nc": "1"})
    assert r.header("Content-Encoding") in ("gzip", None)
    if r.header("Content-Encoding") == "gzip":
        assert (r.header("ETag") or "").startswith('W/"')


# -- cache ----------------------------------------------------------------------------------


def test_cache_4_second_request_is_a_hit_with_age(proxy: RunningProxy) -> None:
    url = unique("/edge/cacheable")
    first = proxy.get(url)
    second = proxy.get(url)
    assert first.header("X-GFE-Cache") == "MISS"
    assert second.header("X-GFE-Cache") == "HIT"
    assert second.header("Age") is not None
    assert render(second.body) == render(first.body)  # the app rendered once


def test_cache_1_query_is_part_of_the_key(proxy: RunningProxy) -> None:
    url = unique("/edge/cacheable")
    proxy.get(url)
    assert proxy.get(url + "&other=1").header("X-GFE-Cache") == "MISS"


def test_cache_3_without_vary_one_entry_serves_every_client(proxy: RunningProxy) -> None:
    # The seed documents' worked example: the gzipped copy reaches a client without gzip.
    url = unique("/edge/cacheable")
    first = proxy.get(url, headers=GZIP)
    assert first.header("Content-Encoding") == "gzip"
    second = proxy.get(url)
    assert second.header("X-GFE-Cache") == "STALE-VARIANT"
    assert second.header("Content-Encoding") == "gzip"
    assert second.body == first.body
    path = url.split("?", 1)[0]
    proxy.wait_for(
        lambda: any(path in line and "WARNING" in line for line in proxy.stderr),
        what="the CACHE-3 warning naming the URL",
    )


def test_cache_3_vary_accept_encoding_keeps_two_entries(proxy: RunningProxy) -> None:
    url = unique("/edge/cacheable?vary=Accept-Encoding")
    zipped = proxy.get(url, headers=GZIP)
    plain = proxy.get(url)
    assert zipped.header("Content-Encoding") == "gzip"
    assert plain.header("Content-Encoding") is None
    assert plain.header("X-GFE-Cache") == "MISS"
    again = proxy.get(url, headers=GZIP)
    assert again.header("X-GFE-Cache") == "HIT"
    assert again.header("Content-Encoding") == "gzip"
    assert proxy.get(url).header("X-GFE-Cache") == "HIT"


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/edge/cacheable", {"Authorization": "Bearer x"}),
        ("/edge/cookie", {}),
        ("/edge/private", {}),
        ("/edge/cacheable?vary=User-Agent", {}),
        ("/edge/cacheable?vary=*", {}),
    ],
    ids=["authorization", "set-cookie", "private", "vary-user-agent", "vary-star"],
)
def test_cache_2_not_stored(proxy: RunningProxy, path: str, headers: dict[str, str]) -> None:
    url = unique(path)
    first = proxy.get(url, headers=headers)
    second = proxy.get(url, headers=headers)
    assert second.header("X-GFE-Cache") in ("MISS", "BYPASS")
    assert render(second.body) != render(first.body)  # the app rendered twice


def test_cache_4_static_files_go_through_the_cache(proxy: RunningProxy) -> None:
    url = unique("/img/dot.png")
    proxy.get(url)
    r = proxy.get(url)
    assert r.header("X-GFE-Cache") == "HIT"
    assert r.body.startswith(b"\x89PNG")


def test_cache_5_concurrent_misses_make_one_upstream_request(proxy: RunningProxy) -> None:
    url = unique("/edge/cacheable?sleep=0.5")
    results: list[bytes] = []
    lock = threading.Lock()

    def fetch() -> None:
        r = proxy.get(url)
        with lock:
            results.append(render(r.body))

    threads = [threading.Thread(target=fetch) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(results) == 20
    assert len(set(results)) == 1  # every client got the one rendering


def test_cache_4_head_is_answered_from_a_stored_get(proxy: RunningProxy) -> None:
    url = unique("/edge/cacheable")
    body = proxy.get(url).body
    r = proxy.request("HEAD", url)
    assert r.header("X-GFE-Cache") == "HIT"
    assert r.header("Content-Length") == str(len(body))
    assert r.body == b""


def test_cache_5_bytes_stay_within_cache_size(proxy_factory) -> None:  # type: ignore[no-untyped-def]
    small = proxy_factory(str(APPS / "wsgi"), "--cache-size", "2MB")
    for i in range(12):  # 12 x 512 KB through a 2 MB cache
        r = small.get(f"/edge/big-cacheable?kb=512&i={i}")
        assert r.status == 200
    last = small.get("/edge/big-cacheable?kb=512&i=11")
    assert last.header("X-GFE-Cache") == "HIT"
    first = small.get("/edge/big-cacheable?kb=512&i=0")
    assert first.header("X-GFE-Cache") == "MISS"  # evicted, least recently used
    assert all(pid_alive(pid) for pid in small.instance_pids())


def test_cache_6_cache_disabled_says_bypass(proxy_factory) -> None:  # type: ignore[no-untyped-def]
    off = proxy_factory(str(APPS / "wsgi"), "--cache-size", "0")
    url = unique("/edge/cacheable")
    off.get(url)
    assert off.get(url).header("X-GFE-Cache") == "BYPASS"


def test_cache_6_header_can_be_turned_off(proxy_factory) -> None:  # type: ignore[no-untyped-def]
    quiet = proxy_factory(str(APPS / "wsgi"), "--no-cache-header")
    url = unique("/edge/cacheable")
    quiet.get(url)
    r = quiet.get(url)
    assert r.header("X-GFE-Cache") is None
    assert r.header("Age") is not None  # still a hit
