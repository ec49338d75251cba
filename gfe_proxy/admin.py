"""The admin listener (never on the app's port): ``/``, ``/api/status``, ``/metrics``, ``/healthz``.

``/api/status`` is the one source: the status page (``statuspage.html``, a static asset that
polls it every second) and ``/metrics`` both render the same dict, so they never disagree.

``/metrics`` is hand-rolled Prometheus text (format 0.0.4) rather than prometheus-client: every
value already lives in that dict, so exporting is a pure function of it (~80 lines, tested as a
table), with no registry kept in step with instances that come and go, and no new dependency.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import math
import re
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from gfe_proxy import __version__

if TYPE_CHECKING:
    from gfe_proxy.server import Proxy

PROXY_KEY: web.AppKey[Proxy] = web.AppKey("proxy")
STARTED_KEY: web.AppKey[float] = web.AppKey("started")
_METRIC_NAME = re.compile(r"[^a-zA-Z0-9_]")


def status(
    proxy: Proxy, *, now: float | None = None, started: float | None = None
) -> dict[str, Any]:
    """Everything the status page shows, as JSON-ready values."""
    now = time.time() if now is None else now
    return {
        "ready": proxy.ready,
        "version": __version__,
        "time": round(now, 3),
        "uptime_s": round(now - started, 1) if started is not None else None,
        "listeners": proxy.listener_stats(),
        "services": [s.runtime.status() for s in proxy.services.values()],
        "cache": dict(proxy.cache_stats()),
    }


# -- /metrics -----------------------------------------------------------------------------------


def _label(value: object) -> str:
    text = str(value)
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and (math.isinf(value) or math.isnan(value)):
        return "+Inf" if value > 0 else ("-Inf" if value < 0 else "NaN")
    return repr(value) if isinstance(value, float) else str(value)


def _family(
    name: str, kind: str, help_: str, samples: Iterable[tuple[dict[str, object], float]]
) -> list[str]:
    lines = [f"# HELP {name} {help_}", f"# TYPE {name} {kind}"]
    for labels, value in samples:
        inner = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
        lines.append(f"{name}{{{inner}}} {_number(value)}" if inner else f"{name} {_number(value)}")
    return lines


def metric_name(key: str) -> str:
    """``gfe_cache_<key>`` with anything Prometheus does not allow in a name turned into ``_``."""
    return "gfe_cache_" + _METRIC_NAME.sub("_", key).strip("_").lower()


def metrics_text(data: dict[str, Any]) -> str:
    """Prometheus text exposition of a ``status()`` dict."""
    services = data["services"]
    out: list[str] = []
    out += _family("gfe_ready", "gauge", "1 once every listener is up.", [({}, int(data["ready"]))])
    fronts = [li for li in data.get("listeners", []) if li.get("connections") is not None]
    per_listener = (
        ("connections", "gfe_client_connections", "gauge",
         "Open client connections per public listener."),
        ("requests", "gfe_client_requests_total", "counter",
         "Requests answered per public listener (hits, static files, instances, errors)."),
        ("refused", "gfe_client_refused_total", "counter",
         "Malformed or oversized requests refused with 400 before the pipeline."),
    )  # fmt: skip
    for key, name, kind, help_ in per_listener:
        out += _family(
            name,
            kind,
            help_,
            [({"scheme": li["scheme"], "port": li["port"]}, li[key]) for li in fronts],
        )
    states = ("starting", "ready", "draining")
    out += _family(
        "gfe_instances",
        "gauge",
        "Instances by service and lifecycle state (SPEC INST-3).",
        [
            ({"service": s["service"], "state": st}, sum(i["state"] == st for i in s["instances"]))
            for s in services
            for st in states
        ],
    )
    out += _family(
        "gfe_inflight",
        "gauge",
        "Requests in flight on the service's instances.",
        [({"service": s["service"]}, sum(i["inflight"] for i in s["instances"])) for s in services],
    )
    out += _family(
        "gfe_pending",
        "gauge",
        "Requests waiting in the pending queue (SPEC INST-4).",
        [({"service": s["service"]}, s["pending"]) for s in services],
    )
    out += _family(
        "gfe_pending_oldest_seconds",
        "gauge",
        "How long the oldest pending request has waited.",
        [({"service": s["service"]}, s["oldest_wait_s"]) for s in services],
    )
    per_instance = [(s["service"], i) for s in services for i in s["instances"]]
    out += _family(
        "gfe_instance_inflight",
        "gauge",
        "Requests in flight on one instance.",
        [({"service": s, "instance": i["id"]}, i["inflight"]) for s, i in per_instance],
    )
    out += _family(
        "gfe_instance_limit",
        "gauge",
        "max_concurrent_requests of one instance.",
        [({"service": s, "instance": i["id"]}, i["limit"]) for s, i in per_instance],
    )
    out += _family(
        "gfe_instance_memory_bytes",
        "gauge",
        "Memory of one instance's process group (PSS, else RSS).",
        [
            ({"service": s, "instance": i["id"]}, round(i["memory_mb"] * 1024 * 1024))
            for s, i in per_instance
            if i["memory_mb"] is not None
        ],
    )
    counters = (
        ("requests", "gfe_requests_total", "Requests forwarded to instances."),
        ("started", "gfe_instance_starts_total", "Instances started."),
        ("stopped", "gfe_instance_stops_total", "Instances stopped by gfe-proxy."),
        ("crashed", "gfe_instance_crashes_total", "Instances that exited unexpectedly."),
        ("recycled", "gfe_instance_recycles_total", "Instances recycled (deadline, memory)."),
        ("pending_timeouts", "gfe_pending_timeouts_total", "Requests failed by SCALE-3."),
    )
    for key, name, help_ in counters:
        out += _family(
            name,
            "counter",
            help_,
            [({"service": s["service"]}, s["counters"].get(key, 0)) for s in services],
        )
    for key, value in sorted(data.get("cache", {}).items()):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            name = metric_name(str(key))
            # Their meaning is the edge's business: counter only when the name says so.
            kind = "counter" if name.endswith("_total") else "untyped"
            out += _family(name, kind, f"Edge cache / compression: {key}.", [({}, value)])
    return "\n".join(out) + "\n"


# -- handlers -----------------------------------------------------------------------------------


@functools.cache
def status_page() -> bytes:
    """The status page (a self-contained HTML file shipped in the package)."""
    return importlib.resources.files("gfe_proxy").joinpath("statuspage.html").read_bytes()


def _status(request: web.Request) -> dict[str, Any]:
    return status(request.app[PROXY_KEY], started=request.app[STARTED_KEY])


async def _healthz(request: web.Request) -> web.Response:
    proxy = request.app[PROXY_KEY]
    if proxy.ready:
        return web.Response(text="ok\n")
    return web.Response(status=503, text="starting\n")


async def _api_status(request: web.Request) -> web.Response:
    return web.json_response(
        _status(request),
        dumps=functools.partial(json.dumps, default=str),
        headers={"Cache-Control": "no-store"},
    )


async def _metrics(request: web.Request) -> web.Response:
    return web.Response(
        text=metrics_text(_status(request)),
        content_type="text/plain",
        charset="utf-8",
        headers={"Cache-Control": "no-store"},
    )


async def _purge(request: web.Request) -> web.Response:
    """SPEC admin: `POST /api/cache/purge` with `{"url": ...}`, `{"prefix": ...}` or `{}`."""
    raw = await request.read()
    try:
        body = json.loads(raw) if raw.strip() else {}
    except ValueError:
        body = None
    if not isinstance(body, dict) or set(body) - {"url", "prefix"} or len(body) > 1:
        return web.json_response(
            {"error": 'expected {"url": ...}, {"prefix": ...} or {}'}, status=400
        )
    value = next(iter(body.values()), None)
    if value is not None and not isinstance(value, str):
        return web.json_response({"error": "url and prefix are strings"}, status=400)
    purged = request.app[PROXY_KEY].purge_cache(url=body.get("url"), prefix=body.get("prefix"))
    return web.json_response({"purged": purged})


async def _index(request: web.Request) -> web.Response:
    return web.Response(
        body=status_page(),
        content_type="text/html",
        charset="utf-8",
        headers={"Cache-Control": "no-store"},
    )


def admin_app(proxy: Proxy) -> web.Application:
    """The admin aiohttp application for ``proxy``."""
    app = web.Application()
    app[PROXY_KEY] = proxy
    app[STARTED_KEY] = time.time()
    app.router.add_get("/", _index)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/api/status", _api_status)
    app.router.add_get("/metrics", _metrics)
    app.router.add_post("/api/cache/purge", _purge)
    return app
