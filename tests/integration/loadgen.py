"""Test support for the scaling tier: closed-loop clients and /api/status probes."""

from __future__ import annotations

import http.client
import threading
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from tests.proxyproc import RunningProxy


@dataclass
class Load:
    """``clients`` threads, each sending ``path`` again as soon as its last answer arrived,
    until the ``with`` block ends. Every answer's (status, body) is kept.

    Each request carries a unique ``n=`` query parameter: the edge cache coalesces concurrent
    misses for one URL (SPEC CACHE-5), which would hide the load from the instances."""

    proxy: RunningProxy
    path: str
    clients: int
    host: str | None = None
    results: list[tuple[int, bytes]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Load:
        for n in range(self.clients):
            t = threading.Thread(target=self._client, name=f"load-{n}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=60)

    def _client(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.proxy.port, timeout=60)
        headers = {"Host": self.host} if self.host else {}
        name = threading.current_thread().name
        sep = "&" if "?" in self.path else "?"
        n = 0
        while not self._stop.is_set():
            n += 1
            try:
                conn.request("GET", f"{self.path}{sep}n={name}-{n}", headers=headers)
                r = conn.getresponse()
                self.results.append((r.status, r.read()))
            except (OSError, http.client.HTTPException) as e:
                self.errors.append(repr(e))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.proxy.port, timeout=60)
        conn.close()

    @property
    def failures(self) -> list[tuple[int, bytes]]:
        return [r for r in self.results if r[0] != 200]


def service(proxy: RunningProxy, name: str | None = None) -> dict[str, Any]:
    """One service's entry of /api/status (the only one when ``name`` is None)."""
    services = proxy.status()["services"]
    if name is None:
        assert len(services) == 1
        return services[0]  # type: ignore[no-any-return]
    return next(s for s in services if s["service"] == name)  # type: ignore[no-any-return]


def count(svc: dict[str, Any], *states: str) -> int:
    """Instances of ``svc`` in any of ``states``."""
    return sum(1 for i in svc["instances"] if i["state"] in states)


def live(svc: dict[str, Any]) -> int:
    """READY + STARTING instances: what scaling.decide counts."""
    return count(svc, "ready", "starting")


def unique(path: str) -> str:
    """``path`` with a query parameter no other request had (no CACHE-5 coalescing)."""
    with _lock:
        _counter[0] += 1
        n = _counter[0]
    return f"{path}{'&' if '?' in path else '?'}u={n}"


_lock = threading.Lock()
_counter = [0]


def in_background(fn: Any, *args: Any) -> tuple[threading.Thread, list[Any]]:
    """Run ``fn(*args)`` in a thread; its return value lands in the returned list."""
    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(fn(*args)), daemon=True)
    t.start()
    return t, out
