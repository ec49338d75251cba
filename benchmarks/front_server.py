"""The front server alone: aiohttp's ``web.Server`` vs gfe_proxy's ``front.FrontServer``.

Run from the repository root: ``.venv/bin/python benchmarks/front_server.py [--seconds S]``

Why gfe_proxy's public listeners use their own protocol (front.py) rather than aiohttp's server:
three servers answer every request with the same 48-byte constant, under uvloop, each in its
own process on an ephemeral port, driven in turn by wrk (1 thread, c=16 and c=1, warm-up first):

- ``aiohttp``: ``aiohttp.web.Server`` with a handler returning ``web.Response`` (the
  ``aiohttp-ceiling`` system of ``make bench``);
- ``front``: ``gfe_proxy.front.FrontServer`` with a handler returning a prebuilt ``wire.Reply``
  (what gfe_proxy's pipeline runs on: one task per request, the Request object, the queue);
- ``httptools``: a bare ``asyncio.Protocol`` writing the answer from ``on_message_complete``
  (the floor: parsing and one write, nothing else).

Printed: requests/s and the server process's CPU time per request (utime + stime from
/proc/PID/stat over the measured window), each with its ratio to aiohttp in the same run.
CPU per request is the steadier measure: wrk shares the two cores.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BODY = b"Hello, world! The same constant from every server.\n"[:48]
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 48\r\n\r\n"
SERVERS = ("aiohttp", "front", "httptools")
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def serve(kind: str, fd: int) -> None:
    """Child process: serve ``kind`` on the listening socket ``fd`` until killed."""
    import asyncio

    import uvloop

    sock = socket.socket(fileno=fd)
    sock.setblocking(False)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        if kind == "aiohttp":
            from aiohttp import web

            async def handler(request: web.BaseRequest) -> web.Response:
                return web.Response(body=BODY, content_type="text/plain")

            runner = web.ServerRunner(web.Server(handler), access_log=None)
            await runner.setup()
            await web.SockSite(runner, sock).start()
        elif kind == "front":
            from gfe_proxy.front import FrontServer, Request
            from gfe_proxy.wire import Reply

            reply = Reply(200, HEAD, BODY, len(BODY))

            async def answer(request: Request) -> Reply:
                return reply

            await FrontServer.start(answer, sock)
        else:
            import httptools

            wire = (
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 48\r\n\r\n" + BODY
            )

            class Bare(asyncio.Protocol):
                def __init__(self) -> None:
                    self.parser = httptools.HttpRequestParser(self)

                def connection_made(self, transport: asyncio.BaseTransport) -> None:
                    self.transport = transport

                def data_received(self, data: bytes) -> None:
                    self.parser.feed_data(data)

                def on_message_complete(self) -> None:
                    self.transport.write(wire)  # type: ignore[attr-defined]

            await loop.create_server(Bare, sock=sock)
        await asyncio.Event().wait()

    uvloop.run(main())


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime, stime


def wrk(port: int, connections: int, seconds: int) -> tuple[int, float]:
    """(requests, requests/s) of one wrk run."""
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", f"http://127.0.0.1:{port}/"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return requests, rate


def measure(kind: str, connections: int, seconds: int) -> tuple[float, float]:
    """(requests/s, CPU µs per request) of one server under wrk."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", kind, "--fd", str(sock.fileno())],
        pass_fds=(sock.fileno(),),
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    sock.close()
    try:
        deadline = time.monotonic() + 30
        while True:  # ready once it answers
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as probe:
                    probe.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                    if probe.recv(64).startswith(b"HTTP/1.1 200"):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{kind} server did not start")
            time.sleep(0.05)
        wrk(port, connections, 1)  # warm-up
        before = cpu_seconds(proc.pid)
        requests, rate = wrk(port, connections, seconds)
        used = cpu_seconds(proc.pid) - before
        return rate, used / requests * 1e6
    finally:
        proc.kill()
        proc.wait()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=int, default=4, help="measured seconds per cell")
    p.add_argument("--rounds", type=int, default=2, help="rounds; the best rate is kept")
    p.add_argument("--serve", choices=SERVERS, help=argparse.SUPPRESS)
    p.add_argument("--fd", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        serve(args.serve, args.fd)
        return
    if shutil.which("wrk") is None:
        sys.exit("front_server: wrk is missing (make bench installs it)")
    print(f"front servers, constant {len(BODY)}-byte answer, wrk 1 thread, {args.seconds:g} s")
    print()
    print("| server | c | req/s | × aiohttp | CPU µs/request | × aiohttp |")
    print("|---|---:|---:|---:|---:|---:|")
    for connections in (16, 1):
        best: dict[str, tuple[float, float]] = {}
        for _ in range(args.rounds):
            for kind in SERVERS:
                rate, cpu = measure(kind, connections, args.seconds)
                if kind not in best or rate > best[kind][0]:
                    best[kind] = (rate, cpu)
        base_rate, base_cpu = best["aiohttp"]
        for kind in SERVERS:
            rate, cpu = best[kind]
            print(
                f"| {kind} | {connections} | {rate:,.0f} | {rate / base_rate:.2f}× "
                f"| {cpu:.1f} | {cpu / base_cpu:.2f}× |"
            )


if __name__ == "__main__":
    main()
