"""Instances as real processes: spawn, probe, stop, replace; and request dispatch through the pool.

The pure ``Pool`` decides which instance serves a request and who waits; this module carries
those decisions out with futures and processes (SPEC INST-1…INST-4, SCALE-3, SCALE-4).
Every background task is owned by a ``TaskGroup``-like ``Tasks`` and cancelled on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import re
import secrets
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any

from gfe_proxy import launch
from gfe_proxy.config import AppConfig, BasicScaling, ManualScaling
from gfe_proxy.errors import (
    DeadlineExceeded,
    InstanceUnavailable,
    PendingTimeout,
    StartupError,
    UpstreamError,
)
from gfe_proxy.pool import Event, Pool, State
from gfe_proxy.settings import Settings
from gfe_proxy.upstream import UpstreamClient, UpstreamResponse

log = logging.getLogger("gfe_proxy.instances")

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_PROBE_PATH = "/_ah/health"
_PR_SET_PDEATHSIG = 1
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b(:|$)")


def free_port(host: str = "127.0.0.1") -> int:
    """An ephemeral port on ``host`` that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    # Linux: the instance gets SIGTERM if gfe-proxy itself is killed, so no orphans even then.
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Tasks:
    """Owner of background tasks: keeps references, names them, cancels them on close."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s failed: %r", task.get_name(), task.exception())

    async def close(self) -> None:
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class InstanceProcess:
    """One backend server process on 127.0.0.1:port, in its own process group."""

    def __init__(self, *, instance_id: str, service: str, spec: launch.Launch, port: int) -> None:
        self.id = instance_id
        self.service = service
        self.spec = spec
        self.port = port
        self.proc: asyncio.subprocess.Process | None = None
        self.stderr_tail: deque[str] = deque(maxlen=60)
        self.stopping = False
        self._readers: list[asyncio.Task[None]] = []

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode if self.proc else None

    def __repr__(self) -> str:
        return f"<InstanceProcess {self.service}/{self.id} port={self.port} pid={self.pid}>"

    async def spawn(self) -> None:
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *self.spec.argv,
                cwd=str(self.spec.cwd),
                env=self.spec.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        except FileNotFoundError:
            raise StartupError(
                f"service {self.service}: command not found: {self.spec.argv[0]!r}"
            ) from None
        except PermissionError:
            raise StartupError(
                f"service {self.service}: command not executable: {self.spec.argv[0]!r}"
            ) from None
        assert self.proc.stdout is not None
        assert self.proc.stderr is not None
        self._readers = [
            asyncio.get_running_loop().create_task(
                self._pipe(self.proc.stdout, keep=False), name=f"{self.id}-stdout"
            ),
            asyncio.get_running_loop().create_task(
                self._pipe(self.proc.stderr, keep=True), name=f"{self.id}-stderr"
            ),
        ]

    async def _pipe(self, stream: asyncio.StreamReader, *, keep: bool) -> None:
        # SPEC INST-3: instance stdout/stderr go to our log, prefixed with the instance id.
        while True:
            try:
                line = await stream.readline()
            except (ValueError, asyncio.LimitOverrunError):
                continue  # an overlong line: skip it rather than stop logging
            if not line:
                return
            text = line.decode("utf-8", "replace").rstrip()
            if keep:
                self.stderr_tail.append(text)
            log.info("[%s/%s] %s", self.service, self.id, text)

    async def wait_ready(self, limit: float) -> None:
        """Poll until the port answers HTTP (any status line); StartupError if it exits."""
        assert self.proc is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while True:
            if self.proc.returncode is not None:
                await self._drain_readers()
                raise StartupError(self._exit_reason("before answering HTTP"))
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise StartupError(
                    f"service {self.service}: instance {self.id} did not answer HTTP on port "
                    f"{self.port} within {limit:g}s"
                )
            try:
                if await asyncio.wait_for(self._probe(), timeout=remaining):
                    return
            except (TimeoutError, OSError):
                pass
            # A poll with a deadline: the port is not open yet.
            await asyncio.sleep(0.05)

    async def _probe(self) -> bool:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            writer.write(
                f"GET {_PROBE_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            line = await reader.readline()
            return line.startswith(b"HTTP/")
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _drain_readers(self) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.gather(*self._readers, return_exceptions=True), 1.0)

    def _exit_reason(self, when: str) -> str:
        code = self.returncode
        # The most telling line: the last exception line of a traceback, else the last line.
        lines = [line.strip() for line in self.stderr_tail if line.strip()]
        last = next(
            (line for line in reversed(lines) if _EXCEPTION_LINE.match(line)),
            lines[-1] if lines else "",
        )
        how = (
            f"was killed by signal {-code}"
            if code is not None and code < 0
            else f"exited with code {code}"
        )
        return f"service {self.service}: instance {self.id} {how} {when}" + (
            f": {last.strip()}" if last else ""
        )

    async def wait(self) -> int:
        assert self.proc is not None
        code = await self.proc.wait()
        await self._drain_readers()
        return code

    async def stop(self, grace: float) -> None:
        """SIGTERM to the whole process group, SIGKILL after ``grace`` seconds."""
        self.stopping = True
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        self._signal_group(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout=grace)
        except TimeoutError:
            log.warning("[%s/%s] did not stop within %gs; killing", self.service, self.id, grace)
            self._signal_group(signal.SIGKILL)
            await proc.wait()
        # The leader is gone; make sure nothing it started outlives it.
        self._signal_group(signal.SIGKILL)
        await self._drain_readers()

    def kill(self) -> None:
        self._signal_group(signal.SIGKILL)

    def _signal_group(self, sig: signal.Signals) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)


@dataclass(slots=True)
class Instance:
    """An instance process with its keep-alive upstream client."""

    id: str
    process: InstanceProcess
    client: UpstreamClient
    started_at: float

    def __repr__(self) -> str:
        return f"<Instance {self.id} port={self.process.port} pid={self.process.pid}>"


@dataclass(frozen=True, slots=True)
class Forwarded:
    response: UpstreamResponse
    instance_id: str
    pending_ms: int
    loading: bool


def deadline_for(config: AppConfig, settings: Settings) -> float:
    """SPEC SCALE-4: 10 min automatic, 24 h basic/manual, or ``--request-timeout``."""
    if settings.request_timeout is not None:
        return settings.request_timeout
    if isinstance(config.scaling, (BasicScaling, ManualScaling)):
        return 24 * 3600.0
    return 600.0


def initial_instances(config: AppConfig) -> int:
    """How many instances to have at startup (the autoscaler refines it later)."""
    s = config.scaling
    if isinstance(s, ManualScaling):
        return max(1, s.instances)
    if isinstance(s, BasicScaling):
        return 1
    return max(1, s.min_instances)


class ServiceRuntime:
    """The instances of one service, their pool, and request dispatch to them."""

    def __init__(
        self,
        config: AppConfig,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.monotonic,
        base_env: dict[str, str] | None = None,
    ) -> None:
        self.config = config
        self.settings = settings
        self.clock = clock
        self.pool: Pool[asyncio.Future[str]] = Pool()
        self.instances: dict[str, Instance] = {}
        self.deadline = deadline_for(config, settings)
        self.desired = initial_instances(config)
        self.limit = config.max_concurrent_requests
        self.deployment_id = str(int(time.time() * 1000))
        self._base_env = dict(os.environ if base_env is None else base_env)
        self._seq = 0
        self._tasks = Tasks()
        self._closing = False
        self._backoff = 0.0
        self._restarting: asyncio.Task[Any] | None = None
        self.requests_total = 0

    @property
    def name(self) -> str:
        return self.config.service

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Start the initial instances and wait until they answer HTTP (StartupError if not)."""
        results = await asyncio.gather(
            *(self._start_instance() for _ in range(self.desired)), return_exceptions=True
        )
        for r in results:
            if isinstance(r, BaseException):
                raise r
        self._tasks.spawn(self._ticker(), name=f"{self.name}-tick")

    async def close(self) -> None:
        self._closing = True
        for fut in self.pool.expired(now=self.clock(), max_wait=-1.0):
            if not fut.done():
                fut.set_exception(InstanceUnavailable("shutting down"))
        await self._tasks.close()
        await asyncio.gather(
            *(self._stop(inst) for inst in list(self.instances.values())),
            return_exceptions=True,
        )

    async def _start_instance(self) -> Instance:
        self._seq += 1
        iid = f"i-{self._seq}"
        port = free_port()
        argv, shim = launch.command(self.config, port=port, stop_grace=self.settings.stop_grace)
        env = launch.environment(
            self.config,
            port=port,
            instance_id=iid,
            gae_instance=secrets.token_hex(32),
            deployment_id=self.deployment_id,
            project=self.settings.project,
            base=self._base_env,
        )
        spec = launch.Launch(argv=argv, env=env, cwd=self.config.root, uses_shim=shim)
        proc = InstanceProcess(instance_id=iid, service=self.name, spec=spec, port=port)
        now = self.clock()
        self.pool.add(iid, limit=self.limit, now=now)
        inst = Instance(
            id=iid,
            process=proc,
            client=UpstreamClient("127.0.0.1", port),
            started_at=now,
        )
        self.instances[iid] = inst
        log.info("[%s/%s] starting on port %d: %s", self.name, iid, port, " ".join(argv))
        try:
            await proc.spawn()
            await proc.wait_ready(self.settings.start_timeout)
        except BaseException:
            self.pool.transition(iid, Event.CRASHED, now=self.clock())
            self.pool.forget(iid)
            self.instances.pop(iid, None)
            await proc.stop(self.settings.stop_grace)
            await inst.client.close()
            raise
        log.info("[%s/%s] ready on port %d (pid %s)", self.name, iid, port, proc.pid)
        self._backoff = 0.0
        self._wake(self.pool.transition(iid, Event.READY, now=self.clock()))
        self._tasks.spawn(self._watch(inst), name=f"{self.name}-{iid}-watch")
        return inst

    async def _watch(self, inst: Instance) -> None:
        code = await inst.process.wait()
        if inst.process.stopping or self._closing:
            return
        log.error("%s; replacing it", inst.process._exit_reason("unexpectedly"))
        rec = self.pool.get(inst.id)
        if rec is not None and rec.state in (State.STARTING, State.READY, State.DRAINING):
            self.pool.transition(inst.id, Event.CRASHED, now=self.clock())
        self.pool.forget(inst.id)
        self.instances.pop(inst.id, None)
        await inst.client.close()
        del code
        self._ensure_capacity()

    def _ensure_capacity(self) -> None:
        """Start replacements (with backoff) until ``desired`` instances are live."""
        if self._closing or (self._restarting is not None and not self._restarting.done()):
            return
        self._restarting = self._tasks.spawn(self._replace(), name=f"{self.name}-replace")

    async def _replace(self) -> None:
        while not self._closing:
            live = sum(1 for r in self.pool.records() if r.state in (State.STARTING, State.READY))
            if live >= self.desired:
                return
            if self._backoff:
                await asyncio.sleep(self._backoff)
            try:
                await self._start_instance()
            except StartupError as e:
                log.error("%s; retrying", e)
                self._backoff = min(30.0, max(0.5, self._backoff * 2))
                if not any(r.state in (State.STARTING, State.READY) for r in self.pool.records()):
                    # Nothing can serve the queued requests soon: answer them now (503)
                    # rather than after the pending timeout.
                    for fut in self.pool.expired(now=self.clock(), max_wait=-1.0):
                        if not fut.done():
                            fut.set_exception(InstanceUnavailable(str(e)))

    async def _stop(self, inst: Instance) -> None:
        rec = self.pool.get(inst.id)
        if rec is not None and rec.state in (State.STARTING, State.READY):
            self.pool.transition(inst.id, Event.DRAIN, now=self.clock())
        await inst.process.stop(self.settings.stop_grace)
        await inst.client.close()
        if rec is not None and rec.state is State.DRAINING:
            self.pool.transition(inst.id, Event.EXITED, now=self.clock())
        self.pool.forget(inst.id)
        self.instances.pop(inst.id, None)

    async def recycle(self, inst: Instance, reason: str) -> None:
        """Stop an instance we no longer trust (deadline, memory) and start a replacement."""
        log.warning("[%s/%s] recycling: %s", self.name, inst.id, reason)
        await self._stop(inst)
        self._ensure_capacity()

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(0.1)
            self.tick()

    def tick(self) -> None:
        """Periodic work: the pending-queue timeout (SPEC SCALE-3)."""
        for fut in self.pool.expired(now=self.clock(), max_wait=self.settings.pending_timeout):
            if not fut.done():
                fut.set_exception(PendingTimeout(PendingTimeout.log_message))

    # -- requests -----------------------------------------------------------------------

    def _wake(self, assignments: list[tuple[asyncio.Future[str], str]]) -> None:
        while assignments:
            more: list[tuple[asyncio.Future[str], str]] = []
            for fut, iid in assignments:
                if fut.done():  # its client left meanwhile: give the slot to the next one
                    self.pool.abandon(iid)
                    more.extend(self.pool.assign(now=self.clock()))
                else:
                    fut.set_result(iid)
            assignments = more

    async def _acquire(self, since: float) -> str:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[str] = loop.create_future()
        iid = self.pool.acquire(fut, now=since)
        if iid is not None:
            return iid
        if not self.instances and (self._restarting is None or self._restarting.done()):
            self.pool.cancel(fut)
            raise InstanceUnavailable(f"service {self.name} has no instance")
        try:
            return await fut
        except asyncio.CancelledError:
            assigned = fut.done() and not fut.cancelled() and fut.exception() is None
            if not self.pool.cancel(fut) and assigned:
                self._release(fut.result(), served=False)
            raise

    def _release(self, iid: str, *, served: bool = True) -> None:
        if served:
            self._wake(self.pool.release(iid, now=self.clock()))
        else:
            self.pool.abandon(iid)
            self._wake(self.pool.assign(now=self.clock()))

    async def forward(
        self,
        method: str,
        target: str,
        headers: Iterable[tuple[str, str]],
        body: bytes,
        *,
        started: float | None = None,
        instance: str | None = None,
    ) -> Forwarded:
        """Send one request to an instance of this service, waiting in the pending queue if
        all are busy. Raises PendingTimeout, InstanceUnavailable, DeadlineExceeded,
        UpstreamError and the response-limit errors. ``instance`` names one instance
        (ROUTE-5 targeting); not honoured yet."""
        t0 = self.clock() if started is None else started
        headers = list(headers)
        retried = False
        self.requests_total += 1
        while True:
            iid = await self._acquire(t0)
            inst = self.instances.get(iid)
            rec = self.pool.get(iid)
            if inst is None or rec is None:  # it died between assignment and now
                self.pool.abandon(iid)
                continue
            loading = rec.loading
            pending_ms = int((self.clock() - t0) * 1000)
            remaining = self.deadline - (self.clock() - t0)
            try:
                response = await inst.client.request(
                    method, target, headers, body, timeout=max(0.001, remaining)
                )
            except UpstreamError as e:
                self._release(iid, served=False)
                # SPEC INST-3: an idempotent request whose instance died before sending any
                # response byte is retried once on another instance.
                if e.sent_nothing and method in IDEMPOTENT and not retried:
                    retried = True
                    await self._await_exit(inst)
                    continue
                raise
            except DeadlineExceeded:
                self._release(iid, served=False)
                self._tasks.spawn(
                    self.recycle(inst, f"request exceeded its {self.deadline:g}s deadline"),
                    name=f"{self.name}-{iid}-recycle",
                )
                raise
            except BaseException:
                self._release(iid, served=False)
                raise
            self._release(iid)
            return Forwarded(
                response=response, instance_id=iid, pending_ms=pending_ms, loading=loading
            )

    async def _await_exit(self, inst: Instance) -> None:
        # If the instance is dying, let its watcher take it out of the pool before we retry.
        proc = inst.process.proc
        if proc is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(proc.wait()), 0.5)
        if proc is not None and proc.returncode is not None:
            rec = self.pool.get(inst.id)
            if rec is not None and rec.state in (State.STARTING, State.READY):
                self.pool.transition(inst.id, Event.CRASHED, now=self.clock())

    # -- views --------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        now = self.clock()
        snap = self.pool.snapshot(now)
        instances = []
        for view in snap.instances:
            inst = self.instances.get(view.id)
            instances.append(
                {
                    "id": view.id,
                    "state": view.state.value,
                    "port": inst.process.port if inst else None,
                    "pid": inst.process.pid if inst else None,
                    "inflight": view.inflight,
                    "limit": view.limit,
                    "served": view.served,
                    "uptime_s": round(now - inst.started_at, 1) if inst else None,
                }
            )
        return {
            "service": self.name,
            "runtime": self.config.runtime,
            "instances": instances,
            "pending": snap.pending,
            "oldest_wait_s": round(snap.oldest_wait, 3),
            "requests_total": self.requests_total,
        }
