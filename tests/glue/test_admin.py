"""The admin listener (gfe_proxy/admin.py) over real HTTP: a Proxy that was built but not
started (no instance processes), served by pytest-aiohttp's test server."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gfe_proxy.admin import admin_app, metric_name, metrics_text, status_page
from gfe_proxy.appyaml import load_app
from gfe_proxy.server import Proxy
from gfe_proxy.settings import Settings
from tests.proxyproc import APPS

Client = TestClient  # type: ignore[type-arg]
MakeClient = Callable[..., Awaitable[Client]]


@pytest.fixture
def proxy() -> Proxy:
    config = load_app(APPS / "scaling" / "auto.yaml")
    return Proxy([config], Settings(cache_size=1024 * 1024))


@pytest.fixture
async def admin(aiohttp_client: MakeClient, proxy: Proxy) -> Client:
    return await aiohttp_client(admin_app(proxy))


async def test_healthz_is_503_until_ready_then_200(admin: Client, proxy: Proxy) -> None:
    r = await admin.get("/healthz")
    assert r.status == 503
    proxy.ready = True
    r = await admin.get("/healthz")
    assert r.status == 200
    assert await r.text() == "ok\n"


async def test_api_status_has_instances_queue_scaling_history_and_cache(admin: Client) -> None:
    r = await admin.get("/api/status")
    assert r.status == 200
    assert r.headers["Cache-Control"] == "no-store"
    data = await r.json()
    assert data["ready"] is False
    assert set(data) >= {"version", "time", "uptime_s", "listeners", "services", "cache"}
    (svc,) = data["services"]
    assert svc["service"] == "default"
    assert svc["scaling"]["kind"] == "automatic"
    assert svc["scaling"]["target_throughput_utilization"] == 0.5
    assert svc["scaling"]["effective_max_instances"] == 8
    assert svc["max_concurrent_requests"] == 4
    assert svc["memory_limit_mb"] == 384  # F1, gen2 (SPEC INST-2)
    assert svc["deadline_s"] == 600.0  # SPEC SCALE-4: automatic
    assert svc["instances"] == []
    assert svc["pending"] == 0
    assert svc["oldest_wait_s"] == 0.0
    assert svc["decisions"] == []
    assert svc["history"] == []
    assert "hits" in data["cache"]


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")


def _check_exposition(text: str) -> dict[str, str]:
    """Every sample belongs to a family announced by HELP and TYPE; returns name -> type."""
    types: dict[str, str] = {}
    helps: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helps.add(line.split()[2])
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            assert kind in ("gauge", "counter", "untyped")
            types[name] = kind
        else:
            m = _SAMPLE.match(line)
            assert m, line
            assert m.group(1) in types, line
            assert m.group(1) in helps, line
            float(m.group(3))
    assert text.endswith("\n")
    return types


async def test_metrics_are_prometheus_text_with_cache_counters(admin: Client) -> None:
    r = await admin.get("/metrics")
    assert r.status == 200
    assert r.headers["Content-Type"].startswith("text/plain")
    text = await r.text()
    types = _check_exposition(text)
    assert types["gfe_requests_total"] == "counter"
    assert types["gfe_instances"] == "gauge"
    assert 'gfe_instances{service="default",state="ready"} 0' in text
    assert "gfe_pending" in types
    assert "gfe_instance_crashes_total" in types
    assert "gfe_cache_hits" in types
    assert "gfe_cache_max_bytes" in types


def _status(**cache: Any) -> dict[str, Any]:
    instance = {"id": "i-1", "state": "ready", "inflight": 3, "limit": 10, "memory_mb": 2.5}
    return {
        "ready": True,
        "services": [
            {
                "service": 'we"ird\\name',
                "instances": [instance, {**instance, "id": "i-2", "memory_mb": None}],
                "pending": 4,
                "oldest_wait_s": 0.25,
                "counters": {"requests": 7, "crashed": 1},
            }
        ],
        "cache": cache,
    }


def test_metrics_text_escapes_labels_and_exports_numeric_cache_keys_only() -> None:
    text = metrics_text(_status(hits=3, ratio=0.5, enabled=True, mode="lru", **{"a-b/c": 2}))
    _check_exposition(text)
    assert 'gfe_inflight{service="we\\"ird\\\\name"} 6' in text
    assert 'gfe_instance_memory_bytes{service="we\\"ird\\\\name",instance="i-1"} 2621440' in text
    assert 'instance="i-2"} ' not in text.split("gfe_instance_memory_bytes")[-1]
    assert 'gfe_pending_oldest_seconds{service="we\\"ird\\\\name"} 0.25' in text
    assert 'gfe_instance_crashes_total{service="we\\"ird\\\\name"} 1' in text
    assert 'gfe_pending_timeouts_total{service="we\\"ird\\\\name"} 0' in text
    assert "gfe_cache_hits 3" in text
    assert "gfe_cache_ratio 0.5" in text
    assert "gfe_cache_a_b_c 2" in text
    assert "gfe_cache_enabled" not in text
    assert "gfe_cache_mode" not in text


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("hits", "gfe_cache_hits"),
        ("compression_bytes_in", "gfe_cache_compression_bytes_in"),
        ("Stale-Variant", "gfe_cache_stale_variant"),
        ("a.b c", "gfe_cache_a_b_c"),
    ],
    ids=["plain", "underscored", "dash-and-case", "dot-and-space"],
)
def test_metric_name_of_a_cache_key(key: str, name: str) -> None:
    assert metric_name(key) == name


async def test_status_page_is_self_contained_html_polling_the_api(admin: Client) -> None:
    r = await admin.get("/")
    assert r.status == 200
    assert r.headers["Content-Type"].startswith("text/html")
    page = await r.text()
    assert page.encode() == status_page()
    assert 'fetch("/api/status"' in page
    assert "setTimeout(poll" in page
    # No CDN, no web font, no external anything: every reference is local.
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)""", page) + re.findall(
        r"url\(([^)]*)\)", page
    )
    assert all(ref.startswith("/") and not ref.startswith("//") for ref in refs), refs
    assert "@import" not in page


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"", 200),
        (b"{}", 200),
        (b'{"url": "http://localhost/x"}', 200),
        (b'{"prefix": "http://localhost/"}', 200),
        (b"not json", 400),
        (b"[]", 400),
        (b'{"url": 1}', 400),
        (b'{"url": "a", "prefix": "b"}', 400),
        (b'{"path": "/x"}', 400),
    ],
    ids=["empty", "all", "url", "prefix", "bad-json", "list", "url-not-str", "both", "unknown"],
)
async def test_cache_purge_api(admin: Client, body: bytes, status: int) -> None:
    r = await admin.post("/api/cache/purge", data=body)
    assert r.status == status
    data = await r.json()
    if status == 200:
        assert data == {"purged": 0}
    else:
        assert "error" in data
