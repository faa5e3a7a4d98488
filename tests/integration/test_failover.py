"""A Sentinel failover under a live cache: the lane's kept connections follow the new master.

Each test starts a master, a replica and a Sentinel of its own (the session's Sentinel has no
replica, and a failover would leave it changed), warms a cache with L1 off so that every read goes
to Redis, forces ``SENTINEL FAILOVER`` and checks where reads and writes go from then on.

What the client sees (measured with Redis 7.0 and redis-py 8):

1. The Sentinel names the promoted replica about 1 s after ``SENTINEL FAILOVER``.
2. The old master stays a writable master until the Sentinel demotes it: once it has seen it
   report itself master for 4 publish periods (INFO). About 10 s with Redis's timings, about 1 s
   with ``FAST_SENTINEL_TIMINGS``. Connections kept open (redis-py's own pool's too) would read
   and write there meanwhile: nothing asks the Sentinel again while they work. So the cache
   listens for the Sentinel's ``+switch-master`` and then drops its connections, moves its
   invalidation channel, and bumps the namespace epoch on the new master (writes the old one took
   after it stopped replicating are lost, invalidations among them).
3. The demotion is ``REPLICAOF`` plus ``CLIENT KILL``: every kept connection breaks. The lane's
   retry reconnects the failed connection (its connect asks the Sentinel for the master) and
   hands the other kept ones back disconnected: from then on everything goes to the new master,
   with no error, however many connections the lane kept.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

import tta_cache as tc
from helpers.redis_server import FAST_SENTINEL_TIMINGS, RedisSentinelServers, RedisServer

pytestmark = pytest.mark.redis

DEADLINE = 20.0  # seconds from the failover being seen to every read and write on the new master
STEADY = 5  # consecutive fully correct rounds that count as "followed"
PAUSE = 0.05  # between rounds
# What a read of the key written before the failover may return: its value until the cache hears
# of the failover, nothing after it (the namespace epoch is bumped on the new master).
PROBE = ("p", None)


@pytest.fixture
def servers() -> Iterator[RedisSentinelServers]:
    """A master with one replica and a Sentinel, all of this test's own."""
    with RedisSentinelServers(
        "failover",
        replicas=1,
        down_after_ms=1000,
        failover_timeout_ms=5000,
        sentinel_debug=FAST_SENTINEL_TIMINGS,
    ) as started:
        yield started


def make_cache(servers: RedisSentinelServers) -> tc.Cache:
    # op_timeout generous for a loaded CI machine: these tests are about where commands go.
    return tc.Cache(servers.url, namespace="failover", local_maxsize=0, op_timeout=2.0)


def address(node: RedisServer) -> tuple[str, int]:
    return node.host, node.port


def holds(node: RedisServer, redis_key: str, value: str) -> bool:
    """Whether ``node`` itself (a plain client, not via Sentinel) stores ``value`` at the key."""
    with node.client(socket_timeout=2.0) as client:
        stored = client.get(redis_key)
    # JSON payloads: the quotes keep "v-1" from matching inside "v-12".
    return stored is not None and f'"{value}"'.encode() in stored


def role(node: RedisServer) -> str:
    with node.client(socket_timeout=2.0, decode_responses=True) as client:
        return str(client.info("replication")["role"])


def lane_addresses(lane: Any) -> set[tuple[str, int]]:
    return {(conn.host, conn.port) for conn in lane.idle}


def errors(cache: tc.Cache) -> tuple[int, dict[str, Any]]:
    stats = cache.stats()
    return stats["errors"], {
        "errors_by_type": stats["errors_by_type"],
        "last_error": stats["connection"]["last_error"],
    }


@dataclass
class Rounds:
    """What the rounds after the failover saw, for assertions and failure messages."""

    seen_at: float = field(default_factory=time.monotonic)
    rounds: int = 0
    stranded: int = 0  # writes that landed on the old master but not on the new one
    misread: int = 0  # reads that did not return the value just written
    probe_missed: int = 0  # reads of the key written before the failover that found garbage
    steady: int = 0
    followed_after: float | None = None  # seconds from the failover being seen

    def note(
        self,
        old: RedisServer,
        new: RedisServer,
        redis_key: str,
        value: str,
        *,
        probe_ok: bool,
        read_ok: bool,
    ) -> None:
        """One round, in which ``value`` was written at ``redis_key``: where it landed, checked on
        each node. "Followed" needs STEADY good rounds after the old master was demoted too (the
        demotion's CLIENT KILL must not cost an error either)."""
        on_new = holds(new, redis_key, value)
        on_old = holds(old, redis_key, value)
        demoted = role(old) == "slave"
        self.rounds += 1
        self.probe_missed += not probe_ok
        self.misread += not read_ok
        self.stranded += on_old and not on_new
        good = probe_ok and read_ok and on_new and demoted
        self.steady = self.steady + 1 if good else 0
        if self.steady == STEADY and self.followed_after is None:
            self.followed_after = time.monotonic() - self.seen_at

    @property
    def done(self) -> bool:
        return self.followed_after is not None

    def expired(self) -> bool:
        return time.monotonic() - self.seen_at > DEADLINE


def dropped_what_came_before(cache: tc.Cache, new: RedisServer) -> None:
    """The cache heard the failover once, and nothing it cached before is served after it: the
    namespace epoch was bumped on the new master (writes since the old one stopped replicating,
    invalidations among them, are lost with it)."""
    assert cache.stats()["failovers"] == 1
    assert cache.get("probe") is None
    with new.client(socket_timeout=2.0) as client:
        assert client.exists(cache.engine.raw_key("probe")) == 1  # still there, but not served


def check_followed(lane: Any, old: RedisServer, new: RedisServer, seen: Rounds) -> None:
    """Everything now goes to the new master, the lane keeps only connections to it, and the old
    master was demoted (which is what broke the lane's connections)."""
    assert seen.done, f"still not on the new master {DEADLINE}s after the failover: {seen}"
    assert lane.pool.master_address == address(new), lane.pool.master_address
    assert lane.idle, "the lane keeps no connection after the failover"
    assert lane_addresses(lane) == {address(new)}, (lane_addresses(lane), address(new))
    assert role(old) == "slave"
    assert role(new) == "master"


def warm_sync(cache: tc.Cache, square: Any, servers: RedisSentinelServers) -> None:
    cache.set("probe", "p")
    cache.set("k", "v1")
    for n in range(5):
        assert cache.get("k") == "v1"
        assert square(n) == n * n
        assert square(n) == n * n
    replicated(servers)


def replicated(servers: RedisSentinelServers) -> None:
    """Wait until the replica has everything written so far ("probe" must outlive the failover)."""
    with servers.master.client(socket_timeout=5.0) as client:
        assert client.wait(len(servers.replicas), 5000) == len(servers.replicas)


def sync_rounds(
    cache: tc.Cache,
    square: Any,
    old: RedisServer,
    new: RedisServer,
    redis_key: str,
    first: str = "set",
) -> Rounds:
    """Raw set/get and the decorated function, round after round, until steady on ``new``.

    The Sentinel demotes the old master, killing the lane's connections, almost always during the
    pause between rounds: ``first`` picks the command that meets the broken connection, a raw get
    (``Lane.call``, MGET) or a raw set (``Lane.pipeline``)."""
    assert first in ("get", "set"), first
    seen = Rounds()
    while not seen.done and not seen.expired():
        value = f"v2-{seen.rounds}"
        probe_ok = cache.get("probe") in PROBE if first == "get" else True
        cache.set("k", value)  # fail-open: must never raise
        if first == "set":
            probe_ok = cache.get("probe") in PROBE
        read_ok = cache.get("k") == value
        assert square(seen.rounds) == seen.rounds**2
        assert square(3) == 9
        seen.note(old, new, redis_key, value, probe_ok=probe_ok, read_ok=read_ok)
        time.sleep(PAUSE)
    return seen


@pytest.mark.parametrize("first", ["get", "set"], ids=["get-first", "set-first"])
def test_sync_cache_follows_a_sentinel_failover(servers: RedisSentinelServers, first: str) -> None:
    calls = 0
    with make_cache(servers) as cache:

        @cache.cached(kind="default")
        def square(n: int) -> int:
            nonlocal calls
            calls += 1
            return n * n

        warm_sync(cache, square, servers)
        assert calls == 5, "L2 did not serve the decorated function before the failover"
        tier = cache.engine.redis
        assert tier is not None
        lane = tier.lane
        assert lane is not None
        old = servers.master
        assert lane_addresses(lane) == {address(old)}
        redis_key = cache.engine.raw_key("k")
        assert holds(old, redis_key, "v1")

        new = servers.failover(timeout=DEADLINE)
        assert new is not old
        seen = sync_rounds(cache, square, old, new, redis_key, first)

        check_followed(lane, old, new, seen)
        count, detail = errors(cache)
        # The CLIENT KILL is absorbed by the lane's retry: not even a counted (fail-open) error.
        assert count == 0, (detail, seen)
        assert seen.probe_missed == 0, seen
        dropped_what_came_before(cache, new)
        cache.set("k", "final")
        assert cache.get("k") == "final"
        assert holds(new, redis_key, "final")


def test_async_cache_follows_a_sentinel_failover(servers: RedisSentinelServers) -> None:
    async def scenario() -> None:
        calls = 0
        async with make_cache(servers) as cache:

            @cache.cached(kind="default")
            async def square(n: int) -> int:
                nonlocal calls
                calls += 1
                return n * n

            await cache.aset("probe", "p")
            await cache.aset("k", "v1")
            for n in range(5):
                assert await cache.aget("k") == "v1"
                assert await square(n) == n * n
                assert await square(n) == n * n
            await asyncio.to_thread(replicated, servers)
            assert calls == 5
            tier = cache.engine.aredis
            assert tier is not None
            lane = tier.client._tta_lane  # this event loop's lane
            assert lane is not None
            old = servers.master
            assert lane_addresses(lane) == {address(old)}
            redis_key = cache.engine.raw_key("k")
            assert holds(old, redis_key, "v1")

            # In a thread: the loop (and the cache's tasks) keep running while the Sentinel works.
            new = await asyncio.to_thread(servers.failover, DEADLINE)
            assert new is not old
            seen = Rounds()
            while not seen.done and not seen.expired():
                value = f"v2-{seen.rounds}"
                # First after the pause: AsyncLane.call meets the connection the demotion broke
                # (aset goes through redis-py's pipeline, not the lane).
                probe_ok = await cache.aget("probe") in PROBE
                await cache.aset("k", value)
                read_ok = await cache.aget("k") == value
                assert await square(seen.rounds) == seen.rounds**2
                assert await square(3) == 9
                seen.note(old, new, redis_key, value, probe_ok=probe_ok, read_ok=read_ok)
                await asyncio.sleep(PAUSE)

            check_followed(lane, old, new, seen)
            count, detail = errors(cache)
            assert count == 0, (detail, seen)
            assert seen.probe_missed == 0, seen
            dropped_what_came_before(cache, new)
            assert await cache.aget("probe") is None
            await cache.aset("k", "final")
            assert await cache.aget("k") == "final"
            assert holds(new, redis_key, "final")

    asyncio.run(scenario())


def test_no_write_lands_only_on_the_old_master_once_the_failover_is_heard(
    servers: RedisSentinelServers,
) -> None:
    """The old master takes writes until the Sentinel demotes it; a cache that heard the
    Sentinel's ``+switch-master`` sends none there (its kept connections were dropped)."""
    with make_cache(servers) as cache:

        @cache.cached(kind="default")
        def square(n: int) -> int:
            return n * n

        warm_sync(cache, square, servers)
        old, redis_key = servers.master, cache.engine.raw_key("k")
        new = servers.failover(timeout=DEADLINE)
        heard = time.monotonic() + 5.0
        while cache.stats()["failovers"] == 0:
            assert time.monotonic() < heard, "the cache never heard of the failover"
            time.sleep(0.01)
        assert role(old) == "master", "demoted already: this test would show nothing"
        seen = sync_rounds(cache, square, old, new, redis_key)
        check_followed(cache.engine.redis.lane, old, new, seen)  # type: ignore[union-attr]
        assert seen.stranded == 0, seen


def test_a_lane_with_many_connections_follows_without_errors(
    servers: RedisSentinelServers,
) -> None:
    with make_cache(servers) as cache:

        @cache.cached(kind="default")
        def square(n: int) -> int:
            return n * n

        warm_sync(cache, square, servers)
        lane = cache.engine.redis.lane  # type: ignore[union-attr]
        assert lane is not None
        warm_deadline = time.monotonic() + 5.0
        while len(lane.idle) < 2:  # concurrent callers leave several connections in the lane
            assert time.monotonic() < warm_deadline, "the lane never kept 2 connections"
            concurrent_gets(cache, threads=4, rounds=10)
        old, redis_key = servers.master, cache.engine.raw_key("k")
        assert lane_addresses(lane) == {address(old)}
        kept = len(lane.idle)

        new = servers.failover(timeout=DEADLINE)
        seen = sync_rounds(cache, square, old, new, redis_key)

        check_followed(lane, old, new, seen)
        count, detail = errors(cache)
        assert count == 0, (
            f"{count} fail-open errors, {seen.misread + seen.probe_missed} reads missing a "
            f"value, with {kept} connections kept at the failover: {detail}"
        )


def concurrent_gets(cache: tc.Cache, *, threads: int, rounds: int) -> None:
    barrier = threading.Barrier(threads)

    def work() -> None:
        for _ in range(rounds):
            barrier.wait(timeout=5.0)
            cache.get("k")

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=10.0)
