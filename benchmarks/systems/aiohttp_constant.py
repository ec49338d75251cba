"""The aiohttp ceiling: a bare ``aiohttp.web.Server`` answering constants from memory.

Usage: ``python aiohttp_constant.py PORT``. For each benchmark path it answers the same bytes
the backend (or the static file) would, prebuilt at start; with ``Accept-Encoding: gzip`` the
text bodies are answered pre-gzipped at gfe_proxy's dynamic level (4). No routing table, no
middleware, no upstream: what is left is aiohttp's HTTP parser, its response writer and the
event loop (uvloop, as gfe_proxy uses), so no aiohttp-based front can go faster than this.
"""

from __future__ import annotations

import asyncio
import gzip
import signal
import sys
from pathlib import Path

import uvloop
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "apps"))
from main import ROUTES, STATIC_DIR, STATIC_FILES  # the backend's own bytes

GZIP_LEVEL = 4  # gfe_proxy.compression.DYNAMIC_LEVELS["gzip"]


def _bodies() -> dict[str, tuple[bytes, bytes | None]]:
    """path -> (plain body, gzipped body or None when the path is not text)."""
    out: dict[str, tuple[bytes, bytes | None]] = {}
    for path, (_, body) in ROUTES.items():
        out[path] = (body, gzip.compress(body, GZIP_LEVEL, mtime=0))
    for path in STATIC_FILES:
        body = (STATIC_DIR / path.rsplit("/", 1)[1]).read_bytes()
        out[path] = (body, None)  # the static scenarios send no Accept-Encoding
    return out


BODIES = _bodies()
_TEXT = "text/plain; charset=utf-8"


async def handle(request: web.BaseRequest) -> web.Response:
    found = BODIES.get(request.path)
    if found is None:
        return web.Response(status=404, text="not found")
    plain, gzipped = found
    if gzipped is not None and "gzip" in request.headers.get("Accept-Encoding", ""):
        return web.Response(
            body=gzipped,
            headers={"Content-Type": _TEXT, "Content-Encoding": "gzip", "Vary": "Accept-Encoding"},
        )
    return web.Response(body=plain, headers={"Content-Type": _TEXT})


async def serve(port: int) -> None:
    runner = web.ServerRunner(web.Server(handle), handle_signals=False, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


if __name__ == "__main__":
    uvloop.run(serve(int(sys.argv[1])))
