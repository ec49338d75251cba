"""Instance states and request assignment: a pure state machine, no I/O, no event loop.

Theory of operation
-------------------
Every instance of a service has a record here: its lifecycle state (SPEC INST-3) and how many
requests it is working on. A request asks the pool for a slot with ``acquire(waiter)``: when a
READY instance has a free slot (fewer than ``limit`` in flight, SPEC INST-4) the least-loaded one
is returned at once; otherwise the waiter joins one FIFO pending queue. Whenever capacity appears
(a request finishes, an instance becomes ready) the pool returns ``[(waiter, instance_id), ...]``
assignments, oldest waiter first; the async glue (supervisor.py) wakes those waiters. The waiter
objects are opaque here (the glue uses futures), which keeps this module testable with plain
values and a fake clock.

Lifecycle table (h11 style): ``TRANSITIONS[state][event] -> new state``; an event that is not in
the table for the current state raises ``IllegalTransition``.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass
from typing import Generic, TypeVar

W = TypeVar("W")


class State(enum.Enum):
    STARTING = "starting"  # process spawned, port not answering yet (or warmup running)
    READY = "ready"  # takes requests
    DRAINING = "draining"  # takes no new requests; stops when in-flight reaches zero
    STOPPED = "stopped"  # exited on our request
    FAILED = "failed"  # exited on its own, or never became ready


class Event(enum.Enum):
    READY = "ready"  # answered HTTP (and /_ah/warmup, /_ah/start where configured)
    DRAIN = "drain"  # we decided to stop it (scale down, reload, recycle)
    EXITED = "exited"  # the process ended
    CRASHED = "crashed"  # the process ended or failed without being asked to


TRANSITIONS: dict[State, dict[Event, State]] = {
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

LIVE_STATES = frozenset({State.STARTING, State.READY, State.DRAINING})


class IllegalTransition(RuntimeError):
    pass


@dataclass(slots=True)
class InstanceRecord:
    """What the pool knows of one instance. Mutated only by ``Pool``."""

    id: str
    limit: int  # max concurrent requests (SPEC INST-4)
    state: State = State.STARTING
    inflight: int = 0
    served: int = 0  # requests completed
    created_at: float = 0.0
    ready_at: float | None = None
    last_request_at: float | None = None  # when the last request finished (idle clock)

    @property
    def free(self) -> int:
        return self.limit - self.inflight if self.state is State.READY else 0

    @property
    def loading(self) -> bool:
        """Called right after a slot was taken: this is its first request (LOG-1)."""
        return self.served == 0 and self.inflight == 1

    def __repr__(self) -> str:
        return f"<Instance {self.id} {self.state.name} inflight={self.inflight}/{self.limit}>"


@dataclass(frozen=True, slots=True, kw_only=True)
class InstanceView:
    id: str
    state: State
    inflight: int
    limit: int
    served: int
    idle_for: float | None  # seconds since the last request finished; None if busy or never


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolSnapshot:
    """What the scaling policy and the status page see of a pool at one moment."""

    instances: tuple[InstanceView, ...]
    pending: int
    oldest_wait: float  # seconds the oldest pending request has waited; 0 when none
    now: float

    @property
    def live(self) -> int:
        return sum(1 for i in self.instances if i.state in LIVE_STATES)


@dataclass(slots=True)
class _Pending(Generic[W]):
    waiter: W
    since: float


class Pool(Generic[W]):
    """Per-service instance records and one FIFO pending queue (SPEC INST-4)."""

    def __init__(self) -> None:
        self._instances: dict[str, InstanceRecord] = {}
        self._queue: deque[_Pending[W]] = deque()

    # -- instances ----------------------------------------------------------------------

    def add(self, instance_id: str, *, limit: int, now: float) -> InstanceRecord:
        if instance_id in self._instances:
            raise ValueError(f"instance {instance_id} already in the pool")
        rec = InstanceRecord(id=instance_id, limit=limit, created_at=now)
        self._instances[instance_id] = rec
        return rec

    def get(self, instance_id: str) -> InstanceRecord | None:
        return self._instances.get(instance_id)

    def records(self) -> list[InstanceRecord]:
        return list(self._instances.values())

    def transition(self, instance_id: str, event: Event, *, now: float) -> list[tuple[W, str]]:
        """Apply a lifecycle event; returns the waiters that can now run (on READY)."""
        rec = self._instances[instance_id]
        try:
            new = TRANSITIONS[rec.state][event]
        except KeyError:
            raise IllegalTransition(f"{rec!r}: {event.name} in state {rec.state.name}") from None
        rec.state = new
        if new is State.READY:
            rec.ready_at = now
            rec.last_request_at = now
            return self._assign(now)
        return []

    def forget(self, instance_id: str) -> None:
        """Drop a STOPPED or FAILED instance's record."""
        rec = self._instances.get(instance_id)
        if rec is not None and rec.state not in LIVE_STATES:
            del self._instances[instance_id]

    # -- requests -----------------------------------------------------------------------

    def acquire(self, waiter: W, *, now: float) -> str | None:
        """A slot on the least-loaded READY instance, or None after queueing ``waiter``."""
        if not self._queue:
            rec = self._least_loaded()
            if rec is not None:
                self._take(rec)
                return rec.id
        self._queue.append(_Pending(waiter, now))
        return None

    def acquire_on(self, instance_id: str) -> bool:
        """A slot on one named instance (SPEC ROUTE-5 targeting), never queued: True when it is
        READY with a free slot. Whenever requests are pending no READY slot is free, so a
        targeted request never overtakes the queue."""
        rec = self._instances.get(instance_id)
        if rec is None or rec.free <= 0:
            return False
        self._take(rec)
        return True

    def release(self, instance_id: str, *, now: float) -> list[tuple[W, str]]:
        """A request on ``instance_id`` finished; returns the waiters that can now run."""
        rec = self._instances.get(instance_id)
        if rec is None or rec.inflight <= 0:
            return []
        rec.inflight -= 1
        rec.served += 1
        rec.last_request_at = now
        return self._assign(now)

    def abandon(self, instance_id: str) -> None:
        """A request on ``instance_id`` ended without being served (instance died)."""
        rec = self._instances.get(instance_id)
        if rec is not None and rec.inflight > 0:
            rec.inflight -= 1

    def cancel(self, waiter: W) -> bool:
        """Remove a waiter from the queue (its client left, or it timed out)."""
        for i, p in enumerate(self._queue):
            if p.waiter is waiter:
                del self._queue[i]
                return True
        return False

    def expired(self, *, now: float, max_wait: float) -> list[W]:
        """Remove and return the waiters queued longer than ``max_wait`` (SPEC SCALE-3)."""
        out: list[W] = []
        while self._queue and now - self._queue[0].since >= max_wait:
            out.append(self._queue.popleft().waiter)
        return out

    def requeue(self, waiter: W, *, since: float) -> None:
        """Put a request whose instance died back in the queue at its arrival position, so
        FIFO order and the pending timeout still count from when it first arrived (INST-3)."""
        i = len(self._queue)
        while i > 0 and self._queue[i - 1].since > since:
            i -= 1
        self._queue.insert(i, _Pending(waiter, since))

    def assign(self, *, now: float) -> list[tuple[W, str]]:
        """Hand free slots to waiting requests (after any change of capacity)."""
        return self._assign(now)

    # -- views --------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        return len(self._queue)

    def oldest_wait(self, now: float) -> float:
        return now - self._queue[0].since if self._queue else 0.0

    def snapshot(self, now: float) -> PoolSnapshot:
        views = tuple(
            InstanceView(
                id=r.id,
                state=r.state,
                inflight=r.inflight,
                limit=r.limit,
                served=r.served,
                idle_for=(
                    now - r.last_request_at
                    if r.inflight == 0 and r.last_request_at is not None
                    else None
                ),
            )
            for r in self._instances.values()
        )
        return PoolSnapshot(
            instances=views, pending=len(self._queue), oldest_wait=self.oldest_wait(now), now=now
        )

    # -- internals ----------------------------------------------------------------------

    def _least_loaded(self) -> InstanceRecord | None:
        best: InstanceRecord | None = None
        for rec in self._instances.values():
            if (
                rec.state is State.READY
                and rec.inflight < rec.limit
                and (best is None or rec.inflight * best.limit < best.inflight * rec.limit)
            ):
                best = rec
        return best

    @staticmethod
    def _take(rec: InstanceRecord) -> None:
        rec.inflight += 1

    def _assign(self, now: float) -> list[tuple[W, str]]:
        out: list[tuple[W, str]] = []
        while self._queue:
            rec = self._least_loaded()
            if rec is None:
                break
            self._take(rec)
            out.append((self._queue.popleft().waiter, rec.id))
        return out
