"""The engine: read-through, fill, invalidation and raw access, written once for sync and async.

Each operation is a *flow*: a generator that decides everything and yields the I/O it needs as
``(method, args)`` steps (``("read", (key, tag_keys))``, ``("compute", ())`` ...). Two small
drivers run a flow: :meth:`Engine.run` against the sync :class:`~tta_cache.redis_tier.RedisTier`,
:meth:`Engine.arun` against the asyncio one. A step that fails is thrown back into the flow, which
applies the fail-open policy (I4) in one place. Only the drivers and single-flight differ between
sync and async; decision logic is never written twice.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Generator, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from .codecs import Codec, Entry
from .coherence import Message, Subscriber, TagVersions
from .exceptions import BackendError, DecodeError
from .keys import NAMESPACE_TAG, escape
from .local import LocalEntry, LocalTier
from .policy import (
    BreakerState,
    CircuitBreaker,
    Freshness,
    Verdict,
    backoff,
    expiries,
    judge,
    redis_ttl_ms,
)
from .redis_tier import AsyncRedisTier, Read, RedisConfig, RedisTier, make_sync_client
from .stats import Stats

__all__ = ["Call", "Engine", "Flight"]

log = logging.getLogger("tta_cache")

T = TypeVar("T")
Stamp = tuple[tuple[str, int], ...]
Step = tuple[str, tuple[Any, ...]]
Flow = Generator[Step, Any, T]

COMPUTE: Step = ("compute", ())
_MISSING: Any = object()


@dataclass(frozen=True, slots=True)
class Call:
    """Everything a read-through needs about one call of a cached function (or one raw key)."""

    key: str  # the Redis key
    local_key: Hashable  # the L1 key
    local_types: tuple[type, ...] | None  # argument types an L1 hit must match (None: any)
    tags: tuple[str, ...]  # NAMESPACE_TAG first, then the entry's tags
    tag_keys: tuple[str, ...]
    freshness: Freshness
    type_hint: Any = None
    on_error: str = "ignore"
    kind: str = "default"
    function: str = ""
    lock: bool = False


class Flight:
    """One in-process computation of a key that concurrent callers of the same key join (I5)."""

    __slots__ = ("done", "doomed", "error", "future", "result", "stamp")

    def __init__(self, future: asyncio.Future[Any] | None = None) -> None:
        self.stamp: Stamp | None = None  # the versions the computation is stamped with, once known
        self.doomed = False  # a per-call invalidation hit it: its result is not cached
        self.result: Any = _MISSING
        self.error: BaseException | None = None
        self.done = threading.Event()  # sync joiners wait on this, async ones on ``future``
        self.future = future


class Engine:
    """Tiers, codec, policy and tags behind a :class:`~tta_cache.Cache`."""

    def __init__(
        self,
        *,
        namespace: str,
        redis: RedisConfig | None,
        local_maxsize: int,
        codec: Codec,
        on_error: str,
        lock_timeout: float,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        breaker: CircuitBreaker | None = None,
        channel_ping_interval: float = 1.0,
    ) -> None:
        self.namespace = namespace
        self.codec = codec
        self.on_error = on_error
        self.lock_timeout = lock_timeout
        self.clock = clock
        self.rng = rng or random.Random()
        self.local = LocalTier(local_maxsize)
        self.stats = Stats()
        self.channel = f"{namespace}:invalidate"
        self.origin = f"{os.getpid()}-{self.rng.getrandbits(40):010x}"
        self.redis_cfg = redis
        self.max_hard_ttl = 86_400.0
        self.versions = TagVersions(trusted=redis is None)
        self.breaker = breaker or CircuitBreaker()
        self.redis: RedisTier | None = None
        self.aredis: AsyncRedisTier | None = None
        if redis is not None:
            self.redis = RedisTier(redis, self.tag_ttl)
            self.aredis = AsyncRedisTier(redis, self.tag_ttl)
        self._channel_ping_interval = channel_ping_interval
        self.subscriber: Subscriber | None = None
        self._sub_lock = threading.Lock()
        self._flights: dict[str, Flight] = {}
        self._flight_lock = threading.Lock()
        self._aflights: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Flight]] = (
            weakref.WeakKeyDictionary()
        )
        # I8: invalidations Redis has not taken yet, retried by the channel thread.
        self._queue_lock = threading.Lock()
        self._queued_tags: dict[str, None] = {}
        self._queued_keys: dict[str, None] = {}
        self.queue_limit = 10_000
        self._queue_overflow = False
        self._retry_failures = 0
        self._retry_at = 0.0
        self._closed = False

    # ------------------------------------------------------------------ helpers

    def tag_ttl(self) -> int:
        """Seconds a tag version must outlive: twice the longest hard TTL in use, at least a day."""
        return int(max(2 * self.max_hard_ttl, 86_400))

    def tag_key(self, tag: str) -> str:
        return f"{self.namespace}:tag:{tag}"

    def raw_key(self, key: str) -> str:
        return f"{self.namespace}:raw:{escape(key)}"

    def note_ttl(self, freshness: Freshness) -> None:
        hard = freshness.ttl * (1 + freshness.jitter) + freshness.stale_ttl
        self.max_hard_ttl = max(self.max_hard_ttl, hard)

    def ensure_channel(self) -> None:
        """Start the invalidation channel before the first version is fetched (DESIGN.md §4)."""
        if self.subscriber is not None or self.redis_cfg is None or self._closed:
            return
        with self._sub_lock:
            if self.subscriber is None:
                cfg = self.redis_cfg
                sub = Subscriber(
                    lambda: make_sync_client(cfg, op_timeout=max(5.0, cfg.op_timeout)),
                    self.channel,
                    self._on_message,
                    self._on_channel_state,
                    tick=self._retry_queued,
                    ping_interval=self._channel_ping_interval,
                )
                sub.start()
                self.subscriber = sub

    def wait_ready(self, timeout: float) -> bool:
        """Block until the invalidation channel is up (True) or ``timeout`` passes (False)."""
        if self.redis_cfg is None:
            return True
        self.ensure_channel()
        assert self.subscriber is not None
        return self.subscriber.connected.wait(timeout)

    def _on_channel_state(self, up: bool) -> None:
        if up:
            self.versions.trust()
        else:
            self.versions.distrust()
        log.info("invalidation channel %s", "up" if up else "down")

    def _on_message(self, message: Message) -> None:
        if message.origin == self.origin:
            return  # our own invalidation: applied before invalidate() returned
        self.stats.add(invalidations_received=1)
        if message.versions:
            self.versions.merge(message.versions)
        if message.keys:
            self._drop_keys(message.keys)

    def _drop_keys(self, keys: Sequence[str]) -> None:
        self.local.pop_redis_keys(keys)
        with self._flight_lock:
            for flights in (self._flights, *list(self._aflights.values())):
                for k in keys:
                    flight = flights.pop(k, None)
                    if flight is not None:
                        flight.doomed = True

    def _joinable(self, flight: Flight | None) -> bool:
        # A computation that started before an invalidation must not be joined (I1).
        return (
            flight is not None
            and not flight.doomed
            and (flight.stamp is None or not self.versions.behind(flight.stamp))
        )

    def _fail(self, exc: BaseException, on_error: str, what: str) -> None:
        """The fail-open policy: count, log, and raise only when asked to (I4)."""
        kind = type(exc.__cause__ or exc).__name__
        self.stats.error(kind)
        if isinstance(exc, BackendError):
            self.breaker.record_failure()
        log.warning("tta-cache %s failed (%s): %s; serving without it", what, kind, exc)
        if on_error == "raise":
            raise exc

    def _redis_usable(self) -> bool:
        return self.redis is not None and self.breaker.allow()

    def _decode(self, raw: bytes, type_hint: Any) -> Entry | None:
        try:
            return self.codec.decode(raw, type_hint)
        except DecodeError as exc:
            self.stats.add(decode_errors=1)
            log.warning("tta-cache: undecodable entry counted as a miss: %s", exc)
            return None

    # ------------------------------------------------------------------ L1

    def local_lookup(self, local_key: Hashable, types: tuple[type, ...] | None = None) -> Any:
        """The L1 value for ``local_key`` or ``_MISSING``; revalidates an entry checked long ago."""
        local = self.local
        versions = self.versions
        with local.lock:
            try:
                entry = local.data.get(local_key)
            except TypeError:  # unhashable arguments: no L1 for this call
                entry = None
            if entry is not None and entry.expires > self.clock() and entry.types == types:
                gen = versions.gen
                if entry.gen == gen or versions.valid(entry.stamp):
                    entry.gen = gen
                    local.hits += 1
                    return entry.value
            local.misses += 1
        return _MISSING

    def _local_put(
        self, call: Call, value: Any, stamp: Stamp, fresh_until: float, gen: int
    ) -> None:
        if self.local.maxsize and self.versions.valid(stamp):
            entry = LocalEntry(value, fresh_until, gen, stamp, call.key, call.local_types)
            self.local.put(call.local_key, entry)

    # ------------------------------------------------------------------ flows

    def load_flow(self, call: Call, flight: Flight | None) -> Flow[Any]:
        """Read-through after an L1 miss: L2, then the function, then fill both tiers."""
        versions = self.versions
        now = self.clock()
        if self.redis is None:
            stamp: Stamp | None = versions.init_local(call.tags)
        else:
            stamp = versions.snapshot(call.tags)
        if flight is not None:
            flight.stamp = stamp
        stale: Entry | None = None
        if self._redis_usable():
            self.ensure_channel()
            epoch = versions.epoch
            read: Read | None = None
            try:
                read = yield ("read", (call.key, () if stamp is not None else call.tag_keys))
                self.breaker.record_success()
            except BackendError as exc:
                self._fail(exc, call.on_error, "read")
            if read is not None:
                if read.versions is not None:
                    stamp = tuple(zip(call.tags, read.versions, strict=True))
                    versions.merge(stamp, epoch)
                    if flight is not None:
                        flight.stamp = stamp
                if read.raw is not None and call.key not in self._queued_keys:
                    entry = self._decode(read.raw, call.type_hint)
                    if entry is not None and entry.stamp == stamp:
                        fr = call.freshness
                        verdict = judge(
                            now,
                            entry.fresh_until,
                            entry.fresh_until + fr.stale_ttl,
                            entry.compute_time,
                            fr.beta,
                            1.0 - self.rng.random(),
                        )
                        if verdict is Verdict.FRESH or verdict is Verdict.REFRESH:
                            self.stats.add(redis_hits=1)
                            gen = versions.gen
                            if stamp is not None and not versions.behind(stamp):
                                self._local_put(call, entry.value, stamp, entry.fresh_until, gen)
                            return entry.value
                        if verdict is Verdict.STALE:
                            stale = entry
                self.stats.add(redis_misses=1)
        self.stats.add(misses=1)
        started = time.perf_counter()
        value = yield COMPUTE
        took = time.perf_counter() - started
        self.stats.add(computes=1, compute_seconds=took)
        del stale  # stale-while-revalidate / stale-if-error: see policy.Freshness.stale_ttl
        if stamp is None:
            return value  # versions unknowable (Redis down): never cache a tagged value blind
        gen = versions.gen
        if versions.behind(stamp) or (flight is not None and flight.doomed):
            self.stats.add(skipped_stale_fills=1)  # invalidated while computing (I3)
            return value
        written = self.clock()
        fresh_until, hard_until = expiries(written, call.freshness, self.rng.random())
        self._local_put(call, value, stamp, fresh_until, gen)
        if self._redis_usable():
            payload = self.codec.encode(
                value, stamp=stamp, created=written, fresh_until=fresh_until, compute_time=took
            )
            try:
                yield ("write", (call.key, payload, redis_ttl_ms(written, hard_until)))
                self.breaker.record_success()
            except BackendError as exc:
                self._fail(exc, call.on_error, "fill")
        return value

    def get_flow(self, calls: Sequence[Call], on_error: str) -> Flow[list[Any]]:
        """Raw ``get``/``get_many``: L1, then one MGET, then (only for tags this process does not
        know, or while the channel is down) one round trip for versions. Missing -> ``_MISSING``."""
        out: list[Any] = [self.local_lookup(c.local_key, c.local_types) for c in calls]
        todo = [i for i, v in enumerate(out) if v is _MISSING]
        if not todo or not self._redis_usable():
            self.stats.add(misses=len(todo))
            return out
        self.ensure_channel()
        versions = self.versions
        epoch = versions.epoch
        try:
            raws = yield ("get_many", ([calls[i].key for i in todo],))
            self.breaker.record_success()
        except BackendError as exc:
            self._fail(exc, on_error, "get")
            self.stats.add(misses=len(todo))
            return out
        entries: dict[int, Entry] = {}
        for i, raw in zip(todo, raws, strict=True):
            if raw is not None and calls[i].key not in self._queued_keys:
                entry = self._decode(raw, calls[i].type_hint)
                if entry is not None:
                    entries[i] = entry
        need = {t for e in entries.values() for t, _ in e.stamp}
        current = {t: versions.get(t) for t in need} if versions.trusted else {}
        unknown = sorted(t for t in need if current.get(t) is None)
        if unknown:
            try:
                got = yield ("versions", (tuple(self.tag_key(t) for t in unknown),))
                fetched = list(zip(unknown, got, strict=True))
                current.update(fetched)
                versions.merge(fetched, epoch)
            except BackendError as exc:
                self._fail(exc, on_error, "versions")
        now = self.clock()
        hits = 0
        pending = versions.pending
        for i, entry in entries.items():
            ok = not versions.pending_all and all(
                current.get(t) == v and t not in pending for t, v in entry.stamp
            )
            if ok and now < entry.fresh_until:
                out[i] = entry.value
                hits += 1
                if versions.trusted:
                    c = calls[i]
                    self._local_put(c, entry.value, entry.stamp, entry.fresh_until, versions.gen)
        self.stats.add(redis_hits=hits, redis_misses=len(todo) - hits, misses=len(todo) - hits)
        return out

    def set_flow(self, items: Sequence[tuple[Call, Any]], on_error: str) -> Flow[None]:
        """Raw ``set``/``set_many``: stamp with current versions, fill L1, one pipeline to Redis."""
        versions = self.versions
        tags = sorted({t for c, _ in items for t in c.tags})
        if self.redis is None:
            current = dict(versions.init_local(tags))
        else:
            snap = versions.snapshot(tags)
            current = dict(snap) if snap is not None else {}
            if snap is None and self._redis_usable():
                self.ensure_channel()
                epoch = versions.epoch
                try:
                    got = yield ("versions", (tuple(self.tag_key(t) for t in tags),))
                    current = dict(zip(tags, got, strict=True))
                    versions.merge(current.items(), epoch)
                except BackendError as exc:
                    self._fail(exc, on_error, "versions")
        writes: list[tuple[str, bytes, int]] = []
        now = self.clock()
        gen = versions.gen
        for call, value in items:
            if not all(t in current for t in call.tags):
                continue  # versions unknowable: do not cache blind
            stamp = tuple((t, current[t]) for t in call.tags)
            fresh_until, hard_until = expiries(now, call.freshness, self.rng.random())
            if self.redis is not None:
                payload = self.codec.encode(
                    value, stamp=stamp, created=now, fresh_until=fresh_until
                )
                writes.append((call.key, payload, redis_ttl_ms(now, hard_until)))
            self._local_put(call, value, stamp, fresh_until, gen)
        if writes and self._redis_usable():
            try:
                yield ("set_many", (writes,))
                self.breaker.record_success()
            except BackendError as exc:
                self._fail(exc, on_error, "set")

    def invalidate_flow(
        self, tags: Iterable[str], keys: Iterable[str], on_error: str
    ) -> Flow[None]:
        """Bump tag versions and delete keys; publish both. Read-your-invalidation (I1) holds when
        this returns: the new versions are merged locally first, the issuing L1 is cleaned, and
        an invalidation Redis cannot take is queued and covers its entries until it lands (I8)."""
        tags = list(dict.fromkeys(tags))
        keys = list(dict.fromkeys(keys))
        if keys:
            self._drop_keys(keys)
        if self.redis is None:
            if tags:
                self.versions.bump_local(tags)
            return
        self.ensure_channel()
        if tags:
            try:
                new = yield (
                    "bump",
                    (
                        tuple(self.tag_key(t) for t in tags),
                        self.channel,
                        Message.head(self.origin, tags),
                    ),
                )
                self.versions.merge(zip(tags, new, strict=True))
                self.stats.add(invalidations_sent=1)
            except BackendError as exc:
                self._queue(tags, ())
                self._fail(exc, on_error, "invalidate")
        if keys:
            try:
                yield ("delete", (keys, self.channel, Message.for_keys(self.origin, keys)))
                self.stats.add(invalidations_sent=1)
            except BackendError as exc:
                self._queue((), keys)
                self._fail(exc, on_error, "delete")

    # ------------------------------------------------------------------ I8: the retry queue

    def _queue(self, tags: Iterable[str], keys: Iterable[str]) -> None:
        with self._queue_lock:
            self._queued_tags.update(dict.fromkeys(tags))
            self._queued_keys.update(dict.fromkeys(keys))
            if len(self._queued_tags) + len(self._queued_keys) > self.queue_limit:
                self._queue_overflow = True
                self._queued_tags.clear()
            self.stats.add(invalidations_queued=1)
            self.versions.set_pending(frozenset(self._queued_tags), overflow=self._queue_overflow)

    def _retry_queued(self) -> None:
        """Runs on the channel thread while connected: push queued invalidations to Redis."""
        if not (self._queued_tags or self._queued_keys or self._queue_overflow):
            return
        now = time.monotonic()
        if now < self._retry_at or self.redis is None:
            return
        with self._queue_lock:
            tags = list(self._queued_tags)
            keys = list(self._queued_keys)
            overflow = self._queue_overflow
        if overflow:
            tags = [NAMESPACE_TAG]  # too many to keep: everything older is invalid
        try:
            if tags:
                new = self.redis.bump(
                    tuple(self.tag_key(t) for t in tags),
                    self.channel,
                    Message.head(self.origin, tags),
                )
                self.versions.merge(zip(tags, new, strict=True))
            if keys:
                self.redis.delete(keys, self.channel, Message.for_keys(self.origin, keys))
        except BackendError as exc:
            self._retry_failures += 1
            self._retry_at = now + backoff(
                self._retry_failures, base=0.05, cap=2.0, rnd=self.rng.random()
            )
            log.warning("queued invalidation not taken yet (%s); retrying", exc)
            return
        self._retry_failures = 0
        with self._queue_lock:
            for t in tags:
                self._queued_tags.pop(t, None)
            for k in keys:
                self._queued_keys.pop(k, None)
            if overflow:
                self._queue_overflow = False
            self.versions.set_pending(frozenset(self._queued_tags), overflow=self._queue_overflow)
        log.info("queued invalidations delivered: %d tags, %d keys", len(tags), len(keys))

    @property
    def queued(self) -> int:
        return len(self._queued_tags) + len(self._queued_keys) + int(self._queue_overflow)

    # ------------------------------------------------------------------ drivers

    def run(self, flow: Flow[T], compute: Callable[[], Any] | None = None) -> T:
        """Drive a flow with the sync Redis client."""
        tier = self.redis
        send: Any = None
        error: BaseException | None = None
        while True:
            try:
                method, args = flow.send(send) if error is None else flow.throw(error)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            error = None
            try:
                if method == "compute":
                    assert compute is not None
                    send = compute()
                else:
                    started = time.perf_counter()
                    send = getattr(tier, method)(*args)
                    self.stats.add(redis_ops=1, redis_seconds=time.perf_counter() - started)
            except BaseException as exc:
                error = exc

    async def arun(self, flow: Flow[T], compute: Callable[[], Awaitable[Any]] | None = None) -> T:
        """Drive a flow with the asyncio Redis client of the running loop."""
        tier = self.aredis
        send: Any = None
        error: BaseException | None = None
        while True:
            try:
                method, args = flow.send(send) if error is None else flow.throw(error)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            error = None
            try:
                if method == "compute":
                    assert compute is not None
                    send = await compute()
                else:
                    started = time.perf_counter()
                    send = await getattr(tier, method)(*args)
                    self.stats.add(redis_ops=1, redis_seconds=time.perf_counter() - started)
            except BaseException as exc:
                error = exc

    # ------------------------------------------------------------------ single-flight + load

    def load(self, call: Call, compute: Callable[[], Any]) -> Any:
        """Sync read-through with single-flight: concurrent misses of one key compute once."""
        started = time.perf_counter()
        flights = self._flights
        with self._flight_lock:
            flight = flights.get(call.key)
            leader = not self._joinable(flight)
            if flight is None or leader:
                flight = flights[call.key] = Flight()
        if not leader:
            if flight.done.wait(self.lock_timeout) and flight.error is None:
                return flight.result
            if flight.done.is_set() and isinstance(flight.error, Exception):
                raise flight.error
            flight = Flight()  # the leader was cancelled or is too slow: compute ourselves
        try:
            result = self.run(self.load_flow(call, flight), compute)
        except BaseException as exc:
            flight.error = exc
            raise
        else:
            flight.result = result
            return result
        finally:
            flight.done.set()
            with self._flight_lock:
                if flights.get(call.key) is flight:
                    del flights[call.key]
            self.stats.add(slow_ops=1, slow_seconds=time.perf_counter() - started)

    async def aload(self, call: Call, compute: Callable[[], Awaitable[Any]]) -> Any:
        """Async read-through with single-flight among the tasks of this event loop."""
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        flights = self._aflights.get(loop)
        if flights is None:
            flights = self._aflights.setdefault(loop, {})
        flight = flights.get(call.key)
        if flight is not None and flight.future is not None and self._joinable(flight):
            try:
                return await asyncio.wait_for(asyncio.shield(flight.future), self.lock_timeout)
            except asyncio.TimeoutError:
                pass  # the leader is too slow: compute ourselves
            except asyncio.CancelledError:
                if not flight.future.cancelled():
                    raise  # we were cancelled, not the leader
        flight = Flight(loop.create_future())
        future = flight.future
        assert future is not None
        flights[call.key] = flight
        try:
            result = await self.arun(self.load_flow(call, flight), compute)
        except BaseException as exc:
            if isinstance(exc, Exception):
                future.set_exception(exc)
                future.exception()  # retrieved: joiners re-raise it, nobody logs it
            else:
                future.cancel()
            raise
        else:
            future.set_result(result)
            return result
        finally:
            if flights.get(call.key) is flight:
                del flights[call.key]
            self.stats.add(slow_ops=1, slow_seconds=time.perf_counter() - started)

    # ------------------------------------------------------------------ lifecycle

    def health_state(self) -> dict[str, Any]:
        sub = self.subscriber
        return {
            "breaker": self.breaker.state.value
            if isinstance(self.breaker.state, BreakerState)
            else str(self.breaker.state),
            "channel": "up" if sub is not None and sub.connected.is_set() else "down",
            "queued_invalidations": self.queued,
        }

    def close(self) -> None:
        self._closed = True
        if self.subscriber is not None:
            self.subscriber.stop()
        if self.redis is not None:
            self.redis.close()

    async def aclose(self) -> None:
        if self.aredis is not None:
            await self.aredis.aclose()
        await asyncio.get_running_loop().run_in_executor(None, self.close)
