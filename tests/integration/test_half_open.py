"""A half-open invalidation channel (issue 13): the socket stays open, nothing arrives.

The channel's PING must be answered within a bound, else the map is distrusted (L1 serves no
tagged entry) and the channel reconnected. Through the fault proxy's blackhole.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from tests.helpers.proxy import TcpProxy
from tests.helpers.redis_server import RedisServer

import tta_cache as tc

# PING every ping_interval, answered within ping_deadline: a silent cut is caught within their
# sum after the last thing that arrived, plus one wait on the socket.
DETECTION_BOUND = 0.75


def test_a_blackholed_channel_is_distrusted_within_the_ping_bound(
    redis_server: RedisServer, redis_url: str, proxy_factory: Callable[[int], TcpProxy]
) -> None:
    proxy = proxy_factory(redis_server.port)
    cache = tc.Cache(proxy.url, namespace="halfopen", op_timeout=0.25)
    try:
        assert cache.wait_ready(10.0)
        versions = cache.engine.versions
        assert versions.trusted
        proxy.blackhole()
        t0 = time.monotonic()
        deadline = t0 + 30.0
        while versions.trusted and time.monotonic() < deadline:
            time.sleep(0.001)
        detected = time.monotonic() - t0
        print(f"half-open channel detected after {detected * 1000:.0f} ms")
        assert not versions.trusted, "a blackholed channel is trusted for 30 s"
        assert detected <= DETECTION_BOUND, f"detected after {detected:.3f}s"
        proxy.heal()
        assert cache.wait_ready(15.0), "the channel did not come back after the heal"
        assert versions.trusted
    finally:
        cache.close()
