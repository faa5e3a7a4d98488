"""The source of truth every read is checked against, and the stale-read checker.

The truth lives in shared memory (``multiprocessing`` raw arrays), outside the cache and outside
Redis, so it stays readable whatever Redis does:

- ``truth[e]`` is the current version of entity ``e``. Each entity has one owner (a writer
  thread or task in one worker), which bumps it, then invalidates the entity's tag.
- ``done[e]`` is the newest version whose invalidation has *returned* (set right after
  ``invalidate()`` returns; the owner also logs ``(e, version, returned_ns, pid)``).

The cached functions return ``[key, e, truth[e]]``: the version a read gets *is* the version of
the data it was computed from, and the key says whose reply it is.

A read of ``e`` that began at ``t`` (``time.monotonic_ns``: one clock for every process on
Linux) and got version ``v`` is

- **stale (strict)** if some invalidation of a version ``> v`` had returned before ``t``;
- **stale (I1)** if that invalidation was issued by the reading process itself;
- **stale (I2)** if it was issued by another process and returned more than ``window_ns``
  (I2's 50 ms) before ``t``.

``stale`` (the figure the table and CI use) counts I1 or I2 reads; ``strict`` counts them all,
for the record. A worker only keeps *candidates*, reads with ``v < done[e]`` read just before the
call (a superset: ``done`` only grows), so a run of millions of reads keeps a few records.
"""

from __future__ import annotations

import bisect
import time
from dataclasses import dataclass, field
from multiprocessing.context import BaseContext
from typing import Any

# phases, set by the runner, read by every worker
WARM, CALM, FAULT, AFTER, STOP = 0, 1, 2, 3, 9

I2_WINDOW_NS = 50_000_000  # I2: another process stops serving within 50 ms


@dataclass
class Control:
    """Shared memory between the runner and its workers (pass it as a Process argument)."""

    truth: Any  # RawArray("q", entities)
    done: Any  # RawArray("q", entities)
    phase: Any  # RawValue("i")
    fault_end_ns: Any  # RawValue("q"): monotonic_ns when the fault ended (0: not yet)
    ready: Any  # RawArray("i", workers)
    recovered: Any  # RawArray("q", workers): ns from the fault's end to the first L2 hit

    @classmethod
    def create(cls, ctx: BaseContext, entities: int, workers: int) -> Control:
        return cls(
            truth=ctx.RawArray("q", entities),  # type: ignore[attr-defined]
            done=ctx.RawArray("q", entities),  # type: ignore[attr-defined]
            phase=ctx.RawValue("i", WARM),  # type: ignore[attr-defined]
            fault_end_ns=ctx.RawValue("q", 0),  # type: ignore[attr-defined]
            ready=ctx.RawArray("i", workers),  # type: ignore[attr-defined]
            recovered=ctx.RawArray("q", workers),  # type: ignore[attr-defined]
        )

    def wait_ready(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while sum(self.ready[:count]) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {sum(self.ready[:count])}/{count} workers got ready")
            time.sleep(0.01)


@dataclass
class Staleness:
    """What :func:`check` found."""

    stale: int = 0  # I1 or I2 violations
    own: int = 0  # I1: the reading process had issued the newer invalidation
    other: int = 0  # I2: another process had, more than the window before
    strict: int = 0  # any read older than a returned invalidation, window or not
    worst_ms: float = 0.0  # the worst stale read: its start minus the newer version's return
    # the worst stale read's start minus the newer version's return, or minus the fault's end
    # when that version returned before the fault ended and the read began after
    late_ms: float = 0.0
    samples: list[list[Any]] = field(default_factory=list)  # a few, for the report


def check(
    invalidations: list[list[int]],
    candidates: list[list[int]],
    window_ns: int = I2_WINDOW_NS,
    fault_end_ns: int = 0,
) -> Staleness:
    """Check reads against invalidations.

    ``invalidations``: ``[entity, version, returned_ns, pid]``; ``candidates``: ``[entity,
    version read, began_ns, pid]`` (reads that may be stale; any read may be passed).
    ``fault_end_ns``: when the fault ended (0: none), for ``late_ms``.
    """
    by_entity: dict[int, list[tuple[int, int, int]]] = {}
    for entity, version, returned, pid in invalidations:
        by_entity.setdefault(entity, []).append((returned, version, pid))
    timelines = {}
    for entity, events in by_entity.items():
        events.sort()
        times = [t for t, _, _ in events]
        newest: list[int] = []  # newest version returned up to and including event i
        running = -1
        for _, version, _ in events:
            running = max(running, version)
            newest.append(running)
        timelines[entity] = (times, newest, events)
    out = Staleness()
    for entity, version, began, pid in candidates:
        if entity not in timelines:
            continue
        times, newest, events = timelines[entity]
        before = bisect.bisect_left(times, began)  # events that returned before the read began
        if not before or newest[before - 1] <= version:
            continue
        out.strict += 1
        own = any(p == pid and v > version for _, v, p in events[:before])
        late = bisect.bisect_left(times, began - window_ns)
        other = late > 0 and any(p != pid and v > version for _, v, p in events[:late])
        if not (own or other):
            continue
        out.stale += 1
        out.own += own
        out.other += other and not own
        first = next(t for t, v, _ in events if v > version)
        age_ms = (began - first) / 1e6
        out.worst_ms = max(out.worst_ms, age_ms)
        since = fault_end_ns if first < fault_end_ns <= began else first
        out.late_ms = max(out.late_ms, (began - since) / 1e6)
        if len(out.samples) < 5:
            out.samples.append([entity, version, newest[before - 1], round(age_ms, 1), pid])
    return out
