"""TLS against real redis-servers that speak only TLS and require a client certificate
(``helpers/tls.py``, certificates made by trustme): standalone, Cluster and Sentinel, sync and
async, with the invalidation channel reaching another cache. Skipped, saying why, when the
redis-server binary was built without TLS."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

import tta_cache as tc
from helpers.redis_server import find_redis_server
from helpers.tls import (
    Certs,
    TlsClusterServers,
    TlsRedisServer,
    TlsSentinelServers,
    make_certs,
    no_tls_reason,
)

WAIT = 10.0  # seconds to wait for what should happen at once (a bound, never asserted)
# A TLS handshake on a loaded 2-core machine can outlast the default 0.25 s: these tests are
# about TLS, not latency, so a timeout must not pass for (or hide) a TLS failure.
OP_TIMEOUT = 5.0


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("tls"))


def _started(server: Any) -> Any:
    try:
        return server.start()
    except RuntimeError as exc:
        reason = no_tls_reason(exc, find_redis_server())
        if reason is None:
            raise
        pytest.skip(reason)


@pytest.fixture(scope="module")
def tls_server(certs: Certs) -> Iterator[TlsRedisServer]:
    server = _started(TlsRedisServer(certs))
    yield server
    server.stop()


@pytest.fixture
def tls_url(tls_server: TlsRedisServer, certs: Certs) -> str:
    with tls_server.client() as client:
        client.flushall()
    return f"{tls_server.url}?{certs.query()}"


@pytest.fixture
def make() -> Iterator[Callable[..., tc.Cache]]:
    made: list[tc.Cache] = []

    def factory(url: str, **options: Any) -> tc.Cache:
        options.setdefault("op_timeout", OP_TIMEOUT)
        cache = tc.Cache(url, **options)
        made.append(cache)
        return cache

    yield factory
    for cache in made:
        cache.close()


def eventually(check: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + WAIT
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def exercise(make: Callable[..., tc.Cache], url: str, **options: Any) -> None:
    """Caching, raw access, leases and an invalidation that must reach a second cache."""
    source = {"mood": "calm"}
    a, b = make(url, **options), make(url, **options)
    calls: list[str] = []

    def loader(cache: tc.Cache) -> Any:
        @cache.cached(kind="emotional", tags=("user:{user_id}",), lock=True)
        def mood(user_id: str) -> str:
            calls.append(user_id)
            return source["mood"]

        return mood

    load_a, load_b = loader(a), loader(b)
    assert a.wait_ready(WAIT)
    assert b.wait_ready(WAIT)
    assert load_a("u1") == "calm"
    assert load_b("u1") == "calm"  # from Redis, over TLS
    assert calls == ["u1"]
    a.set_many({"k1": 1, "k2": 2}, tags=["user:u1"])
    assert b.get_many(["k1", "k2"]) == {"k1": 1, "k2": 2}
    source["mood"] = "anxious"
    received = b.stats()["invalidations"]["received"]
    a.invalidate(user="u1")
    # b hears it on its own channel connection (TLS): the message itself, and what it drops
    # (the count goes up just before the versions are merged, hence both in one condition).
    assert eventually(
        lambda: b.stats()["invalidations"]["received"] > received and load_b("u1") == "anxious"
    ), "the invalidation did not reach b"
    for cache in (a, b):
        stats = cache.stats()
        assert stats["errors"] == 0, stats["errors_by_type"]
        assert stats["channel"]["channel"] == "up"


def test_standalone_over_tls_with_options_in_the_url(
    make: Callable[..., tc.Cache], tls_url: str
) -> None:
    exercise(make, tls_url)


def test_standalone_over_tls_with_options_as_keywords(
    make: Callable[..., tc.Cache], tls_server: TlsRedisServer, tls_url: str, certs: Certs
) -> None:
    exercise(make, tls_server.url, redis_options=certs.options())


async def test_async_over_tls(make: Callable[..., tc.Cache], tls_url: str) -> None:
    cache = make(tls_url)
    await cache.aset("k", {"v": 1}, kind="therapeutic")
    assert cache.stats()["errors"] == 0, cache.stats()["errors_by_type"]
    assert await cache.aget_many(["k"], kind="therapeutic") == {"k": {"v": 1}}

    @cache.cached(kind="session", tags=("session:{session_id}",))
    async def session(session_id: str) -> str:
        return session_id

    assert await session("s1") == "s1"
    await cache.ainvalidate(session="s1")
    assert cache.stats()["errors"] == 0
    await cache.aclose()


def test_health_reports_the_tls_server_and_the_cli_reaches_it(
    make: Callable[..., tc.Cache], tls_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = make(tls_url)  # "slow" is a PING over half of op_timeout: not a TLS matter
    assert cache.wait_ready(WAIT)
    report = cache.health()
    assert report["overall_status"] == "healthy", report["reasons"]
    from tta_cache.cli import main

    assert main(["--redis-url", tls_url, "health"]) == 0
    assert "healthy" in capsys.readouterr().out


def test_the_server_certificate_is_verified(
    make: Callable[..., tc.Cache], tls_server: TlsRedisServer, certs: Certs, tmp_path: Path
) -> None:
    # A CA that did not sign the server's certificate: every connection fails, fail-open.
    other = make_certs(tmp_path)
    options = {**certs.options(), "ssl_ca_certs": str(other.ca)}
    cache = make(tls_server.url, redis_options=options)
    assert cache.get("k") is None
    assert cache.stats()["errors"] >= 1
    with pytest.raises(tc.BackendError, match=r"certificate verify failed|SSL"):
        cache.set("k", 1, on_error="raise")


def test_a_client_without_a_certificate_is_refused(
    make: Callable[..., tc.Cache], tls_server: TlsRedisServer, certs: Certs
) -> None:
    cache = make(tls_server.url, redis_options={"ssl_ca_certs": str(certs.ca)})
    with pytest.raises(tc.BackendError):
        cache.set("k", 1, on_error="raise")


def test_plain_tcp_does_not_reach_a_tls_only_server(tls_server: TlsRedisServer) -> None:
    with (
        redis.Redis(host="127.0.0.1", port=tls_server.port, socket_timeout=1.0) as plain,
        pytest.raises(redis.RedisError),
    ):
        plain.ping()


# ---------------------------------------------------------------------- Cluster and Sentinel


@pytest.fixture(scope="module")
def tls_cluster(certs: Certs) -> Iterator[TlsClusterServers]:
    cluster = _started(TlsClusterServers(certs))
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def tls_sentinel(certs: Certs) -> Iterator[TlsSentinelServers]:
    servers = _started(TlsSentinelServers(certs))
    yield servers
    servers.stop()


@pytest.mark.slow
def test_cluster_over_tls(
    make: Callable[..., tc.Cache], tls_cluster: TlsClusterServers, certs: Certs
) -> None:
    tls_cluster.flushall()
    exercise(make, f"{tls_cluster.url}?{certs.query()}")


@pytest.mark.slow
def test_sentinel_over_tls(
    make: Callable[..., tc.Cache], tls_sentinel: TlsSentinelServers, certs: Certs
) -> None:
    with tls_sentinel.master.client() as client:
        client.flushall()
    exercise(make, f"{tls_sentinel.url}?{certs.query()}")
