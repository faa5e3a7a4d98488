"""Helpers for testing code that uses tta-cache (and for tta-cache's own tests).

``Cache(clock=FakeClock())`` makes every time-based decision (TTL, soft/hard expiry, early
refresh, stale-if-error throttle, circuit breaker) read a clock the test moves, so tests move
time instead of sleeping.
"""

from __future__ import annotations

import threading

__all__ = ["FakeClock"]


class FakeClock:
    """A clock that stands still until the test moves it; thread-safe."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds``."""
        with self._lock:
            self.now += seconds
