"""Request dispatch through one service's pool: slot, queue, forward, retry, deadline (INST-4).

Theory of operation
-------------------
``pool.Pool`` decides which instance serves a request and who waits (SPEC INST-4); a
``Dispatcher``, owned by a ``supervisor.ServiceRuntime``, carries that out with futures.
``forward`` asks the pool for a slot; without one the request's future waits in the pool's FIFO
queue and is woken with an instance id when capacity appears. A request that finds the queue
empty and has to wait kicks the autoscaler, so a cold service starts an instance at once.
An idempotent request whose instance died before any response byte is retried once elsewhere
(INST-3); one that exceeds its deadline gets 500 and its instance is recycled (SCALE-4).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from typing import TYPE_CHECKING, NamedTuple

from gfe_proxy.config import ManualScaling
from gfe_proxy.errors import DeadlineExceeded, GfeError, InstanceUnavailable, UpstreamError
from gfe_proxy.pool import State
from gfe_proxy.upstream import IDEMPOTENT, UpstreamResponse

if TYPE_CHECKING:
    from gfe_proxy.supervisor import Instance, ServiceRuntime

# *(decision)* SIGTERM-to-SIGKILL grace of an instance recycled after a deadline: it is still
# running the hung request, which was already answered with 500; nothing is worth waiting for.
HUNG_GRACE = 1.0  # seconds


class Forwarded(NamedTuple):
    """An instance's answer and how it was served (for the access log, LOG-1)."""

    response: UpstreamResponse
    instance_id: str
    pending_ms: int
    loading: bool


class Dispatcher:
    """Assigns the requests of one service's runtime to its instances and forwards them."""

    def __init__(self, runtime: ServiceRuntime) -> None:
        self._rt = runtime

    def fail_pending(self, error: GfeError) -> None:
        """Answer every queued request with ``error``."""
        rt = self._rt
        for fut in rt.pool.expired(now=rt.clock(), max_wait=float("-inf")):
            if not fut.done():
                fut.set_exception(error)

    def wake(self, assignments: list[tuple[asyncio.Future[str], str]]) -> None:
        """Hand each assigned slot to its waiting request (or on, if that one left)."""
        rt = self._rt
        while assignments:
            more: list[tuple[asyncio.Future[str], str]] = []
            for fut, iid in assignments:
                if fut.done():  # its client left meanwhile: give the slot to the next one
                    rt.pool.abandon(iid)
                    more.extend(rt.pool.assign(now=rt.clock()))
                else:
                    fut.set_result(iid)
            assignments = more

    async def _acquire(self, since: float, *, retry: bool) -> str:
        if self._rt.closing:
            raise InstanceUnavailable("gfe-proxy is shutting down")
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        iid = self._rt.pool.acquire(fut, now=since)
        if iid is not None:
            return iid
        return await self._queued(fut, since, retry=retry)

    async def _queued(self, fut: asyncio.Future[str], since: float, *, retry: bool) -> str:
        """``_acquire`` once ``fut`` is in the pending queue: wait for its slot (INST-4)."""
        rt = self._rt
        if retry:
            # SPEC INST-3: back in the queue at its arrival position, so neither FIFO order nor
            # the pending timeout restarts for a request whose instance died under it.
            rt.pool.cancel(fut)
            rt.pool.requeue(fut, since=since)
        if rt.boot_error is not None and not rt.live() and rt.clock() < rt.autoscaler.hold_until:
            # Boots are failing and the backoff forbids another start yet: 503 now rather than
            # after the pending timeout. Once it has passed, the request queues and its load
            # starts an instance again.
            rt.pool.cancel(fut)
            raise InstanceUnavailable(rt.boot_error)
        if rt.pool.pending == 1:
            rt.kick()  # the queue just formed: let the autoscaler see it now
        try:
            return await fut
        except asyncio.CancelledError:
            assigned = fut.done() and not fut.cancelled() and fut.exception() is None
            if not rt.pool.cancel(fut) and assigned:
                self._release(fut.result(), served=False)
            raise

    def _claim(self, label: str) -> str:
        """SPEC ROUTE-5: a slot on the named manual-scaling instance now, or 503 at once.

        ``i-2`` names an instance by its id; a number names the live instances the way
        production numbers manual instances, from 0 in order of their start.
        """
        rt = self._rt
        live = sorted(rt.live(), key=lambda i: int(i.id.partition("-")[2] or 0))
        if label.isdigit():
            k = int(label)
            iid = live[k].id if k < len(live) else None
        else:
            iid = label if any(i.id == label for i in live) else None
        if iid is None:
            raise InstanceUnavailable(f"service {rt.name} has no instance {label}")
        if not rt.pool.acquire_on(iid):
            raise InstanceUnavailable(f"instance {label} of service {rt.name} is busy")
        return iid

    def _release(self, iid: str, *, served: bool = True) -> None:
        rt = self._rt
        if served:
            self.wake(rt.pool.release(iid, now=rt.clock()))
        else:
            rt.pool.abandon(iid)
            self.wake(rt.pool.assign(now=rt.clock()))
        rec = rt.pool.get(iid)
        if rec is not None and rec.state is State.DRAINING and rec.inflight == 0:
            inst = rt.instances.get(iid)
            if inst is not None:
                inst.drained.set()

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
        """``ServiceRuntime.forward``: one request to an instance, waiting in the pending queue
        if all are busy; ``instance`` (ROUTE-5) targets one manual-scaling instance."""
        rt = self._rt
        pool = rt.pool
        t0 = rt.clock() if started is None else started
        headers = list(headers)
        targeted = instance if isinstance(rt.config.scaling, ManualScaling) else None
        retried = False
        rt.counters["requests"] += 1
        while True:
            if targeted:
                iid = self._claim(targeted)
            elif retried or rt.closing:
                iid = await self._acquire(t0, retry=retried)
            else:
                # _acquire's first step inline: a free slot is taken without a coroutine.
                fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
                found = pool.acquire(fut, now=t0)
                iid = found if found is not None else await self._queued(fut, t0, retry=False)
            inst = rt.instances.get(iid)
            rec = pool.get(iid)
            if inst is None or rec is None:  # it died between assignment and now
                pool.abandon(iid)
                continue
            loading = rec.loading and not inst.warmed
            now = rt.clock()
            pending_ms = int((now - t0) * 1000)
            remaining = rt.deadline - (now - t0)
            try:
                response = await inst.client.request(
                    method, target, headers, body, timeout=max(0.001, remaining)
                )
            except UpstreamError as e:
                self._release(iid, served=False)
                # SPEC INST-3: an idempotent request whose instance died before sending any
                # response byte is retried once on another instance.
                if e.sent_nothing and method in IDEMPOTENT and not retried and not targeted:
                    retried = True
                    await self._await_exit(inst)
                    continue
                raise
            except DeadlineExceeded:
                self._release(iid, served=False)
                # SPEC SCALE-4: the client gets 500; the instance, still busy with the request,
                # is recycled.
                rt.recycle(
                    inst, f"a request exceeded its {rt.deadline:g}s deadline", grace=HUNG_GRACE
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
        # If the instance is dying, let it leave the pool before we retry, so the retry does
        # not land on it again.
        proc = inst.process.proc
        if proc is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(proc.wait()), 0.5)
        if proc is not None and proc.returncode is not None:
            self._rt.crashed(inst)
