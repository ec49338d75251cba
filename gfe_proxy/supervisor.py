"""The instances of one service: their lifecycle, and the owner of dispatch and the autoscaler.

Theory of operation
-------------------
``pool.Pool`` decides which instance serves a request and who waits (SPEC INST-4);
``scaling.decide`` decides how many instances there should be (SCALE-1/2). Both are carried out
by helpers this runtime owns, which decide nothing themselves: ``dispatch.Dispatcher`` (futures
waiting for a slot, forward, retry, deadline) and ``autoscaler.Autoscaler`` (the tick: pending
timeout, replacements, the scaling decision, backoff, samples). This module starts and stops
the processes (process.py).

An instance's life (pool.TRANSITIONS): STARTING (spawned; port answers HTTP; ``/_ah/start`` for
manual/basic, ``/_ah/warmup`` with ``inbound_services: [warmup]``) → READY → DRAINING (scaled
down, recycled after a deadline or over memory, replaced by a reload: no new requests, the
running ones finish) → ``/_ah/stop`` for manual/basic, SIGTERM, SIGKILL after the grace period →
STOPPED. An exit we did not ask for is a crash (→ FAILED): queued requests stay queued, an
idempotent request that got no response byte is retried once elsewhere, and a replacement starts.

Reload (``--reload``): ``reload(config)`` boots the new version's instances while the old ones
keep serving, then in one step of the event loop makes the new ones READY (they take the queue)
and drains the old ones. If a new instance fails to boot, the old version keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from gfe_proxy import launch, memory, routing
from gfe_proxy.autoscaler import CRASH_LOOP_WINDOW, Autoscaler, Decided
from gfe_proxy.config import AppConfig, AutomaticScaling, BasicScaling, ManualScaling
from gfe_proxy.dispatch import Dispatcher, Forwarded
from gfe_proxy.errors import (
    DeadlineExceeded,
    GfeError,
    InstanceUnavailable,
    StartupError,
)
from gfe_proxy.pool import Event, Pool, State
from gfe_proxy.process import InstanceProcess, Tasks, free_port
from gfe_proxy.scaling import max_instances_of
from gfe_proxy.settings import Settings
from gfe_proxy.upstream import UpstreamClient

__all__ = ["Decided", "Forwarded", "Instance", "ServiceRuntime"]

log = logging.getLogger("gfe_proxy.instances")
_LIVE = (State.STARTING, State.READY)


@dataclass(slots=True, eq=False)
class Instance:
    """An instance process with its keep-alive upstream client."""

    id: str
    process: InstanceProcess
    client: UpstreamClient
    started_at: float  # clock time of the spawn
    generation: int  # bumped by each reload
    warmed: bool = False  # got /_ah/start or /_ah/warmup: its first request is no loading request
    held: bool = False  # booted by a reload, waiting for the switch
    ready_at: float | None = None  # clock time it became READY
    memory: int | None = None  # bytes, last sample of its process group
    stop_reason: str | None = None  # set once we decided to stop it
    drained: asyncio.Event = field(default_factory=asyncio.Event)  # in-flight fell to 0, or exit

    def __repr__(self) -> str:
        return f"<Instance {self.id} port={self.process.port} pid={self.process.pid}>"


def deadline_for(config: AppConfig, settings: Settings) -> float:
    """SPEC SCALE-4: 10 min automatic, 24 h basic/manual, or ``--request-timeout``."""
    if settings.request_timeout is not None:
        return settings.request_timeout
    if isinstance(config.scaling, (BasicScaling, ManualScaling)):
        return 24 * 3600.0
    return 600.0


def initial_instances(config: AppConfig) -> int:
    """Instances started with gfe-proxy (the autoscaler refines it): manual ``instances``,
    automatic ``min_instances``, and at least one, so a broken app fails at start (CLI-3)."""
    s = config.scaling
    if isinstance(s, ManualScaling):
        return max(1, s.instances)
    if isinstance(s, BasicScaling):
        return 1
    return max(1, s.min_instances)


def scaling_kind(config: AppConfig) -> str:
    match config.scaling:
        case ManualScaling():
            return "manual"
        case BasicScaling():
            return "basic"
        case _:
            return "automatic"


class ServiceRuntime:
    """The instances of one service, their pool, the autoscaler and request dispatch."""

    def __init__(
        self,
        config: AppConfig,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        base_env: dict[str, str] | None = None,
    ) -> None:
        self.config = config
        self.settings = settings
        self.clock = clock
        self.wall = wall
        self.pool: Pool[asyncio.Future[str]] = Pool()
        self.instances: dict[str, Instance] = {}
        self.deadline = deadline_for(config, settings)
        self.deployment_id = str(int(time.time() * 1000))
        self.counters = dict.fromkeys(
            ("requests", "started", "stopped", "crashed", "recycled", "pending_timeouts"), 0
        )
        self._base_env = dict(os.environ if base_env is None else base_env)
        self._router = routing.Router.from_handlers(config.handlers)
        self._seq = 0
        self._generation = 1
        self.tasks = Tasks()  # every background task of this service
        self.closing = False
        self.reloading = False
        self.boot_error: str | None = None  # the last failed boot, until one succeeds
        self.autoscaler = Autoscaler(self)
        self.dispatcher = Dispatcher(self)

    @property
    def name(self) -> str:
        return self.config.service

    @property
    def limit(self) -> int:
        return self.config.max_concurrent_requests

    @property
    def requests_total(self) -> int:
        return self.counters["requests"]

    @property
    def decisions(self) -> deque[Decided]:
        """The last carried-out scaling steps (autoscaler.DECISIONS_KEPT)."""
        return self.autoscaler.decisions

    @property
    def history(self) -> deque[tuple[float, int, int, int, int, int]]:
        """One sample a second for the status chart (autoscaler.HISTORY_SAMPLES)."""
        return self.autoscaler.history

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Start the initial instances and wait until they are READY (StartupError if not)."""
        config = self.config
        boots = [self._boot(self._launch(config), config) for _ in range(initial_instances(config))]
        results = await asyncio.gather(*boots, return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                raise r
        self.tasks.spawn(self.autoscaler.run(), name=f"{self.name}-tick")

    async def close(self) -> None:
        """Stop every instance at once (no draining) and answer queued requests with 503."""
        self.closing = True
        self.dispatcher.fail_pending(InstanceUnavailable("gfe-proxy is shutting down"))
        await self.tasks.close()
        await asyncio.gather(
            *(
                self._stop(inst, "shutting down", drain=False)
                for inst in list(self.instances.values())
            ),
            return_exceptions=True,
        )

    def kick(self) -> None:
        """Run a tick now rather than at the next interval."""
        self.autoscaler.kick()

    def tick(self) -> None:
        """Periodic work: pending timeout, replacements, the scaling decision, samples."""
        self.autoscaler.tick()

    def _launch(self, config: AppConfig) -> Instance:
        """Create an instance record (STARTING, counted by the next decision); no I/O yet."""
        self._seq += 1
        iid = f"i-{self._seq}"
        port = free_port()
        argv, shim = launch.command(config, port=port, stop_grace=self.settings.stop_grace)
        env = launch.environment(
            config,
            port=port,
            instance_id=iid,
            gae_instance=secrets.token_hex(32),
            deployment_id=self.deployment_id,
            project=self.settings.project,
            base=self._base_env,
        )
        spec = launch.Launch(argv=argv, env=env, cwd=config.root, uses_shim=shim)
        now = self.clock()
        self.pool.add(iid, limit=config.max_concurrent_requests, now=now)
        inst = Instance(
            id=iid,
            process=InstanceProcess(instance_id=iid, service=self.name, spec=spec, port=port),
            client=UpstreamClient("127.0.0.1", port),
            started_at=now,
            generation=self._generation,
        )
        self.instances[iid] = inst
        self.counters["started"] += 1
        return inst

    async def _boot(self, inst: Instance, config: AppConfig, *, hold: bool = False) -> None:
        """Spawn, probe, /_ah/start or /_ah/warmup; READY unless ``hold`` (a reload switches
        held instances itself). StartupError, after cleaning up, if any step fails."""
        proc = inst.process
        log.info(
            "[%s/%s] starting on port %d: %s",
            self.name,
            inst.id,
            proc.port,
            " ".join(proc.spec.argv),
        )
        try:
            await proc.spawn()
            await proc.wait_ready(self.settings.start_timeout)
            await self._warm(inst, config)
        except BaseException:
            self._discard(inst)
            await proc.stop(self.settings.stop_grace)
            await inst.client.close()
            raise
        if inst.stop_reason is not None:  # stopped while booting; _stop cleans up
            return
        inst.held = hold
        self.tasks.spawn(self._watch(inst), name=f"{self.name}-{inst.id}-watch")
        if not hold:
            self._make_ready(inst)

    def _make_ready(self, inst: Instance) -> None:
        inst.held = False
        inst.ready_at = self.clock()
        log.info(
            "[%s/%s] ready on port %d (pid %s)",
            self.name,
            inst.id,
            inst.process.port,
            inst.process.pid,
        )
        self.boot_error = None
        self.dispatcher.wake(self.pool.transition(inst.id, Event.READY, now=self.clock()))

    async def _warm(self, inst: Instance, config: AppConfig) -> None:
        # Manual and basic instances get /_ah/start, automatic ones /_ah/warmup when the app
        # asks for it (production sends warmup requests to automatic instances only). Once one
        # has run, the instance's first request is no loading request (LOG-1).
        deadline = deadline_for(config, self.settings)
        if isinstance(config.scaling, (ManualScaling, BasicScaling)):
            # SPEC INST-3: 200–299 or 404 = started.
            status = await self._internal(inst, config, "/_ah/start", deadline)
            if status is not None and not (200 <= status < 300 or status == 404):
                raise StartupError(
                    f"service {self.name}: instance {inst.id} answered /_ah/start with {status}"
                )
            inst.warmed = status is not None
        elif "warmup" in config.inbound_services:
            # SPEC INST-3: READY only after /_ah/warmup returned. A failing warmup handler is
            # logged and the instance used anyway, as in production.
            status = await self._internal(inst, config, "/_ah/warmup", deadline)
            if status is not None and status >= 400 and status != 404:
                log.warning("[%s/%s] /_ah/warmup answered %d", self.name, inst.id, status)
            inst.warmed = status is not None

    async def _internal(
        self, inst: Instance, config: AppConfig, path: str, limit: float
    ) -> int | None:
        """Send one of our own ``/_ah/`` requests to an instance; its status. None, without
        sending anything, when no handler of a gen1 app matches the path (production answers
        such a request 404 without running any code)."""
        headers = [("Host", f"127.0.0.1:{inst.process.port}")]
        if inst.process.spec.uses_shim:
            router = (
                self._router
                if config is self.config
                else routing.Router.from_handlers(config.handlers)
            )
            match = router.match(path)
            if match is None or match.script is None:
                return None
            headers.append((launch.SCRIPT_HEADER, match.script))
        try:
            response = await inst.client.request("GET", path, headers, b"", timeout=limit)
        except DeadlineExceeded:
            raise StartupError(
                f"service {self.name}: instance {inst.id}: {path} got no answer in {limit:g}s"
            ) from None
        except GfeError as e:
            if inst.process.returncode is not None:
                raise StartupError(inst.process.exit_reason(f"during {path}")) from None
            raise StartupError(
                f"service {self.name}: instance {inst.id}: {path} failed: {e}"
            ) from None
        return response.status

    async def _boot_in_background(self, inst: Instance, config: AppConfig) -> None:
        try:
            await self._boot(inst, config)
        except StartupError as e:
            if inst.stop_reason is not None or self.closing:
                return  # we stopped it ourselves
            self.boot_error = str(e)
            self.autoscaler.back_off()
            log.error("%s; no new start for %gs (backoff)", e, self.autoscaler.backoff)
            if not self.live():
                # Nothing can serve the queued requests soon: answer them now (503) rather
                # than after the pending timeout.
                self.dispatcher.fail_pending(InstanceUnavailable(str(e)))

    async def _watch(self, inst: Instance) -> None:
        await inst.process.wait()
        inst.drained.set()
        self.crashed(inst)

    def crashed(self, inst: Instance) -> None:
        """An exit we did not ask for (SPEC INST-3): out of the pool, a replacement owed.
        Idempotent: the watcher and a request that saw the connection drop may both call it."""
        if (
            inst.id not in self.instances
            or inst.process.stopping
            or inst.stop_reason is not None
            or self.closing
        ):
            return
        reason = inst.process.exit_reason("unexpectedly")
        log.error("%s; replacing it", reason)
        self.counters["crashed"] += 1
        if inst.ready_at is not None and self.clock() - inst.ready_at < CRASH_LOOP_WINDOW:
            self.autoscaler.back_off()
        if self._discard(inst) and not inst.held:  # a held one: the reload gives up instead
            self.autoscaler.owe(f"{inst.id}, which {inst.process.exit_status()}")
        self.tasks.spawn(inst.client.close(), name=f"{self.name}-{inst.id}-close")
        self.kick()

    def _discard(self, inst: Instance) -> bool:
        """Take a dead instance out of the pool; True if it was live (STARTING/READY)."""
        rec = self.pool.get(inst.id)
        was_live = rec is not None and rec.state in _LIVE
        if rec is not None and rec.state in (*_LIVE, State.DRAINING):
            self.pool.transition(inst.id, Event.CRASHED, now=self.clock())
        self.pool.forget(inst.id)
        self.instances.pop(inst.id, None)
        inst.drained.set()
        return was_live

    def begin_stop(self, inst: Instance, reason: str, *, grace: float | None = None) -> None:
        """Drain now (synchronously: no request is assigned to it from here on), stop later."""
        if inst.stop_reason is not None:
            return
        inst.stop_reason = reason
        inst.process.stopping = True
        rec = self.pool.get(inst.id)
        if rec is not None and rec.state in _LIVE:
            self.pool.transition(inst.id, Event.DRAIN, now=self.clock())
        self.tasks.spawn(self._stop(inst, reason, grace=grace), name=f"{self.name}-{inst.id}-stop")

    async def _stop(
        self, inst: Instance, reason: str, *, drain: bool = True, grace: float | None = None
    ) -> None:
        if inst.stop_reason is None:
            inst.stop_reason = reason
        inst.process.stopping = True
        rec = self.pool.get(inst.id)
        if rec is not None and rec.state in _LIVE:
            self.pool.transition(inst.id, Event.DRAIN, now=self.clock())
        # Never stop an instance with requests in flight: they finish first (each is bounded
        # by its deadline, SCALE-4), unless gfe-proxy itself is shutting down.
        while drain:
            inst.drained.clear()
            if rec is None or rec.inflight == 0 or inst.process.returncode is not None:
                break
            await inst.drained.wait()
        alive = inst.process.proc is not None and inst.process.returncode is None
        if alive and inst.warmed and not isinstance(self.config.scaling, AutomaticScaling):
            # SPEC INST-3: manual and basic instances hear /_ah/stop before SIGTERM.
            with contextlib.suppress(GfeError):
                await self._internal(inst, self.config, "/_ah/stop", self.settings.stop_grace)
        log.info("[%s/%s] stopping: %s", self.name, inst.id, reason)
        await inst.client.close()  # idle keep-alive connections would hold a gthread worker
        await inst.process.stop(self.settings.stop_grace if grace is None else grace)
        rec = self.pool.get(inst.id)
        if rec is not None and rec.state is State.DRAINING:
            self.pool.transition(inst.id, Event.EXITED, now=self.clock())
        self.pool.forget(inst.id)
        self.instances.pop(inst.id, None)
        self.counters["stopped"] += 1

    def recycle(self, inst: Instance, reason: str, *, grace: float | None = None) -> None:
        """Replace an instance we no longer trust (deadline, memory): drain it, start another."""
        if inst.stop_reason is not None or inst.id not in self.instances:
            return
        log.warning("[%s/%s] recycling: %s", self.name, inst.id, reason)
        self.counters["recycled"] += 1
        self.autoscaler.record("recycle", stop=(inst.id,), reason=f"recycling {inst.id}: {reason}")
        self.autoscaler.owe(f"{inst.id}, which was recycled")
        self.begin_stop(inst, reason, grace=grace)
        self.kick()

    def start_instances(self, n: int) -> None:
        """Launch ``n`` instances (in the pool at once, STARTING); they boot in the background."""
        config = self.config
        for _ in range(n):
            inst = self._launch(config)  # in the pool now: the next decision counts it
            self.tasks.spawn(
                self._boot_in_background(inst, config), name=f"{self.name}-{inst.id}-boot"
            )

    def live(self) -> list[Instance]:
        """The instances STARTING or READY."""
        return [i for i in self.instances.values() if self._state(i) in _LIVE]

    def _state(self, inst: Instance) -> State | None:
        rec = self.pool.get(inst.id)
        return rec.state if rec is not None else None

    # -- reload ---------------------------------------------------------------------------

    async def reload(
        self, config: AppConfig, *, why: str = "", on_switch: Callable[[], None] | None = None
    ) -> bool:
        """Replace every instance by one of ``config`` with no failed request (``--reload``).

        New instances boot while the old ones serve; then, in one step, ``on_switch`` runs
        (the caller swaps its routes), the new instances become READY and the old ones drain.
        False (old version kept) if a new instance fails to boot.
        """
        if self.closing or self.reloading:
            return False
        self.reloading = True
        try:
            old = [i for i in self.instances.values() if self._state(i) in _LIVE]
            ready = sum(1 for i in old if self._state(i) is State.READY)
            cap = self.settings.max_instances_cap
            n = min(
                max(initial_instances(config), ready), max_instances_of(config.scaling, cap=cap)
            )
            n = max(n, 1)
            self._generation += 1
            new = [self._launch(config) for _ in range(n)]
            self.autoscaler.record(
                "reload",
                start=n,
                reason=f"{why or 'app changed'}: starting {n} instance(s) of the new version",
            )
            results = await asyncio.gather(
                *(self._boot(i, config, hold=True) for i in new), return_exceptions=True
            )
            failed = [r for r in results if isinstance(r, BaseException)]
            lost = [i for i in new if i.id not in self.instances]
            if failed or lost or self.closing:
                for i in new:
                    if i.id in self.instances:
                        self.begin_stop(i, "reload abandoned")
                reason = str(failed[0]) if failed else "a new instance exited"
                log.error(
                    "reload of service %s failed: %s; still serving the previous version",
                    self.name,
                    reason,
                )
                return False
            # The switch: one synchronous step, so no request sees a half-switched service.
            self.config = config
            self.deadline = deadline_for(config, self.settings)
            self._router = routing.Router.from_handlers(config.handlers)
            if on_switch is not None:
                on_switch()
            for i in new:
                self._make_ready(i)
            for i in old:
                if i.id in self.instances:
                    self.begin_stop(i, "replaced by the new version")
            return True
        finally:
            self.reloading = False

    # -- requests -----------------------------------------------------------------------

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
        all are busy. ``instance`` (ROUTE-5) names one manual-scaling instance; automatic and
        basic services ignore it, as production does not support targeting there.

        Raises PendingTimeout, InstanceUnavailable, DeadlineExceeded, UpstreamError and the
        response-limit errors.
        """
        return await self.dispatcher.forward(
            method, target, headers, body, started=started, instance=instance
        )

    # -- views --------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """This service for /api/status and the status page (admin.py)."""
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
                    "memory_mb": (
                        round(inst.memory / memory.MIB, 1)
                        if inst is not None and inst.memory is not None
                        else None
                    ),
                    "idle_s": round(view.idle_for, 1) if view.idle_for is not None else None,
                    "uptime_s": round(now - inst.started_at, 1) if inst else None,
                    "generation": inst.generation if inst else None,
                }
            )
        policy = self.config.scaling
        return {
            "service": self.name,
            "runtime": self.config.runtime,
            "version": self.config.version or "local",
            "scaling": {
                "kind": scaling_kind(self.config),
                **dataclasses.asdict(policy),
                "effective_max_instances": max_instances_of(
                    policy, cap=self.settings.max_instances_cap
                ),
                "scale_down_delay_s": self.settings.scale_down_delay,
            },
            "instance_class": self.config.effective_instance_class,
            "memory_limit_mb": self.config.memory_mb,
            "max_concurrent_requests": self.limit,
            "deadline_s": self.deadline,
            "pending_timeout_s": self.settings.pending_timeout,
            "instances": instances,
            "pending": snap.pending,
            "oldest_wait_s": round(snap.oldest_wait, 3),
            "requests_total": self.counters["requests"],
            "counters": dict(self.counters),
            "decisions": [
                {
                    "time": d.time,
                    "action": d.action,
                    "start": d.start,
                    "stop": list(d.stop),
                    "reason": d.reason,
                }
                for d in self.decisions
            ],
            "history": [list(h) for h in self.history],
        }
