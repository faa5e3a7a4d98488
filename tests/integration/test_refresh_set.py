"""``f.refresh(*args)`` and ``f.set(value, *args)`` against real Redis, sync and async (a second
cache on the same Redis sees what they stored; I3 for ``set``), and the Redis tier's results per
kind in ``stats()`` and the ``cache.requests`` metric."""

from __future__ import annotations

import multiprocessing
from collections.abc import AsyncIterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from helpers.entries import MODES, Make, applied, caches, call, decorate, profile, read_in_child


@pytest.fixture
async def make(redis_url: str) -> AsyncIterator[Make]:
    async for factory in caches(redis_url):
        yield factory


@pytest.mark.parametrize("mode", MODES)
async def test_refresh_recomputes_now_and_every_cache_sees_it(make: Make, mode: str) -> None:
    a, b = make(), make()
    data = {"u1": "old"}
    load_a, calls_a = decorate(a, mode, lambda u: data[u])
    load_b, calls_b = decorate(b, mode, lambda u: data[u])
    assert await call(load_a, "u1") == "old"
    data["u1"] = "new"
    assert await call(load_a.refresh, "u1") == "new"
    assert await call(load_a, "u1") == "new"
    assert await call(load_b, "u1") == "new"  # from Redis
    assert (calls_a, calls_b) == (["u1", "u1"], [])


@pytest.mark.parametrize("mode", MODES)
async def test_refresh_follows_cache_if(make: Make, mode: str) -> None:
    a, b = make(), make()
    load_a, _ = decorate(a, mode, lambda u: "bad", cache_if=lambda r: r != "bad")
    load_b, calls_b = decorate(b, mode, lambda u: "bad")
    assert await call(load_a.refresh, "u1") == "bad"
    await call(load_b, "u1")
    assert calls_b == ["u1"]


@pytest.mark.parametrize("mode", MODES)
async def test_set_stores_a_value_every_cache_serves(make: Make, mode: str) -> None:
    a, b = make(), make()
    load_a, calls_a = decorate(a, mode, lambda u: "computed")
    load_b, calls_b = decorate(b, mode, lambda u: "computed")
    assert await call(load_a.set, "given", "u1") is None
    assert await call(load_a, "u1") == "given"
    assert await call(load_b, "u1") == "given"
    assert (calls_a, calls_b) == ([], [])


@pytest.mark.parametrize("mode", MODES)
async def test_an_invalidation_after_set_drops_the_value_everywhere(make: Make, mode: str) -> None:
    """I3 for set: it is stamped with the versions read when it is called."""
    a, b = make(), make()
    load_a, calls_a = decorate(a, mode, lambda u: "computed")
    load_b, calls_b = decorate(b, mode, lambda u: "computed")
    await call(load_a.set, "given", "u1")
    await call(load_b, "u1")  # b holds it in L1 too
    b.invalidate(user="u1")
    applied(a, b, "user:u1")
    assert await call(load_a, "u1") == "computed"  # not the set value, from L1 or Redis
    assert await call(load_b, "u1") == "computed"  # a's fill
    assert (calls_a, calls_b) == (["u1"], [])


@pytest.mark.parametrize("mode", MODES)
async def test_set_after_an_invalidation_is_stamped_with_the_new_version(
    make: Make, mode: str
) -> None:
    a, b = make(), make()
    load_a, _ = decorate(a, mode, lambda u: "computed")
    load_b, calls_b = decorate(b, mode, lambda u: "computed")
    b.invalidate(user="u1")
    applied(a, b, "user:u1")
    await call(load_a.set, "given", "u1")
    assert await call(load_b, "u1") == "given"
    assert calls_b == []


def test_redis_results_are_counted_per_kind(make: Make) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        a, b = make(), make(meter_provider=provider)
        loads = {}
        for cache in (a, b):
            loads[cache] = (
                decorate(cache, "sync", str.upper, kind="character")[0],
                decorate(cache, "sync", str.upper, kind="narrative")[0],
            )
        char_a, narr_a = loads[a]
        char_b, narr_b = loads[b]
        char_a("c1")
        narr_a("n1")
        char_b("c1")  # a Redis hit of kind character
        char_b("c2")  # a miss
        narr_b("n1")
        by_kind = b.stats()["redis"]["by_kind"]
        assert by_kind == {
            "character": {"hits": 1, "misses": 1, "stale": 0},
            "narrative": {"hits": 1, "misses": 0, "stale": 0},
        }
        assert b.stats()["redis"]["hits"] == 2
        data = reader.get_metrics_data()
        points: dict[tuple[Any, ...], int] = {}
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == "cache.requests":
                        for p in metric.data.data_points:
                            at = dict(p.attributes or {})
                            k = (at["cache.tier"], at["cache.result"], at["cache.kind"])
                            points[k] = int(p.value)
        assert points[("redis", "hit", "character")] == 1
        assert points[("redis", "miss", "character")] == 1
        assert points[("redis", "hit", "narrative")] == 1
        assert ("redis", "hit", "*") not in points
        assert points[("local", "miss", "*")] >= 3
    finally:
        provider.shutdown()


def read_in_another_process(url: str, user_ids: list[str]) -> list[tuple[str, bool]]:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    child = ctx.Process(target=read_in_child, args=(url, user_ids, out))
    child.start()
    try:
        got: list[tuple[str, bool]] = out.get(timeout=120)
    finally:
        child.join(120)
    assert child.exitcode == 0
    return [tuple(g) for g in got]  # type: ignore[misc]


@pytest.mark.slow
async def test_another_process_serves_what_set_stored_and_computes_what_skip_kept_out(
    make: Make, redis_url: str
) -> None:
    a = make()
    calls: list[str] = []
    load = profile(a, calls)
    load.set("given", "set")
    assert load("skipped") == "computed"  # entry.skip(): stored nowhere
    assert load("kept") == "computed"
    got = read_in_another_process(redis_url, ["set", "skipped", "kept"])
    assert got == [("given", False), ("computed", True), ("computed", False)]
    a.invalidate(user="set")  # I3 for set, across processes
    assert read_in_another_process(redis_url, ["set"]) == [("computed", True)]
