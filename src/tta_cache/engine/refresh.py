"""Background refresh: an entry past its soft TTL, or drawn early by XFetch, is served while it is
recomputed behind the caller; stale-if-error keeps serving it while the function fails.

One refresh per key per process, at most ``limit`` claimed and ``threads`` running in threads at
once. The refresh itself is a read-through flow (it stands down when another process refreshed
first); this part only claims, runs and accounts for it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from ..core.policy import retry_due
from .bounds import spawn
from .call import MISSING, Call, Flight
from .counters import Counters
from .flights import Flights
from .fork import reinit

__all__ = ["Refresher"]

log = logging.getLogger("tta_cache")


class Refresher:
    """Claims, runs and waits for background refreshes; remembers which functions are failing."""

    def __init__(
        self,
        flights: Flights,
        counters: Counters,
        clock: Callable[[], float],
        error_throttle: float,
        *,
        limit: int = 256,
        threads: int = 8,
    ) -> None:
        self.flights = flights
        self.counters = counters
        self.clock = clock
        self.error_throttle = error_throttle  # seconds a failing function is left alone
        self.limit = limit
        self.running = 0
        self._idle = threading.Condition(flights.lock)
        self._slots = threading.BoundedSemaphore(threads)
        self._threads = threads
        self._tasks: set[asyncio.Task[Any]] = set()
        self._failed_at: dict[str, float] = {}  # key -> when its refresh last failed
        self._failed_lock = threading.Lock()

    def forked(self) -> None:
        """In a forked child: the parent's refresh threads and tasks are not here."""
        reinit(self._idle)  # and with it the flights' lock it shares
        reinit(self._failed_lock)
        self.running = 0
        self._slots = threading.BoundedSemaphore(self._threads)
        self._tasks.clear()

    # ---------------------------------------------------------------- stale-if-error

    def due(self, key: str, now: float) -> bool:
        """Whether a stale entry of ``key`` should be refreshed (its function is not failing)."""
        failed = self._failed_at.get(key)
        return failed is None or retry_due(now, failed, self.error_throttle)

    def recovered(self, key: str) -> None:
        if key in self._failed_at:  # it works again
            with self._failed_lock:
                self._failed_at.pop(key, None)

    def failed(self, call: Call, exc: Exception) -> None:
        """Keep serving the stale entry; leave the function alone for a while."""
        with self._failed_lock:
            self._failed_at[call.key] = self.clock()
            if len(self._failed_at) > 10_000:
                del self._failed_at[next(iter(self._failed_at))]
        self.counters.add(refresh_errors=1)
        log.warning(
            "tta-cache: refreshing %s failed (%s: %s); serving the stale value, next try in %s s",
            call.function or "an entry",
            type(exc).__name__,
            exc,
            self.error_throttle,
        )

    # ---------------------------------------------------------------- running them

    def _claim(self, key: str) -> Flight | None:
        with self.flights.lock:
            if key in self.flights.refreshing or self.running >= self.limit:
                return None
            flight = self.flights.refreshing[key] = Flight()
            self.running += 1
            return flight

    def _unclaim(self, key: str, flight: Flight) -> None:
        with self._idle:
            if self.flights.refreshing.get(key) is flight:
                del self.flights.refreshing[key]
            self.running -= 1
            self._idle.notify_all()

    def soon(
        self, key: str, body: Callable[[Flight], Any]
    ) -> concurrent.futures.Future[Any] | None:
        """Run ``body`` (the refresh flow) in a daemon thread unless ``key`` is refreshing."""
        flight = self._claim(key)
        if flight is None:
            return None
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def refresh() -> None:
            try:
                future.set_result(body(flight))
            except BaseException as exc:  # on_error="raise" Redis errors: nobody to raise to
                log.warning("tta-cache: background refresh failed: %s", exc)
                future.set_exception(exc)
            finally:
                self._unclaim(key, flight)

        if not spawn(refresh, self._slots, "tta-cache-refresh"):
            self._unclaim(key, flight)
            return None
        return future

    def asoon(self, key: str, body: Callable[[Flight], Awaitable[Any]]) -> asyncio.Task[Any] | None:
        """Run ``body`` in a task of the running loop unless ``key`` is refreshing."""
        flight = self._claim(key)
        if flight is None:
            return None

        async def refresh() -> Any:
            try:
                return await body(flight)
            except Exception as exc:  # on_error="raise" Redis errors: nobody to raise to
                log.warning("tta-cache: background refresh failed: %s", exc)
                return MISSING
            finally:
                self._unclaim(key, flight)

        task = asyncio.get_running_loop().create_task(refresh(), name="tta-cache-refresh")
        self._tasks.add(task)  # a reference until it is done
        task.add_done_callback(self._tasks.discard)
        return task

    def wait(self, timeout: float = 5.0) -> bool:
        """Block until no background refresh runs (True) or ``timeout`` passes (False). Refresh
        tasks of the calling thread's own event loop cannot finish meanwhile: await
        :meth:`await_` there."""
        with self._idle:
            return self._idle.wait_for(lambda: not self.running, timeout)

    async def await_(self, timeout: float = 5.0) -> bool:
        """:meth:`wait` for async code: this loop's refresh tasks, then any others."""
        loop = asyncio.get_running_loop()
        mine = [t for t in self._tasks if t.get_loop() is loop]
        if mine:
            _, pending = await asyncio.wait(mine, timeout=timeout)
            if pending:
                return False
        return await loop.run_in_executor(None, self.wait, timeout)

    async def cancel_loop(self) -> None:
        """Cancel the running loop's refresh tasks (an optimisation; a lease expires by itself)."""
        loop = asyncio.get_running_loop()
        refreshing = [t for t in self._tasks if t.get_loop() is loop]
        for task in refreshing:
            task.cancel()
        await asyncio.gather(*refreshing, return_exceptions=True)
