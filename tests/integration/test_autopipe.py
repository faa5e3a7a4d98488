"""Auto-pipelining (asyncio): concurrent reads of one event loop share one pipeline, each caller
gets its own key's reply even when others are cancelled mid-flight, a batch past its deadline
fails open without poisoning the next, and ``pipelining=False`` sends each on its own.

The cancellation tests run through a delaying proxy, so a batch is still on the wire when its
callers are cancelled (the redis-py CVE-2023-28858/28859 class: a cancelled command's reply
handed to the next caller).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import pytest

import tta_cache as tc
from helpers.proxy import TcpProxy
from tta_cache.exceptions import BackendError
from tta_cache.tiers import AsyncRedisTier, RedisConfig
from tta_cache.tiers.redis.autopipe import AutoPipe
from tta_cache.tiers.redis.lane import AsyncLane

KEYS = 300


def _tier(url: str, **options: Any) -> AsyncRedisTier:
    return AsyncRedisTier(RedisConfig.from_url(url, **options), lambda: 60)


@pytest.fixture
async def filled(redis_url: str) -> None:
    tier = _tier(redis_url)
    await tier.set_many([(f"k{i}", f"v{i}".encode(), 600_000) for i in range(KEYS)])
    await tier.aclose()


def _pipe(tier: AsyncRedisTier) -> AutoPipe:
    pipe = tier.client._tta_lane
    assert isinstance(pipe, AutoPipe)
    return pipe


async def _until(done: Callable[[], bool]) -> None:
    """Yield to the loop until ``done()`` (no timer: each turn runs what is ready)."""
    while not done():
        await asyncio.sleep(0)


async def test_concurrent_reads_share_pipelines_and_each_gets_its_own(
    redis_url: str, filled: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    tier = _tier(redis_url, op_timeout=5.0)
    sent: list[int] = []
    real = AsyncLane.pipeline

    async def counted(self: AsyncLane, *commands: tuple[Any, ...], **options: Any) -> list[Any]:
        sent.append(len(commands))
        return await real(self, *commands, **options)

    monkeypatch.setattr(AsyncLane, "pipeline", counted)
    try:
        order = random.Random(7).sample(range(KEYS), KEYS)
        got = await asyncio.gather(*(tier.get(f"k{i}") for i in order))
        assert got == [f"v{i}".encode() for i in order]
        assert sum(sent) == KEYS
        assert len(sent) <= 3  # the first caller alone, then everyone queued behind it
        sent.clear()
        assert await tier.get("k1") == b"v1"  # a lone call goes out at once, on its own
        assert sent == [1]
        # reads of several kinds in one batch: GET, MGET, the read pipeline, an error reply
        await tier.client.set("notalist", b"x")
        mixed = await asyncio.gather(
            tier.get("k2"),
            tier.get_many(["k3", "absent", "k4"]),
            tier.read("k5", ["tag:a"]),
            tier.get("k6"),
            tier.client._tta_lane.call("LPOP", "notalist"),
            tier.get("k7"),
            return_exceptions=True,
        )
        assert mixed[0] == b"v2"
        assert mixed[1] == [b"v3", None, b"v4"]
        assert mixed[2].raw == b"v5"
        assert mixed[3] == b"v6"
        assert "WRONGTYPE" in str(mixed[4])
        assert mixed[5] == b"v7"
    finally:
        await tier.aclose()


@pytest.mark.parametrize("seed", range(3))
async def test_cancelled_callers_never_shift_replies(
    redis_server: Any, filled: None, proxy_factory: Callable[[int], TcpProxy], seed: int
) -> None:
    proxy = proxy_factory(redis_server.port)
    tier = _tier(proxy.url, op_timeout=5.0)
    rng = random.Random(seed)
    try:
        assert await tier.get("k0") == b"v0"  # connect first
        proxy.set_latency(0.02)
        pipe = _pipe(tier)
        for _ in range(3):
            lone = asyncio.ensure_future(tier.get("k0"))
            await _until(lambda: pipe.busy)  # the lone caller's GET is on the wire
            ids = rng.sample(range(KEYS), 120)
            tasks = {i: asyncio.ensure_future(tier.get(f"k{i}")) for i in ids}
            count = len(tasks)
            await _until(lambda n=count: len(pipe.waiting) == n)
            queued = rng.sample(ids, 30)  # cancelled while queued
            for i in queued:
                tasks[i].cancel()
            lone.cancel()  # cancelled on the wire: its own connection is dropped
            await _until(lambda: pipe.flusher is not None and not pipe.waiting)
            in_flight = rng.sample([i for i in ids if i not in queued], 30)
            for i in in_flight:  # cancelled while their batch is on the wire
                tasks[i].cancel()
            results = await asyncio.gather(*tasks.values(), lone, return_exceptions=True)
            for i, got in zip(tasks, results, strict=False):
                if i in queued or i in in_flight:
                    assert isinstance(got, asyncio.CancelledError)
                else:
                    assert got == f"v{i}".encode(), (i, got)
            # nothing left over on the connection: the next reads get their own replies
            after = rng.sample(range(KEYS), 50)
            again = await asyncio.gather(*(tier.get(f"k{i}") for i in after))
            assert again == [f"v{i}".encode() for i in after]
    finally:
        proxy.heal()
        await tier.aclose()


async def test_a_batch_past_its_deadline_fails_open_and_the_next_is_clean(
    redis_server: Any, filled: None, proxy_factory: Callable[[int], TcpProxy]
) -> None:
    proxy = proxy_factory(redis_server.port)
    tier = _tier(proxy.url, op_timeout=0.3)
    try:
        assert await tier.get("k0") == b"v0"
        pipe = _pipe(tier)
        proxy.blackhole()  # nothing comes back: the lone call and the batch time out
        lone = asyncio.ensure_future(tier.get("k1"))
        await _until(lambda: pipe.busy)
        queued = [asyncio.ensure_future(tier.get(f"k{i}")) for i in range(2, 40)]
        results = await asyncio.gather(lone, *queued, return_exceptions=True)
        assert all(isinstance(r, BackendError) for r in results), results
        proxy.heal()
        got = await asyncio.gather(*(tier.get(f"k{i}") for i in range(KEYS)))
        assert got == [f"v{i}".encode() for i in range(KEYS)]
    finally:
        proxy.heal()
        await tier.aclose()


async def test_cache_fails_open_under_a_dead_batch(
    redis_server: Any, filled: None, proxy_factory: Callable[[int], TcpProxy]
) -> None:
    proxy = proxy_factory(redis_server.port)
    cache = tc.Cache(proxy.url, namespace="ap", local_maxsize=0, op_timeout=0.3)
    calls: list[int] = []

    @cache.cached(kind="character")
    async def load(i: int) -> int:
        calls.append(i)
        return i * 2

    try:
        assert await asyncio.gather(*(load(i) for i in range(50))) == [i * 2 for i in range(50)]
        proxy.blackhole()
        calls.clear()
        assert await asyncio.gather(*(load(i) for i in range(50))) == [i * 2 for i in range(50)]
        assert sorted(calls) == list(range(50))  # Redis skipped: computed, served, no error
        assert cache.stats()["errors"] > 0
    finally:
        proxy.heal()
        await cache.aclose()


async def test_pipelining_false_sends_each_on_its_own(redis_url: str, filled: None) -> None:
    tier = _tier(redis_url, pipelining=False, op_timeout=5.0)
    try:
        assert isinstance(tier.client._tta_lane, AsyncLane)
        got = await asyncio.gather(*(tier.get(f"k{i}") for i in range(KEYS)))
        assert got == [f"v{i}".encode() for i in range(KEYS)]
    finally:
        await tier.aclose()
    cache = tc.Cache(redis_url, namespace="ap", pipelining=False)
    try:
        assert cache.engine.aredis is not None
        assert cache.engine.aredis.cfg.pipelining is False
    finally:
        await cache.aclose()
