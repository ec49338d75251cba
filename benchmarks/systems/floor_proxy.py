"""The floor of gfe_proxy's design: its own front and upstream client, and no App Engine rules.

Usage: ``python floor_proxy.py PORT BACKEND_PORT`` (from the repository root, or with it on
``PYTHONPATH``). ``gfe_proxy.front.FrontServer`` takes each request and
``gfe_proxy.upstream.UpstreamClient`` forwards it over a keep-alive connection (it sets the
framing); the answer goes back through ``gfe_proxy.wire.response`` (it sets Content-Length).
Only hop-by-hop headers (with those the ``Connection`` header names) are dropped: no routing, no
cache, no header rules, no instance pool, no access log. Whatever gfe_proxy spends beyond this
is the price of being App Engine; what this reaches is the most any proxy built from these two
parts could reach on the machine (``make bench``'s system ``floor``).
"""

from __future__ import annotations

import asyncio
import signal
import socket
import sys

import uvloop
from multidict import CIMultiDict

from gfe_proxy.front import FrontServer, Request
from gfe_proxy.headers import hop_by_hop
from gfe_proxy.upstream import UpstreamClient
from gfe_proxy.wire import Reply, response


async def serve(port: int, backend_port: int) -> None:
    client = UpstreamClient("127.0.0.1", backend_port)

    async def proxy(request: Request) -> Reply:
        drop = hop_by_hop(request.headers)
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in drop]
        body = await request.read() if request.body_exists else b""
        answer = await client.request(request.method, request.raw_path, headers, body)
        drop = hop_by_hop(answer.headers)
        out = CIMultiDict((k, v) for k, v in answer.headers.items() if k.lower() not in drop)
        return response(request, answer.status, answer.reason, out, answer.body)

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(1024)
    sock.setblocking(False)
    front = await FrontServer.start(proxy, sock)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await front.close(grace=1.0)
    await client.close()


if __name__ == "__main__":
    uvloop.run(serve(int(sys.argv[1]), int(sys.argv[2])))
