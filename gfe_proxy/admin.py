"""The admin listener: never on the app's port. ``/healthz``, ``/api/status``, ``/metrics``, ``/``.

Metrics are hand-rolled Prometheus text: a few gauges and counters from the same status dict
the JSON API serves, so the two can never disagree, and no extra dependency for ~40 lines.
"""

from __future__ import annotations

import html
import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from gfe_proxy.server import Proxy

PROXY_KEY: web.AppKey[Proxy] = web.AppKey("proxy")


def status(proxy: Proxy) -> dict[str, Any]:
    return {
        "ready": proxy.ready,
        "listeners": [
            {"scheme": scheme, "host": host, "port": port} for scheme, host, port in proxy.listeners
        ],
        "services": [s.runtime.status() for s in proxy.services.values()],
    }


def metrics_text(data: dict[str, Any]) -> str:
    lines = [
        "# HELP gfe_instances Instances by service and state.",
        "# TYPE gfe_instances gauge",
    ]
    for svc in data["services"]:
        states: dict[str, int] = {}
        for inst in svc["instances"]:
            states[inst["state"]] = states.get(inst["state"], 0) + 1
        for state, n in sorted(states.items()):
            lines.append(f'gfe_instances{{service="{svc["service"]}",state="{state}"}} {n}')
    lines += ["# HELP gfe_inflight Requests in flight.", "# TYPE gfe_inflight gauge"]
    for svc in data["services"]:
        total = sum(i["inflight"] for i in svc["instances"])
        lines.append(f'gfe_inflight{{service="{svc["service"]}"}} {total}')
    lines += ["# HELP gfe_pending Requests in the pending queue.", "# TYPE gfe_pending gauge"]
    for svc in data["services"]:
        lines.append(f'gfe_pending{{service="{svc["service"]}"}} {svc["pending"]}')
    lines += [
        "# HELP gfe_requests_total Requests forwarded to instances.",
        "# TYPE gfe_requests_total counter",
    ]
    for svc in data["services"]:
        lines.append(f'gfe_requests_total{{service="{svc["service"]}"}} {svc["requests_total"]}')
    return "\n".join(lines) + "\n"


async def _healthz(request: web.Request) -> web.Response:
    proxy = request.app[PROXY_KEY]
    if proxy.ready:
        return web.Response(text="ok\n")
    return web.Response(status=503, text="starting\n")


async def _api_status(request: web.Request) -> web.Response:
    return web.json_response(status(request.app[PROXY_KEY]))


async def _metrics(request: web.Request) -> web.Response:
    return web.Response(
        text=metrics_text(status(request.app[PROXY_KEY])),
        content_type="text/plain",
        charset="utf-8",
    )


async def _index(request: web.Request) -> web.Response:
    data = status(request.app[PROXY_KEY])
    rows = "".join(
        f"<tr><td>{html.escape(s['service'])}</td><td>{html.escape(i['id'])}</td>"
        f"<td>{i['state']}</td><td>{i['port']}</td><td>{i['pid']}</td>"
        f"<td>{i['inflight']}/{i['limit']}</td><td>{i['served']}</td></tr>"
        for s in data["services"]
        for i in s["instances"]
    )
    page = (
        "<!doctype html><meta charset=utf-8><title>gfe_proxy status</title>"
        "<style>body{font:14px system-ui,sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border-bottom:1px solid #ddd;padding:4px 12px;text-align:left}</style>"
        "<h1>gfe_proxy</h1><table><tr><th>service</th><th>instance</th><th>state</th>"
        f"<th>port</th><th>pid</th><th>in flight</th><th>served</th></tr>{rows}</table>"
        f"<pre>{html.escape(json.dumps(data, indent=2))}</pre>"
    )
    return web.Response(text=page, content_type="text/html")


def admin_app(proxy: Proxy) -> web.Application:
    app = web.Application()
    app[PROXY_KEY] = proxy
    app.router.add_get("/", _index)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/api/status", _api_status)
    app.router.add_get("/metrics", _metrics)
    return app
