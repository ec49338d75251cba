"""Autoscaling policy: one pure step from (policy, pool snapshot, memory, now) to a Decision.

Theory of operation
-------------------
The glue calls ``decide()`` once per tick (every 0.2–1 s) with a fresh ``Pool.snapshot()`` and the
``ScalerMemory`` the previous call returned, then carries the ``Decision`` out: it starts
``start`` new instances, adding each to the pool (state STARTING) *before the next tick* so the
next snapshot counts it, and drains the instances named in ``stop``. Nothing here sleeps, reads
a clock or touches a process; a no-op decision has ``reason == ""`` so the glue logs only changes.

Counting, for every policy
  live   READY + STARTING instances. STARTING ones are capacity-to-come: counting them is what
         keeps a burst from starting one more instance on every tick until the first is ready.
         ``max_instances`` bounds live instances. DRAINING ones take no new requests and are on
         their way out, so they count neither as live nor toward the maximum (while one drains,
         the number of processes may exceed ``max_instances`` by the draining ones).
  load   requests in flight on live instances + pending requests (the SPEC INST-4 queue).
  slots  per-instance concurrency: the instances' own ``limit`` (the glue sets it from
         ``AppConfig.max_concurrent_requests``, 1 for gen1 ``threadsafe: false``), or the
         policy's ``max_concurrent_requests`` (10 for basic/manual) before any instance exists.
  stops  only READY instances with nothing in flight; never STARTING or DRAINING ones, the most
         idle first (ties by id).

Automatic (SPEC SCALE-1)
  target per instance  T = slots × target_throughput_utilization             (10 × 0.6 = 6)
  demand               need = floor(load / T) + 1 when load > 0, else 0
      SPEC: "start an instance when in-flight requests reach T per instance": with n instances
      the (n+1)-th is wanted as soon as load >= n·T. E.g. 64 concurrent clients with
      max_concurrent_requests 8: T = 4.8, need = floor(13.33) + 1 = 14.
  pending              counts in ``load`` only once the oldest pending request has waited
                       ``min_pending_latency`` (SPEC: never start for a request waiting less).
  keep                 max(min_instances, need) + min_idle_instances, at most max_instances:
                       min_idle_instances are spare READY instances on top of the baseline.
  latency              the oldest pending request waited > max_pending_latency although
                       live == keep (the capacity counted, STARTING instances included, should
                       cover it: it is coming too slowly) → keep + 1, if the last start was at
                       least LATENCY_START_INTERVAL ago. Never more than one beyond keep, so a
                       slow boot under a burst adds one instance, not one per tick.
                       (Pending requests with live < keep are already covered by ``need``:
                       with target_throughput_utilization < 1 a queue means load > live·T.)
  start                (keep + 1 if latency else keep) − live, at most up to max_instances.
  scale down           when live > keep: stop the most idle instance idle >= scale_down_delay
                       (one per tick, so a returning burst finds the rest still up); when more
                       than max_idle_instances are idle, idle >= min(scale_down_delay,
                       IDLE_CAP_GRACE) is enough.
  over max             live > max_instances (a reload lowered it): stop idle extras at once.

Basic (SPEC SCALE-2): pending requests beyond the free slots of live instances (STARTING ones,
and any READY slot not yet handed out) start ``ceil(uncovered / slots)`` instances up to
``max_instances``; every instance idle for ``idle_timeout`` stops at once, down to zero.

Manual (SPEC SCALE-2, INST-3): exactly ``instances`` live; a dead or drained one no longer shows
as live and is replaced; extras (after a reload) are stopped once idle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import assert_never

from gfe_proxy.config import AutomaticScaling, BasicScaling, ManualScaling
from gfe_proxy.pool import InstanceView, PoolSnapshot, State

# SPEC SCALE-1: max_pending_latency "automatic". The app.yaml reference (seeds/002) gives 30ms
# as the default; a request queued longer than that while capacity is still booting asks for
# one more instance.
AUTOMATIC_MAX_PENDING_LATENCY = 0.030  # seconds; app.yaml reference default "30ms"
# SPEC SCALE-1: min_pending_latency "automatic" *(decision)*: 0, so a request that finds no free
# slot (and the very first request to a service at zero instances) starts capacity at once. The
# reference also lists 30ms here; it would only delay the first start of a cold service.
AUTOMATIC_MIN_PENDING_LATENCY = 0.0  # seconds
# *(decision)* The latency rule adds at most one instance per this interval: a local gunicorn
# boot takes about a second, and the pending time of requests queued behind a booting instance
# stays above 30ms for all of it, so without a pause it would start an instance every tick.
LATENCY_START_INTERVAL = 1.0  # seconds
# *(decision)* Idle instances above max_idle_instances are stopped after this idle time rather
# than after the full scale-down delay; production lets the idle count exceed the cap only
# "temporarily" after a spike.
IDLE_CAP_GRACE = 60.0  # seconds
DEFAULT_SLOTS = 10  # max_concurrent_requests of basic/manual instances (AppConfig)

Policy = AutomaticScaling | BasicScaling | ManualScaling


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """What one tick asks the glue to do; ``reason`` is logged verbatim (SPEC SCALE-1)."""

    start: int = 0  # instances to start
    stop: tuple[str, ...] = ()  # instance ids to drain/stop (never ones with requests in flight)
    reason: str = ""  # a sentence naming the rule and its numbers; "" for a no-op

    @property
    def noop(self) -> bool:
        return self.start == 0 and not self.stop


@dataclass(frozen=True, slots=True, kw_only=True)
class ScalerMemory:
    """What the policy remembers between ticks (idle times are in the snapshot already)."""

    last_start_at: float | None = None  # when the last start was decided (latency interval)


NOOP = Decision()


def decide(
    policy: Policy,
    snapshot: PoolSnapshot,
    memory: ScalerMemory,
    *,
    now: float,
    scale_down_delay: float = 900.0,
    max_instances_cap: int = 20,
) -> tuple[Decision, ScalerMemory]:
    """One scaling step: the Decision for this tick and the memory for the next.

    >>> snap = PoolSnapshot(instances=(), pending=64, oldest_wait=0.0, now=5.0)
    >>> decide(AutomaticScaling(max_concurrent_requests=8), snap, ScalerMemory(), now=5.0)[0].start
    14
    """
    decision: Decision
    match policy:
        case AutomaticScaling():
            decision = _automatic(
                policy, snapshot, memory, now=now, delay=scale_down_delay, cap=max_instances_cap
            )
        case BasicScaling():
            decision = _basic(policy, snapshot, cap=max_instances_cap)
        case ManualScaling():
            decision = _manual(policy, snapshot)
        case _:
            assert_never(policy)
    if decision.start > 0:
        memory = replace(memory, last_start_at=now)
    return decision, memory


def max_instances_of(policy: Policy, *, cap: int = 20) -> int:
    """The live-instance ceiling a policy allows (SPEC SCALE-1/2)."""
    match policy:
        case AutomaticScaling():
            # The app.yaml reference: max_instances 0 disables the setting; None is unbounded in
            # production, so the local cap (a setting) applies. An explicit value is honoured.
            return policy.max_instances if policy.max_instances else cap
        case BasicScaling():
            return policy.max_instances if policy.max_instances > 0 else cap
        case ManualScaling():
            return policy.instances
        case _:
            assert_never(policy)


# -- automatic ---------------------------------------------------------------------------------


def _automatic(
    p: AutomaticScaling,
    snap: PoolSnapshot,
    memory: ScalerMemory,
    *,
    now: float,
    delay: float,
    cap: int,
) -> Decision:
    live = _live(snap)
    maximum = max_instances_of(p, cap=cap)
    if len(live) > maximum:
        return _stop_over(live, maximum, "max_instances")

    slots = _slots(live, p.max_concurrent_requests)
    target = slots * p.target_throughput_utilization
    inflight = sum(i.inflight for i in live)
    min_wait = (
        p.min_pending_latency
        if p.min_pending_latency is not None
        else AUTOMATIC_MIN_PENDING_LATENCY
    )
    max_wait = (
        p.max_pending_latency
        if p.max_pending_latency is not None
        else AUTOMATIC_MAX_PENDING_LATENCY
    )
    # SPEC SCALE-1: a pending request asks for capacity only once it has waited min_pending_latency.
    ripe = snap.pending > 0 and snap.oldest_wait >= min_wait
    pending = snap.pending if ripe else 0
    load = inflight + pending
    need = _need(load, target)
    wanted = max(p.min_instances, need) + p.min_idle_instances
    keep = min(wanted, maximum)

    why_keep = _why_keep(p, load, inflight, pending, target, slots, need)
    want, why = wanted, why_keep
    if (
        ripe
        and snap.oldest_wait > max_wait
        and keep == len(live)
        and (memory.last_start_at is None or now - memory.last_start_at >= LATENCY_START_INTERVAL)
    ):
        # SPEC SCALE-1: a request waited longer than max_pending_latency although the capacity
        # already counted (STARTING instances) should cover it: it is coming too slowly.
        want = len(live) + 1
        why = (
            f"pending {snap.oldest_wait:.2f}s > max_pending_latency {max_wait:.2f}s"
            f" with {snap.pending} pending and {_starting(live)} instance(s) starting"
        )
    if min(want, maximum) > len(live):
        n = min(want, maximum) - len(live)
        capped = f", capped by max_instances {maximum}" if want > maximum else ""
        return Decision(start=n, reason=f"{why}; {len(live)} live: starting {n}{capped}")
    if len(live) <= keep:
        return NOOP
    return _scale_down(p, live, keep, why_keep, delay=delay)


def _need(load: int, target: float) -> int:
    if load <= 0:
        return 0
    # round() absorbs float noise so that e.g. 12 / (10 × 0.6) counts as exactly 2.
    return math.floor(round(load / target, 9)) + 1


def _why_keep(
    p: AutomaticScaling,
    load: int,
    inflight: int,
    pending: int,
    target: float,
    slots: int,
    need: int,
) -> str:
    if need >= p.min_instances and need > 0:
        base = (
            f"load {load} ({inflight} in flight + {pending} pending) at {target:g} per instance"
            f" ({slots} slots x target_throughput_utilization"
            f" {p.target_throughput_utilization:g}) needs {need}"
        )
    else:
        base = f"min_instances {p.min_instances}"
    if p.min_idle_instances:
        base += f" + min_idle_instances {p.min_idle_instances}"
    return base


def _scale_down(
    p: AutomaticScaling, live: list[InstanceView], keep: int, why_keep: str, *, delay: float
) -> Decision:
    idle = _idle_most_first(live)
    if not idle:
        return NOOP
    over_cap = p.max_idle_instances is not None and len(idle) > p.max_idle_instances
    threshold = min(delay, IDLE_CAP_GRACE) if over_cap else delay
    victim = idle[0]
    assert victim.idle_for is not None
    if victim.idle_for < threshold:
        return NOOP
    rule = (
        f"{threshold:.0f}s with {len(idle)} idle > max_idle_instances {p.max_idle_instances}"
        if over_cap
        else f"scale-down delay {threshold:.0f}s"
    )
    return Decision(
        stop=(victim.id,),
        reason=(
            f"instance {victim.id} idle {victim.idle_for:.0f}s >= {rule};"
            f" {len(live)} live > {keep} kept ({why_keep}): stopping it"
        ),
    )


# -- basic and manual ---------------------------------------------------------------------------


def _basic(p: BasicScaling, snap: PoolSnapshot, *, cap: int) -> Decision:
    live = _live(snap)
    maximum = max_instances_of(p, cap=cap)
    if len(live) > maximum:
        return _stop_over(live, maximum, "max_instances")
    slots = _slots(live, DEFAULT_SLOTS)
    # SPEC SCALE-2: on demand. Pending requests exist only when no READY slot is free; the slots
    # of STARTING instances (and any READY slot not yet handed out) are already there for them.
    coming = sum(max(i.limit - i.inflight, 0) for i in live)
    uncovered = snap.pending - coming
    if uncovered > 0 and len(live) < maximum:
        n = min(math.ceil(uncovered / slots), maximum - len(live))
        return Decision(
            start=n,
            reason=(
                f"{snap.pending} pending, {coming} slot(s) free or starting; {len(live)} live,"
                f" max_instances {maximum}: starting {n} ({slots} slots each)"
            ),
        )
    timed_out = [
        i for i in _idle_most_first(live) if i.idle_for is not None and i.idle_for >= p.idle_timeout
    ]
    if not timed_out:
        return NOOP
    # SPEC SCALE-2: each instance has its own idle timer; all that ran out stop, down to zero.
    ids = tuple(i.id for i in timed_out)
    return Decision(
        stop=ids,
        reason=f"{', '.join(ids)} idle >= idle_timeout {p.idle_timeout:.0f}s: stopping",
    )


def _manual(p: ManualScaling, snap: PoolSnapshot) -> Decision:
    live = _live(snap)
    if len(live) < p.instances:
        # SPEC SCALE-2/INST-3: a dead (or recycled) instance is no longer live; replace it.
        n = p.instances - len(live)
        return Decision(
            start=n,
            reason=f"{len(live)} live < manual_scaling instances {p.instances}: starting {n}",
        )
    if len(live) > p.instances:
        return _stop_over(live, p.instances, "manual_scaling instances")
    return NOOP


# -- shared -------------------------------------------------------------------------------------


def _live(snap: PoolSnapshot) -> list[InstanceView]:
    return [i for i in snap.instances if i.state in (State.READY, State.STARTING)]


def _starting(live: list[InstanceView]) -> int:
    return sum(1 for i in live if i.state is State.STARTING)


def _slots(live: list[InstanceView], default: int) -> int:
    # SPEC INST-4: the instances' own limit is what they take (threadsafe: false → 1).
    return min((i.limit for i in live), default=default) or default


def _idle_most_first(live: list[InstanceView]) -> list[InstanceView]:
    idle = [
        i for i in live if i.state is State.READY and i.inflight == 0 and i.idle_for is not None
    ]
    return sorted(idle, key=lambda i: (-(i.idle_for or 0.0), i.id))


def _stop_over(live: list[InstanceView], maximum: int, setting: str) -> Decision:
    excess = len(live) - maximum
    victims = tuple(i.id for i in _idle_most_first(live)[:excess])
    if not victims:
        return NOOP
    return Decision(
        stop=victims,
        reason=(
            f"{len(live)} live > {setting} {maximum}: stopping {len(victims)} idle"
            f" ({', '.join(victims)})"
        ),
    )
