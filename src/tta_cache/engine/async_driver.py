"""The asyncio driver: runs flows against the asyncio Redis tier, single-flight among the tasks
of one event loop (a future belongs to its loop).

Only I/O and waiting live here; every decision is in the flows (``flows.py``, ``raw.py``) and
the fast paths (``fast.py``), shared with the sync driver.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ..exceptions import BackendError
from ..observability import FLOW_STATE
from .call import MISSING, READ_FAILED, Call, Flight, Flow, Step
from .deferral import private_flow
from .flows import lead_flow, lease_wait, load_flow
from .stepper import CONTROL, Stepper

if TYPE_CHECKING:
    from ..tiers import Read
    from .engine import Engine

__all__ = ["AsyncDriver"]

T = TypeVar("T")


class AsyncDriver:
    """``arun`` a flow; ``aload`` a call (single-flight among the running loop's tasks)."""

    def __init__(self, engine: Engine) -> None:
        self.e = engine

    async def arun(self, flow: Flow[T], compute: Callable[..., Awaitable[Any]] | None = None) -> T:
        """Drive ``flow`` to its end with the asyncio client of the running loop."""
        e = self.e
        chain = e.chain.acall if e.chain else None
        token = FLOW_STATE.set({}) if chain is not None else None
        steps = Stepper(flow)
        try:
            while (step := steps.next()) is not None:
                try:
                    steps.send = await self._perform(step, compute, chain, steps)
                except BaseException as exc:
                    steps.error = exc
            return steps.result  # type: ignore[no-any-return]
        finally:
            steps.unwatch(e.leases)
            if token is not None:
                # ValueError: a coroutine abandoned mid-flow is closed by the GC outside its context
                with contextlib.suppress(ValueError):
                    FLOW_STATE.reset(token)

    async def _perform(
        self,
        step: Step,
        compute: Callable[..., Awaitable[Any]] | None,
        chain: Any,
        steps: Stepper[Any],
    ) -> Any:
        method = step[0]
        if method == "compute":
            assert compute is not None
            do = functools.partial(compute, *step[1]) if step[1] else compute  # a batch: its ids
        elif method in CONTROL:
            return await self._control(step, compute, steps)
        else:
            do = functools.partial(self._timed, getattr(self.e.aredis, method), step[1])
        return await (do() if chain is None else chain(self.e.operation(step, is_async=True), do))

    async def _timed(self, redis_op: Callable[..., Awaitable[Any]], args: tuple[Any, ...]) -> Any:
        started = time.perf_counter()
        result = await redis_op(*args)
        self.e.stats.redis_op(time.perf_counter() - started)
        return result

    async def _control(self, step: Step, compute: Any, steps: Stepper[Any]) -> Any:
        method, args = step[0], step[1]
        if method == "watch":
            loop = asyncio.get_running_loop()
            woke = asyncio.Event()

            def wake() -> None:  # called from the channel thread
                with contextlib.suppress(RuntimeError):  # the loop has closed
                    loop.call_soon_threadsafe(woke.set)

            steps.watching(self.e.leases, args[0], wake, woke)
        elif method == "sleep":
            assert steps.waker is not None
            woke = steps.waker[2]
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(woke.wait(), args[0])
            woke.clear()
        else:
            return await self._refresh(args[0], step[2], compute)  # type: ignore[arg-type,misc]
        return None

    async def _refresh(self, loaded: Any, call: Call, compute: Callable[[], Awaitable[Any]]) -> Any:
        e = self.e

        async def body(flight: Flight) -> Any:
            flow = load_flow(e, call, flight, lease_wait(e, call), refresh_of=loaded.created)
            return (await self.arun(flow, compute)).value

        refreshing = e.refresher.asoon(call.key, body)
        if refreshing is not None and loaded.stale and call.soft_timeout > 0:
            done, _ = await asyncio.wait((refreshing,), timeout=call.soft_timeout)
            if done and not refreshing.cancelled():
                return refreshing.result()
        return MISSING

    async def fast_read(self, call: Call) -> tuple[Any, Read | None]:
        """The plain L2 read (one GET): ``(value, None)`` or ``(MISSING, read or None)``."""
        e = self.e
        stamp = e.fast.stamp(call)
        if stamp is None:
            return MISSING, None
        started = time.perf_counter()
        token = None
        try:
            if not e.chain:
                raw = await e.aredis.get(call.key)  # type: ignore[union-attr]
            else:
                op, token = e.fast.observed(call, True)
                raw = await e.chain.acall(op, functools.partial(e.aredis.get, call.key))  # type: ignore[union-attr]
        except BackendError as exc:
            e.fail(exc, call.on_error, "read")
            return MISSING, READ_FAILED
        finally:
            if token is not None:
                with contextlib.suppress(ValueError):  # closed by the GC outside its context
                    FLOW_STATE.reset(token)
        return e.fast.done(call, raw, stamp, started)  # type: ignore[no-any-return]

    async def aload(self, call: Call, compute: Callable[[], Awaitable[Any]]) -> Any:
        """Read-through with single-flight among the tasks of this event loop."""
        e = self.e
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        flights = e.flights.of_loop(loop)
        joinable = e.flights.joinable
        read = None
        if not joinable(flights.get(call.key)):  # nobody to join: read first
            value, read = await self.fast_read(call)
            if value is not MISSING:
                return value
            if read is not None and (value := e.fast.peek(call)) is not MISSING:
                return value  # a leader filled it while we read
        if e.deferral.writing():  # for this caller alone (``deferral.py``)
            return await self.arun(private_flow(e, call), e.bounds.abounded(call, compute))
        flight = flights.get(call.key)
        if flight is not None and flight.future is not None and joinable(flight):
            try:
                return await asyncio.wait_for(asyncio.shield(flight.future), e.join_timeout(call))
            except asyncio.TimeoutError:
                pass  # the leader is too slow: compute ourselves
            except asyncio.CancelledError:
                if not flight.future.cancelled():
                    raise  # we were cancelled, not the leader
        flight = e.flights.start(loop.create_future())
        future = flight.future
        assert future is not None
        flights[call.key] = flight
        try:
            bounded = e.bounds.abounded(call, compute)
            result = await self.arun(lead_flow(e, call, flight, read), bounded)
        except BaseException as exc:
            if isinstance(exc, Exception):
                future.set_exception(exc)
                future.exception()  # retrieved: joiners re-raise it, nobody logs it
            else:
                future.cancel()
            raise
        else:
            future.set_result(result)
            return result
        finally:
            if flights.get(call.key) is flight:
                flights.pop(call.key, None)  # the channel thread may have popped it already
            e.stats.slow(time.perf_counter() - started)
