"""Fixtures that start real redis-server processes (never the one on 6379) and fault proxies.

Tests that use any of them are marked ``redis`` automatically: ``pytest -m "not redis"`` runs the
pure tests without starting a server.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from helpers.postgres import PostgresServer, find_postgres
from helpers.proxy import TcpProxy
from helpers.redis_server import RedisClusterServers, RedisSentinelServers, RedisServer

REDIS_FIXTURES = frozenset(
    {
        "redis_server",
        "redis_url",
        "own_redis",
        "redis_proxy",
        "proxy_factory",
        "redis_cluster",
        "redis_cluster_url",
        "redis_sentinel",
        "redis_sentinel_url",
    }
)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # tryfirst: the mark must be on the item before `-m` deselects.
    for item in items:
        if REDIS_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.redis)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the whole session, on a free loopback port."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session server's URL, its keyspace emptied for this test."""
    # A test that broke the shared server must not break the ones after it.
    redis_server.resume()
    redis_server.start()
    with redis_server.client() as client:
        client.flushall()
    return redis_server.url


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own, free to kill, restart or pause."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def proxy_factory() -> Iterator[Callable[[int], TcpProxy]]:
    """Make started ``TcpProxy`` objects in front of a port; all are stopped after the test."""
    proxies: list[TcpProxy] = []

    def make(target_port: int) -> TcpProxy:
        proxy = TcpProxy(target_port).start()
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.stop()


@pytest.fixture
def redis_proxy(
    redis_server: RedisServer, redis_url: str, proxy_factory: Callable[[int], TcpProxy]
) -> TcpProxy:
    """A ``TcpProxy`` in front of the (emptied) session server; ``redis_proxy.url`` to connect."""
    return proxy_factory(redis_server.port)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL server for the session (skipped, with the reason, when the
    machine has no initdb/postgres binaries); never the machine's own on 5432."""
    bindir, why = find_postgres()
    if bindir is None:
        pytest.skip(f"PostgreSQL tests skipped: {why}")
    with PostgresServer(bindir) as server:
        yield server


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterServers]:
    """A three-master Redis Cluster for the session, started on first use."""
    with RedisClusterServers() as cluster:
        yield cluster


@pytest.fixture
def redis_cluster_url(redis_cluster: RedisClusterServers) -> str:
    """The cluster's ``redis+cluster://`` URL, every master emptied for this test."""
    redis_cluster.flushall()
    return redis_cluster.url


@pytest.fixture(scope="session")
def redis_sentinel() -> Iterator[RedisSentinelServers]:
    """A master and a Sentinel for the session, started on first use."""
    with RedisSentinelServers() as servers:
        yield servers


@pytest.fixture
def redis_sentinel_url(redis_sentinel: RedisSentinelServers) -> str:
    """The ``redis+sentinel://`` URL, the master emptied for this test."""
    with redis_sentinel.master.client() as client:
        client.flushall()
    return redis_sentinel.url
