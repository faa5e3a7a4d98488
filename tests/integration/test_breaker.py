"""The circuit breaker end to end: Redis blackholed by a test proxy (accepts, never answers).

Each call pays at most ``op_timeout`` for Redis until the breaker opens; then calls skip Redis
entirely; once Redis answers again and the (fake) clock passes the reset timeout, one probe
closes the breaker. The tests assert the breaker's states and which calls reached Redis; the
per-call latencies are printed, not asserted.
"""

from __future__ import annotations

import asyncio
import gc
import time
import warnings
from collections.abc import Callable
from typing import Any

import pytest

import tta_cache as tc
from helpers.proxy import TcpProxy
from tta_cache.testing import FakeClock

WAIT = 10.0
OP_TIMEOUT = 0.25  # the default
THRESHOLD = 3
RESET = 5.0


def redis_attempts(cache: tc.Cache) -> int:
    """Redis operations tried so far: the ones that worked plus the ones that failed."""
    stats = cache.stats()
    return int(stats["redis"]["operations"] + stats["errors"])


def make_cache(url: str, clock: FakeClock) -> tc.Cache:
    return tc.Cache(
        url,
        namespace="breaker",
        op_timeout=OP_TIMEOUT,
        breaker_threshold=THRESHOLD,
        breaker_window=60.0,
        breaker_reset_timeout=RESET,
        clock=clock,
        local_maxsize=0,  # every call goes to the engine
        health_check_interval=0,  # only callers talk to Redis here
    )


def report(kind: str, phases: list[tuple[str, float, int]]) -> None:
    print(
        f"\nblackholed Redis ({kind}), op_timeout {OP_TIMEOUT * 1000:.0f} ms, breaker after "
        f"{THRESHOLD} failures:"
    )
    for label, seconds, attempts in phases:
        print(f"  {label:<36} {seconds * 1000:8.1f} ms   Redis operations tried: {attempts}")


def run_scenario(
    cache: tc.Cache, proxy: TcpProxy, clock: FakeClock, call: Callable[[int], Any]
) -> list[tuple[str, float, int]]:
    phases: list[tuple[str, float, int]] = []

    def timed(label: str, i: int) -> None:
        before = redis_attempts(cache)
        started = time.perf_counter()
        assert call(i) == i  # fail-open: every call gets its value
        phases.append((label, time.perf_counter() - started, redis_attempts(cache) - before))

    timed("warm (Redis answering)", 0)
    proxy.blackhole()
    for i in range(1, THRESHOLD + 1):
        timed(f"blackholed, breaker closed #{i}", i)
    for i in range(THRESHOLD + 1, THRESHOLD + 4):
        timed(f"blackholed, breaker open #{i - THRESHOLD}", i)
    proxy.heal()
    timed("healed, breaker still open", 100)
    clock.advance(RESET)
    timed("healed, reset timeout passed: probe", 101)
    timed("healed, breaker closed", 102)
    return phases


def check(cache: tc.Cache, phases: list[tuple[str, float, int]]) -> None:
    attempts = [a for _, _, a in phases]
    # warm: read + fill; each blackholed call: one read that times out, no fill after it;
    # open: nothing; the probe and the next call: read + fill each.
    assert attempts == [2, *([1] * THRESHOLD), 0, 0, 0, 0, 2, 2]
    stats = cache.stats()
    assert stats["breaker"]["history"] == ["closed", "open", "half_open", "closed"]
    assert stats["breaker"]["state"] == "closed"
    assert stats["breaker"]["opened"] == 1
    assert stats["errors"] == THRESHOLD
    connection = stats["connection"]
    assert connection["state"] == "up"
    assert connection["reconnections"] == 1
    assert connection["failures"] == THRESHOLD
    assert "timed out" in connection["last_error"]


def test_blackholed_redis_costs_op_timeout_until_the_breaker_opens(
    redis_proxy: TcpProxy,
) -> None:
    clock = FakeClock()
    cache = make_cache(redis_proxy.url, clock)
    try:
        assert cache.wait_ready(WAIT)

        @cache.cached()
        def load(i: int) -> int:
            return i

        phases = run_scenario(cache, redis_proxy, clock, load)
        report("sync", phases)
        check(cache, phases)
    finally:
        cache.close()


async def test_blackholed_redis_async(redis_proxy: TcpProxy) -> None:
    clock = FakeClock()
    cache = make_cache(redis_proxy.url, clock)
    loop = asyncio.get_running_loop()
    try:
        assert await loop.run_in_executor(None, cache.wait_ready, WAIT)

        @cache.cached()
        async def load(i: int) -> int:
            return i

        def call(i: int) -> Any:
            # run the coroutine to completion on this test's loop from a worker thread
            return asyncio.run_coroutine_threadsafe(load(i), loop).result(WAIT)

        phases = await loop.run_in_executor(None, run_scenario, cache, redis_proxy, clock, call)
        report("async", phases)
        check(cache, phases)
    finally:
        client = cache.engine.aredis._clients.get(loop) if cache.engine.aredis else None
        await cache.aclose()
        if client is not None:  # aclose() leaves the given pool open today (see test_engine_redis)
            await client.connection_pool.aclose()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()


def test_an_open_breaker_makes_health_degraded_and_a_health_probe_closes_it(
    redis_url: str,
) -> None:
    clock = FakeClock()
    cache = make_cache(redis_url, clock)
    try:
        assert cache.wait_ready(WAIT)
        assert cache.health()["overall_status"] == "healthy"
        for _ in range(THRESHOLD):
            cache.engine.breaker.record_failure()
        health = cache.health()
        assert health["overall_status"] == "degraded"  # Redis answers, but is being skipped
        assert health["redis"]["breaker"] == "open"
        assert any("circuit breaker open" in r for r in health["reasons"])
        clock.advance(RESET)
        health = cache.health()  # its PING is the half-open breaker's probe
        assert health["redis"]["breaker"] == "closed"
        assert health["overall_status"] == "healthy"
        assert cache.stats()["breaker"]["history"] == ["closed", "open", "half_open", "closed"]
    finally:
        cache.close()


@pytest.mark.parametrize("failing", ["blackhole", "refuse"])
def test_health_is_unhealthy_while_redis_does_not_answer(
    redis_proxy: TcpProxy, failing: str
) -> None:
    clock = FakeClock()
    cache = make_cache(redis_proxy.url, clock)
    try:
        assert cache.wait_ready(WAIT)
        getattr(redis_proxy, failing)()
        redis_proxy.cut()
        health = cache.health()
        assert health["overall_status"] == "unhealthy"
        assert health["redis"]["connected"] is False
        assert health["reasons"][0].startswith("redis unreachable")
        assert health["redis"]["connection"]["state"] == "down"
        redis_proxy.heal()
        deadline = time.monotonic() + WAIT
        while (health := cache.health())["overall_status"] == "unhealthy":
            assert time.monotonic() < deadline, health["reasons"]
            time.sleep(0.01)
        assert health["redis"]["connection"]["state"] == "up"
        assert health["redis"]["connection"]["reconnections"] == 1
    finally:
        cache.close()
