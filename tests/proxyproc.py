"""Test support: a real `gfe-proxy serve` subprocess on ephemeral ports, and raw HTTP."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPS = Path(__file__).resolve().parent / "integration" / "apps"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Response:
    status: int
    reason: str
    headers: http.client.HTTPMessage
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def json(self) -> dict:  # type: ignore[type-arg]
        return json.loads(self.body)  # type: ignore[no-any-return]


@dataclass
class RunningProxy:
    proc: subprocess.Popen[bytes]
    port: int
    admin_port: int
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    pumps: list[threading.Thread] = field(default_factory=list)
    https_port: int = 0  # 0: HTTPS disabled (start_proxy(https=False))
    cert: Path | None = None  # the HTTPS listener's certificate, trusted by request(https=True)
    cache_home: Path | None = None  # the XDG_CACHE_HOME this proxy was given (removed at stop)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def https_url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts this proxy's (self-signed) certificate and no other."""
        assert self.cert is not None, "start the proxy with https=True"
        return ssl.create_default_context(cafile=str(self.cert))

    def request(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | list[tuple[str, str]] | None = None,
        body: bytes | None = None,
        port: int | None = None,
        timeout: float = 30,
        https: bool = False,
    ) -> Response:
        conn: http.client.HTTPConnection
        if https:
            conn = http.client.HTTPSConnection(
                "127.0.0.1", port or self.https_port, timeout=timeout, context=self.ssl_context()
            )
        else:
            conn = http.client.HTTPConnection("127.0.0.1", port or self.port, timeout=timeout)
        try:
            items = list(headers.items() if isinstance(headers, dict) else (headers or []))
            has_host = any(k.lower() == "host" for k, _ in items)
            conn.putrequest(method, path, skip_host=has_host, skip_accept_encoding=True)
            for k, v in items:
                conn.putheader(k, v)
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            r = conn.getresponse()
            data = r.read()
            return Response(r.status, r.reason, r.headers, data)
        finally:
            conn.close()

    def get(self, path: str, **kw: object) -> Response:
        return self.request("GET", path, **kw)  # type: ignore[arg-type]

    def admin(self, path: str) -> Response:
        return self.request("GET", path, port=self.admin_port)

    def status(self) -> dict:  # type: ignore[type-arg]
        return self.admin("/api/status").json()

    def instance_pids(self) -> list[int]:
        return [i["pid"] for s in self.status()["services"] for i in s["instances"] if i["pid"]]

    def wait_for(self, predicate, timeout: float = 30.0, what: str = "condition"):  # type: ignore[no-untyped-def]
        """Poll ``predicate`` until it returns a truthy value (a poll with a deadline)."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.05)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        finally:
            self.close_pipes()
            if self.cache_home is not None:
                shutil.rmtree(self.cache_home, ignore_errors=True)

    def close_pipes(self) -> None:
        for t in self.pumps:
            t.join(timeout=10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def _pump(stream, sink: list[str], ready: threading.Event | None) -> None:  # type: ignore[no-untyped-def]
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", "replace").rstrip("\n")
        sink.append(line)
        if ready is not None and line.startswith("gfe-proxy: ready"):
            ready.set()
    if ready is not None:
        ready.set()


def start_proxy(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60.0, https: bool = False
) -> RunningProxy:
    """Start `python -m gfe_proxy serve ARGS` and wait for its ready line.

    ``https=True`` also opens the HTTPS listener on a free port; its self-signed certificate is
    made in a fresh XDG_CACHE_HOME (never the user's ~/.cache), read back from the start-up
    line, and trusted by ``request(..., https=True)``.
    """
    port, admin = free_port(), free_port()
    https_port = free_port() if https else 0
    cache_home = None
    if "XDG_CACHE_HOME" not in (env or {}):
        cache_home = Path(tempfile.mkdtemp(prefix="gfe-proxy-test-cache-"))
        env = {**(env or {}), "XDG_CACHE_HOME": str(cache_home)}
    cmd = [
        sys.executable,
        "-m",
        "gfe_proxy",
        "serve",
        *args,
        "--port",
        str(port),
        "--admin-port",
        str(admin),
        "--https-port",
        str(https_port),
    ]
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    running = RunningProxy(
        proc=proc, port=port, admin_port=admin, https_port=https_port, cache_home=cache_home
    )
    ready = threading.Event()
    running.pumps = [
        threading.Thread(target=_pump, args=(proc.stdout, running.stdout, ready), daemon=True),
        threading.Thread(target=_pump, args=(proc.stderr, running.stderr, None), daemon=True),
    ]
    for t in running.pumps:
        t.start()
    if not ready.wait(timeout) or proc.poll() is not None:
        proc.kill()
        proc.wait()
        running.close_pipes()
        if cache_home is not None:
            shutil.rmtree(cache_home, ignore_errors=True)
        raise AssertionError(
            "gfe-proxy did not become ready:\n" + "\n".join(running.stdout + running.stderr)
        )
    if https:
        found = [m for line in running.stdout if (m := _CERT_LINE.match(line))]
        assert found, "no certificate line:\n" + "\n".join(running.stdout)
        running.cert = Path(found[0].group(1))
    return running


_CERT_LINE = re.compile(r"gfe-proxy: https certificate (\S+)")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False
