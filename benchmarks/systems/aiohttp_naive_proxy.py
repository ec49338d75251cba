"""The naive Python yardstick: an aiohttp reverse proxy built the obvious way.

Usage: ``python aiohttp_naive_proxy.py PORT BACKEND_PORT``. A ``web.Application`` with one
catch-all route; each request is forwarded with one shared ``aiohttp.ClientSession`` (keep-alive
pool, no decompression, no redirects), the response read whole and answered with
``web.Response``: what a developer writes in an afternoon, and what gfe_proxy must beat by the
issue's 2.5x. It is not deliberately slow: the session is shared, not made per request, and it
runs on uvloop like gfe_proxy.
"""

from __future__ import annotations

import asyncio
import signal
import sys

import aiohttp
import uvloop
from aiohttp import web

HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
     "upgrade", "host", "content-length"}
)  # fmt: skip


async def serve(port: int, backend: str) -> None:
    session = aiohttp.ClientSession(auto_decompress=False)

    async def proxy(request: web.Request) -> web.Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        body = await request.read()
        async with session.request(
            request.method,
            backend + request.path_qs,
            headers=headers,
            data=body or None,
            allow_redirects=False,
        ) as upstream:
            payload = await upstream.read()
            out = [(k, v) for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP]
            return web.Response(status=upstream.status, body=payload, headers=out)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", proxy)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()
    await session.close()


if __name__ == "__main__":
    uvloop.run(serve(int(sys.argv[1]), f"http://127.0.0.1:{int(sys.argv[2])}"))
