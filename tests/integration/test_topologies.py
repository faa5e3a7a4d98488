"""The cache over Redis Cluster and Sentinel: caching, raw access and cross-cache invalidation."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

import tta_cache as tc
from helpers.redis_server import RedisServer
from helpers.waiting import eventually

WAIT = 10.0


@pytest.fixture(params=["cluster", "sentinel"])
def topology_url(request: pytest.FixtureRequest) -> str:
    name = "redis_cluster_url" if request.param == "cluster" else "redis_sentinel_url"
    url: str = request.getfixturevalue(name)
    return url


def test_a_multi_tag_invalidation_reaches_another_cache(topology_url: str) -> None:
    # Regression: in a cluster each tag key is bumped by its own script, which must publish its
    # own tag; a message listing every tag with one version left the other tags stale elsewhere.
    source = {"s1": "v1"}
    namespace = f"topo{time.monotonic_ns() % 10**9}"
    with (
        tc.Cache(topology_url, namespace=namespace, op_timeout=2.0) as writer,
        tc.Cache(topology_url, namespace=namespace, op_timeout=2.0) as reader,
    ):
        assert writer.wait_ready(WAIT)
        assert reader.wait_ready(WAIT)

        @reader.cached(kind="character", tags=("session:{sid}", "user:{uid}"))
        def load(sid: str, uid: str) -> str:
            return source[sid]

        assert load("s1", "u1") == "v1"
        assert load("s1", "u1") == "v1"  # cached: L1
        assert reader.stats()["computations"] == 1
        for version in ("v2", "v3"):
            source["s1"] = version
            writer.invalidate(user="u1", session="s1")
            assert eventually(lambda v=version: load("s1", "u1") == v), reader.stats()
            source["s1"] = version  # both tags moved: either one alone would also do
            writer.invalidate(session="s1")
            assert eventually(lambda v=version: load("s1", "u1") == v)
        source["s1"] = "v4"
        writer.delete_keys([load.cache_key("s1", "u1")])  # a per-call invalidation, sync
        assert eventually(lambda: load("s1", "u1") == "v4")


def test_raw_access_and_async_calls_work(topology_url: str) -> None:
    namespace = f"raw{time.monotonic_ns() % 10**9}"

    async def scenario() -> None:
        async with tc.Cache(topology_url, namespace=namespace, op_timeout=2.0) as cache:
            calls = 0

            @cache.cached_session
            async def load_session(session_id: str) -> dict[str, str]:
                nonlocal calls
                calls += 1
                return {"id": session_id}

            assert await load_session("s9") == {"id": "s9"}
            assert await load_session("s9") == {"id": "s9"}
            assert calls == 1
            await cache.aset_many({f"k{i}": i for i in range(20)}, tags=["custom:x"])
            assert await cache.aget_many([f"k{i}" for i in range(20)] + ["absent"]) == {
                f"k{i}": i for i in range(20)
            }
            # keys in several Cluster slots: one DEL each, then the message
            await cache.adelete_keys([cache.engine.raw_key(k) for k in ("k1", "k2")])
            assert await cache.aget_many(["k1", "k2", "k3"]) == {"k3": 3}
            await cache.ainvalidate(tags=["custom:x"])
            assert await cache.aget("k3", "gone") == "gone"
            assert cache.stats()["errors"] == 0

    asyncio.run(scenario())


async def test_a_unix_socket_url_serves_sync_and_async(tmp_path: Path) -> None:
    sock = tmp_path / "redis.sock"
    with RedisServer("--unixsocket", str(sock), "--unixsocketperm", "700") as server:
        cache = tc.Cache(f"unix://{sock}?db=0&pool_timeout=3", namespace="unix")
        try:
            assert cache.engine.redis is not None
            assert cache.engine.redis.cfg.pool_timeout == 3  # ours, not handed to redis-py

            @cache.cached(ttl=60)
            def square(n: int) -> int:
                return n * n

            assert [square(3), square(3)] == [9, 9]
            cache.set("k", {"v": 1})
            assert cache.get_many(["k"]) == {"k": {"v": 1}}
            assert await cache.aget("k") == {"v": 1}
            with server.client() as admin:  # the entries are in this server, reached by socket
                assert admin.exists(cache.engine.raw_key("k")) == 1
                assert admin.exists(square.cache_key(3)) == 1
            assert cache.stats()["errors"] == 0
        finally:
            await cache.aclose()
