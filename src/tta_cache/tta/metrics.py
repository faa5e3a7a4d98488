"""The seed's :class:`CacheMetrics`: hit, miss, error and response-time figures since a reset."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from tta_cache.api import Cache

__all__ = ["CacheMetrics"]


class CacheMetrics:
    """The seed's metrics object over ``cache.stats()``: figures since creation or :meth:`reset`.

    Hits, misses and errors are the cache's own counters (every read through it, decorated
    functions included). Response times are those of the operations recorded with
    :meth:`record_operation` (the :class:`SessionCacheManager` records each of its calls) and of
    the cache's timed reads (decorated functions that missed L1). Thread-safe: the cache counts
    under its locks; this object's own figures and a reset's baseline under its lock.
    """

    def __init__(
        self,
        cache: Cache | Callable[[], Cache],
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cache = cache
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._base: dict[str, float] = {}
        self._since = monotonic()
        self._ops = 0
        self._seconds = 0.0
        self.reset()

    def _counters(self) -> dict[str, float]:
        cache = self._cache if isinstance(self._cache, Cache) else self._cache()
        stats = cache.stats()
        engine_stats = cache.engine.stats
        return {
            "hits": stats["hits"],
            "misses": stats["misses"],
            "errors": stats["errors"],
            "slow_ops": engine_stats.slow_ops,
            "slow_seconds": engine_stats.slow_seconds,
        }

    def reset(self) -> None:
        """Start counting from now."""
        with self._lock:
            self._base = self._counters()
            self._since = self._monotonic()
            self._ops = 0
            self._seconds = 0.0

    def record_operation(self, seconds: float) -> None:
        """Record one operation's response time."""
        with self._lock:
            self._ops += 1
            self._seconds += seconds

    def get_metrics(self) -> dict[str, Any]:
        """``hits``, ``misses``, ``hit_rate``, ``average_response_time`` (seconds, over reads
        that missed L1), ``operations_per_second``, ``total_operations``, ``errors``."""
        with self._lock:
            now = self._counters()
            base = self._base
            elapsed = max(self._monotonic() - self._since, 1e-9)
            own_ops, own_seconds = self._ops, self._seconds
        d = {k: now[k] - base.get(k, 0) for k in now}
        total = d["hits"] + d["misses"]
        timed = d["slow_ops"] + own_ops
        return {
            "hits": int(d["hits"]),
            "misses": int(d["misses"]),
            "hit_rate": d["hits"] / total if total else 0.0,
            "average_response_time": (d["slow_seconds"] + own_seconds) / timed if timed else 0.0,
            "operations_per_second": total / elapsed,
            "total_operations": int(total),
            "errors": int(d["errors"]),
        }

    to_dict = get_metrics
