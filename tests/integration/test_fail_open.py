"""I4 fail-open: a Redis that is down, killed or blackholed never fails a caller (unless asked)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

import tta_cache as tc
from helpers.caches import aclose_all
from helpers.proxy import TcpProxy
from helpers.redis_server import RedisServer
from helpers.waiting import eventually
from tta_cache.testing import FakeClock

MakeCache = Callable[..., tc.Cache]
WAIT = 10.0


@pytest.fixture
def make() -> Iterator[MakeCache]:
    made: list[tc.Cache] = []

    def factory(url: str, **options: Any) -> tc.Cache:
        cache = tc.Cache(url, **options)
        made.append(cache)
        return cache

    yield factory
    for cache in made:
        cache.close()


@pytest.fixture
async def amake(caplog: pytest.LogCaptureFixture) -> AsyncIterator[MakeCache]:
    made: list[tc.Cache] = []

    def factory(url: str, **options: Any) -> tc.Cache:
        cache = tc.Cache(url, **options)
        made.append(cache)
        return cache

    yield factory
    await aclose_all(made)


def counting(cache: tc.Cache, **options: Any) -> tuple[Any, list[str]]:
    calls: list[str] = []

    @cache.cached(tags=("user:{user_id}",), **options)
    def load(user_id: str) -> str:
        calls.append(user_id)
        return f"value of {user_id}"

    return load, calls


# --- Redis killed -----------------------------------------------------------------------------


def test_killed_redis_degrades_to_l1_and_compute(make: MakeCache, own_redis: RedisServer) -> None:
    cache = make(own_redis.url)
    assert cache.wait_ready(WAIT)
    load, calls = counting(cache)

    @cache.cached
    def untagged(x: int) -> int:
        calls.append(str(x))
        return x * 2

    assert load("warm") == "value of warm"
    assert untagged(1) == 2
    own_redis.kill()

    for i in range(10):
        assert load(f"u{i}") == f"value of u{i}"
        assert untagged(i) == i * 2
    assert untagged(1) == 2
    cache.invalidate(user="u1")  # fail-open too: queued, not raised
    assert load("u1") == "value of u1"
    stats = cache.stats()
    assert stats["errors"] >= 1
    assert sum(stats["errors_by_type"].values()) == stats["errors"]
    assert stats["computations"] >= 20


def test_redis_down_before_the_first_call(make: MakeCache, own_redis: RedisServer) -> None:
    cache = make(own_redis.url)
    own_redis.kill()
    load, _calls = counting(cache)
    assert [load("a"), load("a"), load("b")] == ["value of a", "value of a", "value of b"]
    assert cache.stats()["errors"] >= 1


def test_the_function_s_own_errors_still_propagate(make: MakeCache, own_redis: RedisServer) -> None:
    cache = make(own_redis.url)
    own_redis.kill()

    @cache.cached
    def broken(x: int) -> int:
        raise ValueError(f"bad {x}")

    with pytest.raises(ValueError, match="bad 1"):
        broken(1)


async def test_async_calls_survive_a_killed_redis(amake: MakeCache, own_redis: RedisServer) -> None:
    cache = amake(own_redis.url)

    @cache.cached(tags=("user:{user_id}",))
    async def load(user_id: str) -> str:
        await asyncio.sleep(0)
        return f"value of {user_id}"

    assert await load("warm") == "value of warm"
    own_redis.kill()
    results = await asyncio.gather(*(load(f"u{i}") for i in range(20)), return_exceptions=True)
    assert results == [f"value of u{i}" for i in range(20)]
    await cache.ainvalidate(user="u1")
    await load.invalidate("u2")
    assert cache.stats()["errors"] >= 1


# --- on_error="raise" -------------------------------------------------------------------------


def test_on_error_raise_on_the_cache(make: MakeCache, own_redis: RedisServer) -> None:
    cache = make(own_redis.url, on_error="raise")
    load, _calls = counting(cache)
    assert load("warm") == "value of warm"
    own_redis.kill()
    with pytest.raises(tc.BackendError) as info:
        load("cold")
    assert info.value.__cause__ is not None  # the redis-py error, translated
    with pytest.raises(tc.BackendError):
        cache.invalidate(user="u1")


def test_on_error_per_decorator_overrides_the_cache(
    make: MakeCache, own_redis: RedisServer
) -> None:
    lenient = make(own_redis.url)
    strict = make(own_redis.url, on_error="raise")
    raising, _ = counting(lenient, on_error="raise")
    ignoring, _ = counting(strict, on_error="ignore")
    own_redis.kill()
    with pytest.raises(tc.BackendError):
        raising("u1")
    assert ignoring("u1") == "value of u1"
    with pytest.raises(tc.BackendError):
        raising.invalidate("u1")
    ignoring.invalidate("u1")


async def test_on_error_raise_for_async_functions(amake: MakeCache, own_redis: RedisServer) -> None:
    cache = amake(own_redis.url)

    @cache.cached(on_error="raise")
    async def load(x: int) -> int:
        return x

    own_redis.kill()
    with pytest.raises(tc.BackendError):
        await load(1)
    with pytest.raises(tc.BackendError):
        await cache.ainvalidate(user="u1", on_error="raise")


# --- Redis back: caching through it resumes ---------------------------------------------------


def test_caching_through_redis_resumes_after_a_restart(
    make: MakeCache, own_redis: RedisServer
) -> None:
    clock = FakeClock(1000.0)
    cache = make(own_redis.url, breaker=tc.CircuitBreaker(clock=clock))
    load, _calls = counting(cache)
    assert load("warm") == "value of warm"
    own_redis.kill()
    for i in range(10):  # enough failures to open the breaker
        assert load(f"down{i}") == f"value of down{i}"
    errors = cache.stats()["errors"]
    assert errors >= 1

    own_redis.restart()
    clock.advance(3600)  # past any reset timeout: the next call probes Redis
    assert load("back") == "value of back"
    with own_redis.client() as client:
        assert eventually(lambda: client.exists(load.cache_key("back")) == 1)

    other = make(own_redis.url)
    other_load, other_calls = counting(other)
    assert other_load("back") == "value of back"
    assert other_calls == []  # from L2: Redis is in the path again
    assert cache.stats()["errors"] == errors  # no new failures once it is back
    assert cache.wait_ready(WAIT)


# --- Redis blackholed: every call still completes ---------------------------------------------


def test_blackholed_redis_still_answers_every_call(make: MakeCache, redis_proxy: TcpProxy) -> None:
    cache = make(redis_proxy.url, op_timeout=0.1)
    load, _calls = counting(cache)
    assert load("warm") == "value of warm"
    redis_proxy.blackhole()

    completed = []
    for i in range(8):
        completed.append(load(f"u{i}"))
    assert completed == [f"value of u{i}" for i in range(8)]
    cache.invalidate(user="u1")
    assert load("u1") == "value of u1"
    assert cache.stats()["errors"] >= 1


async def test_blackholed_redis_still_answers_async_calls(
    amake: MakeCache, redis_proxy: TcpProxy
) -> None:
    cache = amake(redis_proxy.url, op_timeout=0.1)

    @cache.cached
    async def load(x: int) -> int:
        return x + 1

    assert await load(0) == 1
    redis_proxy.blackhole()
    results = await asyncio.gather(*(load(i) for i in range(16)), return_exceptions=True)
    assert results == [i + 1 for i in range(16)]
    assert cache.stats()["errors"] >= 1


def test_blackholed_redis_with_on_error_raise_times_out(
    make: MakeCache, redis_proxy: TcpProxy
) -> None:
    cache = make(redis_proxy.url, op_timeout=0.1, on_error="raise")
    load, _ = counting(cache)
    assert load("warm") == "value of warm"
    redis_proxy.blackhole()
    with pytest.raises(tc.BackendTimeout):
        load("cold")


async def test_async_failures_return_their_connections_to_the_pool(
    own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    cache = tc.Cache(own_redis.url)
    try:
        assert cache.wait_ready(WAIT)

        @cache.cached(tags=("user:{user_id}",))
        async def load(user_id: str) -> str:
            return user_id

        assert await load("warm") == "warm"  # a pooled connection now exists
        tier = cache.engine.aredis
        assert tier is not None
        own_redis.kill()
        for i in range(3):
            assert await load(f"u{i}") == f"u{i}"  # unknown tags: GET + versions in a pipeline
        assert tier.pool_usage()["in_use"] == 0  # the lane's kept connection counts as idle
    finally:
        caplog.clear()
        await aclose_all([cache])
