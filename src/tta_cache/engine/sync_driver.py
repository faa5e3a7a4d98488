"""The sync driver: runs flows against the sync Redis tier, with thread-based single-flight.

Only I/O and waiting live here; every decision is in the flows (``flows.py``, ``raw.py``) and
the fast paths (``fast.py``), shared with the asyncio driver.
"""

from __future__ import annotations

import concurrent.futures
import functools
import threading
import time
from collections.abc import Callable
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

__all__ = ["SyncDriver"]

T = TypeVar("T")


class SyncDriver:
    """``run`` a flow; ``load`` a call (single-flight among this process's threads)."""

    def __init__(self, engine: Engine) -> None:
        self.e = engine

    def run(self, flow: Flow[T], compute: Callable[..., Any] | None = None) -> T:
        """Drive ``flow`` to its end (through the middleware chain, if any)."""
        e = self.e
        chain = e.chain.call if e.chain else None
        token = FLOW_STATE.set({}) if chain is not None else None
        steps = Stepper(flow)
        try:
            while (step := steps.next()) is not None:
                try:
                    steps.send = self._perform(step, compute, chain, steps)
                except BaseException as exc:
                    steps.error = exc
            return steps.result  # type: ignore[no-any-return]
        finally:
            steps.unwatch(e.leases)
            if token is not None:
                FLOW_STATE.reset(token)

    def _perform(
        self, step: Step, compute: Callable[..., Any] | None, chain: Any, steps: Stepper[Any]
    ) -> Any:
        method = step[0]
        if method == "compute":
            assert compute is not None
            do = functools.partial(compute, *step[1]) if step[1] else compute  # a batch: its ids
        elif method in CONTROL:
            return self._control(step, compute, steps)
        else:
            do = functools.partial(self._timed, getattr(self.e.redis, method), step[1])
        return do() if chain is None else chain(self.e.operation(step, is_async=False), do)

    def _timed(self, redis_op: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        started = time.perf_counter()
        result = redis_op(*args)
        self.e.stats.redis_op(time.perf_counter() - started)
        return result

    def _control(self, step: Step, compute: Any, steps: Stepper[Any]) -> Any:
        method, args = step[0], step[1]
        if method == "watch":
            woke = threading.Event()
            steps.watching(self.e.leases, args[0], woke.set, woke)
        elif method == "sleep":
            assert steps.waker is not None
            woke = steps.waker[2]
            woke.wait(args[0])
            woke.clear()
        else:
            return self._refresh(args[0], step[2], compute)  # type: ignore[arg-type,misc]
        return None

    def _refresh(self, loaded: Any, call: Call, compute: Callable[[], Any]) -> Any:
        e = self.e

        def body(flight: Flight) -> Any:
            flow = load_flow(e, call, flight, lease_wait(e, call), refresh_of=loaded.created)
            return self.run(flow, compute).value

        refreshing = e.refresher.soon(call.key, body)
        if refreshing is not None and loaded.stale and call.soft_timeout > 0:
            done, _ = concurrent.futures.wait((refreshing,), call.soft_timeout)
            if done and refreshing.exception() is None:
                return refreshing.result()
        return MISSING

    def fast_read(self, call: Call) -> tuple[Any, Read | None]:
        """The plain L2 read (one GET): ``(value, None)`` or ``(MISSING, read or None)``."""
        e = self.e
        stamp = e.fast.stamp(call)
        if stamp is None:
            return MISSING, None
        started = time.perf_counter()
        token = None
        try:
            if not e.chain:
                raw = e.redis.get(call.key)  # type: ignore[union-attr]
            else:
                op, token = e.fast.observed(call, False)
                raw = e.chain.call(op, functools.partial(e.redis.get, call.key))  # type: ignore[union-attr]
        except BackendError as exc:
            e.fail(exc, call.on_error, "read")
            return MISSING, READ_FAILED
        finally:
            if token is not None:
                FLOW_STATE.reset(token)
        return e.fast.done(call, raw, stamp, started)  # type: ignore[no-any-return]

    def load(self, call: Call, compute: Callable[[], Any]) -> Any:
        """Read-through with single-flight: concurrent misses of one key compute once."""
        e = self.e
        started = time.perf_counter()
        flights = e.flights
        table = flights.sync
        read = None
        if not flights.joinable(table.get(call.key)):  # nobody to join: read first
            value, read = self.fast_read(call)
            if value is not MISSING:
                return value
        if e.deferral.writing():  # for this caller alone (``deferral.py``)
            return self.run(private_flow(e, call), e.bounds.bounded(call, compute))
        with flights.lock:
            flight = table.get(call.key)
            if flight is None or not flights.joinable(flight):
                flight = table[call.key] = flights.start()
                done = None
            else:
                done = flight.done = flight.done or threading.Event()
        if done is not None:
            if done.wait(e.join_timeout(call)) and flight.error is None:
                return flight.result
            if done.is_set() and isinstance(flight.error, Exception):
                raise flight.error
            flight = Flight()  # the leader was cancelled or is too slow: compute ourselves
        if read is not None:  # read before the flight: a leader that just finished filled L1
            value = e.fast.peek(call)
            if value is not MISSING:
                flight.result = value
                self._finish(flight, call.key)
                return value
        try:
            result = self.run(lead_flow(e, call, flight, read), e.bounds.bounded(call, compute))
        except BaseException as exc:
            flight.error = exc
            raise
        else:
            flight.result = result
            return result
        finally:
            self._finish(flight, call.key)
            e.stats.slow(time.perf_counter() - started)

    def _finish(self, flight: Flight, key: str) -> None:
        """The flight has landed: take it off the table and release its joiners."""
        flights = self.e.flights
        with flights.lock:
            done = flight.done
            if flights.sync.get(key) is flight:
                del flights.sync[key]
        if done is not None:
            done.set()
