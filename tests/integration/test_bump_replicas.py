"""``bump_replicas``: an invalidation the replicas did not take is not trusted (issue 13, I1).

Redis replicates asynchronously: a tag bump the master acknowledged can be missing from the
replica a failover promotes, and with it the invalidation. The loss is played here on real
servers, a master and its replica: the replica is detached (``REPLICAOF NO ONE``) before the
invalidation, so it never gets the bump, then what the replica holds (the tag's old version,
the entry computed before the invalidation) is written back over the master, as a failover
onto that replica would leave it, and the cache's channel is dropped so that it rebuilds its
tag map from Redis. Without ``bump_replicas`` the issuer then serves the value its own returned
invalidation covered; with it, the invalidation stayed queued (I8), so it serves nothing the
invalidation covers until a replica has taken it again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from tests.helpers.redis_server import RedisServer

import tta_cache as tc
from tta_cache.exceptions import ConfigurationError, NotReplicated

pytestmark = pytest.mark.redis


def wait_for(predicate: Callable[[], object], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.01)


def _linked(replica: RedisServer) -> bool:
    with replica.client(decode_responses=True) as client:
        return bool(client.info("replication").get("master_link_status") == "up")


@pytest.fixture
def pair() -> Iterator[tuple[RedisServer, RedisServer]]:
    with RedisServer() as master:
        replica = RedisServer("--replicaof", master.host, str(master.port))
        with replica:
            wait_for(lambda: _linked(replica), "replica in sync")
            yield master, replica


def _attach(replica: RedisServer, master: RedisServer) -> None:
    with replica.client() as client:
        client.replicaof(master.host, master.port)
    wait_for(lambda: _linked(replica), "replica in sync again")


def _detach(replica: RedisServer) -> None:
    with replica.client() as client:
        client.replicaof("NO", "ONE")


def _copy_back(keys: list[str], source: RedisServer, target: RedisServer) -> None:
    """What ``source`` holds at ``keys`` written over ``target`` (a failover onto it)."""
    with source.client() as src, target.client() as dst:
        for key in keys:
            value, ttl = src.get(key), src.pttl(key)
            assert value is not None, key
            dst.set(key, value, px=ttl if ttl > 0 else None)


def _reconnected(cache: tc.Cache, before: int) -> Callable[[], bool]:
    def done() -> bool:
        channel = cache.stats()["channel"]
        return bool(channel["reconnects"] > before and channel["channel"] == "up")

    return done


def _loss_played(
    pair: tuple[RedisServer, RedisServer], **options: Any
) -> tuple[tc.Cache, Callable[[], int], dict[str, int]]:
    """Fill, detach the replica, invalidate, recompute, then leave the master as the detached
    replica is (the failover) and rebuild the channel. Returns the cache, the loader and the
    source of truth."""
    master, replica = pair
    truth = {"s1": 1}
    cache = tc.Cache(master.url, op_timeout=0.25, health_check_interval=0, **options)

    @cache.cached(kind="session", tags=("session:{session_id}",))
    def load(session_id: str) -> int:
        return truth[session_id]

    assert cache.wait_ready(10.0)
    assert load("s1") == 1  # entry 1, stamped with the tag's version v
    key, tag_key = load.cache_key("s1"), cache.engine.tag_key("session:s1")
    with master.client() as admin:
        assert admin.execute_command("WAIT", 1, 5000) == 1  # the replica holds entry 1 and v
    _detach(replica)
    truth["s1"] = 2
    cache.invalidate(session="s1")  # returns: v+1 on the master only
    assert load("s1") == 2  # this process's own invalidation is read (I1)
    before = cache.stats()["channel"]["reconnects"]
    _copy_back([key, tag_key], replica, master)  # the promoted replica's data: v, entry 1
    cache.engine.link.kick()
    wait_for(_reconnected(cache, before), "channel back")
    return cache, lambda: load("s1"), truth


def test_without_bump_replicas_a_lost_bump_brings_back_what_it_invalidated(
    pair: tuple[RedisServer, RedisServer],
) -> None:
    """The default's limit, shown so that the test below is known to be able to fail."""
    cache, load, _ = _loss_played(pair)
    try:
        assert cache.stats()["invalidations"]["queued"] == 0
        assert load() == 1  # computed before an invalidation this process saw return
    finally:
        cache.close()


def test_with_bump_replicas_an_unreplicated_bump_stays_queued_and_covers_its_entries(
    pair: tuple[RedisServer, RedisServer],
) -> None:
    master, replica = pair
    cache, load, _ = _loss_played(pair, bump_replicas=1)
    try:
        stats = cache.stats()
        assert stats["invalidations"]["queued"] >= 1
        assert stats["breaker"]["state"] == "closed"  # a replica behind is not Redis down
        assert [load() for _ in range(5)] == [2] * 5  # held (I8): never entry 1
        _attach(replica, master)
        wait_for(lambda: cache.engine.queued == 0, "the queued bump taken by a replica")
        with replica.client() as client:
            tag_key = cache.engine.tag_key("session:s1")
            assert int(client.get(tag_key) or 0) >= 2  # the replica has the bump now
        assert [load() for _ in range(5)] == [2] * 5
    finally:
        cache.close()


def test_bump_replicas_acknowledged_is_a_plain_invalidation(
    pair: tuple[RedisServer, RedisServer],
) -> None:
    master, replica = pair
    cache = tc.Cache(f"{master.url}?bump_replicas=1", health_check_interval=0)
    try:
        assert cache.engine.redis is not None
        assert cache.engine.redis.cfg.bump_replicas == 1
        cache.invalidate(session="s1")
        assert cache.engine.queued == 0
        assert cache.stats()["invalidations"]["queued"] == 0
        with replica.client() as client:
            assert client.get(cache.engine.tag_key("session:s1")) is not None
    finally:
        cache.close()


def test_async_invalidate_not_replicated_is_queued_and_raised_when_asked(
    pair: tuple[RedisServer, RedisServer],
) -> None:
    master, replica = pair
    _detach(replica)
    cache = tc.Cache(master.url, bump_replicas=1, op_timeout=0.25, health_check_interval=0)

    async def main() -> None:
        await cache.ainvalidate(session="s1")  # fail-open: returns, queued
        assert cache.engine.queued >= 1
        with pytest.raises(NotReplicated) as info:
            await cache.ainvalidate(session="s2", on_error="raise")
        assert len(info.value.versions) == 1
        assert info.value.versions[0] >= 1
        await cache.aclose()

    try:
        asyncio.run(main())
    finally:
        cache.close()


@pytest.mark.parametrize("given", [-1, "1", True, 1.5])
def test_bump_replicas_must_be_a_count(given: object) -> None:
    with pytest.raises(ConfigurationError, match="bump_replicas"):
        tc.Cache("redis://127.0.0.1:1/0", bump_replicas=given)  # type: ignore[arg-type]


def test_bump_replicas_is_refused_on_cluster() -> None:
    with pytest.raises(ConfigurationError, match="Cluster"):
        tc.Cache("redis+cluster://127.0.0.1:1", bump_replicas=1)


def test_bump_replicas_in_the_url_must_be_an_int() -> None:
    with pytest.raises(ConfigurationError, match="bump_replicas"):
        tc.Cache("redis://127.0.0.1:1/0?bump_replicas=two")


def test_redis_py_wait_is_answered_by_a_standalone_master(
    pair: tuple[RedisServer, RedisServer],
) -> None:
    """The yardstick the option relies on: WAIT counts the replicas that took this
    connection's writes."""
    master, replica = pair
    with master.client() as client:
        client.set("k", "v")
        assert client.execute_command("WAIT", 1, 5000) == 1
        _detach(replica)
        client.set("k", "w")
        assert client.execute_command("WAIT", 1, 100) == 0
