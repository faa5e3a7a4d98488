"""Batch loaders (``cache.cached_many``), decided once for sync and async: a flow both drivers run.

A call of ``n`` ids:

1. one L1 pass;
2. one Redis round trip for the rest (``read_many``): the entries, the versions of the tags this
   process does not know, and with ``lock=True`` the leases of the entries absent, all at once;
3. one ``compute`` step with only the missing ids (the caller's order, no duplicates); each entry
   is stamped with the versions read *before* it (I3): an invalidation of one of its tags, or a
   delete of its key, landing meanwhile keeps that entry out of both tiers;
4. one ``fill_many`` pipeline: the SETs, the release of our leases and one fill notice.

With ``lock=True`` the ids whose lease another process holds are waited for *after* ours are
filled (so two processes each waiting on the other's leases cannot stall), woken by the holder's
fill notice as a single-key lease wait is, paced by :meth:`Leases.pause` and bounded by
``lock_timeout`` for at most two holders; then read again, and what is still missing is computed
here (a second call of the function, for those ids only). Entries are judged as the
single-key read judges them, except that a batch has no background refresh (no
stale-while-revalidate, no XFetch early refresh): an entry past its TTL is a miss recomputed in
the same call. A corrupt entry is a counted miss (``decode_errors``). Under ``lock=True`` an entry
found but unusable (stale, or stamped with old versions) costs one more round trip, to claim its
lease over it, so that it is computed in the same call as the rest.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..coherence import Message
from ..exceptions import BackendError
from ..tiers.redis.batch import BatchLease, ManyRead
from .call import MISSING, Call, Flow, LeaseWait, Stamp
from .flows import stage_fill
from .leases import lease_key

if TYPE_CHECKING:
    from .engine import Engine

__all__ = ["batch_flow"]


@dataclass(slots=True)
class _Batch:
    """One batch call's state between its steps."""

    calls: Sequence[Call]
    items: Sequence[Any]
    on_error: str
    out: list[Any]
    stamps: dict[int, Stamp | None] = field(default_factory=dict)
    usable: bool = True
    wait: LeaseWait | None = None
    force: dict[int, bool] = field(default_factory=dict)
    holders: dict[int, str | None] = field(default_factory=dict)
    gen: int = -1  # the tag map's gen the stamps were read at (-1: some were fetched)


def batch_flow(
    e: Engine, calls: Sequence[Call], items: Sequence[Any], *, lock: bool, on_error: str
) -> Flow[list[Any]]:
    """The values of ``calls`` (one per distinct id of ``items``), ``MISSING`` for an id the
    function did not return. The ``compute`` step is sent the list of ids to compute."""
    b = _Batch(calls, items, on_error, [MISSING] * len(calls))
    if e.local.maxsize:
        lookup = e.fast.local_lookup
        b.out = [lookup(c.local_key, c.local_types) for c in calls]
    todo = [i for i, v in enumerate(b.out) if v is MISSING]
    if not todo:
        return b.out
    versions = e.versions
    if e.redis is None:  # local only: the tag map is the truth
        for i in todo:
            b.stamps[i] = versions.init_local(calls[i].tags)
        e.stats.add(misses=len(todo))
        yield from _compute(e, b, todo, ())
        return b.out
    b.gen = versions.gen  # the stamps below are the map's at this gen
    known = versions._map if versions.current() else {}  # one trust check for the batch
    for i in todo:
        try:
            b.stamps[i] = tuple([(t, known[t]) for t in calls[i].tags])
        except KeyError:
            b.stamps[i] = None
    b.usable = e.redis_usable()
    if not b.usable:
        e.stats.add(misses=len(todo))
        yield from _compute(e, b, todo, ())
        return b.out
    e.link.ensure()
    if lock and not e.deferral.writing():  # a transaction that has written stores nothing
        b.wait = e.leases.wait_for(calls[todo[0]])
        yield ("watch", (tuple(calls[i].key for i in todo),))  # before the read: no notice lost
    lead, waiting = yield from _read(e, b, todo)
    rush = [i for i in waiting if b.force.get(i) and b.holders.get(i) is None]
    if rush:  # there but unusable: claim their leases at once, to compute them with the rest
        more, still = yield from _read(e, b, rush)
        lead = sorted(lead + more)  # indexes: the caller's order
        waiting = sorted([i for i in waiting if i not in set(rush)] + still)
    yield from _compute(e, b, lead, lead if b.wait is not None else ())
    while waiting:  # lock=True: ids another process holds, after ours are filled
        assert b.wait is not None
        holder = ",".join(sorted({h for i in waiting if (h := b.holders.get(i))}))
        pause = e.leases.pause(b.wait, holder)
        if pause is None:  # waited long enough: compute them here, unleased
            e.stats.add(misses=len(waiting))
            yield from _compute(e, b, waiting, ())
            break
        yield ("sleep", (pause,))  # woken early by a holder's fill notice
        lead, waiting = yield from _read(e, b, waiting)
        yield from _compute(e, b, lead, lead)
    return b.out


def _read(e: Engine, b: _Batch, todo: list[int]) -> Flow[tuple[list[int], list[int]]]:
    """Read ``todo`` (one round trip), serve what is usable; returns the ids to compute here
    and (``lock=True``) the ids whose lease another process holds."""
    calls, stamps, versions = b.calls, b.stamps, e.versions
    unknown = sorted({t for i in todo if stamps[i] is None for t in calls[i].tags})
    wait = b.wait
    lease = None
    if wait is not None:
        ms, token = wait.lease.ms, wait.lease.token
        keys = tuple(lease_key(calls[i].key) for i in todo)
        lease = BatchLease(keys, token, ms, tuple(b.force.get(i, False) for i in todo))
    epoch = versions.epoch
    try:
        args = ([calls[i].key for i in todo], [e.tag_key(t) for t in unknown], lease)
        read: ManyRead = yield ("read_many", args, calls[todo[0]])
        e.redis_ok()
    except BackendError as exc:
        b.usable = False  # one timeout per call: no fill either
        e.fail(exc, b.on_error, "read")
        e.stats.add(misses=len(todo))
        return todo, []
    if read.versions is not None:
        fetched = list(zip(unknown, read.versions, strict=True))
        versions.merge(fetched, epoch)
        current = dict(fetched)
        b.gen = -1
        for i in todo:
            if stamps[i] is None:
                stamps[i] = tuple((t, current[t]) for t in calls[i].tags)
    now = e.clock()
    queued = e.holds.keys  # keys whose invalidation waits for Redis (I8): not read
    raws = read.raws
    if queued:
        raws = [None if calls[i].key in queued else raw for i, raw in zip(todo, raws, strict=True)]
    entries = e.decode_many(raws, [calls[i] for i in todo])
    local = e.local.maxsize > 0
    gen = versions.gen
    # unless a version moved since the stamps were read, or an invalidation waits for Redis
    # (I8), no stamp is behind: the check per entry is skipped
    moved = gen != b.gen or bool(versions.pending) or versions.pending_all
    lead: list[int] = []
    waiting: list[int] = []
    release: list[int] = []
    for j, i in enumerate(todo):
        call, stamp, entry = calls[i], stamps[i], entries[j]
        holder = read.holders[j] if read.holders is not None else None
        granted = lease is not None and holder == lease.token
        if (
            entry is not None
            and entry.stamp == stamp
            and now < entry.fresh_until  # fresh (no early refresh here: see the module doc)
            and not (moved and versions.behind(stamp))
        ):
            b.out[i] = entry.value
            if local:
                e.fast.local_put(call, entry.value, stamp, entry.fresh_until, gen)
            if granted:  # filled between a forced read's look and its lease
                release.append(i)
            continue
        if lease is None or granted:
            lead.append(i)
            continue
        b.holders[i] = holder
        if read.raws[j] is not None and not b.force.get(i):
            b.force[i] = True  # there but unusable: claim its lease over it, at once
            b.holders[i] = None
        waiting.append(i)
    if lease is not None and lead:
        e.counters.add(leases_granted=len(lead))
    served = len(todo) - len(lead) - len(waiting)
    kind = calls[todo[0]].kind  # per kind, too (a miss is a miss overall)
    e.stats.redis_results((kind,) * served, (kind,) * len(lead))
    if release:
        yield from _fill(e, b, [], release)
    return lead, waiting


def _compute(e: Engine, b: _Batch, ids: list[int], leased: Sequence[int]) -> Flow[None]:
    """One call of the function with the ids at ``ids``; cache what it returned (I3), release
    the leases at ``leased`` and wake their waiters, in one pipeline."""
    if not ids:
        return
    calls, items = b.calls, b.items
    doom, doomed = e.flights.track(frozenset(calls[i].key for i in ids))
    started = time.perf_counter()
    try:
        got = yield ("compute", ([items[i] for i in ids],), calls[ids[0]])
    except Exception:
        e.flights.untrack(doom)
        if leased:  # waiters learn at once and compute themselves
            yield from _fill(e, b, [], leased)
        raise
    e.flights.untrack(doom)
    if not isinstance(got, Mapping):
        raise TypeError(
            f"{calls[ids[0]].function} is a batch loader: it must return a mapping of id to "
            f"value, not {type(got).__name__}"
        )
    took = (time.perf_counter() - started) / len(ids)  # each entry's share of the call
    writes: list[tuple[str, bytes, int]] = []
    for i in ids:
        item = items[i]
        if item not in got:
            continue  # left out by the function: not cached
        value = b.out[i] = got[item]
        if calls[i].key in doomed:  # its key was deleted while computing (I3)
            e.stats.add(skipped_stale_fills=1)
            continue
        staged = stage_fill(
            e, calls[i], b.stamps.get(i), value, took=took, flight=None, usable=b.usable
        )
        if isinstance(staged, tuple):
            writes.append((calls[i].key, *staged))
    if writes or leased:
        yield from _fill(e, b, writes, leased)


def _fill(
    e: Engine, b: _Batch, writes: list[tuple[str, bytes, int]], leased: Sequence[int]
) -> Flow[None]:
    """Write ``writes``, release the leases at ``leased`` and publish their fill notice."""
    keys = [b.calls[i].key for i in leased]
    token = b.wait.lease.token if b.wait is not None and keys else None
    notice = Message.for_fills(e.origin, keys) if keys else b""
    if b.usable:
        try:
            args = (writes, [lease_key(k) for k in keys], token, e.channel, notice)
            yield ("fill_many", args, b.calls[0])
            e.redis_ok()
        except BackendError as exc:
            e.fail(exc, b.on_error, "fill")
    if keys:
        e.leases.filled(keys)
