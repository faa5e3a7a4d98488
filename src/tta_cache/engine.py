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
import concurrent.futures
import contextlib
import contextvars
import functools
import itertools
import logging
import os
import random
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Generator, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from .codecs import Codec, Entry
from .coherence import FailoverWatch, Message, Subscriber, TagVersions
from .exceptions import BackendError, ComputeTimeout, DecodeError
from .keys import NAMESPACE_TAG, escape
from .local import LocalEntry, LocalTier
from .observability import (
    FLOW_STATE,
    Chain,
    ConnectionStats,
    HealthMonitor,
    Middleware,
    Operation,
    Stats,
    probe,
)
from .policy import (
    BreakerState,
    CircuitBreaker,
    Freshness,
    Verdict,
    backoff,
    expiries,
    judge,
    redis_ttl_ms,
    retry_due,
)
from .redis_tier import (
    AsyncRedisTier,
    Lease,
    Read,
    RedisConfig,
    RedisTier,
    make_sentinel_clients,
    make_sync_client,
)

__all__ = ["Call", "Engine", "Flight", "LeaseWait", "Loaded"]

log = logging.getLogger("tta_cache")

T = TypeVar("T")
Stamp = tuple[tuple[str, int], ...]
# (method, args), or (method, args, call) for a step made for one call (middleware sees its kind)
Step = tuple[str, tuple[Any, ...]] | tuple[str, tuple[Any, ...], "Call | None"]
Flow = Generator[Step, Any, T]

_MISSING: Any = object()
_READ_FAILED: Any = Read(None, None)  # a caller's own read failed: the flow stays off Redis


@dataclass(slots=True)
class Call:
    """Everything a read-through needs about one call of a cached function (or one raw key).

    Treated as immutable (not ``frozen``: a frozen dataclass costs microseconds to build, and one
    is built on every L1 miss).
    """

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
    soft_timeout: float = 0.0  # with a stale entry: wait this long for its refresh, then serve it
    hard_timeout: float | None = None  # the function's bound: ComputeTimeout past it


class Flight:
    """One in-process computation of a key that concurrent callers of the same key join (I5)."""

    __slots__ = ("done", "doomed", "error", "future", "result", "stamp")

    def __init__(self, future: asyncio.Future[Any] | None = None) -> None:
        self.stamp: Stamp | None = None  # the versions the computation is stamped with, once known
        self.doomed = False  # a per-call invalidation hit it: its result is not cached
        self.result: Any = _MISSING
        self.error: BaseException | None = None
        # Sync joiners wait on ``done``, made by the first of them (most flights have no joiner,
        # and an Event costs microseconds); async ones wait on ``future``.
        self.done: threading.Event | None = None
        self.future = future


@dataclass(slots=True)
class LeaseWait:
    """A ``lock=True`` caller's lease, and how long it has waited for other holders' fills."""

    lease: Lease
    force: bool = False  # the entry found cannot be served: take the lease though the key exists
    holder: str | None = None  # the token of the holder waited for
    holders: int = 0  # distinct holders waited for so far
    until: float = 0.0  # (monotonic) when to stop waiting for ``holder`` and compute
    last_look: bool = False  # ``until`` has passed: one more read, then compute
    polls: int = 0


@dataclass(slots=True)
class Loaded:
    """What one run of :meth:`Engine.load_flow` decided."""

    value: Any = _MISSING
    created: float | None = None  # when the served entry was written
    refresh: bool = False  # serve ``value`` and recompute the entry in the background
    stale: bool = False  # ``value`` is past its soft TTL (stale-while-revalidate)
    retry: bool = False  # nothing to serve yet: run the flow again after ``wait`` or a fill notice
    wait: float = 0.0


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
        error_throttle: float = 5.0,
        connection: ConnectionStats | None = None,
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
        self.versions = TagVersions(trusted=redis is None, clock=clock)
        self.breaker = breaker or CircuitBreaker()
        self.redis: RedisTier | None = None
        self.aredis: AsyncRedisTier | None = None
        if redis is not None:
            self.redis = RedisTier(redis, self.tag_ttl)
            self.aredis = AsyncRedisTier(redis, self.tag_ttl)
        self._channel_ping_interval = channel_ping_interval
        self.subscriber: Subscriber | None = None
        self.failover_watch: FailoverWatch | None = None
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
        self.chain = Chain(())  # middleware around every step; see use()
        # Stampedes, freshness and failure: leases, background refresh, timeouts, health.
        self.error_throttle = error_throttle  # seconds a failing function is left alone
        self.connection = connection or ConnectionStats(clock)
        self.health_check_interval = redis.health_check_interval if redis is not None else 0.0
        self.monitor: HealthMonitor | None = None
        self.refresh_limit = 256
        self._refreshing: dict[str, Flight] = {}
        self._refresh_running = 0
        self._refresh_idle = threading.Condition(self._flight_lock)
        self._refresh_slots = threading.BoundedSemaphore(8)
        self._compute_slots = threading.BoundedSemaphore(64)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._failed_at: dict[str, float] = {}  # key -> when its refresh last failed
        self._fill_lock = threading.Lock()
        self._fill_waiters: dict[str, set[Callable[[], None]]] = {}
        self._lease_seq = itertools.count(1)
        self._counts_lock = threading.Lock()
        self._counts = dict.fromkeys(
            (
                "leases_granted",
                "lease_waits",
                "lease_wakeups",
                "lease_timeouts",
                "refreshes",
                "refresh_errors",
                "compute_timeouts",
                "failovers",
            ),
            0,
        )

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
                    on_drained=self.versions.renew,
                    ping_interval=self._channel_ping_interval,
                )
                self.versions.follow(sub)
                sub.start()
                self.subscriber = sub
                if cfg.mode == "sentinel":
                    watch = FailoverWatch(
                        make_sentinel_clients(cfg), cfg.service_name, self._on_failover
                    )
                    watch.start()
                    self.failover_watch = watch

    def _on_failover(self, address: tuple[str, int]) -> None:
        """A Sentinel named a new master (on the watch's thread). Writes made to the old one since
        it stopped replicating are lost, invalidations included, so: drop every kept connection,
        move the channel to the new master (a resubscribe distrusts the tag map), and bump the
        namespace epoch there, so nothing cached before the failover is served after it."""
        log.warning(
            "redis master failed over to %s:%s; everything cached before is dropped", *address
        )
        for tier in (self.redis, self.aredis):
            if tier is not None:
                tier.failed_over()
        if self.subscriber is not None:
            self.subscriber.kick()
        self.run(self.invalidate_flow((NAMESPACE_TAG,), (), "log"))
        self._count(failovers=1)

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
        if message.fills:
            self._filled(message.fills)  # a lease holder elsewhere is done: wake our waiters
            return
        self.stats.add(invalidations_received=1)
        if message.versions:
            self.versions.merge(message.versions)
        if message.keys:
            self._drop_keys(message.keys)

    def _drop_keys(self, keys: Sequence[str]) -> None:
        self.local.pop_redis_keys(keys)
        with self._flight_lock:
            for flights in (self._flights, self._refreshing, *list(self._aflights.values())):
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
            self.connection.down(exc)
        log.warning("tta-cache %s failed (%s): %s; serving without it", what, kind, exc)
        if on_error == "raise":
            raise exc

    def _redis_usable(self) -> bool:
        """Whether to use Redis now: configured, and the circuit breaker lets the call through
        (a True in half-open makes this call the breaker's probe). Starts the health monitor."""
        if self.redis is None:
            return False
        if self.monitor is None and self.health_check_interval > 0:
            self._start_monitor()
        return self.breaker.allow()

    def _decode(self, raw: bytes, type_hint: Any) -> Entry | None:
        try:
            return self.codec.decode(raw, type_hint)
        except DecodeError as exc:
            self._undecodable(exc)
            return None

    def _undecodable(self, exc: DecodeError) -> None:
        self.stats.add(decode_errors=1)
        log.warning("tta-cache: undecodable entry counted as a miss: %s", exc)

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
        return _MISSING

    def _local_put(
        self, call: Call, value: Any, stamp: Stamp, fresh_until: float, gen: int
    ) -> None:
        if self.local.maxsize and self.versions.valid(stamp):
            entry = LocalEntry(value, fresh_until, gen, stamp, call.key, call.local_types)
            self.local.put(call.local_key, entry)

    # ------------------------------------------------------------------ flows

    def load_flow(
        self,
        call: Call,
        flight: Flight | None,
        wait: LeaseWait | None = None,
        refresh_of: float | None = None,
        prefetched: Read | None = None,
    ) -> Flow[Loaded]:
        """Read-through after an L1 miss: L2, then the function, then fill both tiers.

        With ``wait`` (``lock=True``) the read also takes the entry's lease when the entry is
        missing or unusable, in the same round trip; a caller that does not get it returns
        ``Loaded(retry=True, wait=s)``, and its shell runs the flow again when the holder's fill
        notice arrives or ``s`` passes. The holder fills and releases in one round trip.

        An entry past its soft TTL (``STALE``) or drawn for early refresh (``REFRESH``, XFetch) is
        served with ``refresh=True``: the shell recomputes it in the background. ``refresh_of``
        makes this flow that background refresh of the entry written at that instant: it serves
        nothing stale, stands down if another process holds the lease or has refreshed already,
        and a failing function turns into stale-if-error (the stale entry stays served and the
        function is left alone for ``error_throttle`` seconds).
        """
        versions = self.versions
        now = self.clock()
        refresh = refresh_of is not None
        if self.redis is None:
            stamp: Stamp | None = versions.init_local(call.tags)
        else:
            stamp = versions.snapshot(call.tags)
        if flight is not None:
            flight.stamp = stamp
        lease = wait.lease if wait is not None else None
        granted = False
        if prefetched is _READ_FAILED:  # the caller's read already paid Redis's timeout
            usable = False
        else:
            usable = prefetched is not None or self._redis_usable()
        if usable:
            self.ensure_channel()
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
                self._redis_ok()
            except BackendError as exc:
                usable = False  # one timeout per call: no fill either
                self._fail(exc, call.on_error, "read")
            if read is not None:
                granted = bool(read.granted)
                if granted:
                    self._count(leases_granted=1)
                if read.versions is not None:
                    stamp = tuple(zip(call.tags, read.versions, strict=True))
                    versions.merge(stamp, epoch)
                    if flight is not None:
                        flight.stamp = stamp
                entry: Entry | None = None
                verdict = Verdict.EXPIRED
                if read.raw is not None and call.key not in self._queued_keys:
                    entry = self._decode(read.raw, call.type_hint)
                    if entry is not None and entry.stamp == stamp and not versions.blocked(stamp):
                        fr = call.freshness
                        verdict = judge(
                            now,
                            entry.fresh_until,
                            entry.fresh_until + fr.stale_ttl,
                            entry.compute_time,
                            fr.beta,
                            1.0 - self.rng.random(),
                        )
                serve = entry is not None and verdict is not Verdict.EXPIRED
                if refresh and entry is not None:  # stand down if another process refreshed it
                    serve = serve and verdict is not Verdict.STALE and entry.created != refresh_of
                if serve and entry is not None:
                    if granted:  # it was filled between two of our reads
                        yield from self._release(call, lease)
                    if refresh:
                        return Loaded(entry.value, entry.created)
                    self.stats.redis_hit()
                    if verdict is Verdict.STALE:
                        failed = self._failed_at.get(call.key)
                        due = failed is None or retry_due(now, failed, self.error_throttle)
                        return Loaded(entry.value, entry.created, refresh=due, stale=True)
                    gen = versions.gen
                    if stamp is not None and not versions.behind(stamp):
                        self._local_put(call, entry.value, stamp, entry.fresh_until, gen)
                    early = verdict is Verdict.REFRESH
                    return Loaded(entry.value, entry.created, refresh=early)
                if not refresh:
                    self.stats.redis_miss()
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
                    pause = self._lease_wait(wait, holder)
                    if pause is not None:
                        return Loaded(retry=True, wait=pause)
        if refresh and not usable:
            return Loaded()  # nothing to refresh into
        if not refresh:
            self.stats.miss()
        started = time.perf_counter()
        try:
            value = yield ("compute", (), call)
        except Exception as exc:
            if granted:  # waiters learn at once and compute themselves
                yield from self._release(call, lease)
            if not refresh:
                raise
            self._refresh_failed(call, exc)
            return Loaded()
        took = time.perf_counter() - started
        if refresh:
            self._count(refreshes=1)
        staged = self._stage_fill(call, stamp, value, took, flight, usable=usable)
        if staged is False:
            if granted:  # not written, but waiters must read again (and compute)
                yield from self._release(call, lease)
            return Loaded(value)
        if staged is not True:
            payload, px = staged
            try:
                if granted:
                    notice = Message.for_fills(self.origin, (call.key,))
                    yield ("fill", (call.key, payload, px, lease, notice), call)
                    self._filled((call.key,))
                else:
                    yield ("write", (call.key, payload, px), call)
                self._redis_ok()
            except BackendError as exc:
                self._fail(exc, call.on_error, "fill")
        return Loaded(value)

    def _stage_fill(
        self,
        call: Call,
        stamp: Stamp | None,
        value: Any,
        took: float,
        flight: Flight | None,
        *,
        usable: bool,
    ) -> tuple[bytes, int] | bool:
        """After a computation: count it, fill L1, and encode the Redis fill.

        False: not cached (versions unknowable while Redis is down, or invalidated while
        computing: I3); True: cached in L1 only (Redis not usable); else ``(payload, px)``.
        """
        self.stats.computed(took)
        if call.key in self._failed_at:  # it works again
            with self._counts_lock:
                self._failed_at.pop(call.key, None)
        if stamp is None:  # versions unknowable (Redis down): never cache a tagged value blind
            return False
        versions = self.versions
        gen = versions.gen
        if versions.behind(stamp) or (flight is not None and flight.doomed):
            self.stats.add(skipped_stale_fills=1)  # invalidated while computing (I3)
            return False
        written = self.clock()
        fresh_until, hard_until = expiries(written, call.freshness, self.rng.random())
        self._local_put(call, value, stamp, fresh_until, gen)
        if not (usable and self._redis_usable()):
            return True
        payload = self.codec.encode(
            value, stamp=stamp, created=written, fresh_until=fresh_until, compute_time=took
        )
        return payload, redis_ttl_ms(written, hard_until)

    def _plain_miss_stamp(self, call: Call, flight: Flight, read: Read | None) -> Stamp | None:
        """The stamp for a miss the shells may compute and fill without the flow: the fast read
        missed (no entry at all), no lease, no middleware, versions known. Else None."""
        if read is None or read is _READ_FAILED or read.raw is not None or call.lock or self.chain:
            return None
        stamp = self.versions.snapshot(call.tags)
        if stamp is not None:
            flight.stamp = stamp
            self.stats.redis_miss()
            self.stats.miss()
        return stamp

    def _plain_miss(
        self, call: Call, flight: Flight, stamp: Stamp, compute: Callable[[], Any]
    ) -> Any:
        started = time.perf_counter()
        value = compute()
        staged = self._stage_fill(
            call, stamp, value, time.perf_counter() - started, flight, usable=True
        )
        if isinstance(staged, tuple):
            self._write_fill(call, staged)
        return value

    def _write_fill(self, call: Call, staged: tuple[bytes, int]) -> None:
        started = time.perf_counter()
        try:
            self.redis.write(call.key, *staged)  # type: ignore[union-attr]
        except BackendError as exc:
            self._fail(exc, call.on_error, "fill")
            return
        self.stats.redis_op(time.perf_counter() - started)
        self._redis_ok()

    async def _aplain_miss(
        self, call: Call, flight: Flight, stamp: Stamp, compute: Callable[[], Awaitable[Any]]
    ) -> Any:
        started = time.perf_counter()
        value = await compute()
        staged = self._stage_fill(
            call, stamp, value, time.perf_counter() - started, flight, usable=True
        )
        if isinstance(staged, tuple):
            write_started = time.perf_counter()
            try:
                await self.aredis.write(call.key, *staged)  # type: ignore[union-attr]
            except BackendError as exc:
                self._fail(exc, call.on_error, "fill")
                return value
            self.stats.redis_op(time.perf_counter() - write_started)
            self._redis_ok()
        return value

    def _release(self, call: Call, lease: Lease | None) -> Flow[None]:
        """Give a lease back unfilled and wake its waiters (in every process)."""
        assert lease is not None
        try:
            notice = Message.for_fills(self.origin, (call.key,))
            yield ("fill", (call.key, None, 0, lease, notice), call)
        except BackendError as exc:
            self._fail(exc, call.on_error, "lease release")
        self._filled((call.key,))

    def get_flow(self, calls: Sequence[Call], on_error: str) -> Flow[list[Any]]:
        """Raw ``get``/``get_many``: L1, then one MGET, then (only for tags this process does not
        know, or while the channel is down) one round trip for versions. Missing -> ``_MISSING``."""
        l1 = self.local.maxsize > 0
        if l1:
            out: list[Any] = [self.local_lookup(c.local_key, c.local_types) for c in calls]
            todo = [i for i, v in enumerate(out) if v is _MISSING]
        else:
            out = [_MISSING] * len(calls)
            todo = list(range(len(calls)))
        if not todo or not self._redis_usable():
            self.stats.add(misses=len(todo))
            return out
        self.ensure_channel()
        versions = self.versions
        epoch = versions.epoch
        try:
            raws = yield ("get_many", ([calls[i].key for i in todo],))
            self._redis_ok()
        except BackendError as exc:
            self._fail(exc, on_error, "get")
            self.stats.add(misses=len(todo))
            return out
        entries: list[tuple[int, Entry]] = []
        queued = self._queued_keys
        decode = self.codec.decode
        for i, raw in zip(todo, raws, strict=True):
            if raw is not None and not (queued and calls[i].key in queued):
                try:
                    entries.append((i, decode(raw, calls[i].type_hint)))
                except DecodeError as exc:
                    self._undecodable(exc)
        trusted = versions.current()
        known = versions._map if trusted else {}
        unknown = sorted({t for _, e in entries for t, _ in e.stamp if t not in known})
        current: Mapping[str, int] = known
        if unknown:
            try:
                got = yield ("versions", (tuple(self.tag_key(t) for t in unknown),))
                fetched = list(zip(unknown, got, strict=True))
                current = {**known, **dict(fetched)}
                versions.merge(fetched, epoch)
            except BackendError as exc:
                self._fail(exc, on_error, "versions")
        now = self.clock()
        hits = 0
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
                hits += 1
                if l1 and trusted:
                    self._local_put(calls[i], entry.value, entry.stamp, entry.fresh_until, gen)
        missed = len(todo) - hits
        self.stats.add(redis_hits=hits, redis_misses=missed, misses=missed)
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
                        tags,
                        self.channel,
                        Message.head(self.origin),
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
                    tags,
                    self.channel,
                    Message.head(self.origin),
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
        self.stats.add(invalidations_sent=int(bool(tags)) + int(bool(keys)))
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

    def use(self, middleware: Iterable[Middleware]) -> None:
        """Run every step through ``middleware`` (the first is outermost); with none, the drivers
        build no :class:`Operation` and run no chain."""
        self.chain = Chain(middleware)

    def run(self, flow: Flow[T], compute: Callable[[], Any] | None = None) -> T:
        """Drive a flow with the sync Redis client (through the middleware chain, if any)."""
        tier = self.redis
        chain = self.chain.call if self.chain else None
        token = FLOW_STATE.set({}) if chain is not None else None
        send: Any = None
        error: BaseException | None = None
        try:
            while True:
                try:
                    step = flow.send(send) if error is None else flow.throw(error)
                except StopIteration as stop:
                    return stop.value  # type: ignore[no-any-return]
                error = None
                method, args = step[0], step[1]
                try:
                    if method == "compute":
                        assert compute is not None
                        step_call = compute
                    else:
                        step_call = functools.partial(self._timed, getattr(tier, method), args)
                    if chain is None:
                        send = step_call()
                    else:
                        op = self._operation(step, is_async=False)
                        send = chain(op, step_call)
                except BaseException as exc:
                    error = exc
        finally:
            if token is not None:
                FLOW_STATE.reset(token)

    async def arun(self, flow: Flow[T], compute: Callable[[], Awaitable[Any]] | None = None) -> T:
        """Drive a flow with the asyncio Redis client of the running loop."""
        tier = self.aredis
        chain = self.chain.acall if self.chain else None
        token = FLOW_STATE.set({}) if chain is not None else None
        send: Any = None
        error: BaseException | None = None
        try:
            while True:
                try:
                    step = flow.send(send) if error is None else flow.throw(error)
                except StopIteration as stop:
                    return stop.value  # type: ignore[no-any-return]
                error = None
                method, args = step[0], step[1]
                try:
                    if method == "compute":
                        assert compute is not None
                        step_call = compute
                    else:
                        step_call = functools.partial(self._atimed, getattr(tier, method), args)
                    if chain is None:
                        send = await step_call()
                    else:
                        send = await chain(self._operation(step, is_async=True), step_call)
                except BaseException as exc:
                    error = exc
        finally:
            if token is not None:
                # ValueError: a coroutine abandoned mid-flow is closed by the GC outside its context
                with contextlib.suppress(ValueError):
                    FLOW_STATE.reset(token)

    def _operation(self, step: Step, *, is_async: bool) -> Operation:
        call = step[2] if len(step) > 2 else None
        return Operation.of(step[0], step[1], call, namespace=self.namespace, is_async=is_async)

    def _timed(self, redis_op: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        started = time.perf_counter()
        result = redis_op(*args)
        self.stats.redis_op(time.perf_counter() - started)
        return result

    async def _atimed(self, redis_op: Callable[..., Awaitable[Any]], args: tuple[Any, ...]) -> Any:
        started = time.perf_counter()
        result = await redis_op(*args)
        self.stats.redis_op(time.perf_counter() - started)
        return result

    # ------------------------------------------------------------------ single-flight + load

    def _hit(self, call: Call, raw: bytes | None, stamp: Stamp) -> Any:
        """An L2 hit served on the fast path (fresh, stamp current), else ``_MISSING``."""
        if raw is None:
            return _MISSING
        entry = self._decode(raw, call.type_hint)
        if entry is None or entry.stamp != stamp or self.versions.blocked(stamp):
            return _MISSING
        now = self.clock()
        fr = call.freshness
        rnd = 1.0 - self.rng.random()
        verdict = judge(
            now,
            entry.fresh_until,
            entry.fresh_until + fr.stale_ttl,
            entry.compute_time,
            fr.beta,
            rnd,
        )
        if verdict is not Verdict.FRESH:
            return _MISSING  # stale, early refresh or gone: the full flow decides
        if self.local.maxsize:
            gen = self.versions.gen
            if not self.versions.behind(stamp):
                self._local_put(call, entry.value, stamp, entry.fresh_until, gen)
        return entry.value

    def _peek_local(self, call: Call) -> Any:
        """The valid L1 value of ``call`` or ``_MISSING``, without counting a hit or a miss."""
        if not self.local.maxsize:
            return _MISSING
        with self.local.lock:
            try:
                entry = self.local.data.get(call.local_key)
            except TypeError:
                return _MISSING
            if (
                entry is not None
                and entry.types == call.local_types
                and entry.expires > self.clock()
                and self.versions.valid(entry.stamp)
            ):
                return entry.value
        return _MISSING

    def _fast_stamp(self, call: Call) -> Stamp | None:
        """The stamp a plain L2 read can be checked against, or None when the full flow must
        read: a lease, middleware, versions this process does not know, or Redis unusable."""
        if self.chain or call.lock or self.redis is None:
            return None
        stamp = self.versions.snapshot(call.tags)
        if stamp is None or call.key in self._queued_keys or not self._redis_usable():
            return None
        self.ensure_channel()
        return stamp

    def _fast_done(self, call: Call, raw: bytes | None, stamp: Stamp, started: float) -> Any:
        took = time.perf_counter() - started
        self._redis_ok()
        value = self._hit(call, raw, stamp)
        if value is _MISSING:
            self.stats.redis_op(took)
            return value, Read(raw, None)
        self.stats.fast_hit(took, time.perf_counter() - started)
        return value, None

    def _fast_read(self, call: Call) -> tuple[Any, Read | None]:
        """The plain L2 read, outside any flow: one GET. Returns (the value or ``_MISSING``, the
        read for the flow to go on with: the flow does not read again)."""
        stamp = self._fast_stamp(call)
        if stamp is None:
            return _MISSING, None
        started = time.perf_counter()
        try:
            raw = self.redis.get(call.key)  # type: ignore[union-attr]
        except BackendError as exc:
            self._fail(exc, call.on_error, "read")
            return _MISSING, _READ_FAILED
        return self._fast_done(call, raw, stamp, started)  # type: ignore[no-any-return]

    async def _afast_read(self, call: Call) -> tuple[Any, Read | None]:
        """:meth:`_fast_read` with the asyncio client."""
        stamp = self._fast_stamp(call)
        if stamp is None:
            return _MISSING, None
        started = time.perf_counter()
        try:
            raw = await self.aredis.get(call.key)  # type: ignore[union-attr]
        except BackendError as exc:
            self._fail(exc, call.on_error, "read")
            return _MISSING, _READ_FAILED
        return self._fast_done(call, raw, stamp, started)  # type: ignore[no-any-return]

    def load(self, call: Call, compute: Callable[[], Any]) -> Any:
        """Sync read-through with single-flight: concurrent misses of one key compute once."""
        started = time.perf_counter()
        read = None
        if not self._joinable(self._flights.get(call.key)):  # nobody to join: read first
            value, read = self._fast_read(call)
            if value is not _MISSING:
                return value
        flights = self._flights
        with self._flight_lock:
            flight = flights.get(call.key)
            leader = flight is None or not self._joinable(flight)
            if flight is None or leader:
                flight = flights[call.key] = Flight()
                done = None
            else:
                done = flight.done = flight.done or threading.Event()
        if done is not None:
            if done.wait(self._join_timeout(call)) and flight.error is None:
                return flight.result
            if done.is_set() and isinstance(flight.error, Exception):
                raise flight.error
            flight = Flight()  # the leader was cancelled or is too slow: compute ourselves
        if read is not None:  # read before the flight: a leader that just finished filled L1
            value = self._peek_local(call)
            if value is not _MISSING:
                with self._flight_lock:
                    if flights.get(call.key) is flight:
                        del flights[call.key]
                    done = flight.done
                flight.result = value
                if done is not None:
                    done.set()
                return value
        try:
            result = self._lead(call, flight, compute, read)
        except BaseException as exc:
            flight.error = exc
            raise
        else:
            flight.result = result
            return result
        finally:
            with self._flight_lock:
                done = flight.done
                if flights.get(call.key) is flight:
                    del flights[call.key]
            if done is not None:
                done.set()
            self.stats.slow(time.perf_counter() - started)

    async def aload(self, call: Call, compute: Callable[[], Awaitable[Any]]) -> Any:
        """Async read-through with single-flight among the tasks of this event loop."""
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        flights = self._aflights.get(loop)
        if flights is None:
            flights = self._aflights.setdefault(loop, {})
        read = None
        if not self._joinable(flights.get(call.key)):  # nobody to join: read first
            value, read = await self._afast_read(call)
            if value is not _MISSING:
                return value
            if read is not None and (value := self._peek_local(call)) is not _MISSING:
                return value  # a leader filled it while we read
        flight = flights.get(call.key)
        if flight is not None and flight.future is not None and self._joinable(flight):
            try:
                return await asyncio.wait_for(
                    asyncio.shield(flight.future), self._join_timeout(call)
                )
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
            result = await self._alead(call, flight, compute, read)
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
                flights.pop(call.key, None)  # the channel thread may have popped it already
            self.stats.slow(time.perf_counter() - started)

    def _join_timeout(self, call: Call) -> float:
        # As long as the leader may take: a lease wait (two holders at most), then the function.
        return self.lock_timeout * (3 if call.lock else 1) + (call.hard_timeout or 0.0)

    # ------------------------------------------------------------------ the leader's shells
    #
    # The flow decides; these only wait: for another process's lease (a fill notice or a pause),
    # for a computation bounded by its timeout, for a background refresh up to soft_timeout.

    def _lead(
        self, call: Call, flight: Flight, compute: Callable[[], Any], read: Read | None = None
    ) -> Any:
        bounded = self._bounded(call, compute)
        wait = self._lease_wait_for(call)
        if wait is None:
            stamp = self._plain_miss_stamp(call, flight, read)
            if stamp is not None:  # nothing in Redis at all: compute and fill, no flow needed
                return self._plain_miss(call, flight, stamp, bounded)
            loaded = self.run(self.load_flow(call, flight, prefetched=read), bounded)
        else:
            woke = threading.Event()
            self._watch(call.key, woke.set)
            try:
                loaded = self.run(self.load_flow(call, flight, wait), bounded)
                while loaded.retry:
                    woke.wait(loaded.wait)
                    woke.clear()
                    loaded = self.run(self.load_flow(call, flight, wait), bounded)
            finally:
                self._unwatch(call.key, woke.set)
        if loaded.refresh:
            refreshing = self._refresh_soon(call, compute, loaded.created)
            if refreshing is not None and loaded.stale and call.soft_timeout > 0:
                done, _ = concurrent.futures.wait((refreshing,), call.soft_timeout)
                if done and refreshing.exception() is None:
                    fresh = refreshing.result()
                    if fresh is not _MISSING:
                        return fresh
        return self._served(loaded)

    async def _alead(
        self,
        call: Call,
        flight: Flight,
        compute: Callable[[], Awaitable[Any]],
        read: Read | None = None,
    ) -> Any:
        bounded = self._abounded(call, compute)
        wait = self._lease_wait_for(call)
        if wait is None:
            stamp = self._plain_miss_stamp(call, flight, read)
            if stamp is not None:
                return await self._aplain_miss(call, flight, stamp, bounded)
            loaded = await self.arun(self.load_flow(call, flight, prefetched=read), bounded)
        else:
            loop = asyncio.get_running_loop()
            woke = asyncio.Event()

            def wake() -> None:  # called from the channel thread
                with contextlib.suppress(RuntimeError):  # the loop has closed
                    loop.call_soon_threadsafe(woke.set)

            self._watch(call.key, wake)
            try:
                loaded = await self.arun(self.load_flow(call, flight, wait), bounded)
                while loaded.retry:
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(woke.wait(), loaded.wait)
                    woke.clear()
                    loaded = await self.arun(self.load_flow(call, flight, wait), bounded)
            finally:
                self._unwatch(call.key, wake)
        if loaded.refresh:
            refreshing = self._arefresh_soon(call, compute, loaded.created)
            if refreshing is not None and loaded.stale and call.soft_timeout > 0:
                done, _ = await asyncio.wait((refreshing,), timeout=call.soft_timeout)
                if done and not refreshing.cancelled():
                    fresh = refreshing.result()
                    if fresh is not _MISSING:
                        return fresh
        return self._served(loaded)

    def _served(self, loaded: Loaded) -> Any:
        if loaded.stale:
            self.stats.add(stale_served=1)
        return loaded.value

    def _bounded(self, call: Call, compute: Callable[[], Any]) -> Callable[[], Any]:
        """``compute`` bounded by the call's ``hard_timeout``: it runs in a daemon thread, and is
        abandoned (a thread cannot be killed) with :class:`ComputeTimeout` when it overruns."""
        limit = call.hard_timeout
        if limit is None:
            return compute

        def bounded() -> Any:
            future: concurrent.futures.Future[Any] = concurrent.futures.Future()

            def job() -> None:
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(compute())
                    except BaseException as exc:
                        future.set_exception(exc)

            deadline = time.monotonic() + limit
            if self._spawn(job, self._compute_slots, "tta-cache-compute", limit):
                done, _ = concurrent.futures.wait((future,), deadline - time.monotonic())
                if done:
                    return future.result()
                future.cancel()
            raise self._timed_out(call, limit)

        return bounded

    def _abounded(
        self, call: Call, compute: Callable[[], Awaitable[Any]]
    ) -> Callable[[], Awaitable[Any]]:
        """``compute`` bounded by the call's ``hard_timeout`` (cancelled when it overruns)."""
        limit = call.hard_timeout
        if limit is None:
            return compute

        async def bounded() -> Any:
            task = asyncio.ensure_future(compute())
            try:
                done, _ = await asyncio.wait((task,), timeout=limit)
            except BaseException:
                task.cancel()
                raise
            if done:
                return task.result()
            task.cancel()
            raise self._timed_out(call, limit)

        return bounded

    def _timed_out(self, call: Call, limit: float) -> ComputeTimeout:
        self._count(compute_timeouts=1)
        return ComputeTimeout(f"{call.function or call.key} did not return within {limit} s")

    @staticmethod
    def _spawn(
        target: Callable[[], None],
        slots: threading.BoundedSemaphore,
        name: str,
        timeout: float = 0.0,
    ) -> bool:
        """Run ``target`` in a daemon thread if one of ``slots`` frees up within ``timeout``.

        Daemon threads, not an executor: an abandoned computation must not hold up interpreter
        exit. The caller's context (tracing spans) goes with it."""
        if not (slots.acquire(timeout=timeout) if timeout > 0 else slots.acquire(blocking=False)):
            return False
        context = contextvars.copy_context()

        def run() -> None:
            try:
                context.run(target)
            finally:
                slots.release()

        threading.Thread(target=run, name=name, daemon=True).start()
        return True

    # ------------------------------------------------------------------ leases (I5, processes)

    @staticmethod
    def lease_key(key: str) -> str:
        """The key of ``key``'s lease, beside it (same Cluster slot when ``key`` has a hash tag)."""
        return key + ":lease"

    def _lease_wait_for(self, call: Call) -> LeaseWait | None:
        if not call.lock or self.redis is None:
            return None
        token = f"{self.origin}-{next(self._lease_seq)}"
        ms = max(1, round(self.lock_timeout * 1000))
        return LeaseWait(Lease(self.lease_key(call.key), token, ms, self.channel))

    def _lease_wait(self, wait: LeaseWait, holder: str | None) -> float | None:
        """Seconds to wait for ``holder``'s fill before reading again; None: compute now.

        A caller waits at most ``lock_timeout`` for one holder (the lease lives that long, so a
        dead holder has freed the key by then and one waiter takes over) and for two holders in
        all. When its time is up it reads once more: a read that answered just before the lease
        expired must not send every waiter computing at once. The fill notice wakes a waiter at
        once; these pauses only pace the reads that back it up.
        """
        now = time.monotonic()
        if holder != wait.holder:
            wait.holder = holder
            wait.holders += 1
            wait.last_look = False
            if wait.holders <= 2:
                wait.until = now + self.lock_timeout
        left = wait.until - now
        if left <= 0:
            if not wait.last_look:
                # A grace before the last look: our deadline and Redis's PX expiry are read on
                # different clocks, and a look a moment too early still sees the dead holder,
                # sending this waiter to compute beside the one that takes over.
                wait.last_look = True
                return max(0.01, self.lock_timeout / 20)
            self._count(lease_timeouts=1)
            return None
        wait.polls += 1
        if wait.polls == 1:
            self._count(lease_waits=1)
        rnd = 0.5 + self.rng.random() / 2
        return min(left, backoff(wait.polls, base=0.005, cap=self.lock_timeout / 8, rnd=rnd))

    def _watch(self, key: str, wake: Callable[[], None]) -> None:
        with self._fill_lock:
            self._fill_waiters.setdefault(key, set()).add(wake)

    def _unwatch(self, key: str, wake: Callable[[], None]) -> None:
        with self._fill_lock:
            waiting = self._fill_waiters.get(key)
            if waiting is not None:
                waiting.discard(wake)
                if not waiting:
                    del self._fill_waiters[key]

    def _filled(self, keys: Iterable[str]) -> None:
        """Wake this process's callers waiting on a lease of ``keys``: the key was filled or the
        lease released (the channel thread calls it for other processes' fill notices)."""
        with self._fill_lock:
            wakes = [w for k in keys for w in self._fill_waiters.get(k, ())]
        if wakes:
            self._count(lease_wakeups=len(wakes))
        for wake in wakes:
            wake()

    # ------------------------------------------------------------------ background refresh

    def _claim_refresh(self, key: str) -> Flight | None:
        # One refresh per key per process; and a bound on how many run at once.
        with self._flight_lock:
            if key in self._refreshing or self._refresh_running >= self.refresh_limit:
                return None
            flight = self._refreshing[key] = Flight()
            self._refresh_running += 1
            return flight

    def _unclaim_refresh(self, key: str, flight: Flight) -> None:
        with self._refresh_idle:
            if self._refreshing.get(key) is flight:
                del self._refreshing[key]
            self._refresh_running -= 1
            self._refresh_idle.notify_all()

    def _refresh_failed(self, call: Call, exc: Exception) -> None:
        """Stale-if-error: keep serving the stale entry; leave the function alone for a while."""
        with self._counts_lock:
            self._failed_at[call.key] = self.clock()
            if len(self._failed_at) > 10_000:
                del self._failed_at[next(iter(self._failed_at))]
        self._count(refresh_errors=1)
        log.warning(
            "tta-cache: refreshing %s failed (%s: %s); serving the stale value, next try in %s s",
            call.function or "an entry",
            type(exc).__name__,
            exc,
            self.error_throttle,
        )

    def _refresh_soon(
        self, call: Call, compute: Callable[[], Any], created: float | None
    ) -> concurrent.futures.Future[Any] | None:
        """Recompute ``call``'s entry in a background thread unless this process already is."""
        flight = self._claim_refresh(call.key)
        if flight is None:
            return None
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def refresh() -> None:
            try:
                flow = self.load_flow(call, flight, self._lease_wait_for(call), created)
                future.set_result(self.run(flow, self._bounded(call, compute)).value)
            except BaseException as exc:  # on_error="raise" Redis errors: nobody to raise to
                log.warning("tta-cache: background refresh failed: %s", exc)
                future.set_exception(exc)
            finally:
                self._unclaim_refresh(call.key, flight)

        if not self._spawn(refresh, self._refresh_slots, "tta-cache-refresh"):
            self._unclaim_refresh(call.key, flight)
            return None
        return future

    def _arefresh_soon(
        self, call: Call, compute: Callable[[], Awaitable[Any]], created: float | None
    ) -> asyncio.Task[Any] | None:
        """Recompute ``call``'s entry in a task of this loop unless this process already is."""
        flight = self._claim_refresh(call.key)
        if flight is None:
            return None

        async def refresh() -> Any:
            try:
                flow = self.load_flow(call, flight, self._lease_wait_for(call), created)
                return (await self.arun(flow, self._abounded(call, compute))).value
            except Exception as exc:  # on_error="raise" Redis errors: nobody to raise to
                log.warning("tta-cache: background refresh failed: %s", exc)
                return _MISSING
            finally:
                self._unclaim_refresh(call.key, flight)

        task = asyncio.get_running_loop().create_task(refresh(), name="tta-cache-refresh")
        self._tasks.add(task)  # a reference until it is done
        task.add_done_callback(self._tasks.discard)
        return task

    def wait_refreshes(self, timeout: float = 5.0) -> bool:
        """Block until no background refresh runs (True) or ``timeout`` passes (False). Refresh
        tasks of the calling thread's own event loop cannot finish meanwhile: await
        :meth:`await_refreshes` there."""
        with self._refresh_idle:
            return self._refresh_idle.wait_for(lambda: not self._refresh_running, timeout)

    async def await_refreshes(self, timeout: float = 5.0) -> bool:
        """:meth:`wait_refreshes` for async code: this loop's refresh tasks, then any others."""
        loop = asyncio.get_running_loop()
        mine = [t for t in self._tasks if t.get_loop() is loop]
        if mine:
            _, pending = await asyncio.wait(mine, timeout=timeout)
            if pending:
                return False
        return await loop.run_in_executor(None, self.wait_refreshes, timeout)

    # ------------------------------------------------------------------ health

    def _redis_ok(self) -> None:
        self.breaker.record_success()
        self.connection.up()

    def _start_monitor(self) -> None:
        with self._sub_lock:
            if self.monitor is None and not self._closed:
                monitor = HealthMonitor(functools.partial(probe, self), self.health_check_interval)
                monitor.start()
                self.monitor = monitor

    def _count(self, **deltas: int) -> None:
        with self._counts_lock:
            for name, delta in deltas.items():
                self._counts[name] += delta

    def resilience_stats(self) -> dict[str, Any]:
        """Leases, background refreshes, timeouts, the breaker and the connection, for stats()."""
        with self._counts_lock:
            c = dict(self._counts)
        breaker = self.breaker
        return {
            "leases": {
                "granted": c["leases_granted"],
                "waits": c["lease_waits"],
                "wakeups": c["lease_wakeups"],
                "timeouts": c["lease_timeouts"],
            },
            "refreshes": {
                "done": c["refreshes"],
                "errors": c["refresh_errors"],
                "running": self._refresh_running,
            },
            "compute_timeouts": c["compute_timeouts"],
            "failovers": c["failovers"],
            "breaker": {
                "state": breaker.state.value,
                "transitions": breaker.transitions,
                "opened": breaker.opened_count,
                "history": self.connection.breaker_history(),
            },
            "connection": self.connection.snapshot(),
        }

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
        if self.monitor is not None:
            self.monitor.stop()
        for thread in (self.subscriber, self.failover_watch):
            if thread is not None:
                thread.stop()
        if self.redis is not None:
            self.redis.close()

    async def aclose(self) -> None:
        loop = asyncio.get_running_loop()
        refreshing = [t for t in self._tasks if t.get_loop() is loop]
        for task in refreshing:
            task.cancel()  # a refresh is an optimisation; a lease it held expires by itself
        await asyncio.gather(*refreshing, return_exceptions=True)
        if self.aredis is not None:
            await self.aredis.aclose()
        await asyncio.get_running_loop().run_in_executor(None, self.close)
