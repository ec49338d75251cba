"""The autoscaler tick of one service: it carries out ``scaling.decide`` and decides nothing itself.

Theory of operation
-------------------
One ``Autoscaler`` is owned by a ``supervisor.ServiceRuntime``; it starts and stops instances
only through the runtime's lifecycle methods. One tick (every ``settings.scaling_tick`` seconds,
and when kicked):
  1. requests pending longer than ``settings.pending_timeout`` fail (SCALE-3);
  2. instances that crashed or were recycled are replaced (INST-3), unless boots are failing,
     in which case starts wait out an exponential backoff (0.5 s … 30 s; an instance dying
     within 10 s of READY counts as a failed boot, so a crash loop slows down too);
  3. ``scaling.decide(policy, pool.snapshot(now), memory, now=now)``; a non-empty decision is
     logged on ``gfe_proxy.scaling`` with its reason verbatim and kept (the last 50) for the
     status page. Starts are added to the pool (STARTING) before the tick returns, so the next
     decision counts them; stops are drained: moved to DRAINING at once (no new requests),
     stopped when their last request finishes;
  4. once a second a history sample (instances, in flight, pending) for the status chart;
     every ``settings.memory_interval`` seconds the memory of each instance's process group
     (a worker thread reads /proc), recycling any above its instance class (INST-3).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gfe_proxy import memory
from gfe_proxy.errors import PendingTimeout
from gfe_proxy.pool import State
from gfe_proxy.scaling import Decision, ScalerMemory, decide, max_instances_of

if TYPE_CHECKING:
    from gfe_proxy.supervisor import ServiceRuntime

log = logging.getLogger("gfe_proxy.instances")
scaling_log = logging.getLogger("gfe_proxy.scaling")

DECISIONS_KEPT = 50  # scaling decisions shown on the status page
HISTORY_SAMPLES = 300  # one a second: the status chart's last five minutes
BACKOFF_MIN, BACKOFF_MAX = 0.5, 30.0  # seconds between starts while boots keep failing
# An instance that dies this soon after becoming READY counts as a failed boot for the backoff,
# so an app that crashes right after start is not restarted in a tight loop.
CRASH_LOOP_WINDOW = 10.0  # seconds
_LIVE = (State.STARTING, State.READY)


@dataclass(frozen=True, slots=True, kw_only=True)
class Decided:
    """One carried-out scaling step, as the status page lists it."""

    time: float  # wall clock
    action: str  # "start" | "stop" | "replace" | "recycle" | "reload"
    start: int = 0
    stop: tuple[str, ...] = ()
    reason: str


class Autoscaler:
    """The periodic work of one service's runtime: pending timeout, replacements, the scaling
    decision, the failed-boot backoff, history and memory samples."""

    def __init__(self, runtime: ServiceRuntime) -> None:
        self._rt = runtime
        self.decisions: deque[Decided] = deque(maxlen=DECISIONS_KEPT)
        # (wall time, live instances, ready instances, in flight, pending, requests so far),
        # one a second
        self.history: deque[tuple[float, int, int, int, int, int]] = deque(maxlen=HISTORY_SAMPLES)
        self._scaler = ScalerMemory()
        self._owed: list[str] = []  # why each owed replacement is owed (crash, recycle)
        self.backoff = 0.0
        self.hold_until = 0.0  # no start before this clock time (failed boots)
        self._last_failure = float("-inf")  # clock time of the last failed boot
        self._kick = asyncio.Event()
        self._next_history = 0.0
        self._next_memory = 0.0
        self._memory_task: asyncio.Task[None] | None = None

    def kick(self) -> None:
        """Run a tick now rather than at the next interval."""
        self._kick.set()

    def owe(self, why: str) -> None:
        """A replacement is owed (an instance crashed or is recycled); the next tick starts it."""
        self._owed.append(why)

    def back_off(self) -> None:
        """One more failed boot (or crash right after one): wait twice as long before the next
        start. The backoff starts over once failures are further apart than it could grow."""
        now = self._rt.clock()
        if now - self._last_failure > BACKOFF_MAX + CRASH_LOOP_WINDOW:
            self.backoff = 0.0
        self.backoff = min(BACKOFF_MAX, max(BACKOFF_MIN, self.backoff * 2))
        self.hold_until = now + self.backoff
        self._last_failure = now

    def record(
        self, action: str, *, start: int = 0, stop: tuple[str, ...] = (), reason: str
    ) -> None:
        """Log and keep one carried-out scaling step."""
        # SPEC SCALE-1: each decision is logged with its reason, verbatim.
        scaling_log.info("[%s] %s", self._rt.name, reason)
        self.decisions.append(
            Decided(time=self._rt.wall(), action=action, start=start, stop=stop, reason=reason)
        )

    async def run(self) -> None:
        """Tick every ``settings.scaling_tick`` seconds, and at once when kicked."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), self._rt.settings.scaling_tick)
            self._kick.clear()
            self.tick()

    def tick(self) -> None:
        """Periodic work: pending timeout, replacements, the scaling decision, samples."""
        rt = self._rt
        now = rt.clock()
        for fut in rt.pool.expired(now=now, max_wait=rt.settings.pending_timeout):
            if not fut.done():
                rt.counters["pending_timeouts"] += 1
                fut.set_exception(PendingTimeout(PendingTimeout.log_message))
        if not rt.closing and not rt.reloading:
            self._replace(now)
            self._scale(now)
        if now >= self._next_history:
            self._next_history = now + 1.0
            self._sample_history()
        if now >= self._next_memory and (self._memory_task is None or self._memory_task.done()):
            self._next_memory = now + rt.settings.memory_interval
            self._memory_task = rt.tasks.spawn(self._sample_memory(), name=f"{rt.name}-mem")

    def _replace(self, now: float) -> None:
        if not self._owed or now < self.hold_until:
            return
        rt = self._rt
        cap = max_instances_of(rt.config.scaling, cap=rt.settings.max_instances_cap)
        n = min(len(self._owed), max(0, cap - len(rt.live())))
        owed, self._owed = self._owed[:n], []
        if n:
            self.record("replace", start=n, reason=f"replacing {'; '.join(owed)}: starting {n}")
            rt.start_instances(n)

    def _scale(self, now: float) -> None:
        rt = self._rt
        decision, scaler = decide(
            rt.config.scaling,
            rt.pool.snapshot(now),
            self._scaler,
            now=now,
            scale_down_delay=rt.settings.scale_down_delay,
            max_instances_cap=rt.settings.max_instances_cap,
        )
        if decision.start and now < self.hold_until:
            return  # boots are failing: wait out the backoff (the next tick asks again)
        self._scaler = scaler
        if decision.noop:
            return
        self._carry_out(decision)

    def _carry_out(self, decision: Decision) -> None:
        rt = self._rt
        action = "start" if decision.start else "stop"
        self.record(action, start=decision.start, stop=decision.stop, reason=decision.reason)
        rt.start_instances(decision.start)
        for iid in decision.stop:
            inst = rt.instances.get(iid)
            if inst is not None:
                rt.begin_stop(inst, "scaled down")

    def _sample_history(self) -> None:
        rt = self._rt
        recs = rt.pool.records()
        self.history.append(
            (
                round(rt.wall(), 3),
                sum(1 for r in recs if r.state in _LIVE),
                sum(1 for r in recs if r.state is State.READY),
                sum(r.inflight for r in recs),
                rt.pool.pending,
                rt.counters["requests"],
            )
        )

    async def _sample_memory(self) -> None:
        rt = self._rt
        by_pid = {
            i.process.pid: i
            for i in rt.instances.values()
            if i.process.pid is not None and i.process.returncode is None
        }
        if not by_pid:
            return
        sizes = await asyncio.to_thread(memory.group_memory, list(by_pid))
        limit_mb = rt.config.memory_mb
        for pid, inst in by_pid.items():
            inst.memory = sizes.get(pid)
            rec = rt.pool.get(inst.id)
            if (
                inst.memory is not None
                and inst.memory > limit_mb * memory.MIB
                and rec is not None
                and rec.state is State.READY
            ):
                # SPEC INST-3: the production message, then the instance is replaced.
                msg = memory.over_limit_message(limit_mb, inst.memory, rec.served)
                log.error("[%s/%s] %s", rt.name, inst.id, msg)
                rt.recycle(inst, msg)
