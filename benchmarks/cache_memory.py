"""Does the edge cache stay within --cache-size? (issue: CACHE-5 memory bound; not a test)

Starts `gfe-proxy serve` on the integration test app with a small cache budget, pushes many
times that budget of distinct cacheable responses through it, and prints the proxy's resident
memory (VmRSS) before and after, next to the budget.

    .venv/bin/python benchmarks/cache_memory.py [--cache-mb 32] [--push-mb 512] [--object-kb 512]
"""

from __future__ import annotations

import argparse
import http.client
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "tests" / "integration" / "apps" / "wsgi"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def get(port: int, path: str) -> tuple[int, str | None]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        r.read()
        return r.status, r.getheader("X-GFE-Cache")
    finally:
        conn.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache-mb", type=int, default=32)
    ap.add_argument("--push-mb", type=int, default=512)
    ap.add_argument("--object-kb", type=int, default=512)
    args = ap.parse_args()
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gfe_proxy",
            "serve",
            str(APP),
            "--port",
            str(port),
            "--admin-port",
            "0",
            "--https-port",
            "0",
            "-q",
            "--cache-size",
            f"{args.cache_mb}MB",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("gfe-proxy: ready"):
                break
        # Warm the code paths once so the baseline includes them.
        for i in range(4):
            get(port, f"/edge/big-cacheable?kb={args.object_kb}&warm={i}")
        base = rss_mb(proc.pid)
        count = args.push_mb * 1024 // args.object_kb
        t0 = time.monotonic()
        peak = base
        for i in range(count):
            status, _ = get(port, f"/edge/big-cacheable?kb={args.object_kb}&i={i}")
            assert status == 200
            if i % 16 == 0:
                peak = max(peak, rss_mb(proc.pid))
        after = rss_mb(proc.pid)
        peak = max(peak, after)
        print(f"budget          {args.cache_mb} MB (--cache-size)")
        print(
            f"pushed          {count} objects x {args.object_kb} KB = {args.push_mb} MB "
            f"in {time.monotonic() - t0:.1f}s"
        )
        print(f"proxy RSS       before {base:.1f} MB, after {after:.1f} MB, peak {peak:.1f} MB")
        print(
            f"growth          {after - base:.1f} MB "
            f"(budget + {after - base - args.cache_mb:+.1f} MB)"
        )
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
