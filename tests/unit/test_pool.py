"""SPEC INST-3, INST-4, SCALE-3: the pure instance pool in gfe_proxy/pool.py, as timelines."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gfe_proxy.config import AppConfig, AutomaticScaling, BasicScaling
from gfe_proxy.pool import (
    LIVE_STATES,
    TRANSITIONS,
    Event,
    IllegalTransition,
    Pool,
    State,
)

PENDING_TIMEOUT = 10.0  # seconds; SPEC SCALE-3


class Req:
    """An opaque waiter, as the glue's futures are to the pool; compared by identity."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


def ready_pool(*limits: int, now: float = 0.0) -> Pool[Req]:
    """A pool with READY instances i-1, i-2, ... of the given limits."""
    pool: Pool[Req] = Pool()
    for n, limit in enumerate(limits, start=1):
        pool.add(f"i-{n}", limit=limit, now=now)
        assert pool.transition(f"i-{n}", Event.READY, now=now) == []
    return pool


def inflight(pool: Pool[Req]) -> dict[str, int]:
    return {r.id: r.inflight for r in pool.records()}


# -- INST-4: assignment ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limits", "busy", "expected"),
    [
        ((10, 10), {}, "i-1"),
        ((10, 10), {"i-1": 1}, "i-2"),
        ((10, 10, 10), {"i-1": 3, "i-2": 1, "i-3": 2}, "i-2"),
        ((10, 2), {"i-1": 4, "i-2": 1}, "i-1"),  # by fraction: 4/10 < 1/2
        ((10, 4), {"i-1": 5, "i-2": 2}, "i-1"),  # 5/10 == 2/4: the first added wins a tie
        ((1, 10), {"i-1": 1}, "i-2"),  # a full instance is skipped
    ],
    ids=["all-idle-first", "idle-one", "fewest", "by-fraction", "tie-first", "skips-full"],
)
def test_inst_4_acquire_returns_least_loaded_ready_instance(
    limits: tuple[int, ...], busy: dict[str, int], expected: str
) -> None:
    pool = ready_pool(*limits)
    for iid, n in busy.items():
        pool.get(iid).inflight = n  # type: ignore[union-attr]
    assert pool.acquire(Req("new"), now=1.0) == expected


@pytest.mark.parametrize(
    "state_path",
    [[], [Event.DRAIN], [Event.READY, Event.DRAIN], [Event.CRASHED]],
    ids=["starting", "draining-before-ready", "draining", "failed"],
)
def test_inst_4_acquire_only_uses_ready_instances(state_path: list[Event]) -> None:
    pool: Pool[Req] = Pool()
    pool.add("i-1", limit=10, now=0.0)
    for event in state_path:
        pool.transition("i-1", event, now=0.0)
    assert pool.acquire(Req("a"), now=1.0) is None
    assert pool.pending == 1
    assert pool.get("i-1").inflight == 0  # type: ignore[union-attr]


def test_inst_4_limit_respected_then_queue() -> None:
    pool = ready_pool(3)
    got = [pool.acquire(Req(f"r{n}"), now=1.0) for n in range(5)]
    assert got == ["i-1", "i-1", "i-1", None, None]
    assert inflight(pool) == {"i-1": 3}
    assert pool.pending == 2


@pytest.mark.parametrize(
    ("runtime", "threadsafe", "scaling", "limit"),
    [
        ("python27", False, AutomaticScaling(), 1),
        ("python27", True, AutomaticScaling(), 10),
        ("python312", None, AutomaticScaling(max_concurrent_requests=80), 80),
        ("python27", False, BasicScaling(), 1),
        ("python312", None, BasicScaling(), 10),
    ],
    ids=["gen1-threadsafe-false", "gen1-threadsafe-true", "gen2-mcr-80", "basic-gen1", "basic"],
)
def test_inst_4_limit_from_config_threadsafe_false_is_one(
    runtime: str, threadsafe: bool | None, scaling: AutomaticScaling | BasicScaling, limit: int
) -> None:
    app = AppConfig(
        path=Path("/app/app.yaml"), root=Path("/app"), runtime=runtime, threadsafe=threadsafe,
        scaling=scaling,
    )
    assert app.max_concurrent_requests == limit
    pool = ready_pool(app.max_concurrent_requests)
    got = [pool.acquire(Req(f"r{n}"), now=1.0) for n in range(limit + 1)]
    assert got == ["i-1"] * limit + [None]


def test_inst_4_pending_queue_is_fifo_timeline() -> None:
    pool = ready_pool(1)
    a, b, c, d = Req("a"), Req("b"), Req("c"), Req("d")
    assert pool.acquire(a, now=0.0) == "i-1"
    assert pool.acquire(b, now=0.1) is None
    assert pool.acquire(c, now=0.2) is None
    assert pool.acquire(d, now=0.3) is None
    assert pool.oldest_wait(1.1) == pytest.approx(1.0)
    assert pool.release("i-1", now=1.0) == [(b, "i-1")]
    assert pool.release("i-1", now=2.0) == [(c, "i-1")]
    assert pool.release("i-1", now=3.0) == [(d, "i-1")]
    assert pool.release("i-1", now=4.0) == []
    assert inflight(pool) == {"i-1": 0}
    assert pool.get("i-1").served == 4  # type: ignore[union-attr]


def test_inst_4_release_hands_slot_to_oldest_waiter_on_least_loaded() -> None:
    pool = ready_pool(2, 2)
    reqs = [Req(f"r{n}") for n in range(6)]
    assert [pool.acquire(r, now=0.0) for r in reqs] == ["i-1", "i-2", "i-1", "i-2", None, None]
    # i-2 frees a slot: the oldest waiter (r4) gets it, r5 keeps waiting.
    assert pool.release("i-2", now=1.0) == [(reqs[4], "i-2")]
    assert pool.pending == 1
    assert pool.release("i-1", now=2.0) == [(reqs[5], "i-1")]
    assert pool.pending == 0


def test_inst_4_new_request_queues_behind_waiters() -> None:
    pool = ready_pool(1)
    a, b, c = Req("a"), Req("b"), Req("c")
    pool.acquire(a, now=0.0)
    pool.acquire(b, now=0.1)
    assert pool.acquire(c, now=0.2) is None
    assert pool.release("i-1", now=1.0) == [(b, "i-1")]


def test_release_of_unknown_instance_is_ignored() -> None:
    pool = ready_pool(1)
    assert pool.release("i-9", now=1.0) == []


# -- INST-3: lifecycle table ------------------------------------------------------------------

# The table as SPEC INST-3 describes it, written out so a change to TRANSITIONS is a decision.
EXPECTED_TRANSITIONS: dict[State, dict[Event, State]] = {
    State.STARTING: {
        Event.READY: State.READY,
        Event.DRAIN: State.DRAINING,
        Event.EXITED: State.FAILED,
        Event.CRASHED: State.FAILED,
    },
    State.READY: {
        Event.DRAIN: State.DRAINING,
        Event.EXITED: State.FAILED,
        Event.CRASHED: State.FAILED,
    },
    State.DRAINING: {
        Event.DRAIN: State.DRAINING,
        Event.EXITED: State.STOPPED,
        Event.CRASHED: State.STOPPED,
    },
    State.STOPPED: {},
    State.FAILED: {},
}

# Events that bring a fresh (STARTING) instance to each state.
PATH_TO: dict[State, list[Event]] = {
    State.STARTING: [],
    State.READY: [Event.READY],
    State.DRAINING: [Event.READY, Event.DRAIN],
    State.STOPPED: [Event.READY, Event.DRAIN, Event.EXITED],
    State.FAILED: [Event.CRASHED],
}

ALL_PAIRS = [(s, e) for s in State for e in Event]


def test_inst_3_transition_table_is_as_specified() -> None:
    assert TRANSITIONS == EXPECTED_TRANSITIONS
    assert frozenset({State.STARTING, State.READY, State.DRAINING}) == LIVE_STATES


def instance_in(state: State) -> Pool[Req]:
    pool: Pool[Req] = Pool()
    pool.add("i-1", limit=10, now=0.0)
    for event in PATH_TO[state]:
        pool.transition("i-1", event, now=0.0)
    assert pool.get("i-1").state is state  # type: ignore[union-attr]
    return pool


@pytest.mark.parametrize(
    ("state", "event"),
    [p for p in ALL_PAIRS if p[1] in EXPECTED_TRANSITIONS[p[0]]],
    ids=lambda x: x.name,
)
def test_inst_3_legal_transition(state: State, event: Event) -> None:
    pool = instance_in(state)
    pool.transition("i-1", event, now=1.0)
    assert pool.get("i-1").state is EXPECTED_TRANSITIONS[state][event]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("state", "event"),
    [p for p in ALL_PAIRS if p[1] not in EXPECTED_TRANSITIONS[p[0]]],
    ids=lambda x: x.name,
)
def test_inst_3_illegal_transition_raises_and_keeps_state(state: State, event: Event) -> None:
    pool = instance_in(state)
    with pytest.raises(IllegalTransition, match=f"{event.name} in state {state.name}"):
        pool.transition("i-1", event, now=1.0)
    assert pool.get("i-1").state is state  # type: ignore[union-attr]


def test_inst_3_ready_assigns_queued_waiters_oldest_first() -> None:
    pool: Pool[Req] = Pool()
    a, b, c = Req("a"), Req("b"), Req("c")
    assert pool.acquire(a, now=0.0) is None  # cold start: nothing READY yet
    assert pool.acquire(b, now=0.1) is None
    assert pool.acquire(c, now=0.2) is None
    pool.add("i-1", limit=2, now=0.0)
    assert pool.transition("i-1", Event.READY, now=1.5) == [(a, "i-1"), (b, "i-1")]
    assert pool.pending == 1
    assert pool.oldest_wait(2.2) == pytest.approx(2.0)
    rec = pool.get("i-1")
    assert rec is not None
    assert rec.ready_at == 1.5


def test_inst_3_drain_takes_no_new_requests_and_finishes_in_flight() -> None:
    pool = ready_pool(2, 2)
    a, b, c = Req("a"), Req("b"), Req("c")
    assert pool.acquire(a, now=0.0) == "i-1"
    assert pool.transition("i-1", Event.DRAIN, now=1.0) == []
    assert pool.acquire(b, now=1.1) == "i-2"
    assert pool.acquire(c, now=1.2) == "i-2"
    # A request finishing on the draining instance frees nothing that can be used.
    assert pool.release("i-1", now=2.0) == []
    assert inflight(pool) == {"i-1": 0, "i-2": 2}
    pool.transition("i-1", Event.EXITED, now=2.5)
    assert pool.get("i-1").state is State.STOPPED  # type: ignore[union-attr]


def test_inst_3_crash_then_requeue_and_assign_timeline() -> None:
    pool = ready_pool(1, 1)
    a, b, c = Req("a"), Req("b"), Req("c")
    assert pool.acquire(a, now=1.0) == "i-1"
    assert pool.acquire(b, now=2.0) == "i-2"
    assert pool.acquire(c, now=3.0) is None
    # i-1 dies with `a` in flight: the request is not lost, it goes back to the head.
    assert pool.transition("i-1", Event.CRASHED, now=4.0) == []
    pool.abandon("i-1")
    pool.requeue(a, since=1.0)
    assert pool.pending == 2
    assert pool.oldest_wait(5.0) == pytest.approx(4.0)  # measured from a's arrival
    assert pool.release("i-2", now=5.0) == [(a, "i-2")]
    assert pool.release("i-2", now=6.0) == [(c, "i-2")]


def test_inst_3_requeue_needs_assign_when_a_slot_is_free() -> None:
    # requeue() returns nothing: the glue must call assign() after it, or the requeued
    # request (and every later acquire, queued behind it) waits for the next release.
    pool = ready_pool(1, 1)
    a, b = Req("a"), Req("b")
    assert pool.acquire(a, now=1.0) == "i-1"
    pool.transition("i-1", Event.CRASHED, now=2.0)
    pool.abandon("i-1")
    pool.requeue(a, since=1.0)
    assert pool.acquire(b, now=2.1) is None  # FIFO: b may not pass a
    assert pool.assign(now=2.2) == [(a, "i-2")]
    assert pool.pending == 1  # b waits for i-2 (limit 1)


def test_forget_drops_only_dead_records() -> None:
    pool = ready_pool(1, 1)
    pool.forget("i-1")
    assert pool.get("i-1") is not None
    pool.transition("i-1", Event.CRASHED, now=1.0)
    pool.forget("i-1")
    assert pool.get("i-1") is None
    assert [r.id for r in pool.records()] == ["i-2"]


def test_add_twice_is_an_error() -> None:
    pool = ready_pool(1)
    with pytest.raises(ValueError, match="already in the pool"):
        pool.add("i-1", limit=1, now=1.0)


# -- cancel, expiry (SCALE-3), abandon ---------------------------------------------------------


def test_cancel_removes_exactly_that_waiter() -> None:
    pool = ready_pool(1)
    a, b, c, d = Req("a"), Req("b"), Req("c"), Req("d")
    pool.acquire(a, now=0.0)
    for r in (b, c, d):
        pool.acquire(r, now=0.5)
    assert pool.cancel(c) is True
    assert pool.cancel(c) is False
    assert pool.cancel(Req("c")) is False  # identity, not equality of names
    assert pool.pending == 2
    assert pool.release("i-1", now=1.0) == [(b, "i-1")]
    assert pool.release("i-1", now=2.0) == [(d, "i-1")]


@pytest.mark.parametrize(
    ("now", "expired"),
    [(9.999, []), (10.0, ["a"]), (10.5, ["a", "b"]), (12.0, ["a", "b", "c"])],
    ids=["just-under-10s", "exactly-10s", "two", "all"],
)
def test_scale_3_expired_after_10s_in_queue(now: float, expired: list[str]) -> None:
    pool: Pool[Req] = Pool()  # no instance: everything queues
    for name, since in (("a", 0.0), ("b", 0.5), ("c", 1.5)):
        pool.acquire(Req(name), now=since)
    out = pool.expired(now=now, max_wait=PENDING_TIMEOUT)
    assert [r.name for r in out] == expired
    assert pool.pending == 3 - len(expired)
    assert pool.expired(now=now, max_wait=PENDING_TIMEOUT) == []  # removed, not repeated


def test_abandon_frees_the_slot_never_below_zero() -> None:
    pool = ready_pool(2)
    pool.acquire(Req("a"), now=0.0)
    pool.abandon("i-1")
    assert inflight(pool) == {"i-1": 0}
    pool.abandon("i-1")
    assert inflight(pool) == {"i-1": 0}
    pool.abandon("i-9")  # unknown instance: nothing to do
    assert pool.get("i-1").served == 0  # type: ignore[union-attr]


# -- snapshot -----------------------------------------------------------------------------------


def test_snapshot_idle_for_timeline() -> None:
    pool: Pool[Req] = Pool()
    pool.add("i-1", limit=2, now=0.0)
    pool.add("i-2", limit=2, now=0.0)
    views = {v.id: v for v in pool.snapshot(1.0).instances}
    assert views["i-1"].idle_for is None  # STARTING, never served
    pool.transition("i-1", Event.READY, now=2.0)
    assert pool.snapshot(5.0).instances[0].idle_for == pytest.approx(3.0)  # idle since ready
    pool.acquire(Req("a"), now=6.0)
    assert pool.snapshot(7.0).instances[0].idle_for is None  # busy
    pool.release("i-1", now=8.0)
    snap = pool.snapshot(20.0)
    assert snap.instances[0].idle_for == pytest.approx(12.0)
    assert snap.instances[0].served == 1
    assert snap.instances[0].state is State.READY
    assert snap.now == 20.0


def test_snapshot_counts_pending_and_live() -> None:
    pool = ready_pool(1, 1)
    pool.add("i-3", limit=1, now=0.0)  # STARTING
    pool.transition("i-2", Event.CRASHED, now=0.5)
    pool.acquire(Req("a"), now=1.0)
    pool.acquire(Req("b"), now=2.0)
    pool.acquire(Req("c"), now=3.0)
    snap = pool.snapshot(4.0)
    assert snap.live == 2
    assert snap.pending == 2
    assert snap.oldest_wait == pytest.approx(2.0)
    empty = ready_pool(1).snapshot(4.0)
    assert (empty.pending, empty.oldest_wait) == (0, 0.0)


# -- reported problems in pool.py ---------------------------------------------------------------


def test_inst_3_requeue_of_two_keeps_arrival_order() -> None:
    pool: Pool[Req] = Pool()
    a, b = Req("a"), Req("b")
    pool.requeue(a, since=1.0)
    pool.requeue(b, since=2.0)
    assert pool.oldest_wait(11.0) == pytest.approx(10.0)
    assert pool.expired(now=11.0, max_wait=PENDING_TIMEOUT) == [a]


def test_inst_4_extra_release_cannot_raise_capacity() -> None:
    pool = ready_pool(1)
    pool.acquire(Req("a"), now=0.0)
    pool.release("i-1", now=1.0)
    pool.release("i-1", now=1.0)
    assert pool.acquire(Req("b"), now=2.0) == "i-1"
    assert pool.acquire(Req("c"), now=2.0) is None


def test_loading_flag_for_first_request_on_new_instance() -> None:
    pool = ready_pool(10)
    iid = pool.acquire(Req("first"), now=0.0)
    assert iid is not None
    assert pool.get(iid).loading  # type: ignore[union-attr]


# -- properties ---------------------------------------------------------------------------------

OPS = st.lists(
    st.tuples(
        st.sampled_from(["acquire", "release", "ready", "drain", "crash", "exit", "cancel",
                         "expire", "add"]),
        st.integers(min_value=0, max_value=5),
    ),
    max_size=80,
)


@settings(max_examples=200, deadline=None)
@given(ops=OPS, limits=st.lists(st.integers(min_value=1, max_value=4), min_size=1, max_size=4))
def test_inst_4_property_inflight_within_limit_and_no_idle_slot_while_queued(
    ops: list[tuple[str, int]], limits: list[int]
) -> None:
    """Under any sequence of legal calls, 0 <= inflight <= limit on every instance, every
    granted slot is on a READY instance, and no READY slot stays free while requests wait."""
    pool: Pool[Req] = Pool()
    held: dict[str, int] = {}  # slots granted and not yet released/abandoned, per instance
    waiting: list[Req] = []
    now = 0.0
    for n, limit in enumerate(limits):
        pool.add(f"i-{n}", limit=limit, now=now)

    def grant(pairs: list[tuple[Req, str]]) -> None:
        for waiter, iid in pairs:
            assert pool.get(iid).state is State.READY  # type: ignore[union-attr]
            waiting.remove(waiter)
            held[iid] = held.get(iid, 0) + 1

    for op, k in ops:
        now += 0.25
        ids = [r.id for r in pool.records()]
        iid = ids[k % len(ids)]
        state = pool.get(iid).state  # type: ignore[union-attr]
        match op:
            case "acquire":
                r = Req(f"r{now}")
                got = pool.acquire(r, now=now)
                if got is None:
                    waiting.append(r)
                else:
                    assert pool.get(got).state is State.READY  # type: ignore[union-attr]
                    held[got] = held.get(got, 0) + 1
            case "release":
                if held.get(iid):
                    held[iid] -= 1
                    grant(pool.release(iid, now=now))
            case "ready" | "drain" | "crash" | "exit":
                event = {"ready": Event.READY, "drain": Event.DRAIN, "crash": Event.CRASHED,
                         "exit": Event.EXITED}[op]
                if event in TRANSITIONS[state]:
                    grant(pool.transition(iid, event, now=now))
                    if pool.get(iid).state not in LIVE_STATES:  # type: ignore[union-attr]
                        # the process is gone: its requests end unserved
                        for _ in range(held.pop(iid, 0)):
                            pool.abandon(iid)
                else:
                    with pytest.raises(IllegalTransition):
                        pool.transition(iid, event, now=now)
            case "cancel":
                if waiting:
                    r = waiting[k % len(waiting)]
                    assert pool.cancel(r)
                    waiting.remove(r)
            case "expire":
                for r in pool.expired(now=now, max_wait=1.0):
                    waiting.remove(r)
            case "add":
                pool.add(f"i-x{now}", limit=1 + k % 3, now=now)
        assert pool.pending == len(waiting)
        for rec in pool.records():
            assert 0 <= rec.inflight <= rec.limit, rec
            assert rec.inflight == held.get(rec.id, 0), rec
        if pool.pending:
            assert all(r.free == 0 for r in pool.records()), "a READY slot idles while queued"


# -- ROUTE-5: a slot on one named instance ----------------------------------------------------


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        ("free", True),
        ("full", False),
        ("starting", False),
        ("draining", False),
        ("unknown", False),
    ],
    ids=["free-slot", "full", "starting", "draining", "unknown-id"],
)
def test_route_5_acquire_on_takes_a_slot_only_on_a_ready_instance_with_room(
    setup: str, expected: bool
) -> None:
    pool = ready_pool(2)
    pool.add("i-2", limit=2, now=0.0)  # stays STARTING
    target = {"starting": "i-2", "unknown": "i-9"}.get(setup, "i-1")
    if setup == "full":
        pool.get("i-1").inflight = 2  # type: ignore[union-attr]
    if setup == "draining":
        pool.transition("i-1", Event.DRAIN, now=0.0)
    before = inflight(pool)
    assert pool.acquire_on(target) is expected
    after = inflight(pool)
    if expected:
        assert after[target] == before[target] + 1
    else:
        assert after == before
    assert pool.pending == 0  # never queued


def test_route_5_acquire_on_never_overtakes_the_queue() -> None:
    pool = ready_pool(1)
    assert pool.acquire(Req("a"), now=0.0) == "i-1"
    assert pool.acquire(Req("b"), now=0.0) is None  # queued: so no READY slot is free
    assert pool.acquire_on("i-1") is False
    assert pool.release("i-1", now=1.0)[0][1] == "i-1"  # b got the slot, not a targeted one
    assert pool.acquire_on("i-1") is False
