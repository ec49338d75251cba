"""UpstreamClient vs aiohttp.ClientSession against the same tiny backend.

Run: ``.venv/bin/python benchmarks/upstream_client.py [--requests N] [--rounds R]``

The backend is uvicorn (httptools parser, uvloop) serving a raw ASGI app that answers every
request with a 13-byte body; it runs in a subprocess on an ephemeral port handed over as a
listening socket. Each client does small keep-alive GETs, sequentially and from 16 concurrent
workers, under the default asyncio loop and under uvloop. Reported (medians over the rounds):
requests/s, p50 latency and this process's CPU time per request, with UpstreamClient's ratio
to aiohttp measured in the same run. The backend shares the machine's cores: sequential
latency is mostly the backend's round trip and the 16-concurrent rate is capped by the
backend, so the CPU-per-request ratio is the truest measure of the clients themselves.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

BODY = b"Hello, world!"
CONCURRENCY = 16


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The backend: a raw ASGI app answering every request with BODY."""
    if scope["type"] != "http":
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"13")],
        }
    )
    await send({"type": "http.response.body", "body": BODY})


def serve(fd: int) -> None:
    import uvicorn

    # socket(fileno=) detects AF_INET; uvicorn's own --fd assumes AF_UNIX, and the loop then
    # skips TCP_NODELAY, which costs 40 ms of Nagle/delayed-ACK per response.
    sock = socket.socket(fileno=fd)
    config = uvicorn.Config(
        app, http="httptools", loop="uvloop", lifespan="off", access_log=False,
        log_level="warning",
    )  # fmt: skip
    uvicorn.Server(config).run(sockets=[sock])


def start_backend() -> tuple[subprocess.Popen[bytes], int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    port = sock.getsockname()[1]
    fd = sock.fileno()
    os.set_inheritable(fd, True)
    proc = subprocess.Popen([sys.executable, __file__, "--serve-fd", str(fd)], pass_fds=[fd])
    sock.close()  # the child holds its own copy
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # readiness: an HTTP answer, not just a live process
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as probe:
                probe.sendall(b"GET / HTTP/1.1\r\nHost: b\r\n\r\n")
                if probe.recv(1024).startswith(b"HTTP/1.1 200"):
                    return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("backend did not start")


Fetch = Callable[[], Awaitable[bytes]]


Result = tuple[float, float, float]  # requests/s, p50 latency µs, client CPU µs per request


async def measure(fetch: Fetch, total: int, concurrency: int) -> Result:
    """Requests per second, p50 latency and this process's CPU per request, in µs."""
    for _ in range(200):  # warm the pool, the parser, the caches
        assert await fetch() == BODY
    latencies: list[int] = []
    per_worker = total // concurrency

    async def worker() -> None:
        clock = time.perf_counter_ns
        for _ in range(per_worker):
            start = clock()
            await fetch()
            latencies.append(clock() - start)

    started, cpu_started = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    count = len(latencies)
    return count / elapsed, statistics.median(latencies) / 1000, cpu / count * 1e6


async def run_upstream(port: int, total: int, concurrency: int) -> Result:
    from gfe_proxy.upstream import UpstreamClient

    client = UpstreamClient("127.0.0.1", port)
    headers = [("Host", f"127.0.0.1:{port}"), ("Accept", "*/*")]

    async def fetch() -> bytes:
        # A deadline as the proxy always passes one (aiohttp has its default 5-minute one).
        return (await client.request("GET", "/", headers, timeout=600)).body

    try:
        return await measure(fetch, total, concurrency)
    finally:
        await client.close()


async def run_aiohttp(port: int, total: int, concurrency: int) -> Result:
    import aiohttp

    url = f"http://127.0.0.1:{port}/"
    async with aiohttp.ClientSession(auto_decompress=False) as session:

        async def fetch() -> bytes:
            async with session.get(url, allow_redirects=False) as response:
                return await response.read()

        return await measure(fetch, total, concurrency)


def run_in_loop(loop_name: str, coro: Awaitable[Result]) -> Result:
    if loop_name == "uvloop":
        import uvloop

        factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    else:
        factory = asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000, help="per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="median over this many rounds")
    parser.add_argument("--serve-fd", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_fd is not None:
        serve(args.serve_fd)
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

    proc, port = start_backend()
    try:
        print(
            f"# {platform.machine()} {os.cpu_count()} cpus, Python {platform.python_version()},"
            f" {args.requests} requests x {args.rounds} rounds, body {len(BODY)} B"
        )
        print(
            f"{'':23} {'requests/s':^24} {'p50 latency':^19} {'client CPU per request':^29}\n"
            f"{'loop':8} {'mode':14} {'ours':>8} {'aiohttp':>8} {'ratio':>6}"
            f" {'ours':>9} {'aiohttp':>9} {'ours':>9} {'aiohttp':>9} {'ratio':>6}"
        )
        for loop_name in ("asyncio", "uvloop"):
            for mode, concurrency in (("sequential", 1), ("concurrent-16", CONCURRENCY)):
                ours: list[Result] = []
                theirs: list[Result] = []
                for _ in range(args.rounds):  # interleaved, so drift hits both alike
                    ours.append(
                        run_in_loop(loop_name, run_upstream(port, args.requests, concurrency))
                    )
                    theirs.append(
                        run_in_loop(loop_name, run_aiohttp(port, args.requests, concurrency))
                    )
                rps_u, p50_u, cpu_u = (statistics.median(col) for col in zip(*ours, strict=True))
                rps_a, p50_a, cpu_a = (statistics.median(col) for col in zip(*theirs, strict=True))
                print(
                    f"{loop_name:8} {mode:14} {rps_u:8.0f} {rps_a:8.0f} {rps_u / rps_a:5.2f}x"
                    f" {p50_u:7.0f}µs {p50_a:7.0f}µs"
                    f" {cpu_u:7.1f}µs {cpu_a:7.1f}µs {cpu_a / cpu_u:5.2f}x"
                )
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
