"""SPEC SCALE-1, SCALE-2, INST-3/INST-4: the pure scaling policy in gfe_proxy/scaling.py.

Snapshots are built by hand (``snap(...)``) and time is an explicit ``now``: no clock, no sleep.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gfe_proxy.config import AutomaticScaling, BasicScaling, ManualScaling
from gfe_proxy.pool import Event, InstanceView, Pool, PoolSnapshot, State
from gfe_proxy.scaling import (
    AUTOMATIC_MAX_PENDING_LATENCY,
    AUTOMATIC_MIN_PENDING_LATENCY,
    IDLE_CAP_GRACE,
    LATENCY_START_INTERVAL,
    Decision,
    ScalerMemory,
    decide,
    max_instances_of,
)

NOW = 1000.0
R, S, D = State.READY, State.STARTING, State.DRAINING


def iv(
    iid: str, state: State = R, *, inflight: int = 0, limit: int = 10, idle: float = 0.0
) -> InstanceView:
    """An instance view; ``idle`` is its idle_for when it is READY with nothing in flight."""
    idle_for = idle if state is not S and inflight == 0 else None
    return InstanceView(
        id=iid, state=state, inflight=inflight, limit=limit, served=0, idle_for=idle_for
    )


def snap(
    *instances: InstanceView, pending: int = 0, wait: float = 0.0, now: float = NOW
) -> PoolSnapshot:
    return PoolSnapshot(
        instances=instances, pending=pending, oldest_wait=wait if pending else 0.0, now=now
    )


def run(
    policy: AutomaticScaling | BasicScaling | ManualScaling,
    snapshot: PoolSnapshot,
    memory: ScalerMemory | None = None,
    *,
    scale_down_delay: float = 900.0,
    max_instances_cap: int = 20,
) -> Decision:
    decision, _ = decide(
        policy,
        snapshot,
        memory or ScalerMemory(),
        now=snapshot.now,
        scale_down_delay=scale_down_delay,
        max_instances_cap=max_instances_cap,
    )
    return decision


def busy(n: int, per: int, *, limit: int = 10, prefix: str = "i") -> tuple[InstanceView, ...]:
    return tuple(iv(f"{prefix}-{k}", inflight=per, limit=limit) for k in range(1, n + 1))


AUTO = AutomaticScaling()


# -- defaults -----------------------------------------------------------------------------------


def test_scale_1_defaults() -> None:
    assert AUTO.max_concurrent_requests == 10
    assert AUTO.target_throughput_utilization == 0.6
    assert AUTOMATIC_MAX_PENDING_LATENCY == 0.030  # app.yaml reference: "30ms"
    assert AUTOMATIC_MIN_PENDING_LATENCY == 0.0
    assert max_instances_of(AUTO) == 20  # None: the local cap
    assert max_instances_of(AutomaticScaling(max_instances=0), cap=7) == 7  # 0 disables it
    assert max_instances_of(AutomaticScaling(max_instances=50), cap=7) == 50  # explicit wins
    assert max_instances_of(BasicScaling()) == 1
    assert max_instances_of(ManualScaling(instances=3)) == 3


def test_no_instances_no_load_is_a_noop_with_empty_reason() -> None:
    for policy in (AUTO, BasicScaling(), ManualScaling(instances=0)):
        decision, memory = decide(policy, snap(), ScalerMemory(), now=NOW)
        assert decision == Decision()
        assert decision.noop
        assert memory == ScalerMemory()


# -- SCALE-1: concurrency rule ------------------------------------------------------------------


def test_scale_1_benchmark_scenario_64_clients_mcr_8_wants_14() -> None:
    """64 concurrent clients of a 50 ms handler, max_concurrent_requests 8: T = 8 × 0.6 = 4.8
    per instance, need = floor(64 / 4.8) + 1 = floor(13.33) + 1 = 14 instances."""
    policy = AutomaticScaling(max_concurrent_requests=8)
    # cold: all 64 pending
    d = run(policy, snap(pending=64))
    assert d.start == 14
    assert d.reason == (
        "load 64 (0 in flight + 64 pending) at 4.8 per instance"
        " (8 slots x target_throughput_utilization 0.6) needs 14; 0 live: starting 14"
    )
    # one warm instance, full: 8 in flight + 56 pending
    assert run(policy, snap(*busy(1, 8, limit=8), pending=56)).start == 13
    # steady state: 14 instances share the 64 requests (6 × 4 + 8 × 5): nothing to do
    steady = busy(6, 4, limit=8) + busy(8, 5, limit=8, prefix="j")
    assert sum(i.inflight for i in steady) == 64
    assert run(policy, snap(*steady)) == Decision()


@pytest.mark.parametrize(
    ("instances", "pending", "policy", "start"),
    [
        (busy(1, 5), 0, AUTO, 0),
        (busy(1, 6), 0, AUTO, 1),
        (busy(2, 6), 0, AUTO, 1),
        (busy(2, 5), 0, AUTO, 0),
        (busy(1, 10), 5, AUTO, 2),
        ((iv("i-1", S),), 5, AUTO, 0),
        ((iv("i-1", S),), 6, AUTO, 1),
        ((iv("i-1", S), iv("i-2", S)), 11, AUTO, 0),
        (busy(1, 9), 0, AutomaticScaling(target_throughput_utilization=0.95), 0),
        (busy(1, 10), 0, AutomaticScaling(target_throughput_utilization=0.95), 1),
        (busy(1, 5), 0, AutomaticScaling(target_throughput_utilization=0.5), 1),
        (busy(1, 29, limit=50), 0, AutomaticScaling(max_concurrent_requests=50), 0),
        (busy(1, 30, limit=50), 0, AutomaticScaling(max_concurrent_requests=50), 1),
        (busy(1, 1, limit=1), 0, AUTO, 1),
        ((iv("i-1"), iv("i-2", D, inflight=10)), 0, AUTO, 0),
        ((), 1, AUTO, 1),
    ],
    ids=[
        "5-below-6", "6-reaches-6", "12-on-2-wants-3", "10-on-2", "full-plus-5-pending",
        "starting-covers-5", "starting-6-pending-reaches", "2-starting-cover-11",
        "ttu-0.95-9", "ttu-0.95-10", "ttu-0.5-5", "mcr-50-29", "mcr-50-30",
        "threadsafe-false-limit-1", "draining-load-not-counted", "cold-first-request",
    ],
)
def test_scale_1_concurrency_rule_starts_when_inflight_reaches_mcr_times_ttu(
    instances: tuple[InstanceView, ...], pending: int, policy: AutomaticScaling, start: int
) -> None:
    d = run(policy, snap(*instances, pending=pending, wait=0.0))
    assert d.start == start
    assert d.stop == ()
    assert bool(d.reason) == bool(start)


def test_inst_3_starting_instances_are_capacity_to_come_timeline() -> None:
    """A burst does not start one more instance per tick while the first boots."""
    memory = ScalerMemory()
    d, memory = decide(AUTO, snap(pending=4, now=0.0), memory, now=0.0)
    assert d.start == 1
    assert memory.last_start_at == 0.0
    for t in (0.2, 0.4, 0.6, 0.8):
        d, memory = decide(AUTO, snap(iv("i-1", S), pending=5, wait=t, now=t), memory, now=t)
        assert d == Decision(), t
    assert memory.last_start_at == 0.0


# -- SCALE-1: pending latencies -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("min_pending", "wait", "start"),
    [(None, 0.0, 1), (0.5, 0.0, 0), (0.5, 0.49, 0), (0.5, 0.5, 1), (2.0, 3.0, 1)],
    ids=["automatic-0", "fresh-request", "just-under", "reached", "long-waited"],
)
def test_scale_1_never_start_for_a_request_waiting_less_than_min_pending_latency(
    min_pending: float | None, wait: float, start: int
) -> None:
    policy = AutomaticScaling(min_pending_latency=min_pending)
    assert run(policy, snap(pending=1, wait=wait)).start == start


def test_scale_1_min_pending_latency_does_not_hold_back_inflight_load() -> None:
    policy = AutomaticScaling(min_pending_latency=5.0)
    d = run(policy, snap(*busy(1, 6), pending=3, wait=0.1))
    assert d.start == 1  # 6 in flight reach 6; the 3 young pending requests are not counted
    assert "(6 in flight + 0 pending)" in d.reason


# The capacity counted (one READY, full, plus one STARTING) covers the load of 11 (need 2), yet
# one request has waited: the latency rule decides.
LATENCY_CASE = (iv("i-1", inflight=10), iv("i-2", S))


@pytest.mark.parametrize(
    ("max_pending", "min_pending", "wait", "last_start", "start"),
    [
        (None, None, 0.031, None, 1),
        (None, None, 0.030, None, 0),
        (0.3, None, 0.29, None, 0),
        (0.3, None, 0.41, None, 1),
        (0.3, None, 0.41, NOW - LATENCY_START_INTERVAL + 0.01, 0),
        (0.3, None, 0.41, NOW - LATENCY_START_INTERVAL, 1),
        (0.3, 1.0, 0.41, None, 0),
    ],
    ids=[
        "automatic-30ms-exceeded", "automatic-30ms-not-exceeded", "below-max", "above-max",
        "within-interval-of-last-start", "interval-passed", "min-pending-wins",
    ],
)
def test_scale_1_start_when_a_request_waited_longer_than_max_pending_latency(
    max_pending: float | None,
    min_pending: float | None,
    wait: float,
    last_start: float | None,
    start: int,
) -> None:
    policy = AutomaticScaling(max_pending_latency=max_pending, min_pending_latency=min_pending)
    memory = ScalerMemory(last_start_at=last_start)
    d = run(policy, snap(*LATENCY_CASE, pending=1, wait=wait), memory)
    assert d.start == start


def test_scale_1_latency_reason_names_rule_and_numbers() -> None:
    policy = AutomaticScaling(max_pending_latency=0.3)
    d = run(policy, snap(*LATENCY_CASE, pending=1, wait=0.41))
    assert d == Decision(
        start=1,
        reason=(
            "pending 0.41s > max_pending_latency 0.30s with 1 pending and 1 instance(s) starting;"
            " 2 live: starting 1"
        ),
    )


def test_scale_1_latency_rule_adds_at_most_one_beyond_the_load_need() -> None:
    # Already one more than the load needs (an earlier latency start): no further start.
    instances = (*LATENCY_CASE, iv("i-3", S))
    assert run(AUTO, snap(*instances, pending=1, wait=5.0)) == Decision()


# -- SCALE-1: min/max instances, idle instances -------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "instances", "pending", "start", "reason_part"),
    [
        (AutomaticScaling(min_instances=2), (), 0, 2, "min_instances 2; 0 live: starting 2"),
        (AutomaticScaling(min_instances=2), (iv("i-1"), iv("i-2", D)), 0, 1, "1 live"),
        (AutomaticScaling(min_instances=2), (iv("i-1"), iv("i-2", S)), 0, 0, ""),
        (AutomaticScaling(min_idle_instances=1), (), 0, 1,
         "min_instances 0 + min_idle_instances 1; 0 live: starting 1"),
        (AutomaticScaling(min_idle_instances=1), busy(1, 6), 0, 2,
         "needs 2 + min_idle_instances 1; 1 live: starting 2"),
        (AutomaticScaling(min_instances=1, min_idle_instances=1), (), 0, 2,
         "min_instances 1 + min_idle_instances 1"),
        (AutomaticScaling(max_instances=5), (), 64, 5, "capped by max_instances 5"),
        (AutomaticScaling(max_instances=5), busy(5, 10), 64, 0, ""),
        (AutomaticScaling(min_instances=9, max_instances=3), (), 0, 3, "capped by max_instances 3"),
        (AUTO, (), 400, 20, "needs 67; 0 live: starting 20, capped by max_instances 20"),
    ],
    ids=[
        "min-instances", "min-replaces-draining", "min-counts-starting", "min-idle",
        "min-idle-on-top-of-load", "min-plus-min-idle", "max-caps-start", "at-max",
        "max-beats-min", "none-means-cap-20",
    ],
)
def test_scale_1_keep_between_min_and_max_plus_min_idle(
    policy: AutomaticScaling,
    instances: tuple[InstanceView, ...],
    pending: int,
    start: int,
    reason_part: str,
) -> None:
    d = run(policy, snap(*instances, pending=pending))
    assert d.start == start
    assert reason_part in d.reason
    if not start:
        assert d == Decision()


def test_scale_1_max_instances_cap_argument_applies_to_unset_max() -> None:
    assert run(AUTO, snap(pending=400), max_instances_cap=4).start == 4


def test_inst_3_crashed_instance_is_replaced_under_min_instances() -> None:
    pool: Pool[object] = Pool()
    for iid in ("i-1", "i-2"):
        pool.add(iid, limit=10, now=0.0)
        pool.transition(iid, Event.READY, now=1.0)
    policy = AutomaticScaling(min_instances=2)
    assert run(policy, pool.snapshot(2.0)) == Decision()
    pool.transition("i-2", Event.CRASHED, now=3.0)
    d = run(policy, pool.snapshot(3.0))
    assert d == Decision(start=1, reason="min_instances 2; 1 live: starting 1")


# -- SCALE-1: scale down ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "instances", "delay", "stop"),
    [
        (AUTO, (iv("i-1", idle=950), iv("i-2", idle=1000), iv("i-3", idle=10)), 900, ("i-2",)),
        (AUTO, (iv("i-1", idle=899), iv("i-2", idle=10)), 900, ()),
        (AUTO, (iv("i-1", idle=900),), 900, ("i-1",)),
        (AUTO, (iv("i-1", idle=120), iv("i-2", idle=100)), 100, ("i-1",)),
        (AUTO, (iv("i-b", idle=1000), iv("i-a", idle=1000)), 900, ("i-a",)),
        (AutomaticScaling(min_instances=2), (iv("i-1", idle=5000), iv("i-2", idle=5000)), 900, ()),
        (AutomaticScaling(min_instances=1, min_idle_instances=1),
         (iv("i-1", idle=5000), iv("i-2", idle=5000), iv("i-3", idle=5000)), 900, ("i-1",)),
        (AutomaticScaling(min_instances=1, min_idle_instances=1),
         (iv("i-1", idle=5000), iv("i-2", idle=5000)), 900, ()),
        (AUTO, (iv("i-1", S), iv("i-2", inflight=1)), 0, ()),
        (AUTO, (iv("i-1", D, idle=5000),), 900, ()),
        (AUTO, (*busy(1, 6), iv("x-2", idle=5000)), 900, ()),
        (AUTO, (*busy(1, 6), iv("x-2", idle=5000), iv("x-3", idle=4000)), 900, ("x-2",)),
    ],
    ids=[
        "most-idle-first", "not-yet", "exactly-delay", "delay-argument", "tie-by-id",
        "not-below-min", "above-min-plus-min-idle", "at-min-plus-min-idle",
        "never-starting-or-busy", "draining-left-alone", "load-needs-it", "load-needs-one-of-two",
    ],
)
def test_scale_1_stop_idle_instances_above_minimum_after_scale_down_delay(
    policy: AutomaticScaling,
    instances: tuple[InstanceView, ...],
    delay: float,
    stop: tuple[str, ...],
) -> None:
    d = run(policy, snap(*instances), scale_down_delay=delay)
    assert d.start == 0
    assert d.stop == stop
    assert bool(d.reason) == bool(stop)


def test_scale_1_scale_down_reason() -> None:
    d = run(AutomaticScaling(min_instances=1), snap(iv("i-1", idle=100), iv("i-2", idle=950)))
    assert d == Decision(
        stop=("i-2",),
        reason=(
            "instance i-2 idle 950s >= scale-down delay 900s; 2 live > 1 kept (min_instances 1):"
            " stopping it"
        ),
    )


@pytest.mark.parametrize(
    ("max_idle", "idle", "delay", "stop"),
    [
        (None, IDLE_CAP_GRACE + 1, 900, ()),
        (1, IDLE_CAP_GRACE - 1, 900, ()),
        (1, IDLE_CAP_GRACE, 900, ("i-1",)),
        (3, IDLE_CAP_GRACE + 1, 900, ()),
        (1, 30, 30, ("i-1",)),
    ],
    ids=["automatic", "within-grace", "grace-reached", "under-cap", "delay-shorter-than-grace"],
)
def test_scale_1_max_idle_instances_stops_excess_idle_sooner(
    max_idle: int | None, idle: float, delay: float, stop: tuple[str, ...]
) -> None:
    policy = AutomaticScaling(max_idle_instances=max_idle)
    instances = (iv("i-1", idle=idle), iv("i-2", idle=idle - 1), iv("i-3", idle=idle - 2))
    d = run(policy, snap(*instances), scale_down_delay=delay)
    assert d.stop == stop
    if stop and max_idle is not None and delay > IDLE_CAP_GRACE:
        assert f"3 idle > max_idle_instances {max_idle}" in d.reason


def test_scale_1_over_max_stops_idle_extras_at_once() -> None:
    instances = (iv("i-1", inflight=3), iv("i-2", idle=1), iv("i-3", idle=2), iv("i-4", S))
    d = run(AutomaticScaling(max_instances=2), snap(*instances))
    assert d == Decision(
        stop=("i-3", "i-2"), reason="4 live > max_instances 2: stopping 2 idle (i-3, i-2)"
    )


# -- SCALE-1 timelines --------------------------------------------------------------------------


def test_scale_1_timeline_burst_boot_and_scale_down() -> None:
    """A small burst on a cold service, a slow boot, then quiet until the scale-down delay."""
    memory = ScalerMemory()
    steps: list[tuple[float, PoolSnapshot, Decision]] = [
        (0.0, snap(pending=1, now=0.0),
         Decision(start=1, reason="load 1 (0 in flight + 1 pending) at 6 per instance"
                  " (10 slots x target_throughput_utilization 0.6) needs 1; 0 live: starting 1")),
        (0.5, snap(iv("i-1", S), pending=3, wait=0.5, now=0.5), Decision()),
        (1.0, snap(iv("i-1", S), pending=3, wait=1.0, now=1.0),
         Decision(start=1, reason="pending 1.00s > max_pending_latency 0.03s with 3 pending"
                  " and 1 instance(s) starting; 1 live: starting 1")),
        (1.5, snap(iv("i-1", S), iv("i-2", S), pending=3, wait=1.5, now=1.5), Decision()),
        (2.0, snap(iv("i-1", inflight=3), iv("i-2", S), now=2.0), Decision()),
        (3.0, snap(iv("i-1", inflight=1), iv("i-2", idle=0.5), now=3.0), Decision()),
        (902.0, snap(iv("i-1", idle=899.5), iv("i-2", idle=899.5), now=902.0), Decision()),
        (902.5, snap(iv("i-1", idle=900.0), iv("i-2", idle=900.0), now=902.5),
         Decision(stop=("i-1",), reason="instance i-1 idle 900s >= scale-down delay 900s;"
                  " 2 live > 0 kept (min_instances 0): stopping it")),
        (903.0, snap(iv("i-1", D), iv("i-2", idle=900.5), now=903.0),
         Decision(stop=("i-2",), reason="instance i-2 idle 900s >= scale-down delay 900s;"
                  " 1 live > 0 kept (min_instances 0): stopping it")),
        (904.0, snap(iv("i-2", D), now=904.0), Decision()),
    ]
    for now, snapshot, expected in steps:
        decision, memory = decide(AUTO, snapshot, memory, now=now)
        assert decision == expected, now
    assert memory.last_start_at == 1.0


def test_scale_1_timeline_benchmark_burst_with_mcr_8() -> None:
    """64 clients arrive at a warm single instance; 13 start at once, the latency rule adds one
    after LATENCY_START_INTERVAL while they boot, then the pool is steady at 15."""
    policy = AutomaticScaling(max_concurrent_requests=8)
    memory = ScalerMemory()
    starting13 = tuple(iv(f"s-{k}", S, limit=8) for k in range(13))
    d, memory = decide(policy, snap(*busy(1, 8, limit=8), pending=56, now=0.0), memory, now=0.0)
    assert d.start == 13
    d, memory = decide(
        policy, snap(*busy(1, 8, limit=8), *starting13, pending=56, wait=0.5, now=0.5),
        memory, now=0.5,
    )
    assert d == Decision()
    d, memory = decide(
        policy, snap(*busy(1, 8, limit=8), *starting13, pending=56, wait=1.0, now=1.0),
        memory, now=1.0,
    )
    assert d.start == 1
    assert d.reason.startswith("pending 1.00s > max_pending_latency 0.03s")
    steady = busy(6, 4, limit=8) + busy(8, 5, limit=8, prefix="j") + (iv("k-1", S, limit=8),)
    d, memory = decide(policy, snap(*steady, now=1.5), memory, now=1.5)
    assert d == Decision()


# -- SCALE-2: basic -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "instances", "pending", "start"),
    [
        (BasicScaling(max_instances=3), (), 1, 1),
        (BasicScaling(max_instances=3), (), 15, 2),
        (BasicScaling(max_instances=3), (), 400, 3),
        (BasicScaling(max_instances=3), (iv("i-1", S),), 5, 0),
        (BasicScaling(max_instances=3), (iv("i-1", S),), 11, 1),
        (BasicScaling(max_instances=3), (iv("i-1", S, limit=1),), 3, 2),
        (BasicScaling(max_instances=3), busy(3, 10), 9, 0),
        (BasicScaling(max_instances=3), (*busy(1, 10), iv("i-2", D, inflight=10)), 1, 1),
        (BasicScaling(max_instances=3), busy(1, 10), 0, 0),
    ],
    ids=[
        "on-demand", "two-for-15", "up-to-max", "starting-covers", "starting-short-by-1",
        "starting-limit-1", "at-max", "draining-not-counted", "busy-no-pending",
    ],
)
def test_scale_2_basic_starts_on_demand_up_to_max_instances(
    policy: BasicScaling, instances: tuple[InstanceView, ...], pending: int, start: int
) -> None:
    d = run(policy, snap(*instances, pending=pending))
    assert d.start == start
    assert bool(d.reason) == bool(start)


def test_scale_2_basic_start_reason() -> None:
    d = run(BasicScaling(max_instances=3), snap(iv("i-1", S), pending=11))
    assert d.reason == (
        "11 pending, 10 slot(s) free or starting; 1 live, max_instances 3: starting 1"
        " (10 slots each)"
    )


@pytest.mark.parametrize(
    ("idle_timeout", "instances", "stop"),
    [
        (300.0, (iv("i-1", idle=299),), ()),
        (300.0, (iv("i-1", idle=300),), ("i-1",)),
        (300.0, (iv("i-1", idle=400), iv("i-2", idle=500), iv("i-3", idle=5)), ("i-2", "i-1")),
        (600.0, (iv("i-1", idle=599),), ()),
        (300.0, (iv("i-1", inflight=1), iv("i-2", S)), ()),
    ],
    ids=["not-yet", "default-5min", "all-timed-out-down-to-zero", "10m", "busy-or-starting"],
)
def test_scale_2_basic_stops_instances_idle_for_idle_timeout(
    idle_timeout: float, instances: tuple[InstanceView, ...], stop: tuple[str, ...]
) -> None:
    d = run(BasicScaling(max_instances=5, idle_timeout=idle_timeout), snap(*instances))
    assert d.stop == stop
    assert d.start == 0
    if stop:
        assert d.reason == f"{', '.join(stop)} idle >= idle_timeout {idle_timeout:.0f}s: stopping"


def test_scale_2_basic_over_max_stops_idle_extras() -> None:
    d = run(BasicScaling(max_instances=1), snap(iv("i-1", inflight=2), iv("i-2", idle=3)))
    assert d.stop == ("i-2",)


# -- SCALE-2: manual ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("instances", "start", "stop"),
    [
        ((), 3, ()),
        ((iv("i-1"), iv("i-2", S), iv("i-3", State.FAILED)), 1, ()),
        ((iv("i-1"), iv("i-2"), iv("i-3", D, inflight=1)), 1, ()),
        ((iv("i-1"), iv("i-2", inflight=4), iv("i-3", S)), 0, ()),
        ((iv("i-1", idle=1), iv("i-2", idle=9), iv("i-3"), iv("i-4", inflight=1)), 0, ("i-2",)),
        (busy(4, 1), 0, ()),
    ],
    ids=[
        "start-all", "replace-failed", "replace-recycled", "exact", "extra-idle-stopped",
        "extra-busy-kept",
    ],
)
def test_scale_2_manual_exactly_instances_dead_ones_replaced(
    instances: tuple[InstanceView, ...], start: int, stop: tuple[str, ...]
) -> None:
    d = run(ManualScaling(instances=3), snap(*instances, pending=50, wait=9.0))
    assert (d.start, d.stop) == (start, stop)
    assert bool(d.reason) == (start > 0 or bool(stop))


def test_scale_2_manual_reason() -> None:
    d = run(ManualScaling(instances=3), snap(iv("i-1")))
    assert d == Decision(start=2, reason="1 live < manual_scaling instances 3: starting 2")


# -- memory -------------------------------------------------------------------------------------


def test_memory_records_only_starts() -> None:
    _, m1 = decide(AUTO, snap(pending=1), ScalerMemory(), now=5.0)
    assert m1 == ScalerMemory(last_start_at=5.0)
    _, m2 = decide(AUTO, snap(iv("i-1", idle=5000)), m1, now=6.0)
    assert m2 is m1 or m2 == m1


# -- properties ---------------------------------------------------------------------------------


@st.composite
def snapshots(draw: st.DrawFn) -> PoolSnapshot:
    n = draw(st.integers(min_value=0, max_value=25))
    views = []
    for k in range(n):
        state = draw(st.sampled_from(list(State)))
        limit = draw(st.integers(min_value=1, max_value=12))
        inflight = 0 if state in (State.STARTING, State.STOPPED) else draw(
            st.integers(min_value=0, max_value=limit)
        )
        idle_for = (
            draw(st.floats(min_value=0, max_value=5000))
            if inflight == 0 and state is not State.STARTING
            else None
        )
        views.append(
            InstanceView(id=f"i-{k}", state=state, inflight=inflight, limit=limit, served=0,
                         idle_for=idle_for)
        )
    pending = draw(st.integers(min_value=0, max_value=500))
    wait = draw(st.floats(min_value=0, max_value=20)) if pending else 0.0
    return PoolSnapshot(instances=tuple(views), pending=pending, oldest_wait=wait, now=NOW)


latencies = st.none() | st.floats(min_value=0.0, max_value=15.0)
policies = st.one_of(
    st.builds(
        AutomaticScaling,
        target_throughput_utilization=st.floats(min_value=0.5, max_value=0.95),
        max_concurrent_requests=st.integers(min_value=1, max_value=1000),
        min_instances=st.integers(min_value=0, max_value=30),
        max_instances=st.none() | st.integers(min_value=0, max_value=30),
        min_idle_instances=st.integers(min_value=0, max_value=10),
        max_idle_instances=st.none() | st.integers(min_value=0, max_value=10),
        min_pending_latency=latencies,
        max_pending_latency=latencies,
    ),
    st.builds(
        BasicScaling,
        max_instances=st.integers(min_value=1, max_value=30),
        idle_timeout=st.floats(min_value=1, max_value=3600),
    ),
    st.builds(ManualScaling, instances=st.integers(min_value=0, max_value=30)),
)


def floor_of(policy: AutomaticScaling | BasicScaling | ManualScaling, cap: int) -> int:
    match policy:
        case AutomaticScaling():
            return min(policy.min_instances, max_instances_of(policy, cap=cap))
        case BasicScaling():
            return 0
        case ManualScaling():
            return policy.instances


@settings(max_examples=400, deadline=None)
@given(
    policy=policies,
    snapshot=snapshots(),
    last_start=st.none() | st.floats(min_value=NOW - 10, max_value=NOW),
    delay=st.floats(min_value=0, max_value=2000),
    cap=st.integers(min_value=1, max_value=30),
)
def test_scale_1_2_properties_within_bounds_and_never_stop_busy(
    policy: AutomaticScaling | BasicScaling | ManualScaling,
    snapshot: PoolSnapshot,
    last_start: float | None,
    delay: float,
    cap: int,
) -> None:
    """For any policy and snapshot: never above max, never below min, never stops an instance
    with requests in flight (or one STARTING/DRAINING), never starts and stops at once, and a
    reason exactly when there is something to do."""
    d, memory = decide(
        policy, snapshot, ScalerMemory(last_start_at=last_start), now=NOW,
        scale_down_delay=delay, max_instances_cap=cap,
    )
    live = sum(1 for i in snapshot.instances if i.state in (State.READY, State.STARTING))
    maximum = max_instances_of(policy, cap=cap)
    floor = floor_of(policy, cap)
    by_id = {i.id: i for i in snapshot.instances}

    assert d.start >= 0
    assert not (d.start and d.stop)
    if d.start:
        assert live + d.start <= maximum
        assert memory.last_start_at == NOW
    else:
        assert memory.last_start_at == last_start
    if live < floor:
        assert d.start >= floor - live  # a dead instance under the minimum is replaced
    assert len(set(d.stop)) == len(d.stop)
    for iid in d.stop:
        assert by_id[iid].state is State.READY
        assert by_id[iid].inflight == 0
    if d.stop:
        assert live - len(d.stop) >= floor
    assert bool(d.reason) == (not d.noop)


# -- purity -------------------------------------------------------------------------------------


def test_scaling_is_pure_no_aiohttp_no_asyncio() -> None:
    code = (
        "import sys, gfe_proxy.scaling, gfe_proxy.pool; "
        "print('aiohttp' in sys.modules, 'asyncio' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["False", "False"]
