"""The engine: the parts of a read-through cache, composed. It holds no decision of its own.

========================  ===================================================================
part                      what it owns
========================  ===================================================================
``flows.py``, ``raw.py``  the decisions: read-through, fill, raw access, invalidation (sans-IO)
``fast.py``               L1 lookups and the plain L2 read outside any flow
``sync_driver.py``        running flows with the sync tier; thread single-flight
``async_driver.py``       running flows with the asyncio tier; per-loop single-flight
``flights.py``            the in-process computations callers join (I5)
``leases.py``             leases across processes and their fill notices (I5)
``refresh.py``            background refresh and stale-if-error
``queue.py``              invalidations Redis has not taken yet (I8)
``deferral.py``           invalidations held until their database transaction commits
``link.py``               the invalidation channel and Sentinel failover notices (I2)
``bounds.py``             ``hard_timeout`` and the engine's daemon threads
========================  ===================================================================

Everything the parts share (the tiers, the tag map, the codec, the clock, stats and the breaker)
is held here, with the fail-open policy (I4) that every part applies the same way.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import random
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from ..codec import Codec, Entry
from ..coherence import Message, TagVersions
from ..core.keys import NAMESPACE_TAG, escape
from ..core.policy import BreakerState, CircuitBreaker, Freshness
from ..exceptions import BackendError, DecodeError, NotReplicated, PoolTimeout
from ..observability import (
    Chain,
    ConnectionStats,
    HealthMonitor,
    Middleware,
    Operation,
    Stats,
    probe,
)
from ..tiers import AsyncRedisTier, LocalTier, RedisConfig, RedisTier, tier_figures
from . import fork
from .async_driver import AsyncDriver
from .bounds import Bounds
from .call import Call, Flow, Step
from .counters import Counters
from .deferral import Deferral, Holds, transaction_stats
from .entry import entry_stats
from .fast import FastPath
from .flights import Flights
from .leases import Leases
from .link import ChannelLink
from .queue import InvalidationQueue
from .raw import get_flow, invalidate_flow, set_flow
from .refresh import Refresher
from .sync_driver import SyncDriver

__all__ = ["Engine"]

log = logging.getLogger("tta_cache")

T = TypeVar("T")


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
        channel_ping_interval: float = 0.25,
        error_throttle: float = 5.0,
        connection: ConnectionStats | None = None,
        max_value_bytes: int | None = None,
    ) -> None:
        self.namespace = namespace
        self.max_value_bytes = max_value_bytes
        self.codec = codec
        self.on_error = on_error
        self.lock_timeout = lock_timeout
        self.clock = clock
        self._own_rng = rng is None
        self.rng = rng or random.Random()
        self.local = LocalTier(local_maxsize)
        self.stats = Stats()
        self.channel = f"{namespace}:invalidate"
        self.origin = self._new_origin()
        self.redis_cfg = redis
        self.max_hard_ttl = 86_400.0
        self.versions = TagVersions(trusted=redis is None, clock=clock)
        self.breaker = breaker or CircuitBreaker()
        self.redis: RedisTier | None = None
        self.aredis: AsyncRedisTier | None = None
        if redis is not None:
            self.redis = RedisTier(redis, self.tag_ttl)
            self.aredis = AsyncRedisTier(redis, self.tag_ttl)
        self.chain = Chain(())  # middleware around every step; see use()
        self.connection = connection or ConnectionStats(clock)
        self.health_check_interval = redis.health_check_interval if redis is not None else 0.0
        self.monitor: HealthMonitor | None = None
        self._closed = False
        # The parts.
        self.counters = Counters()
        self.flights = Flights(self.versions)
        self.leases = Leases(
            lambda: self.origin, self.channel, lock_timeout, self.rng, self.counters
        )
        self.refresher = Refresher(self.flights, self.counters, clock, error_throttle)
        self.bounds = Bounds(self.counters)
        self.holds = Holds(self.versions)
        self.queue = InvalidationQueue(self.holds, self.stats, self.rng)
        self.versions.on_regress = self._reissue
        self.deferral = Deferral(self.holds, self.counters)
        self.link = ChannelLink(
            redis,
            self.channel,
            self.versions,
            self.stats,
            origin=lambda: self.origin,
            drop_keys=self.drop_keys,
            filled=self.leases.filled,
            tick=self._retry_queued,
            failed_over=self._failed_over,
            adopt=self._adopt,
            reconnected=self.queue.wake,
            ping_interval=channel_ping_interval,
        )
        self.fast = FastPath(self)
        self.local_lookup = self.fast.local_lookup
        sync, asy = SyncDriver(self), AsyncDriver(self)
        self.run = sync.run
        self.load = sync.load
        self.arun = asy.arun
        self.aload = asy.aload
        fork.track(self)

    # ------------------------------------------------------------------ keys and TTLs

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

    def join_timeout(self, call: Call) -> float:
        # As long as the leader may take: a lease wait (two holders at most), then the function.
        return self.lock_timeout * (3 if call.lock else 1) + (call.hard_timeout or 0.0)

    # ------------------------------------------------------------------ the flows

    def get_flow(self, calls: Sequence[Call], on_error: str) -> Flow[list[Any]]:
        return get_flow(self, calls, on_error)

    def set_flow(self, items: Sequence[tuple[Call, Any]], on_error: str) -> Flow[None]:
        return set_flow(self, items, on_error)

    def invalidate_flow(
        self, tags: Iterable[str], keys: Iterable[str], on_error: str
    ) -> Flow[None]:
        return invalidate_flow(self, tags, keys, on_error)

    def use(self, middleware: Iterable[Middleware]) -> None:
        """Run every step through ``middleware`` (the first is outermost); with none, the drivers
        build no :class:`Operation` and run no chain."""
        self.chain = Chain(middleware)

    def operation(self, step: Step, *, is_async: bool) -> Operation:
        call = step[2] if len(step) > 2 else None
        return Operation.of(step[0], step[1], call, namespace=self.namespace, is_async=is_async)

    # ------------------------------------------------------------------ the fail-open policy

    def fail(self, exc: BaseException, on_error: str, what: str) -> None:
        """Count, log, and raise only when asked to (I4)."""
        kind = type(exc.__cause__ or exc).__name__
        self.stats.error(kind)
        # Redis's fault; not a pool wait (this process's load) or a replica behind (NotReplicated)
        if isinstance(exc, BackendError) and not isinstance(exc, (PoolTimeout, NotReplicated)):
            self.breaker.record_failure()
            self.connection.down(exc)
        log.warning("tta-cache %s failed (%s): %s; serving without it", what, kind, exc)
        if on_error == "raise":
            raise exc

    def redis_usable(self) -> bool:
        """Whether to use Redis now: configured, and the circuit breaker lets the call through
        (a True in half-open makes this call the breaker's probe). Starts the health monitor."""
        if self.redis is None:
            return False
        if self.monitor is None and self.health_check_interval > 0:
            self._start_monitor()
        return self.breaker.allow()

    def redis_ok(self) -> None:
        self.breaker.record_success()
        self.connection.up()

    def decode(self, raw: bytes, call: Call) -> Entry | None:
        """The entry ``call`` read from Redis, or None (counted) when it cannot be decoded."""
        try:
            return self.codec.decode(
                raw, call.type_hint, key=call.key, kind=None if call.any_kind else call.kind
            )
        except DecodeError as exc:
            self.undecodable(exc)
            return None

    def decode_many(
        self, raws: Sequence[bytes | None], calls: Sequence[Call]
    ) -> list[Entry | None]:
        """:meth:`decode` of each of ``raws`` (None stays None) for ``calls`` of one function."""
        first = calls[0]
        kind = None if first.any_kind else first.kind
        keys = [c.key for c in calls]
        return self.codec.decode_many(raws, first.type_hint, keys, kind, self.undecodable)

    def oversized(self, call: Call, payload: bytes) -> bool:
        """Whether ``payload`` is over ``max_value_bytes`` (then it is counted, logged, and
        cached nowhere: the caller still gets the value)."""
        limit = self.max_value_bytes
        if limit is None or len(payload) <= limit:
            return False
        self.stats.add(oversized_values=1)
        log.warning(
            "tta-cache: a %s value of %d bytes is over max_value_bytes (%d): returned, not cached",
            call.kind,
            len(payload),
            limit,
        )
        return True

    def undecodable(self, exc: DecodeError) -> None:
        self.stats.add(decode_errors=1)
        log.warning("tta-cache: undecodable entry counted as a miss: %s", exc)

    # ------------------------------------------------------------------ coherence

    def drop_keys(self, keys: Sequence[str]) -> None:
        """``keys`` were invalidated: out of L1, and no computation under way fills them."""
        self.local.pop_redis_keys(keys)
        self.flights.doom(keys)

    def _retry_queued(self) -> None:
        if self.redis is not None:
            self.queue.retry(self._deliver)

    def _deliver(self, tags: list[str], keys: list[str]) -> None:
        """Send queued invalidations (on the channel thread): raises BackendError if not taken."""
        assert self.redis is not None
        if tags:
            tag_keys = tuple(self.tag_key(t) for t in tags)
            new = self.redis.bump(tag_keys, tags, self.channel, Message.head(self.origin))
            self.versions.merge(zip(tags, new, strict=True))
        if keys:
            self.redis.delete(keys, self.channel, Message.for_keys(self.origin, keys))

    def _adopt(self, tags: Sequence[str], keys: Sequence[str]) -> None:
        """Another process's invalidation Redis did not take (on the channel thread): queue it
        as ours. Delivered twice, a tag's version only moves once more."""
        self.queue.add(tags, keys)
        self.counters.add(invalidations_adopted=1)
        if keys:
            self.drop_keys(keys)

    def _reissue(self, tags: list[str]) -> None:
        """Redis holds an older version of ``tags`` than this process has seen: a bump was lost
        (a failover, a restart from old data). Issue it again through the queue (I8), which
        holds what it covers meanwhile; the new version is above every entry stamped before."""
        log.warning("tta-cache: %d tag version(s) went back in Redis; invalidated again", len(tags))
        self.queue.add(tags, ())
        self.counters.add(invalidations_reissued=1)

    def _failed_over(self, address: tuple[str, int]) -> None:
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
        self.link.kick()
        self.run(self.invalidate_flow((NAMESPACE_TAG,), (), "log"))
        self.counters.add(failovers=1)

    @property
    def subscriber(self) -> Any:
        return self.link.subscriber

    @property
    def queued(self) -> int:
        return len(self.queue)

    def ensure_channel(self) -> None:
        """Open the invalidation channel now if it is not (``health()`` does, for a new cache)."""
        self.link.ensure()

    def wait_ready(self, timeout: float) -> bool:
        """Block until the invalidation channel is up (True) or ``timeout`` passes (False)."""
        return self.link.wait_ready(timeout)

    # ------------------------------------------------------------------ refreshes and health

    def wait_refreshes(self, timeout: float = 5.0) -> bool:
        return self.refresher.wait(timeout)

    async def await_refreshes(self, timeout: float = 5.0) -> bool:
        return await self.refresher.await_(timeout)

    def _start_monitor(self) -> None:
        with self.link._lock:
            if self.monitor is None and not self._closed:
                monitor = HealthMonitor(functools.partial(probe, self), self.health_check_interval)
                monitor.start()
                self.monitor = monitor

    def resilience_stats(self) -> dict[str, Any]:
        """Leases, background refreshes, timeouts, the breaker and the connection, for stats()."""
        c = self.counters.snapshot()
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
                "running": self.refresher.running,
            },
            "compute_timeouts": c["compute_timeouts"],
            "failovers": c["failovers"],
            "transactions": transaction_stats(c),
            "not_cached": entry_stats(c),  # by choice: cache_if, none_ttl, entry.skip()
            # Invalidations Redis (a Cluster master) or its replicas (bump_replicas) did not
            # take, announced to / adopted from others; and those Redis lost, issued again.
            "adopted_invalidations": {
                "announced": c["invalidations_announced"],
                "adopted": c["invalidations_adopted"],
                "reissued": c["invalidations_reissued"],
            },
            "breaker": {
                "state": breaker.state.value,
                "transitions": breaker.transitions,
                "opened": breaker.opened_count,
                "history": self.connection.breaker_history(),
            },
            "connection": self.connection.snapshot(),
            **tier_figures(self.redis, self.aredis),
        }

    def health_state(self) -> dict[str, Any]:
        state = self.breaker.state
        return {
            "breaker": state.value if isinstance(state, BreakerState) else str(state),
            "channel": "up" if self.link.up else "down",
            "queued_invalidations": self.queued,
        }

    # ------------------------------------------------------------------ lifecycle

    def _new_origin(self) -> str:
        """This process's id on the channel: a process skips the messages of its own origin."""
        return f"{os.getpid()}-{self.rng.getrandbits(40):010x}"

    def forked(self) -> None:
        """Run in a forked child (see ``fork.py``): make this engine the child's own."""
        if self._own_rng:
            self.rng.seed()  # siblings must not draw the same jitter and XFetch numbers
        self.origin = self._new_origin()
        for lock in (self.local.lock, self.versions.lock, self.stats._lock, self.connection._lock):
            fork.reinit(lock)
        self.local.clear()
        if self.redis_cfg is not None:
            self.versions.distrust()  # trusted again once the child's own channel is up
        self.versions.probe = None  # it asked the parent's channel thread
        self.monitor = None
        if self.aredis is not None:
            self.aredis.forked()  # the sync pools reconnect by themselves (redis-py checks the pid)
        for part in (
            self.counters,
            self.flights,
            self.leases,
            self.refresher,
            self.bounds,
            self.holds,
            self.deferral,
            self.queue,
            self.link,
        ):
            part.forked()

    def close(self) -> None:
        self._closed = True
        if self.monitor is not None:
            self.monitor.stop()
        self.link.stop()
        if self.redis is not None:
            self.redis.close()

    async def aclose(self) -> None:
        await self.refresher.cancel_loop()
        if self.aredis is not None:
            await self.aredis.aclose()
        await asyncio.get_running_loop().run_in_executor(None, self.close)
