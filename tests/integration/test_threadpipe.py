"""Auto-pipelining for threads (``tiers/redis/threadpipe.py``), against a real Redis: threads that
call while another's command is on the wire go out as one pipeline, each gets its own replies
(an error reply only to its own caller), a failed batch fails each of its callers, and
``pipelining=False`` keeps the plain lane.

The wire is held busy deterministically: a lone ``BLPOP`` sent on the lane blocks until the test
pushes to its list, and the test waits until the callers it started are queued.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis

import tta_cache as tc
from helpers.redis_server import RedisServer
from helpers.waiting import eventually
from tta_cache.exceptions import BackendError
from tta_cache.tiers import RedisConfig, RedisTier
from tta_cache.tiers.redis.lane import Lane
from tta_cache.tiers.redis.threadpipe import ThreadPipe

pytestmark = pytest.mark.redis

CALLERS = 16


def _tier(url: str, **options: Any) -> RedisTier:
    return RedisTier(RedisConfig.from_url(url, op_timeout=30.0, **options), lambda: 60)


def _pipe(tier: RedisTier) -> ThreadPipe:
    assert isinstance(tier.lane, ThreadPipe)
    return tier.lane


@pytest.fixture
def tier(redis_url: str) -> Iterator[RedisTier]:
    made = _tier(redis_url)
    made.client.delete("held")
    made.client.mset({f"t{i}": f"v{i}" for i in range(CALLERS)})
    yield made
    made.close()


def _held(tier: RedisTier) -> threading.Thread:
    """A lone call that keeps the wire busy until ``_release``."""
    blocker = threading.Thread(target=lambda: tier.lane.call("BLPOP", "held", 0))  # type: ignore[union-attr]
    blocker.start()
    assert eventually(lambda: _pipe(tier).busy)
    return blocker


def _release(tier: RedisTier, blocker: threading.Thread) -> None:
    tier.client.rpush("held", "go")  # a pooled connection: not the lane's
    blocker.join(30)
    assert not blocker.is_alive()


def _callers(calls: list[Any], target: Any) -> list[threading.Thread]:
    threads = [threading.Thread(target=target, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    return threads


def test_threads_queued_behind_the_wire_share_one_pipeline_and_each_gets_its_own(
    tier: RedisTier,
) -> None:
    pipe = _pipe(tier)
    got: list[Any] = [None] * CALLERS
    blocker = _held(tier)

    def read(i: int) -> None:
        got[i] = pipe.pipeline(("GET", f"t{i}"), ("STRLEN", f"t{i}"))

    threads = _callers(got, read)
    assert eventually(lambda: len(pipe.queue) == CALLERS)  # all queued behind the BLPOP
    _release(tier, blocker)
    for thread in threads:
        thread.join(30)
    assert got == [[f"v{i}".encode(), len(f"v{i}")] for i in range(CALLERS)]
    assert pipe.batches == 1  # every queued caller in one pipeline
    assert not pipe.busy
    assert not pipe.queue


def test_an_error_reply_goes_to_its_own_caller_only(tier: RedisTier) -> None:
    pipe = _pipe(tier)
    tier.client.set("text", "not a number")
    got: list[Any] = [None] * CALLERS
    blocker = _held(tier)

    def call(i: int) -> None:
        try:
            got[i] = pipe.call("INCR", "text") if i == 3 else pipe.call("GET", f"t{i}")
        except redis.ResponseError as exc:
            got[i] = exc

    threads = _callers(got, call)
    assert eventually(lambda: len(pipe.queue) == CALLERS)
    _release(tier, blocker)
    for thread in threads:
        thread.join(30)
    assert isinstance(got[3], redis.ResponseError)
    assert [g for i, g in enumerate(got) if i != 3] == [
        f"v{i}".encode() for i in range(CALLERS) if i != 3
    ]


def test_a_failed_batch_fails_each_caller_and_the_next_call_is_clean() -> None:
    with RedisServer() as server:
        tier = _tier(server.url, connect_timeout=1.0)
        pipe = _pipe(tier)
        tier.client.set("t0", "v0")
        outcomes: list[Any] = [None] * CALLERS
        blocker = threading.Thread(target=_swallow, args=(tier,))
        blocker.start()
        assert eventually(lambda: pipe.busy)

        def read(i: int) -> None:
            try:
                outcomes[i] = tier.get("t0")
            except BackendError as exc:
                outcomes[i] = exc

        threads = _callers(outcomes, read)
        assert eventually(lambda: len(pipe.queue) == CALLERS)
        server.kill()  # the BLPOP and the batch behind it both fail
        for thread in [blocker, *threads]:
            thread.join(30)
        assert all(isinstance(o, BackendError) for o in outcomes), outcomes
        assert len({id(o.__cause__) for o in outcomes}) == CALLERS  # one error each, not shared
        assert not pipe.busy
        assert not pipe.queue
        server.restart()
        tier.client.set("t0", "v0")
        assert tier.get("t0") == b"v0"
        tier.close()


def _swallow(tier: RedisTier) -> None:
    with contextlib.suppress(redis.RedisError):
        tier.lane.call("BLPOP", "held", 0)  # type: ignore[union-attr]


def test_pipelining_false_keeps_the_plain_lane(redis_url: str) -> None:
    tier = _tier(redis_url, pipelining=False)
    try:
        assert type(tier.lane) is Lane
    finally:
        tier.close()
    cache = tc.Cache(redis_url, namespace="threadpipe", local_maxsize=0, pipelining=False)
    try:
        assert type(cache.engine.redis.lane) is Lane  # type: ignore[union-attr]
    finally:
        cache.close()


def test_a_cache_read_by_32_threads_gives_each_its_own_value(redis_url: str) -> None:
    cache = tc.Cache(redis_url, namespace="threadpipe", local_maxsize=0)
    computed: list[int] = []

    @cache.cached(kind="character")
    def load(i: int) -> list[int]:
        computed.append(i)
        return [i, i * i]

    try:
        for i in range(32):
            load(i)  # fill Redis
        start = threading.Barrier(32)
        wrong: list[Any] = []

        def reader(i: int) -> None:
            start.wait()
            for _ in range(200):
                value = load(i)
                if value != [i, i * i]:
                    wrong.append((i, value))

        threads = [threading.Thread(target=reader, args=(i,)) for i in range(32)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert wrong == []
        assert sorted(computed) == list(range(32))  # every read after the fills was a hit
        assert isinstance(cache.engine.redis.lane, ThreadPipe)  # type: ignore[union-attr]
        assert cache.stats()["redis"]["hits"] == 32 * 200
    finally:
        cache.close()
