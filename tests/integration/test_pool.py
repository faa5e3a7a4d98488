"""The connection pool under contention: callers wait for a connection, they do not fail.

A wait for a pooled connection is this process's own load, not Redis being slow: it is bounded by
``pool_timeout`` (generous), not ``op_timeout``, counted in ``stats()["pool"]``, and even a wait
that runs out is a fail-open miss that the circuit breaker does not count.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import tta_cache as tc
from helpers.caches import aclose_all
from helpers.redis_server import RedisServer
from tta_cache.exceptions import ConfigurationError, PoolTimeout
from tta_cache.tiers import RedisConfig

THREADS = 64
READS = 200


def connections_made(server: RedisServer) -> int:
    with server.client() as admin:
        return int(admin.info("stats")["total_connections_received"])


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


@pytest.fixture
def small(redis_url: str) -> Iterator[tc.Cache]:
    cache = tc.Cache(redis_url, namespace="pool", local_maxsize=0, max_connections=4)
    yield cache
    cache.close()


def test_sixty_four_threads_share_four_connections_without_an_error(
    small: tc.Cache, redis_server: RedisServer
) -> None:
    cache = small

    @cache.cached(tags=("user:{n}",))
    def load(n: int) -> int:
        return n

    cache.set_many({f"k{i}": i for i in range(THREADS)})
    for n in range(THREADS):
        load(n)  # in Redis; L1 is off, so every read below goes to Redis
    before = connections_made(redis_server)
    wrong: list[tuple[int, Any]] = []
    start = threading.Barrier(THREADS)

    def reader(n: int) -> None:
        start.wait()
        for i in range(READS):
            got = cache.get(f"k{n}") if i % 2 else load(n)
            if got != n:
                wrong.append((n, got))

    threads = [threading.Thread(target=reader, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stats = cache.stats()
    assert wrong == []
    assert stats["errors"] == 0, stats["errors_by_type"]
    assert stats["computations"] == THREADS  # the warm-up's only: every read above hit Redis
    assert stats["breaker"]["state"] == "closed"
    assert connections_made(redis_server) - before <= 4 + 1  # the pool's bound, the count's
    assert stats["pool"]["timeouts"] == 0
    print(f"\n{THREADS} threads x {READS} reads on 4 connections: pool {stats['pool']}")


async def test_sixty_four_tasks_share_four_connections_without_an_error(redis_url: str) -> None:
    cache = tc.Cache(redis_url, namespace="pool", local_maxsize=0, max_connections=4)
    try:

        @cache.cached(tags=("user:{n}",))
        async def load(n: int) -> int:
            return n

        await cache.aset_many({f"k{i}": i for i in range(THREADS)})
        for n in range(THREADS):
            await load(n)
        wrong: list[tuple[int, Any]] = []

        async def reader(n: int) -> None:
            for i in range(READS):
                got = await cache.aget(f"k{n}") if i % 2 else await load(n)
                if got != n:
                    wrong.append((n, got))

        await asyncio.gather(*(reader(n) for n in range(THREADS)))
        stats = cache.stats()
        assert wrong == []
        assert stats["errors"] == 0, stats["errors_by_type"]
        assert stats["computations"] == THREADS
        assert stats["breaker"]["state"] == "closed"
    finally:
        await aclose_all([cache])


def held_pool(cache: tc.Cache) -> tuple[Any, list[Any]]:
    """Every connection of the sync pool, taken (the lane's kept one handed back first)."""
    tier = cache.engine.redis
    assert tier is not None
    if tier.lane is not None:
        tier.lane.drain()
    pool = tier.client.connection_pool
    return pool, [pool.get_connection() for _ in range(pool.max_connections)]


def test_a_caller_waits_for_a_connection_and_the_wait_is_counted(small: tc.Cache) -> None:
    cache = small
    assert cache.wait_ready(10.0)  # versions known from the channel: the read is one MGET
    cache.set("k", 1)
    pool, held = held_pool(cache)
    got: list[Any] = []
    waiter = threading.Thread(target=lambda: got.append(cache.get("k")))
    waiter.start()
    assert eventually(lambda: cache.stats()["pool"]["waiting"] == 1)
    pool.release(held.pop())
    waiter.join()
    for conn in held:
        pool.release(conn)
    assert got == [1]
    stats = cache.stats()
    assert stats["errors"] == 0
    figures = stats["pool"]
    assert (figures["waits"], figures["timeouts"], figures["waiting"]) == (1, 0, 0)
    assert 0 < figures["max_wait_seconds"] <= figures["wait_seconds"]
    assert cache.health()["stats"]["pool"] == cache.stats()["pool"]


def test_a_pool_timeout_is_a_counted_miss_the_breaker_does_not_count(redis_url: str) -> None:
    cache = tc.Cache(
        redis_url,
        namespace="pool",
        local_maxsize=0,
        max_connections=4,
        pool_timeout=0.05,
        breaker_threshold=2,
    )
    try:
        cache.set("k", 1)
        pool, held = held_pool(cache)
        for _ in range(5):
            assert cache.get("k") is None  # fail-open
        for conn in held:
            pool.release(conn)
        stats = cache.stats()
        assert stats["errors_by_type"] == {"PoolTimeout": 5}
        assert stats["breaker"]["state"] == "closed"  # 5 > breaker_threshold, yet closed
        assert stats["connection"]["failures"] == 0  # Redis itself never failed
        assert (stats["pool"]["waits"], stats["pool"]["timeouts"]) == (5, 5)
        assert cache.get("k") == 1
        tier = cache.engine.redis
        assert tier is not None
        _, held = held_pool(cache)
        try:
            with pytest.raises(PoolTimeout):  # what on_error="raise" gets: a BackendError
                tier.get(cache.engine.raw_key("k"))
        finally:
            for conn in held:
                pool.release(conn)
    finally:
        cache.close()


async def test_async_a_pool_timeout_is_a_counted_miss_the_breaker_does_not_count(
    redis_url: str,
) -> None:
    cache = tc.Cache(
        redis_url,
        namespace="pool",
        local_maxsize=0,
        max_connections=4,
        pool_timeout=0.05,
        breaker_threshold=2,
    )
    try:
        await cache.aset("k", 1)
        tier = cache.engine.aredis
        assert tier is not None
        client = tier.client
        if client._tta_lane is not None:
            await client._tta_lane.drain()
        pool = client.connection_pool
        held = [await pool.get_connection() for _ in range(pool.max_connections)]
        for _ in range(5):
            assert await cache.aget("k") is None
        for conn in held:
            await pool.release(conn)
        stats = cache.stats()
        assert stats["errors_by_type"] == {"PoolTimeout": 5}
        assert stats["breaker"]["state"] == "closed"
        assert (stats["pool"]["waits"], stats["pool"]["timeouts"]) == (5, 5)
        assert await cache.aget("k") == 1
    finally:
        await aclose_all([cache])


def test_pool_timeout_is_an_option_of_the_cache_and_the_url() -> None:
    url = "redis://127.0.0.1:1/0"
    assert RedisConfig.from_url(url).pool_timeout == 10.0
    assert RedisConfig.from_url(url + "?pool_timeout=2.5").pool_timeout == 2.5
    assert RedisConfig.from_url(url + "?pool_timeout=2.5", pool_timeout=4).pool_timeout == 4
    with tc.Cache(url + "?pool_timeout=2.5") as cache:
        assert cache.engine.redis is not None
        assert cache.engine.redis.cfg.pool_timeout == 2.5
    with tc.Cache(url, pool_timeout=30) as cache:
        assert cache.engine.redis is not None
        assert cache.engine.redis.cfg.pool_timeout == 30
    for bad in (0, -1.0):
        with pytest.raises(ConfigurationError, match="pool_timeout"):
            tc.Cache(url, pool_timeout=bad)
    with pytest.raises(ConfigurationError, match="pool_timeout"):
        RedisConfig.from_url(url + "?pool_timeout=soon")
