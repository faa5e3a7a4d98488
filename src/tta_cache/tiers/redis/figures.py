"""The Redis tier's own figures for ``stats()``: corrupt keys replaced, waits for a connection."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Protocol

__all__ = ["TierFigures", "tier_figures"]

log = logging.getLogger("tta_cache")


class TierFigures:
    """Counters of one Redis tier for ``stats()``: the corrupt version and lease keys its scripts
    replaced (each logged), and the checkouts that waited for a pooled connection: how many
    (``pool_waits``), how long, how many ran out of ``pool_timeout``, how many wait now."""

    __slots__ = (
        "_lock",
        "corrupt_replaced",
        "pool_timeouts",
        "pool_wait_max",
        "pool_wait_seconds",
        "pool_waiting",
        "pool_waits",
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.corrupt_replaced = 0
        self.pool_waits = 0
        self.pool_timeouts = 0
        self.pool_waiting = 0
        self.pool_wait_seconds = 0.0
        self.pool_wait_max = 0.0

    def replaced(self, count: int) -> None:
        if count:
            with self._lock:
                self.corrupt_replaced += count
            log.warning(
                "tta-cache: %d Redis key(s) held neither a tag version nor a lease (corrupt);"
                " replaced by fresh ones",
                count,
            )

    def wait_started(self) -> float:
        with self._lock:
            self.pool_waiting += 1
        return time.perf_counter()

    def wait_ended(self, started: float, *, timed_out: bool = False) -> None:
        took = time.perf_counter() - started
        with self._lock:
            self.pool_waiting -= 1
            self.pool_waits += 1
            self.pool_timeouts += timed_out
            self.pool_wait_seconds += took
            self.pool_wait_max = max(self.pool_wait_max, took)


class _Tier(Protocol):
    @property
    def figures(self) -> TierFigures: ...


def tier_figures(*tiers: _Tier | None) -> dict[str, Any]:
    """``corrupt_keys_replaced`` and ``pool`` (waits, timeouts, waiting, wait_seconds,
    max_wait_seconds) of the sync and asyncio tiers together, for ``stats()``."""
    figures = [t.figures for t in tiers if t is not None]
    return {
        "corrupt_keys_replaced": sum(f.corrupt_replaced for f in figures),
        "pool": {
            "waits": sum(f.pool_waits for f in figures),
            "timeouts": sum(f.pool_timeouts for f in figures),
            "waiting": sum(f.pool_waiting for f in figures),
            "wait_seconds": sum(f.pool_wait_seconds for f in figures),
            "max_wait_seconds": max((f.pool_wait_max for f in figures), default=0.0),
        },
    }
