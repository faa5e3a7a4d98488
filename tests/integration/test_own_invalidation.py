"""I1 at the edges: read-your-invalidation when the channel drops or Redis cannot be read.

A computation under way when this process's ``invalidate()`` returns may not be joined by a
caller that began after it: it may have read the data before the write. The single-flight
table judged that by the computation's stamp against the tag map, and the map is emptied when
the channel drops, so a join after a dropped channel (or of a computation whose stamp is
unknown because Redis could not be read) handed out the value computed before the invalidation
(found by the chaos soak: reads older than the issuing process's own invalidation). And when
Redis comes back holding an older version than one this process has seen (a lost bump), that
invalidation is issued again. Real Redis, through the fault proxy where it must fail.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import tta_cache as tc
from helpers.proxy import TcpProxy
from helpers.waiting import eventually, reconnected

pytestmark = pytest.mark.redis


class Slow:
    """A cached function whose first call waits inside the function until released."""

    def __init__(self, cache: tc.Cache) -> None:
        self.truth = {"u1": 1}
        self.entered, self.release = threading.Event(), threading.Event()
        self.calls = 0

        @cache.cached(kind="user", tags=("user:{user_id}",))
        def load(user_id: str) -> int:
            value = self.truth[user_id]  # read before waiting: the data as it was
            self.calls += 1
            if self.calls == 1:
                self.entered.set()
                assert self.release.wait(30.0)
            return value

        self.load = load


def _in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any], threading.Event]:
    out: dict[str, Any] = {}
    done = threading.Event()

    def run() -> None:
        try:
            out["value"] = fn()
        finally:
            done.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out, done


def _second_caller(slow: Slow) -> Any:
    """A caller that begins now; the first call is released only after it has its answer (or
    after 10 s if it waits on the first call: the failure this file guards against)."""
    thread, out, done = _in_thread(lambda: slow.load("u1"))
    on_its_own = done.wait(10.0)
    slow.release.set()
    thread.join(30.0)
    return on_its_own, out.get("value")


def test_a_computation_begun_before_the_invalidation_is_not_joined_after_a_channel_drop(
    redis_url: str,
) -> None:
    cache = tc.Cache(redis_url, op_timeout=0.25, health_check_interval=0, lock_timeout=60)
    try:
        assert cache.wait_ready(10.0)
        slow = Slow(cache)
        first, first_out, _ = _in_thread(lambda: slow.load("u1"))
        assert slow.entered.wait(30.0)  # computing from truth 1
        slow.truth["u1"] = 2
        cache.invalidate(user="u1")  # returns: a newer version in Redis and in the map
        before = cache.stats()["channel"]["reconnects"]
        cache.engine.link.kick()  # the channel drops: the map is emptied
        assert eventually(reconnected(cache, before)), "channel back"
        on_its_own, value = _second_caller(slow)
        first.join(30.0)
        assert (on_its_own, value) == (True, 2)  # never the computation from truth 1
        assert first_out["value"] == 1  # that one still answers its own caller
        assert slow.load("u1") == 2
    finally:
        cache.close()


@pytest.fixture
def unreadable(redis_proxy: TcpProxy) -> Iterator[tc.Cache]:
    """A cache whose channel came up, then Redis unreachable: every read fails (fail-open)."""
    cache = tc.Cache(redis_proxy.url, op_timeout=0.25, health_check_interval=0, lock_timeout=60)
    try:
        assert cache.wait_ready(10.0)
        redis_proxy.refuse()
        redis_proxy.cut()
        yield cache
    finally:
        cache.close()


def test_an_unstamped_computation_is_not_joined_after_an_invalidation(
    unreadable: tc.Cache,
) -> None:
    """Redis unreadable: the first call's stamp is unknown; an invalidation that fails (and is
    queued) still keeps later callers off it."""
    cache = unreadable
    slow = Slow(cache)
    first, _, _ = _in_thread(lambda: slow.load("u1"))
    assert slow.entered.wait(30.0)
    slow.truth["u1"] = 2
    cache.invalidate(user="u1")  # fail-open: queued (I8)
    assert cache.engine.queued >= 1
    on_its_own, value = _second_caller(slow)
    first.join(30.0)
    assert (on_its_own, value) == (True, 2)


def test_unstamped_callers_still_join_one_computation_when_nothing_was_invalidated(
    unreadable: tc.Cache,
) -> None:
    """The other side of the rule above: with Redis unreadable and no invalidation, a second
    caller joins the first one's computation (I5), it does not compute again."""
    cache = unreadable
    slow = Slow(cache)
    first, first_out, _ = _in_thread(lambda: slow.load("u1"))
    assert slow.entered.wait(30.0)
    second, second_out, second_done = _in_thread(lambda: slow.load("u1"))
    flight = cache.engine.flights.sync[slow.load.cache_key("u1")]
    assert eventually(lambda: flight.done is not None), "the second caller waits on the first"
    assert not second_done.is_set()
    slow.release.set()
    first.join(30.0)
    second.join(30.0)
    assert (first_out["value"], second_out["value"], slow.calls) == (1, 1, 1)


def test_a_version_gone_back_in_redis_is_invalidated_again(redis_url: str) -> None:
    """A bump lost by Redis (its tag key written back to the older version, as a failover onto
    a replica that had not taken it would leave it): the process that had seen the newer
    version issues the invalidation again when it next reads the tag, and serves nothing
    computed before it."""
    truth = {"u1": 1}
    cache = tc.Cache(redis_url, op_timeout=0.25, health_check_interval=0, lock_timeout=60)
    try:

        @cache.cached(kind="user", tags=("user:{user_id}",))
        def load(user_id: str) -> int:
            return truth[user_id]

        assert cache.wait_ready(10.0)
        assert load("u1") == 1
        key, tag_key = load.cache_key("u1"), cache.engine.tag_key("user:u1")
        admin = cache.engine.redis.client  # type: ignore[union-attr]
        old_entry, old_version = admin.get(key), admin.get(tag_key)
        truth["u1"] = 2
        cache.invalidate(user="u1")
        seen = cache.engine.versions.get("user:u1")
        assert seen is not None
        assert seen > int(old_version)
        admin.set(key, old_entry)  # what the lost history leaves: entry 1, the old version
        admin.set(tag_key, old_version)
        before = cache.stats()["channel"]["reconnects"]
        cache.engine.link.kick()
        assert eventually(reconnected(cache, before)), "channel back"
        assert [load("u1") for _ in range(3)] == [2] * 3  # never entry 1
        assert cache.stats()["adopted_invalidations"]["reissued"] == 1
        assert eventually(lambda: cache.engine.queued == 0), "the invalidation issued again lands"
        assert int(admin.get(tag_key)) > seen  # above every version the lost history issued
        assert load("u1") == 2
    finally:
        cache.close()
