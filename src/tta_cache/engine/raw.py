"""Raw access and invalidation, decided once for sync and async: ``get``/``get_many``,
``set``/``set_many`` and ``invalidate`` as flows (see ``flows.py`` for how flows run).

Raw entries are stamped and validated like a decorated function's (I1-I3 hold for them too);
invalidation merges the new versions locally before it returns (I1) and queues what Redis cannot
take (I8).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..codec import Entry
from ..coherence import Message
from ..core.policy import expiries, redis_ttl_ms
from ..exceptions import BackendError, NotReplicated
from .call import MISSING, Call, Flow

if TYPE_CHECKING:
    from .engine import Engine

__all__ = ["get_flow", "invalidate_flow", "send_flow", "set_flow"]


def get_flow(e: Engine, calls: Sequence[Call], on_error: str) -> Flow[list[Any]]:
    """L1, then one MGET, then (only for tags this process does not know, or while the channel
    is down) one round trip for versions. Missing -> ``MISSING``."""
    l1 = e.local.maxsize > 0
    if l1:
        lookup = e.fast.local_lookup
        out: list[Any] = [lookup(c.local_key, c.local_types) for c in calls]
        todo = [i for i, v in enumerate(out) if v is MISSING]
    else:
        out = [MISSING] * len(calls)
        todo = list(range(len(calls)))
    if not todo or not e.redis_usable():
        e.stats.add(misses=len(todo))
        return out
    e.link.ensure()
    versions = e.versions
    epoch = versions.epoch
    try:
        raws = yield ("get_many", ([calls[i].key for i in todo],))
        e.redis_ok()
    except BackendError as exc:
        e.fail(exc, on_error, "get")
        e.stats.add(misses=len(todo))
        return out
    entries: list[tuple[int, Entry]] = []
    queued = e.holds.keys
    decode = e.decode
    for i, raw in zip(todo, raws, strict=True):
        if raw is not None and not (queued and calls[i].key in queued):
            entry = decode(raw, calls[i])
            if entry is not None:
                entries.append((i, entry))
    trusted = versions.current()
    known = versions._map if trusted else {}
    unknown = sorted({t for _, en in entries for t, _ in en.stamp if t not in known})
    current: Mapping[str, int] = known
    if unknown:
        try:
            got = yield ("versions", (tuple(e.tag_key(t) for t in unknown),))
            fetched = list(zip(unknown, got, strict=True))
            current = {**known, **dict(fetched)}
            versions.merge(fetched, epoch)
        except BackendError as exc:
            e.fail(exc, on_error, "versions")
    now = e.clock()
    hits: list[int] = []
    pending = versions.pending
    blocked_all = versions.pending_all
    gen = versions.gen
    for i, entry in entries:
        if blocked_all or now >= entry.fresh_until:
            continue
        for t, v in entry.stamp:
            if current.get(t) != v or (pending and t in pending):
                break
        else:
            out[i] = entry.value
            hits.append(i)
            if l1 and trusted:
                e.fast.local_put(calls[i], entry.value, entry.stamp, entry.fresh_until, gen)
    served = set(hits)
    e.stats.redis_results(
        (calls[i].kind for i in hits), (calls[i].kind for i in todo if i not in served)
    )
    return out


def set_flow(e: Engine, items: Sequence[tuple[Call, Any]], on_error: str) -> Flow[None]:
    """Stamp with current versions, fill L1, one pipeline to Redis; a value whose envelope is
    over ``max_value_bytes`` goes to neither tier."""
    versions = e.versions
    tags = sorted({t for c, _ in items for t in c.tags})
    if e.redis is None:
        current = dict(versions.init_local(tags))
    else:
        snap = versions.snapshot(tags)
        current = dict(snap) if snap is not None else {}
        if snap is None and e.redis_usable():
            e.link.ensure()
            epoch = versions.epoch
            try:
                got = yield ("versions", (tuple(e.tag_key(t) for t in tags),))
                current = dict(zip(tags, got, strict=True))
                versions.merge(current.items(), epoch)
            except BackendError as exc:
                e.fail(exc, on_error, "versions")
    writes: list[tuple[str, bytes, int]] = []
    now = e.clock()
    gen = versions.gen
    for call, value in items:
        if not all(t in current for t in call.tags):
            continue  # versions unknowable: do not cache blind
        stamp = tuple((t, current[t]) for t in call.tags)
        fresh_until, hard_until = expiries(now, call.freshness, e.rng.random())
        if e.redis is not None:
            payload = e.codec.encode(
                value,
                stamp=stamp,
                created=now,
                fresh_until=fresh_until,
                key=call.key,
                kind=call.kind,
            )
            if e.oversized(call, payload):
                continue
            writes.append((call.key, payload, redis_ttl_ms(now, hard_until)))
        e.fast.local_put(call, value, stamp, fresh_until, gen)
    if writes and e.redis_usable():
        try:
            yield ("set_many", (writes,))
            e.breaker.record_success()
        except BackendError as exc:
            e.fail(exc, on_error, "set")


def invalidate_flow(
    e: Engine, tags: Iterable[str], keys: Iterable[str], on_error: str
) -> Flow[None]:
    """Invalidate tags and keys; inside a bound database transaction, hold them until it
    commits (``deferral.py``), else send them now (:func:`send_flow`). Either way this process
    serves nothing they cover once this returns (I1)."""
    tags = list(dict.fromkeys(tags))
    keys = list(dict.fromkeys(keys))
    e.versions.invalidating()  # no computation under way is joined after this (I1)
    tx = e.deferral.current()
    if tx is not None and e.deferral.hold(tx, tags, keys):
        if keys:
            e.drop_keys(keys)
        return
    yield from send_flow(e, tags, keys, on_error)


def send_flow(e: Engine, tags: list[str], keys: list[str], on_error: str) -> Flow[None]:
    """Bump tag versions and delete keys; publish both. Read-your-invalidation (I1) holds when
    this returns: the new versions are merged locally first, the issuing L1 is cleaned, and
    an invalidation Redis cannot take is queued and covers its entries until it lands (I8)."""
    if keys:
        e.drop_keys(keys)
    if e.redis is None:
        if tags:
            e.versions.bump_local(tags)
        return
    e.link.ensure()
    lost_tags: list[str] = []
    lost_keys: list[str] = []
    errors: list[tuple[BackendError, str]] = []
    unreplicated = False
    if tags:
        try:
            bump = (tuple(e.tag_key(t) for t in tags), tags, e.channel, Message.head(e.origin))
            new = yield ("bump", bump)
            e.versions.merge(zip(tags, new, strict=True))
            e.stats.add(invalidations_sent=1)
        except NotReplicated as exc:  # the master took it; a failover may still lose it (I8)
            e.versions.merge(zip(tags, exc.versions, strict=True))
            e.stats.add(invalidations_sent=1)
            e.queue.add(tags, ())
            lost_tags, unreplicated = tags, True
            errors.append((exc, "invalidate"))
        except BackendError as exc:
            e.queue.add(tags, ())
            lost_tags = tags
            errors.append((exc, "invalidate"))
    if keys:
        try:
            yield ("delete", (keys, e.channel, Message.for_keys(e.origin, keys)))
            e.stats.add(invalidations_sent=1)
        except BackendError as exc:
            e.queue.add((), keys)
            lost_keys = keys
            errors.append((exc, "delete"))
    if errors and (e.redis.cluster or unreplicated):
        # A Cluster master holding some of these keys is down, others may be up and hold the
        # other processes' channels: tell them through any live node, so that they queue the
        # invalidation too (I8) and serve nothing it affects until Redis takes it (I2). A bump
        # no replica acknowledged likewise: the others heard it, but a failover may lose it
        # and rebuild their maps without it, so each keeps it until a retry is acknowledged.
        message = Message.for_adoption(e.origin, lost_tags, lost_keys)
        announced = yield ("announce", (e.channel, message))
        e.counters.add(invalidations_announced=int(bool(announced)))
    for error, what in errors:
        e.fail(error, on_error, what)
