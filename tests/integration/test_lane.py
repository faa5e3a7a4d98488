"""The connection lane: GET, SET, MGET and the read pipeline on connections kept between uses.

Each test breaks one thing the pool's checkout would otherwise have guarded: a killed connection,
an error reply, a fork, many threads at once.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

import tta_cache as tc
from helpers.redis_server import RedisServer
from tta_cache.exceptions import BackendError
from tta_cache.tiers import NOT_AN_ENTRY, AsyncRedisTier, Lane, RedisConfig, RedisTier


@pytest.fixture
def cache(redis_url: str) -> Iterator[tc.Cache]:
    made = tc.Cache(redis_url, namespace="lane", local_maxsize=0)
    yield made
    made.close()


def lane_of(cache: tc.Cache) -> Lane:
    tier = cache.engine.redis
    assert tier is not None
    assert tier.lane is not None
    return tier.lane


def connections_made(server: RedisServer) -> int:
    """Connections the server has accepted so far (this one included): other tests' idle
    connections do not blur it, as a CLIENT LIST count would."""
    with server.client() as admin:
        return int(admin.info("stats")["total_connections_received"])


def test_hot_commands_reuse_one_connection(cache: tc.Cache, redis_server: RedisServer) -> None:
    cache.set_many({f"k{i}": i for i in range(10)})
    before = connections_made(redis_server)
    for i in range(50):
        assert cache.get(f"k{i % 10}") == i % 10
        assert cache.get_many(["k1", "k2", "absent"]) == {"k1": 1, "k2": 2}
        cache.set(f"n{i}", i)
    assert len(lane_of(cache).idle) == 1
    # 150 commands, no new connection but the count's own (and at most one pooled, for scripts)
    assert connections_made(redis_server) - before <= 2
    usage = cache.engine.redis.pool_usage()  # type: ignore[union-attr]
    assert usage["in_use"] == 0
    assert usage["idle"] >= 1


def test_killed_connection_is_replaced_without_an_error(
    cache: tc.Cache, redis_server: RedisServer
) -> None:
    cache.set("k", {"v": 1})
    assert cache.get("k") == {"v": 1}
    with redis_server.client() as admin:
        killed = admin.client_kill_filter(_type="normal", skipme=True)
    assert killed >= 1
    assert cache.get("k") == {"v": 1}
    assert cache.get_many(["k"]) == {"k": {"v": 1}}
    assert cache.stats()["errors"] == 0


def test_error_reply_leaves_the_connection_in_step(
    cache: tc.Cache, redis_server: RedisServer
) -> None:
    calls: list[str] = []

    @cache.cached(ttl=60)
    def load(name: str) -> str:
        calls.append(name)
        return name.upper()

    assert load("good") == "GOOD"
    with redis_server.client() as admin:
        admin.rpush(load.cache_key("list"), "not", "an", "entry")
        admin.rpush("list", "not", "an", "entry")
    assert load("list") == "LIST"  # GET answered WRONGTYPE: an undecodable miss, then a fill
    assert cache.stats()["errors"] == 0
    assert cache.stats()["decode_errors"] >= 1
    # the same connection answers the next command with that command's reply
    assert load("good") == "GOOD"
    assert calls == ["good", "list"]
    cache.set("good", "value")
    tier = cache.engine.redis
    assert tier is not None
    with redis_server.client() as admin:
        connected = admin.info("stats")["total_connections_received"]
    assert tier.get("list") == NOT_AN_ENTRY
    listed = tier.read("list", [cache.engine.tag_key("t")])  # both replies read
    assert listed.raw == NOT_AN_ENTRY
    assert listed.versions is not None
    with pytest.raises(BackendError, match="invalid expire"):
        tier.write("x", b"payload", 0)
    assert tier.read(cache.engine.raw_key("good"), [cache.engine.tag_key("t")]).raw is not None
    assert tier.get(cache.engine.raw_key("good")) is not None
    with redis_server.client() as admin:  # an error reply does not cost the connection
        assert admin.info("stats")["total_connections_received"] == connected + 1  # the admin


def test_many_threads_stay_within_the_pool_bound(redis_url: str, redis_server: RedisServer) -> None:
    cache = tc.Cache(redis_url, namespace="lane", local_maxsize=0, max_connections=8)
    try:
        cache.set_many({f"k{i}": i for i in range(32)})
        before = connections_made(redis_server)
        lane = lane_of(cache)
        assert lane.size == 2
        wrong: list[tuple[int, Any]] = []
        start = threading.Barrier(32)

        def reader(n: int) -> None:
            start.wait()
            for _ in range(200):
                got = cache.get(f"k{n}")
                if got != n:
                    wrong.append((n, got))

        threads = [threading.Thread(target=reader, args=(n,)) for n in range(32)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert wrong == []
        assert cache.stats()["errors"] == 0
        assert len(lane.idle) <= lane.size
        assert connections_made(redis_server) - before <= 8 + 1  # the pool's bound, the count's
        usage = cache.engine.redis.pool_usage()  # type: ignore[union-attr]
        assert usage["in_use"] == 0
        assert usage["idle"] <= usage["max"] == 8
    finally:
        cache.close()


def test_small_pools_have_no_lane(redis_url: str) -> None:
    tier = RedisTier(RedisConfig.from_url(redis_url, max_connections=3), lambda: 60)
    try:
        assert tier.lane is None
        tier.write("x", b"payload", 1000)
        assert tier.get("x") == b"payload"
    finally:
        tier.close()


def _child_reads(url: str, key: str, want: bytes, conn: Any) -> None:
    tier = _FORKED[0]
    bad = sum(1 for _ in range(300) if tier.get(key) != want)
    conn.send((bad, len(tier.lane.idle) if tier.lane else -1))
    conn.close()


_FORKED: list[RedisTier] = []


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_does_not_share_the_parents_connections(redis_url: str) -> None:
    tier = RedisTier(RedisConfig.from_url(redis_url), lambda: 60)
    _FORKED[:] = [tier]
    try:
        tier.write("a", b"A" * 100, 60_000)
        tier.write("b", b"B" * 100, 60_000)
        assert tier.get("a") == b"A" * 100  # the lane now holds a connection
        assert tier.lane is not None
        assert len(tier.lane.idle) == 1
        ctx = multiprocessing.get_context("fork")
        parent_end, child_end = ctx.Pipe()
        child = ctx.Process(target=_child_reads, args=(redis_url, "b", b"B" * 100, child_end))
        child.start()
        # Both processes read at once: a shared socket would hand one side the other's replies.
        bad = sum(1 for _ in range(300) if tier.get("a") != b"A" * 100)
        child.join(30)
        assert child.exitcode == 0
        child_bad, _ = parent_end.recv()
        assert (bad, child_bad) == (0, 0)
    finally:
        _FORKED.clear()
        tier.close()


# ---------------------------------------------------------------------- asyncio


@pytest.fixture
async def atier(redis_url: str) -> AsyncIterator[AsyncRedisTier]:
    tier = AsyncRedisTier(RedisConfig.from_url(redis_url), lambda: 60)
    yield tier
    await tier.aclose()


async def test_async_commands_share_one_kept_connection(atier: AsyncRedisTier) -> None:

    for i in range(20):
        await atier.write(f"k{i}", str(i).encode(), 60_000)
    assert [await atier.get(f"k{i}") for i in range(20)] == [str(i).encode() for i in range(20)]
    assert await atier.get_many(["k1", "nope", "k2"]) == [b"1", None, b"2"]
    lane = atier.client._tta_lane
    assert len(lane.idle) == 1
    # many tasks at once: each gets its own reply, the lane keeps at most its size
    got = await asyncio.gather(*(atier.get(f"k{i % 20}") for i in range(200)))
    assert got == [str(i % 20).encode() for i in range(200)]
    assert 1 <= len(lane.idle) <= lane.size


async def test_async_killed_connection_is_replaced(
    atier: AsyncRedisTier, redis_server: RedisServer
) -> None:

    await atier.write("k", b"v", 60_000)
    assert await atier.get("k") == b"v"
    with redis_server.client() as admin:
        assert admin.client_kill_filter(_type="normal", skipme=True) >= 1
    assert await atier.get("k") == b"v"


async def test_async_cancelled_read_does_not_leave_a_reply_behind(own_redis: RedisServer) -> None:
    tier = AsyncRedisTier(RedisConfig.from_url(own_redis.url, op_timeout=5.0), lambda: 60)
    try:
        await tier.write("a", b"A", 60_000)
        await tier.write("b", b"B", 60_000)
        assert await tier.get("a") == b"A"
        own_redis.pause(0.3)
        stuck = asyncio.ensure_future(tier.get("a"))
        await asyncio.sleep(0.1)
        stuck.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stuck
        await asyncio.sleep(0.3)  # resumed: the reply to the cancelled GET arrives somewhere
        assert [await tier.get("b") for _ in range(5)] == [b"B"] * 5
    finally:
        own_redis.resume()
        await tier.aclose()


async def test_async_read_pipeline_survives_lost_scripts_and_error_replies(
    atier: AsyncRedisTier, redis_server: RedisServer
) -> None:

    await atier.write("k", b"v", 60_000)
    first = await atier.read("k", ["tag:a", "tag:b"])
    assert first.raw == b"v"
    assert first.versions is not None
    assert len(first.versions) == 2
    with redis_server.client() as admin:
        admin.script_flush()  # as after a restart or a failover to a replica
        admin.rpush("list", "x")
    again = await atier.read("k", ["tag:a", "tag:b"])
    assert (again.raw, again.versions) == (b"v", first.versions)
    with redis_server.client() as admin:
        connected = admin.info("stats")["total_connections_received"]
    assert (await atier.read("list", ["tag:a"])).raw == NOT_AN_ENTRY  # WRONGTYPE, read whole
    with pytest.raises(BackendError, match="invalid expire"):
        await atier.write("x", b"payload", 0)
    assert (await atier.read("k", ["tag:a"])).raw == b"v"
    with redis_server.client() as admin:  # the error reply cost no connection
        assert admin.info("stats")["total_connections_received"] == connected + 1
