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
from ..observability import FLOW_STATE
from ..tiers import LocalEntry, Read
from .call import MISSING, Call, Stamp

if TYPE_CHECKING:
    from contextvars import Token

    from ..observability import Operation
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
        # The middleware's Operation of the plain read, per function (its key has one shape)
        self._reads: dict[tuple[str, str, bool], Operation] = {}

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
                and (now < versions.fresh_until or versions.revive(now))
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
        read: a lease, versions this process does not know, or Redis unusable. Middleware sees
        the plain read as the ``read`` step it is (one GET: :meth:`read_op`)."""
        e = self.e
        if call.lock or e.redis is None:
            return None
        stamp = self.versions.snapshot(call.tags)
        if stamp is None or call.key in e.holds.keys or not e.redis_usable():
            return None
        e.link.ensure()
        return stamp

    def observed(self, call: Call, is_async: bool) -> tuple[Operation, Token[Any]]:
        """The plain read's :class:`Operation`, and a fresh flow state set for it (the read is
        an operation of its own: one that misses is followed by a flow with its own state)."""
        return self.read_op(call, is_async), FLOW_STATE.set({})

    def read_op(self, call: Call, is_async: bool) -> Operation:
        """The :class:`Operation` middleware gets for the plain read of ``call``: built once
        per function, not per call (its attributes are precomputed from it)."""
        shape = (call.function, call.kind, is_async)
        op = self._reads.get(shape) if call.function else None
        if op is None:
            op = self.e.operation(("read", (call.key, ()), call), is_async=is_async)
            if call.function and len(self._reads) < 4096:
                self._reads[shape] = op
        return op

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
        e.stats.fast_hit(took, time.perf_counter() - started, call.kind)
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
        found = entry.stamp
        if found != stamp and not _added_known(found, stamp, versions._map):
            return MISSING  # stale, or tags added by its computation this map does not know
        if versions.behind(found):
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
            if not versions.behind(found):
                self.local_put(call, entry.value, found, entry.fresh_until, gen)
        return entry.value


def _added_known(found: Stamp, stamp: Stamp, current: dict[str, int]) -> bool:
    """Whether ``found`` is ``stamp`` then tags a computation added (``entry.py``), each at the
    version the (trusted) tag map holds."""
    n = len(stamp)
    if len(found) <= n or found[:n] != stamp:
        return False
    return all(current.get(t) == v for t, v in found[n:])
