"""The read-through, decided once for sync and async: flows the two drivers run.

A flow is a generator that decides everything and yields the I/O it needs as *steps*
``(method, args[, call])``: tier methods (``read``, ``lease_read``, ``fill``, ``write`` ...), the
computation (``compute``), and the waits only a driver can do (``watch``, ``sleep``, ``refresh``;
see ``drivers.py``). A step that fails is thrown back into the flow, which applies the fail-open
policy (I4) in one place.

- :func:`lead_flow`: what the leader of a miss does (the plain miss, the lease wait, the
  background refresh of what it served);
- :func:`load_flow`: one read of L2 and, if that does not serve, the computation and the fill;
- :func:`stage_fill`: after a computation, whether and what to cache (I3).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..codec import Entry
from ..coherence import Message
from ..core.policy import Verdict, expiries, judge, redis_ttl_ms
from ..exceptions import BackendError
from ..tiers import Lease, Read
from .call import MISSING, READ_FAILED, Call, Flight, Flow, LeaseWait, Loaded, Stamp
from .entry import CurrentEntry, added_current, compute_step, plan_fill

if TYPE_CHECKING:
    from .engine import Engine

__all__ = ["lead_flow", "lease_wait", "load_flow", "stage_fill", "stage_store"]


def lease_wait(e: Engine, call: Call) -> LeaseWait | None:
    """A new lease for a ``lock=True`` call (None: no lease, compute on a miss)."""
    if not call.lock or e.redis is None:
        return None
    return e.leases.wait_for(call)


def lead_flow(e: Engine, call: Call, flight: Flight, read: Read | None) -> Flow[Any]:
    """The leader of a miss: compute and fill, waiting for another process's lease if one is held;
    serve a stale or early-refresh entry while it is recomputed in the background."""
    wait = lease_wait(e, call)
    if wait is None:
        stamp = _plain_miss_stamp(e, call, flight, read)
        if stamp is not None:  # nothing in Redis at all: compute and fill, nothing more to decide
            value, control, took = yield from compute_step(e, call, flight)
            staged = stage_fill(e, call, stamp, value, took=took, flight=flight, entry=control)
            if isinstance(staged, tuple):
                try:
                    yield ("write", (call.key, *staged), call)
                    e.redis_ok()
                except BackendError as exc:
                    e.fail(exc, call.on_error, "fill")
            return value
        loaded = yield from load_flow(e, call, flight, prefetched=read)
    else:
        yield ("watch", (call.key,))  # before the first read: no fill notice falls in between
        loaded = yield from load_flow(e, call, flight, wait)
        while loaded.retry:
            yield ("sleep", (loaded.wait,))  # woken early by the holder's fill notice
            loaded = yield from load_flow(e, call, flight, wait)
    if loaded.refresh:
        fresh = yield ("refresh", (loaded,), call)  # the fresh value, if waited for and got
        if fresh is not MISSING:
            return fresh
    if loaded.stale:
        e.stats.stale(call.kind)
    return loaded.value


def _plain_miss_stamp(e: Engine, call: Call, flight: Flight, read: Read | None) -> Stamp | None:
    """The stamp for a miss that needs no flow decisions: the fast read found no entry at all,
    no lease, no middleware, versions known. Else None."""
    if read is None or read is READ_FAILED or read.raw is not None or call.lock or e.chain:
        return None
    stamp = e.versions.snapshot(call.tags)
    if stamp is not None:
        flight.stamp = stamp
        e.stats.redis_miss(call.kind)
        e.stats.miss()
    return stamp


def load_flow(
    e: Engine,
    call: Call,
    flight: Flight | None,
    wait: LeaseWait | None = None,
    *,
    refresh_of: float | None = None,
    prefetched: Read | None = None,
) -> Flow[Loaded]:
    """Read-through after an L1 miss: L2, then the function, then fill both tiers.

    With ``wait`` (``lock=True``) the read also takes the entry's lease when the entry is
    missing or unusable, in the same round trip; a caller that does not get it returns
    ``Loaded(retry=True, wait=s)``, and :func:`lead_flow` runs this again when the holder's fill
    notice arrives or ``s`` passes. The holder fills and releases in one round trip.

    An entry past its soft TTL (``STALE``) or drawn for early refresh (``REFRESH``, XFetch) is
    served with ``refresh=True``: the driver recomputes it in the background. ``refresh_of``
    makes this flow that background refresh of the entry written at that instant: it serves
    nothing stale, stands down if another process holds the lease or has refreshed already,
    and a failing function turns into stale-if-error (the stale entry stays served and the
    function is left alone for ``error_throttle`` seconds).
    """
    versions = e.versions
    now = e.clock()
    refresh = refresh_of is not None
    local_only = e.redis is None
    stamp = versions.init_local(call.tags) if local_only else versions.snapshot(call.tags)
    if flight is not None:
        flight.stamp = stamp
    lease = wait.lease if wait is not None else None
    granted = False
    # READ_FAILED: the caller's own read already paid Redis's timeout
    usable = prefetched is not READ_FAILED and (prefetched is not None or e.redis_usable())
    if usable:
        e.link.ensure()
        epoch = versions.epoch
        tag_keys = () if stamp is not None else call.tag_keys
        read: Read | None = None
        try:
            if prefetched is not None:
                read = prefetched
            elif wait is None:
                read = yield ("read", (call.key, tag_keys), call)
            else:
                force = refresh or wait.force
                read = yield ("lease_read", (call.key, tag_keys, lease, force), call)
            e.redis_ok()
        except BackendError as exc:
            usable = False  # one timeout per call: no fill either
            e.fail(exc, call.on_error, "read")
        if read is not None:
            granted = bool(read.granted)
            if granted:
                e.counters.add(leases_granted=1)
            if read.versions is not None:
                stamp = tuple(zip(call.tags, read.versions, strict=True))
                versions.merge(stamp, epoch)
                if flight is not None:
                    flight.stamp = stamp
            entry: Entry | None = None
            verdict = Verdict.EXPIRED
            if read.raw is not None and call.key not in e.holds.keys:
                entry = e.decode(read.raw, call)
                if entry is None:
                    current = False
                elif entry.stamp == stamp:
                    current = not versions.behind(stamp)
                else:  # tags added by the computation that filled it (``entry.py``)
                    current = yield from added_current(e, entry.stamp, stamp, call.on_error)
                if current and entry is not None:
                    fr = call.freshness
                    verdict = judge(
                        now,
                        entry.fresh_until,
                        entry.fresh_until + fr.stale_ttl,
                        entry.compute_time,
                        fr.beta,
                        1.0 - e.rng.random(),
                    )
            serve = entry is not None and verdict is not Verdict.EXPIRED
            if refresh and entry is not None:  # stand down if another process refreshed it
                serve = serve and verdict is not Verdict.STALE and entry.created != refresh_of
            if serve and entry is not None:
                if granted:  # it was filled between two of our reads
                    yield from _release(e, call, lease)
                if refresh:
                    return Loaded(entry.value, entry.created)
                e.stats.redis_hit(call.kind)
                if verdict is Verdict.STALE:
                    due = e.refresher.due(call.key, now)
                    return Loaded(entry.value, entry.created, refresh=due, stale=True)
                gen = versions.gen
                if stamp is not None and not versions.behind(entry.stamp):
                    e.fast.local_put(call, entry.value, entry.stamp, entry.fresh_until, gen)
                return Loaded(entry.value, entry.created, refresh=verdict is Verdict.REFRESH)
            if not refresh:
                e.stats.redis_miss(call.kind)
            if wait is not None and not granted:
                if refresh:
                    return Loaded()  # another process is refreshing it
                holder = read.holder
                if read.raw is not None and not wait.force:
                    wait.force = True  # there but unusable: claim the lease over it
                    if not wait.polls:
                        return Loaded(retry=True)  # at once, the first time
                    holder = wait.holder  # this read did not look at the lease
                else:
                    wait.force = read.raw is not None
                pause = e.leases.pause(wait, holder)
                if pause is not None:
                    return Loaded(retry=True, wait=pause)
    if refresh and not usable:
        return Loaded()  # nothing to refresh into
    if not refresh:
        e.stats.miss()
    try:
        value, control, took = yield from compute_step(e, call, flight)
    except Exception as exc:
        if granted:  # waiters learn at once and compute themselves
            yield from _release(e, call, lease)
        if not refresh:
            raise
        e.refresher.failed(call, exc)
        return Loaded()
    if refresh:
        e.counters.add(refreshes=1)
    staged = stage_fill(
        e, call, stamp, value, took=took, flight=flight, usable=usable, entry=control
    )
    if staged is False:
        if granted:  # not written, but waiters must read again (and compute)
            yield from _release(e, call, lease)
        return Loaded(value)
    if staged is not True:
        payload, px = staged
        try:
            if granted:
                notice = Message.for_fills(e.origin, (call.key,))
                yield ("fill", (call.key, payload, px, lease, notice), call)
                e.leases.filled((call.key,))
            else:
                yield ("write", (call.key, payload, px), call)
            e.redis_ok()
        except BackendError as exc:
            e.fail(exc, call.on_error, "fill")
    return Loaded(value)


def stage_fill(
    e: Engine,
    call: Call,
    stamp: Stamp | None,
    value: Any,
    *,
    took: float,
    flight: Flight | None,
    usable: bool = True,
    entry: CurrentEntry | None = None,
) -> tuple[bytes, int] | bool:
    """After a computation: count it, fill L1, and encode the Redis fill (:func:`stage_store`)."""
    e.stats.computed(took)
    e.refresher.recovered(call.key)
    return stage_store(e, call, stamp, value, flight=flight, usable=usable, entry=entry, took=took)


def stage_store(
    e: Engine,
    call: Call,
    stamp: Stamp | None,
    value: Any,
    *,
    flight: Flight | None,
    usable: bool = True,
    entry: CurrentEntry | None = None,
    took: float = 0.0,
    predicate: bool = True,
) -> tuple[bytes, int] | bool:
    """Whether and what to cache of ``value``: fill L1 and encode the Redis fill.

    False: not cached (versions unknowable while Redis is down, invalidated while computing:
    I3, computed inside a database transaction that has written, refused by ``cache_if``
    (with ``predicate``), ``none_ttl`` or ``entry.skip()``, or its envelope over
    ``max_value_bytes``); True: cached in L1 only (Redis not usable); else ``(payload, px)``.
    """
    if stamp is None:  # versions unknowable (Redis down): never cache a tagged value blind
        return False
    if e.deferral.writing():  # it may have read rows not committed yet (``deferral.py``)
        e.counters.add(transaction_fills_skipped=1)
        return False
    freshness = call.freshness
    if call.policy is not None or (entry is not None and entry.touched):
        planned = plan_fill(e, call, stamp, value, entry, predicate=predicate)
        if planned is None:
            return False
        freshness, stamp = planned
    versions = e.versions
    gen = versions.gen
    if versions.behind(stamp) or (flight is not None and flight.doomed):
        e.stats.add(skipped_stale_fills=1)  # invalidated while computing (I3)
        return False
    written = e.clock()
    fresh_until, hard_until = expiries(written, freshness, e.rng.random())
    if not (usable and e.redis_usable()):
        e.fast.local_put(call, value, stamp, fresh_until, gen)
        return True
    payload = e.codec.encode(
        value,
        stamp=stamp,
        created=written,
        fresh_until=fresh_until,
        compute_time=took,
        key=call.key,
        kind=call.kind,
    )
    if e.oversized(call, payload):
        return False
    e.fast.local_put(call, value, stamp, fresh_until, gen)
    return payload, redis_ttl_ms(written, hard_until)


def _release(e: Engine, call: Call, lease: Lease | None) -> Flow[None]:
    """Give a lease back unfilled and wake its waiters (in every process)."""
    assert lease is not None
    try:
        notice = Message.for_fills(e.origin, (call.key,))
        yield ("fill", (call.key, None, 0, lease, notice), call)
    except BackendError as exc:
        e.fail(exc, call.on_error, "lease release")
    e.leases.filled((call.key,))
