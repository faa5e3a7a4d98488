"""``cache.health()`` and the periodic health check against a real redis-server."""

from __future__ import annotations

import asyncio
import gc
import warnings

import tta_cache as tc
from helpers.redis_server import RedisServer
from helpers.waiting import eventually

WAIT = 10.0


def test_a_healthy_report_has_latency_breaker_pool_connection_and_stats(redis_url: str) -> None:
    cache = tc.Cache(redis_url, health_check_interval=0)
    try:
        assert cache.wait_ready(WAIT)

        @cache.cached()
        def load(x: int) -> int:
            return x

        assert load(1) == 1
        health = cache.health()
        assert health["overall_status"] == "healthy", health["reasons"]
        assert health["reasons"] == []
        redis = health["redis"]
        assert redis["connected"] is True
        assert 0 < redis["ping_latency"] < 1
        assert redis["breaker"] == "closed"
        assert redis["channel"] == "up"
        assert redis["pool"]["max"] == 50
        assert redis["pool"]["in_use"] == 0  # nothing is running now
        assert redis["pool"]["idle"] >= 1
        assert redis["connection"]["state"] == "up"
        assert redis["connection"]["health_checks"] == 1  # this report's PING
        assert health["stats"]["misses"] == 1
    finally:
        cache.close()


def test_the_health_monitor_notices_an_outage_and_a_recovery_with_no_caller(
    own_redis: RedisServer,
) -> None:
    cache = tc.Cache(own_redis.url, health_check_interval=0.05, breaker_threshold=3, op_timeout=0.1)
    try:
        assert cache.wait_ready(WAIT)
        assert cache.get("k") is None  # the first use of Redis starts the monitor
        connection = cache.engine.connection
        assert eventually(lambda: connection.checks >= 2)
        own_redis.kill()
        assert eventually(lambda: connection.state == "down")
        # the monitor's failed PINGs count as failures: the breaker opens with no caller at all
        assert eventually(lambda: cache.engine.breaker.state.value == "open")
        assert cache.health()["overall_status"] == "unhealthy"
        own_redis.start()
        assert eventually(lambda: connection.state == "up")
        assert connection.reconnections == 1
        assert cache.stats()["breaker"]["history"][:2] == ["closed", "open"]
    finally:
        cache.close()
    assert cache.engine.monitor is not None
    assert not cache.engine.monitor._thread.is_alive()  # type: ignore[union-attr]


async def test_the_report_counts_the_async_clients_connections_too(redis_url: str) -> None:
    cache = tc.Cache(redis_url, health_check_interval=0)
    loop = asyncio.get_running_loop()
    try:

        @cache.cached()
        async def load(x: int) -> int:
            return x

        assert await load(1) == 1
        health = await loop.run_in_executor(None, cache.health)
        assert health["redis"]["async_pool"]["in_use"] == 0
        assert health["redis"]["async_pool"]["idle"] >= 1
        assert health["redis"]["async_pool"]["max"] == 50
    finally:
        client = cache.engine.aredis._clients.get(loop) if cache.engine.aredis else None
        await cache.aclose()
        if client is not None:  # aclose() leaves the given pool open today (see test_engine_redis)
            await client.connection_pool.aclose()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()


def test_a_new_cache_is_healthy_as_soon_as_redis_answers(redis_url: str) -> None:
    # A readiness probe runs before the first request: the channel (opened on first use) is not
    # a fault then. health() opens it, and says healthy once tagged entries are served from L1.
    cache = tc.Cache(redis_url, health_check_interval=0)
    try:

        @cache.cached(tags=("user:{user_id}",))
        def load(user_id: str) -> str:
            return user_id

        health = cache.health()
        assert health["overall_status"] == "healthy", health["reasons"]
        assert health["reasons"] == []
        assert health["redis"]["channel"] == "up"
        assert load("u1") == "u1"  # computed, stamped against the trusted map, kept in L1
        hits = cache.stats()["local"]["hits"]
        assert load("u1") == "u1"
        assert cache.stats()["local"]["hits"] == hits + 1
    finally:
        cache.close()


def test_a_channel_that_was_up_and_is_lost_is_reported_at_once(redis_url: str) -> None:
    cache = tc.Cache(redis_url, health_check_interval=0)
    try:
        assert cache.wait_ready(WAIT)
        sub = cache.engine.subscriber
        assert sub is not None
        sub.stop()  # the thread ends: the channel stays down
        assert eventually(lambda: not sub.connected.is_set())
        health = cache.health()
        assert health["overall_status"] == "degraded"
        assert health["reasons"] == ["invalidation channel down: L1 serves no tagged entry"]
    finally:
        cache.close()
