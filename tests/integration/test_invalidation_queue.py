"""I8 under a race: an invalidation that fails while a retry of the same tag is on the wire.

The queue's retry sends what it holds; meanwhile the data changes again and a new invalidation
of the same tag fails (Redis cut). The retry's bump reached Redis *before* that change, so when
the retry returns it must not take the new invalidation out of the queue with its own: that
would lose it (found by the chaos soak: reads older than the issuing process's own returned
invalidation, I1). Played on a real server through the fault proxy; the channel thread's real
retry is held between its bump and its bookkeeping with Events.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

import tta_cache as tc
from helpers.proxy import TcpProxy
from helpers.waiting import eventually, reconnected

pytestmark = pytest.mark.redis


def _loader(cache: tc.Cache, truth: dict[str, int]) -> Any:
    """The same cached function (the same key) for both caches."""

    @cache.cached(kind="user", tags=("user:{user_id}",))
    def load(user_id: str) -> int:
        return truth[user_id]

    return load


def _fail_an_invalidation(cache: tc.Cache, proxy: TcpProxy) -> None:
    proxy.refuse()
    proxy.cut()
    queued = cache.engine.queued
    cache.invalidate(user="u1")  # fail-open: returns, queued (I8)
    assert cache.engine.queued >= max(queued, 1)


def test_an_invalidation_failing_during_a_retry_of_its_tag_stays_queued(
    redis_proxy: TcpProxy, redis_url: str
) -> None:
    truth = {"u1": 1}
    issuer = tc.Cache(redis_proxy.url, op_timeout=0.25, health_check_interval=0)
    other = tc.Cache(redis_url, op_timeout=0.25, health_check_interval=0)
    try:
        load, load_other = _loader(issuer, truth), _loader(other, truth)
        assert issuer.wait_ready(10.0)
        assert other.wait_ready(10.0)
        assert load("u1") == 1

        truth["u1"] = 2
        _fail_an_invalidation(issuer, redis_proxy)

        landed, proceed = threading.Event(), threading.Event()
        deliver = issuer.engine._deliver

        def held(tags: list[str], keys: list[str]) -> None:
            deliver(tags, keys)  # the retry's bump is in Redis: it covers 2, not what follows
            if not landed.is_set():
                landed.set()
                assert proceed.wait(30.0)

        issuer.engine._deliver = held  # type: ignore[method-assign]
        redis_proxy.heal()
        assert landed.wait(30.0)  # the channel is back and its thread retried
        assert load_other("u1") == 2  # cached in Redis under the retry's version

        truth["u1"] = 3
        _fail_an_invalidation(issuer, redis_proxy)  # while the retry is still on the wire
        before = issuer.stats()["channel"]["reconnects"]
        proceed.set()  # the retry's bookkeeping, then the channel thread finds its socket cut
        redis_proxy.heal()
        assert eventually(reconnected(issuer, before)), "the channel thread went on"

        assert [load("u1") for _ in range(3)] == [3] * 3  # I1: never 2
        assert eventually(lambda: issuer.engine.queued == 0), "the second invalidation lands"
        assert load("u1") == 3
        assert eventually(lambda: load_other("u1") == 3), "and reaches the other cache (I8)"
    finally:
        issuer.close()
        other.close()
