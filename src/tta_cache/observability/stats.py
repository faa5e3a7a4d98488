"""Counters behind ``cache.stats()`` and the telemetry instruments (one source, so they agree)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["Stats"]


class Stats:
    """Thread-safe operation counters. L1 hits and misses are counted by the local tier itself.

    Redis-tier results are also kept per kind (``by_kind``: kind -> [hits, misses, stale]),
    by the methods that take a ``kind``; a count added by name only (``add(redis_hits=...)``)
    joins the totals and is reported under kind ``"*"``."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.started = clock()
        self.misses = 0  # gets served by neither tier
        self.redis_hits = 0
        self.redis_misses = 0
        self.stale_served = 0
        self.computes = 0
        self.compute_seconds = 0.0
        self.errors = 0
        self.errors_by_type: dict[str, int] = {}
        self.decode_errors = 0
        self.redis_ops = 0
        self.redis_seconds = 0.0
        self.slow_ops = 0  # timed get operations that missed L1
        self.slow_seconds = 0.0
        self.invalidations_sent = 0
        self.invalidations_received = 0
        self.invalidations_queued = 0
        self.skipped_stale_fills = 0
        self.oversized_values = 0  # over max_value_bytes: returned, not cached
        self.by_kind: dict[str, list[int]] = {}  # kind -> [redis hits, redis misses, stale]

    def _kind(self, kind: str) -> list[int]:
        """The per-kind counters of ``kind`` (call under ``_lock``)."""
        counts = self.by_kind.get(kind)
        if counts is None:
            counts = self.by_kind[kind] = [0, 0, 0]
        return counts

    def add(self, **deltas: float) -> None:
        """Add to counters by name, atomically."""
        with self._lock:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)

    # The hot paths below take no keyword dict and set no attribute by name (``add`` does both).

    def redis_op(self, seconds: float) -> None:
        with self._lock:
            self.redis_ops += 1
            self.redis_seconds += seconds

    def fast_hit(self, redis_seconds: float, seconds: float, kind: str = "*") -> None:
        """An L2 hit served by one GET: the operation, the hit and the read, under one lock."""
        with self._lock:
            self.redis_ops += 1
            self.redis_seconds += redis_seconds
            self.redis_hits += 1
            self.slow_ops += 1
            self.slow_seconds += seconds
            self._kind(kind)[0] += 1

    def redis_hit(self, kind: str = "*") -> None:
        with self._lock:
            self.redis_hits += 1
            self._kind(kind)[0] += 1

    def redis_miss(self, kind: str = "*") -> None:
        with self._lock:
            self.redis_misses += 1
            self._kind(kind)[1] += 1

    def stale(self, kind: str = "*") -> None:
        """A stale entry served (stale-while-revalidate)."""
        with self._lock:
            self.stale_served += 1
            self._kind(kind)[2] += 1

    def redis_results(self, hits: Iterable[str], misses: Iterable[str]) -> None:
        """Redis-tier results of a batch, one kind per entry; each miss is a miss overall too."""
        with self._lock:
            for kind in hits:
                self.redis_hits += 1
                self._kind(kind)[0] += 1
            for kind in misses:
                self.redis_misses += 1
                self.misses += 1
                self._kind(kind)[1] += 1

    def kinds(self) -> dict[str, tuple[int, int, int]]:
        """Redis-tier ``(hits, misses, stale)`` per kind; counts no kind was given for are
        under ``"*"``."""
        with self._lock:
            out = {kind: (c[0], c[1], c[2]) for kind, c in self.by_kind.items()}
            counted = [sum(c[i] for c in self.by_kind.values()) for i in range(3)]
            rest = (
                self.redis_hits - counted[0],
                self.redis_misses - counted[1],
                self.stale_served - counted[2],
            )
        if any(rest):
            star = out.get("*", (0, 0, 0))
            out["*"] = (star[0] + rest[0], star[1] + rest[1], star[2] + rest[2])
        return out

    def miss(self) -> None:
        with self._lock:
            self.misses += 1

    def computed(self, seconds: float) -> None:
        with self._lock:
            self.computes += 1
            self.compute_seconds += seconds

    def slow(self, seconds: float) -> None:
        with self._lock:
            self.slow_ops += 1
            self.slow_seconds += seconds

    def error(self, kind: str) -> None:
        with self._lock:
            self.errors += 1
            self.errors_by_type[kind] = self.errors_by_type.get(kind, 0) + 1

    def snapshot(self, local_hits: int, local_misses: int, local_size: int) -> dict[str, Any]:
        """The seed's metrics dict plus per-tier figures."""
        by_kind = {
            kind: {"hits": h, "misses": m, "stale": st} for kind, (h, m, st) in self.kinds().items()
        }
        with self._lock:
            hits = local_hits + self.redis_hits
            misses = self.misses
            total = hits + misses
            elapsed = max(self._clock() - self.started, 1e-9)
            return {
                "hits": hits,
                "misses": misses,
                "hit_rate": hits / total if total else 0.0,
                # over the gets that missed L1 (an L1 hit is not timed: timing would double it)
                "average_response_time": self.slow_seconds / self.slow_ops
                if self.slow_ops
                else 0.0,
                "operations_per_second": total / elapsed,
                "total_operations": total,
                "errors": self.errors,
                "decode_errors": self.decode_errors,
                "oversized_values": self.oversized_values,
                "stale_served": self.stale_served,
                "computations": self.computes,
                "average_compute_time": self.compute_seconds / self.computes
                if self.computes
                else 0.0,
                "invalidations": {
                    "sent": self.invalidations_sent,
                    "received": self.invalidations_received,
                    "queued": self.invalidations_queued,
                },
                "errors_by_type": dict(self.errors_by_type),
                "local": {
                    "hits": local_hits,
                    "misses": local_misses,
                    "hit_rate": local_hits / (local_hits + local_misses)
                    if local_hits + local_misses
                    else 0.0,
                    "size": local_size,
                },
                "redis": {
                    "hits": self.redis_hits,
                    "misses": self.redis_misses,
                    "hit_rate": self.redis_hits / (self.redis_hits + self.redis_misses)
                    if self.redis_hits + self.redis_misses
                    else 0.0,
                    "operations": self.redis_ops,
                    "average_latency": self.redis_seconds / self.redis_ops
                    if self.redis_ops
                    else 0.0,
                    "by_kind": by_kind,
                },
            }
