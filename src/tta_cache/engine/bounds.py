"""A computation bounded by its ``hard_timeout``, and the daemon threads the engine runs work in.

Daemon threads, not an executor: an abandoned computation (a thread cannot be killed) must not
hold up interpreter exit, and a bound on how many run at once keeps a hung database from
exhausting the process.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ..exceptions import ComputeTimeout
from .call import Call
from .counters import Counters

__all__ = ["Bounds", "spawn"]


def spawn(
    target: Callable[[], None], slots: threading.BoundedSemaphore, name: str, timeout: float = 0.0
) -> bool:
    """Run ``target`` in a daemon thread if one of ``slots`` frees up within ``timeout``.

    The caller's context (tracing spans) goes with it."""
    if not (slots.acquire(timeout=timeout) if timeout > 0 else slots.acquire(blocking=False)):
        return False
    context = contextvars.copy_context()

    def run() -> None:
        try:
            context.run(target)
        finally:
            slots.release()

    threading.Thread(target=run, name=name, daemon=True).start()
    return True


class Bounds:
    """Wraps a call's function so that it raises :class:`ComputeTimeout` past ``hard_timeout``."""

    def __init__(self, counters: Counters, slots: int = 64) -> None:
        self.counters = counters
        self._slots = threading.BoundedSemaphore(slots)
        self._size = slots

    def forked(self) -> None:
        self._slots = threading.BoundedSemaphore(self._size)  # the parent's threads hold some

    def bounded(self, call: Call, compute: Callable[[], Any]) -> Callable[[], Any]:
        """``compute`` run in a daemon thread and abandoned when it overruns."""
        limit = call.hard_timeout
        if limit is None:
            return compute

        def bounded() -> Any:
            future: concurrent.futures.Future[Any] = concurrent.futures.Future()

            def job() -> None:
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(compute())
                    except BaseException as exc:
                        future.set_exception(exc)

            deadline = time.monotonic() + limit
            if spawn(job, self._slots, "tta-cache-compute", limit):
                done, _ = concurrent.futures.wait((future,), deadline - time.monotonic())
                if done:
                    return future.result()
                future.cancel()
            raise self.timed_out(call, limit)

        return bounded

    def abounded(
        self, call: Call, compute: Callable[[], Awaitable[Any]]
    ) -> Callable[[], Awaitable[Any]]:
        """``compute`` as a task, cancelled when it overruns."""
        limit = call.hard_timeout
        if limit is None:
            return compute

        async def bounded() -> Any:
            task = asyncio.ensure_future(compute())
            try:
                done, _ = await asyncio.wait((task,), timeout=limit)
            except BaseException:
                task.cancel()
                raise
            if done:
                return task.result()
            task.cancel()
            raise self.timed_out(call, limit)

        return bounded

    def timed_out(self, call: Call, limit: float) -> ComputeTimeout:
        self.counters.add(compute_timeouts=1)
        return ComputeTimeout(f"{call.function or call.key} did not return within {limit} s")
