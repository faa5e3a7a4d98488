"""The engine's fast paths, outside any flow: L1 lookups and puts, and the check of a plain L2
read (one GET) that serves a fresh entry without running the read-through flow.

Both drivers share these; only the GET itself is sync or async (``drivers.py``). The decorators'
own L1 hit path is inlined in their wrappers (``decorators.py``) and must agree with
:meth:`FastPath.local_lookup`.
"""

from __future__ import annotations

import time
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

from ..core.policy import Verdict, judge
from ..tiers import LocalEntry, Read
from .call import MISSING, Call, Stamp

if TYPE_CHECKING:
    from .engine import Engine

__all__ = ["FastPath"]

_UNDECODABLE: Any = object()


class FastPath:
    """L1 access and the plain L2 read's decisions for one engine."""

    def __init__(self, engine: Engine) -> None:
        self.e = engine
        self.local = engine.local
        self.versions = engine.versions
        self.clock = engine.clock

    def local_lookup(self, local_key: Hashable, types: tuple[type, ...] | None = None) -> Any:
        """The L1 value for ``local_key`` or ``MISSING``; revalidates an entry checked long ago."""
        local = self.local
        versions = self.versions
        with local.lock:
            try:
                entry = local.data.get(local_key)
            except TypeError:  # unhashable arguments: no L1 for this call
                entry = None
            if (
                entry is not None
                and entry.expires > (now := self.clock())
                and now < versions.fresh_until
                and entry.types == types
            ):
                gen = versions.gen
                if entry.gen == gen or versions.valid(entry.stamp):
                    entry.gen = gen
                    local.hits += 1
                    return entry.value
            local.misses += 1
        return MISSING

    def peek(self, call: Call) -> Any:
        """The valid L1 value of ``call`` or ``MISSING``, without counting a hit or a miss."""
        if not self.local.maxsize:
            return MISSING
        with self.local.lock:
            try:
                entry = self.local.data.get(call.local_key)
            except TypeError:
                return MISSING
            if (
                entry is not None
                and entry.types == call.local_types
                and entry.expires > self.clock()
                and self.versions.valid(entry.stamp)
            ):
                return entry.value
        return MISSING

    def local_put(self, call: Call, value: Any, stamp: Stamp, fresh_until: float, gen: int) -> None:
        if self.local.maxsize and self.versions.valid(stamp):
            entry = LocalEntry(value, fresh_until, gen, stamp, call.key, call.local_types)
            self.local.put(call.local_key, entry)

    def stamp(self, call: Call) -> Stamp | None:
        """The stamp a plain L2 read can be checked against, or None when the full flow must
        read: a lease, middleware, versions this process does not know, or Redis unusable."""
        e = self.e
        if e.chain or call.lock or e.redis is None:
            return None
        stamp = self.versions.snapshot(call.tags)
        if stamp is None or call.key in e.queue.keys or not e.redis_usable():
            return None
        e.link.ensure()
        return stamp

    def done(self, call: Call, raw: bytes | None, stamp: Stamp, started: float) -> Any:
        """After the plain read: ``(value, None)`` when it served, else ``(MISSING, read)`` for
        the flow to go on with (it does not read again)."""
        took = time.perf_counter() - started
        e = self.e
        e.redis_ok()
        value = self._hit(call, raw, stamp)
        if value is MISSING or value is _UNDECODABLE:
            e.stats.redis_op(took)
            # An undecodable entry (already counted) goes on as an absent one: the flow must not
            # decode and count it again.
            return MISSING, Read(raw if value is MISSING else None, None)
        e.stats.fast_hit(took, time.perf_counter() - started)
        return value, None

    def _hit(self, call: Call, raw: bytes | None, stamp: Stamp) -> Any:
        """An L2 hit served on the fast path (fresh, stamp current), else ``MISSING``, or
        ``_UNDECODABLE`` for an entry that does not decode."""
        if raw is None:
            return MISSING
        entry = self.e.decode(raw, call)
        if entry is None:
            return _UNDECODABLE
        versions = self.versions
        if entry.stamp != stamp or versions.blocked(stamp):
            return MISSING
        fr = call.freshness
        rnd = 1.0 - self.e.rng.random()
        verdict = judge(
            self.clock(),
            entry.fresh_until,
            entry.fresh_until + fr.stale_ttl,
            entry.compute_time,
            fr.beta,
            rnd,
        )
        if verdict is not Verdict.FRESH:
            return MISSING  # stale, early refresh or gone: the full flow decides
        if self.local.maxsize:
            gen = versions.gen
            if not versions.behind(stamp):
                self.local_put(call, entry.value, stamp, entry.fresh_until, gen)
        return entry.value
