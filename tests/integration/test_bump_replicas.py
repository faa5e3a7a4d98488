"""``bump_replicas``: an invalidation the replicas did not take is not trusted (issue 13, I1).

Redis replicates asynchronously: a tag bump the master acknowledged can be missing from the
replica a failover promotes, and with it the invalidation. The loss is played here on real
servers, a master and its replica: the replica is detached (``REPLICAOF NO ONE``) before the
invalidation, so it never gets the bump, then what the replica holds (the tag's old version,
the entry computed before the invalidation) is written back over the master, as a failover
onto that replica would leave it, and the cache's channel is dropped so that it rebuilds its
tag map from Redis. Without ``bump_replicas`` the issuer finds the loss only when it reads the
tag again (the version went back below one it had seen) and then invalidates again; with it,
the invalidation stayed queued (I8) from the start, in the issuer and in every process that
heard it, so none serves what it covers until a replica has taken it again.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import time
import uuid
from collections.abc import Callable, Iterator
from multiprocessing.synchronize import Event
from typing import Any

import pytest

import tta_cache as tc
from helpers.redis_server import RedisServer
from helpers.waiting import eventually, reconnected
from tta_cache.exceptions import ConfigurationError, NotReplicated

pytestmark = pytest.mark.redis


def wait_for(predicate: Callable[[], object], what: str, timeout: float = 15.0) -> None:
    if not eventually(predicate, timeout):
        raise TimeoutError(what)


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


def _loss_played(
    pair: tuple[RedisServer, RedisServer],
    lost: Callable[[], object] = lambda: None,
    **options: Any,
) -> tuple[tc.Cache, Callable[[], int], dict[str, int]]:
    """Fill, detach the replica, invalidate, recompute, then leave the master as the detached
    replica is (the failover; ``lost`` runs right after) and rebuild the channel. Returns the
    cache, the loader and the source of truth (with ``lost_version``, the tag's version the
    invalidation returned)."""
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
    truth["lost_version"] = cache.engine.versions.get("session:s1") or 0
    assert load("s1") == 2  # this process's own invalidation is read (I1)
    before = cache.stats()["channel"]["reconnects"]
    _copy_back([key, tag_key], replica, master)  # the promoted replica's data: v, entry 1
    lost()
    cache.engine.link.kick()
    wait_for(reconnected(cache, before), "channel back")
    return cache, lambda: load("s1"), truth


def test_without_bump_replicas_the_issuer_reissues_the_lost_bump_when_it_reads_the_tag(
    pair: tuple[RedisServer, RedisServer],
) -> None:
    """The default: nothing is queued when the invalidation returns, so the loss is only found
    when this process next reads the tag and Redis shows an older version than it had seen
    (``TagVersions`` floors, ``test_own_invalidation.py``); a process that never saw the lost
    version cannot find it, which is what ``bump_replicas`` is for."""
    cache, load, _ = _loss_played(pair)
    try:
        assert cache.stats()["invalidations"]["queued"] == 0  # nothing held it until the read
        assert load() == 2  # the read found the version gone back and invalidated again
        assert cache.stats()["adopted_invalidations"]["reissued"] == 1
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


class _Observer:
    """Every version published on the master, split by fences: a fence is a PUBLISH on a
    channel of its own, and one connection's subscriber hears messages in the order the server
    took them, so what arrives before a fence was published before it."""

    def __init__(self, master: RedisServer) -> None:
        self._client = master.client()
        self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        self._pubsub.psubscribe("*")
        assert self._pubsub.get_message(timeout=5.0) is None  # the psubscribe confirmed

    def until_fence(self) -> list[int]:
        token = uuid.uuid4().hex
        self._client.publish(FENCE, token)
        versions: list[int] = []
        deadline = time.monotonic() + 15.0
        while time.monotonic() < deadline:
            message = self._pubsub.get_message(timeout=1.0)
            if message is None:
                continue
            if message["channel"] == FENCE.encode():
                if message["data"] == token.encode():
                    return versions
                continue
            data = json.loads(message["data"])
            versions.extend(int(v) for v in data.get("v") or ())
        raise TimeoutError("fence")

    def close(self) -> None:
        self._pubsub.close()
        self._client.close()


FENCE = "test-fence"


def test_the_retried_bump_is_a_version_the_lost_history_never_issued(
    pair: tuple[RedisServer, RedisServer],
) -> None:
    """Versions move to the server clock, so no bump on the surviving data can reissue a number
    the lost history issued: an entry stamped with one (kept in some L1 from the lost history)
    can never match again. With INCR the retry on the restored ``v`` reissues ``v+1``, the lost
    invalidation's own number."""
    master, replica = pair
    observer = _Observer(master)
    before: list[int] = []
    try:
        cache, _, truth = _loss_played(
            pair, lambda: before.extend(observer.until_fence()), bump_replicas=1
        )
        try:
            assert truth["lost_version"] in before  # the lost invalidation was heard
            _attach(replica, master)
            wait_for(lambda: cache.engine.queued == 0, "the queued bump taken by a replica")
            after = observer.until_fence()
            assert after  # the retry that the replica took, at least
            assert min(after) > max(before), (before, after)
        finally:
            cache.close()
    finally:
        observer.close()


def _session_loader(cache: tc.Cache, truth: Any) -> Any:
    """The same cached function (the same key) in both processes."""

    @cache.cached(kind="session", tags=("session:{session_id}",))
    def load(session_id: str) -> int:
        return int(truth.value)

    return load


def _listener(url: str, truth: Any, filled: Event, heard: Event, lost: Event, out: Any) -> None:
    """Another process: fill entry 1, hear the invalidation, then after the loss report what it
    serves and whether it had taken the unreplicated invalidation over."""
    cache = tc.Cache(url, op_timeout=0.25, health_check_interval=0, bump_replicas=1)
    load = _session_loader(cache, truth)
    try:
        assert cache.wait_ready(10.0)
        assert load("s1") == 1
        filled.set()
        wait_for(lambda: cache.stats()["invalidations"]["received"] >= 1, "the invalidation heard")
        deadline = time.monotonic() + 5.0  # the announcement follows the bump's own message
        while not (adopted := cache.stats()["adopted_invalidations"]["adopted"]):
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)
        heard.set()
        assert lost.wait(30.0)
        before = cache.stats()["channel"]["reconnects"]
        cache.engine.link.kick()
        wait_for(reconnected(cache, before), "channel back")
        out.put({"served": [load("s1") for _ in range(5)], "adopted": adopted})
    finally:
        cache.close()


def test_another_process_that_heard_an_unreplicated_bump_holds_it_through_the_loss(
    pair: tuple[RedisServer, RedisServer],
) -> None:
    """The issuer announces an invalidation no replica acknowledged; a process that heard it
    queues it too (I8), so when a failover loses it and that process rebuilds its map from the
    promoted data, it serves nothing the invalidation covered (entry 1 stays in its L1)."""
    master, replica = pair
    ctx = multiprocessing.get_context("spawn")
    truth = ctx.RawValue("q", 1)
    filled, heard, lost = ctx.Event(), ctx.Event(), ctx.Event()
    out = ctx.Queue()
    child = ctx.Process(target=_listener, args=(master.url, truth, filled, heard, lost, out))
    child.start()
    cache = tc.Cache(master.url, op_timeout=0.25, health_check_interval=0, bump_replicas=1)
    try:
        load = _session_loader(cache, truth)
        assert cache.wait_ready(10.0)
        assert filled.wait(30.0)
        key, tag_key = load.cache_key("s1"), cache.engine.tag_key("session:s1")
        with master.client() as admin:
            assert admin.execute_command("WAIT", 1, 5000) == 1  # the replica: entry 1 and v
        _detach(replica)
        truth.value = 2
        cache.invalidate(session="s1")  # not replicated: queued here, announced
        assert heard.wait(30.0)
        _copy_back([key, tag_key], replica, master)  # the failover's data: v, entry 1
        lost.set()
        got = out.get(timeout=30.0)
        child.join(30.0)
        assert child.exitcode == 0
        assert got["served"] == [2] * 5  # never entry 1
        assert got["adopted"] >= 1
    finally:
        if child.is_alive():
            child.kill()
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
