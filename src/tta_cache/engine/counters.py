"""The engine's resilience counters (leases, refreshes, timeouts, failovers) for ``stats()``.

Separate from :class:`~tta_cache.stats.Stats` (hits, misses, latencies): these move rarely, from
any thread, so one lock guards them all.
"""

from __future__ import annotations

import threading

from .fork import reinit

__all__ = ["Counters"]

NAMES = (
    "leases_granted",
    "lease_waits",
    "lease_wakeups",
    "lease_timeouts",
    "refreshes",
    "refresh_errors",
    "compute_timeouts",
    "failovers",
    "invalidations_deferred",
    "invalidations_dropped",
    "transaction_fills_skipped",
    "invalidations_announced",
    "invalidations_adopted",
    "invalidations_reissued",
    "entries_skipped",
    "cache_if_refused",
    "cache_if_errors",
    "nones_not_kept",
)


class Counters:
    """Named integer counters, safe to bump from any thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._counts = dict.fromkeys(NAMES, 0)

    def forked(self) -> None:
        reinit(self.lock)

    def add(self, **deltas: int) -> None:
        with self.lock:
            for name, delta in deltas.items():
                self._counts[name] += delta

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return dict(self._counts)
