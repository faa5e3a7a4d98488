"""What a worker measures, and the coherence check over every worker's reads and writes.

Every value carries the instant its row was last written (its *version*), and every completed
choice is recorded with the versions it wrote and the instant its invalidation returned. A read
is *stale* if it returned a version older than one whose invalidation had returned in the same
process before the read began (I1, counted by the worker), or in any process more than
:data:`~.config.STALENESS_WINDOW` before (I2, :func:`count_stale`).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from typing import Any

from .config import MEASURED, STALENESS_WINDOW

__all__ = ["Histogram", "Staleness", "WorkerReport", "count_stale", "new_tiers"]


class Histogram:
    """Latencies in log-spaced buckets (2 % wide, 100 ns .. 100 s); merges across processes."""

    MIN = 1e-7
    RATIO = 1.02

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.total = 0

    def add(self, seconds: float) -> None:
        bucket = int(math.log(max(seconds, self.MIN) / self.MIN, self.RATIO))
        self.counts[bucket] = self.counts.get(bucket, 0) + 1
        self.total += 1

    def merge(self, other: Histogram) -> None:
        for bucket, n in other.counts.items():
            self.counts[bucket] = self.counts.get(bucket, 0) + n
        self.total += other.total

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile in seconds (bucket midpoint), or None when empty."""
        if not self.total:
            return None
        rank = max(1, math.ceil(q * self.total))
        seen = 0
        for bucket in sorted(self.counts):
            seen += self.counts[bucket]
            if seen >= rank:
                return float(self.MIN * self.RATIO ** (bucket + 0.5))
        raise AssertionError("unreachable")


def new_tiers() -> dict[str, Histogram]:
    """An empty histogram for every measured latency (:data:`~.config.MEASURED`)."""
    return {name: Histogram() for name in MEASURED}


@dataclass
class WorkerReport:
    """One worker process's figures, sent back to the parent when its traffic ends."""

    index: int
    turns: int = 0
    reads: int = 0
    choices: int = 0
    loads: int = 0
    queries: int = 0  # SQL statements run (reads and writes)
    loads_by_kind: dict[str, int] = field(default_factory=dict)
    queries_by_kind: dict[str, int] = field(default_factory=dict)  # by the loads of each kind
    tiers: dict[str, Histogram] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    lags: list[float] = field(default_factory=list)
    # (entity, version, tier that served it) -> latest instant a read that returned it began
    observed: dict[tuple[str, int, str], float] = field(default_factory=dict)
    # (entity, version written, instant the invalidation returned)
    writes: list[tuple[str, int, float]] = field(default_factory=list)
    own_stale: int = 0
    error: str | None = None


@dataclass
class Staleness:
    """Reads of a version older than one whose invalidation had returned > window before."""

    count: int = 0
    worst: float = 0.0
    """The worst such read's delay after the first newer version's invalidation returned."""
    by_tier: dict[str, int] = field(default_factory=dict)


def count_stale(reports: list[WorkerReport]) -> Staleness:
    """Check every worker's reads against every worker's writes (see the module docstring)."""
    writes: dict[str, list[tuple[float, int]]] = {}
    for report in reports:
        for entity, version, done in report.writes:
            writes.setdefault(entity, []).append((done, version))
    timeline: dict[str, tuple[list[float], list[int]]] = {}
    for entity, events in writes.items():
        events.sort()
        newest, running = [], 0
        for _, version in events:
            running = max(running, version)
            newest.append(running)
        timeline[entity] = ([done for done, _ in events], newest)
    out = Staleness()
    for report in reports:
        for (entity, version, tier), began in report.observed.items():
            if entity not in timeline:
                continue
            times, newest = timeline[entity]
            i = bisect.bisect_left(times, began - STALENESS_WINDOW)
            if i and version < newest[i - 1]:
                out.count += 1
                out.by_tier[tier] = out.by_tier.get(tier, 0) + 1
                first = bisect.bisect_right(newest, version)  # the first newer write
                out.worst = max(out.worst, began - times[first])
    return out
