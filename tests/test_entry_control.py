"""Choosing what is cached (DESIGN.md §9) on a local-only cache: ``cache_if=``, ``none_ttl=``,
``tc.current_entry()``, ``f.refresh`` and ``f.set``, sync and async, and the errors a bad
argument raises at decoration time. The Redis side: ``integration/test_entry_control_redis.py``
and ``integration/test_refresh_set.py``."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import tta_cache as tc

MODES = ("sync", "async")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cache(clock: Clock) -> Iterator[tc.Cache]:
    with tc.Cache(clock=clock, jitter=0.0, beta=0.0) as cache:
        yield cache


def decorate(
    cache: tc.Cache, mode: str, body: Callable[[str], Any], **options: Any
) -> tuple[Any, list[str]]:
    """``body`` cached as a sync or an async function; the list records each computation."""
    calls: list[str] = []

    if mode == "sync":

        @cache.cached(tags=("user:{user_id}",), **options)
        def load(user_id: str) -> Any:
            calls.append(user_id)
            return body(user_id)

        return load, calls

    @cache.cached(tags=("user:{user_id}",), **options)
    async def aload(user_id: str) -> Any:
        calls.append(user_id)
        return body(user_id)

    return aload, calls


async def call(f: Any, *args: Any) -> Any:
    result = f(*args)
    return await result if inspect.isawaitable(result) else result


def not_cached(cache: tc.Cache) -> dict[str, int]:
    return dict(cache.stats()["not_cached"])


# --- decoration time ----------------------------------------------------------------------


@pytest.mark.parametrize("bad", [3, "yes"])
def test_a_cache_if_that_is_not_callable_is_refused_at_decoration(
    cache: tc.Cache, bad: Any
) -> None:
    with pytest.raises(tc.ConfigurationError, match="cache_if must be callable"):
        cache.cached(cache_if=bad)(lambda x: x)


@pytest.mark.parametrize("bad", [-1, -0.5, True, "5", math.inf, math.nan])
def test_a_none_ttl_that_is_not_seconds_is_refused_at_decoration(cache: tc.Cache, bad: Any) -> None:
    with pytest.raises(tc.ConfigurationError, match="none_ttl"):
        cache.cached(none_ttl=bad)(lambda x: x)


def test_the_kind_shortcuts_and_module_decorators_check_them_too(cache: tc.Cache) -> None:
    def load_session(session_id: str) -> str:
        return session_id

    with pytest.raises(tc.ConfigurationError, match="none_ttl"):
        cache.cached_session(none_ttl=-1)(load_session)
    with pytest.raises(tc.ConfigurationError, match="cache_if"):
        tc.cached(cache_if=1)(load_session)
    with pytest.raises(tc.ConfigurationError, match="none_ttl"):
        tc.cached_session(none_ttl=-1)(load_session)
    lazy = tc.cached_session(cache_if=bool, none_ttl=0)(load_session)
    assert callable(lazy.refresh)
    assert callable(lazy.set)


# --- cache_if and none_ttl ----------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_cache_if_stores_only_results_it_accepts(cache: tc.Cache, mode: str) -> None:
    load, calls = decorate(cache, mode, lambda u: u.upper(), cache_if=lambda r: r != "BAD")
    assert [await call(load, u) for u in ("ok", "ok", "bad", "bad")] == ["OK", "OK", "BAD", "BAD"]
    assert calls == ["ok", "bad", "bad"]
    assert not_cached(cache)["refused"] == 2


@pytest.mark.parametrize("mode", MODES)
async def test_a_cache_if_that_raises_returns_the_result_and_counts_it(
    cache: tc.Cache, mode: str
) -> None:
    def pred(result: Any) -> bool:
        raise RuntimeError("bug in the predicate")

    load, calls = decorate(cache, mode, lambda u: u, cache_if=pred)
    assert [await call(load, "u1") for _ in range(2)] == ["u1", "u1"]
    assert calls == ["u1", "u1"]
    assert not_cached(cache)["cache_if_errors"] == 2


@pytest.mark.parametrize("mode", MODES)
async def test_a_none_result_is_cached_like_any_other_by_default(
    cache: tc.Cache, mode: str
) -> None:
    load, calls = decorate(cache, mode, lambda u: None)
    assert [await call(load, "u1") for _ in range(2)] == [None, None]
    assert calls == ["u1"]


@pytest.mark.parametrize("mode", MODES)
async def test_none_ttl_keeps_a_none_for_its_own_seconds(
    cache: tc.Cache, clock: Clock, mode: str
) -> None:
    load, calls = decorate(cache, mode, lambda u: None if u == "gone" else u, none_ttl=5)
    assert await call(load, "gone") is None
    assert await call(load, "here") == "here"
    clock.now += 4
    assert await call(load, "gone") is None
    assert calls == ["gone", "here"]
    clock.now += 2  # 6 s: past none_ttl, well within the kind's TTL
    assert await call(load, "gone") is None
    assert await call(load, "here") == "here"
    assert calls == ["gone", "here", "gone"]


@pytest.mark.parametrize("mode", MODES)
async def test_none_ttl_zero_never_keeps_a_none(cache: tc.Cache, mode: str) -> None:
    load, calls = decorate(cache, mode, lambda u: None, none_ttl=0)
    assert [await call(load, "u1") for _ in range(2)] == [None, None]
    assert calls == ["u1", "u1"]
    assert not_cached(cache)["nones"] == 2


# --- current_entry ------------------------------------------------------------------------


def test_current_entry_is_none_outside_a_computation() -> None:
    assert tc.current_entry() is None


@pytest.mark.parametrize("mode", MODES)
async def test_current_entry_describes_the_entry_being_computed(cache: tc.Cache, mode: str) -> None:
    seen: list[Any] = []

    def body(user_id: str) -> str:
        entry = tc.current_entry()
        assert entry is not None
        seen.append((entry.kind, entry.key, entry.tags, entry.ttl))
        return user_id

    load, _ = decorate(cache, mode, body, kind="character")
    await call(load, "u1")
    assert seen == [("character", load.cache_key("u1"), ("user:u1",), None)]
    assert tc.current_entry() is None


@pytest.mark.parametrize("mode", MODES)
async def test_entry_ttl_and_skip_apply_to_that_entry_only(
    cache: tc.Cache, clock: Clock, mode: str
) -> None:
    def body(user_id: str) -> str:
        entry = tc.current_entry()
        assert entry is not None
        if user_id == "short":
            entry.ttl = 5
        if user_id == "never":
            entry.skip()
        return user_id

    load, calls = decorate(cache, mode, body)
    for u in ("short", "long", "never", "short", "long", "never"):
        await call(load, u)
    assert calls == ["short", "long", "never", "never"]
    clock.now += 6
    for u in ("short", "long"):
        await call(load, u)
    assert calls == ["short", "long", "never", "never", "short"]
    assert not_cached(cache)["skipped"] == 2


@pytest.mark.parametrize("bad", [0, -1, True, "5", math.inf])
def test_a_bad_entry_ttl_is_an_error_where_it_is_set(cache: tc.Cache, bad: Any) -> None:
    @cache.cached
    def load(x: str) -> str:
        entry = tc.current_entry()
        assert entry is not None
        entry.ttl = bad
        return x

    with pytest.raises(tc.ConfigurationError, match="ttl"):
        load("a")


@pytest.mark.parametrize("bad", [1, "", "a\0b", "x" * 300])
def test_a_bad_added_tag_is_an_error_where_it_is_added(cache: tc.Cache, bad: Any) -> None:
    @cache.cached
    def load(x: str) -> str:
        entry = tc.current_entry()
        assert entry is not None
        entry.add_tags(bad)
        return x

    with pytest.raises(tc.CacheError):
        load("a")


@pytest.mark.parametrize("mode", MODES)
async def test_an_added_tag_invalidates_the_entry(cache: tc.Cache, mode: str) -> None:
    def body(user_id: str) -> str:
        entry = tc.current_entry()
        assert entry is not None
        entry.add_tags(f"doc:{user_id}", "user:" + user_id)  # the decorator's own is ignored
        assert entry.tags == ("user:u1", "doc:u1")
        return user_id

    load, calls = decorate(cache, mode, body)
    await call(load, "u1")
    await call(load, "u1")
    cache.invalidate(doc="u1")
    await call(load, "u1")
    assert calls == ["u1", "u1"]


async def test_aadd_tags_reads_without_blocking_and_the_tag_invalidates(cache: tc.Cache) -> None:
    calls: list[str] = []

    @cache.cached
    async def load(doc_id: str) -> str:
        calls.append(doc_id)
        entry = tc.current_entry()
        assert entry is not None
        await entry.aadd_tags(f"doc:{doc_id}")
        return doc_id

    await load("d1")
    await load("d1")
    await cache.ainvalidate(doc="d1")
    await load("d1")
    assert calls == ["d1", "d1"]


@pytest.mark.parametrize("mode", MODES)
async def test_a_nested_cached_call_has_its_own_entry_and_the_outer_keeps_its_own(
    cache: tc.Cache, mode: str
) -> None:
    def inner_body(user_id: str) -> str:
        entry = tc.current_entry()
        assert entry is not None
        entry.add_tags("doc:inner")
        return "inner"

    inner, inner_calls = decorate(cache, mode, inner_body, kind="inner")
    outers: list[Any] = []

    async def outer_body(user_id: str) -> str:
        mine = tc.current_entry()
        assert mine is not None
        assert mine.kind == "outer"
        got = await call(inner, user_id)
        assert tc.current_entry() is mine  # back to the outer's entry
        assert mine.tags == ("user:u1",)  # the inner's added tag is not inherited
        outers.append(user_id)
        return got

    @cache.cached(kind="outer", tags=("user:{user_id}",))
    async def outer(user_id: str) -> str:
        return await outer_body(user_id)

    assert await outer("u1") == "inner"
    cache.invalidate(doc="inner")
    assert await outer("u1") == "inner"  # the outer is not tagged doc:inner
    assert await call(inner, "u1") == "inner"
    assert (outers, inner_calls) == (["u1"], ["u1", "u1"])
    assert tc.current_entry() is None


# --- refresh and set ----------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_refresh_recomputes_and_stores_now(cache: tc.Cache, mode: str) -> None:
    data = {"u1": "old"}
    load, calls = decorate(cache, mode, lambda u: data[u])
    assert await call(load, "u1") == "old"
    data["u1"] = "new"
    assert await call(load, "u1") == "old"
    assert await call(load.refresh, "u1") == "new"
    assert await call(load, "u1") == "new"
    assert calls == ["u1", "u1"]


@pytest.mark.parametrize("mode", MODES)
async def test_set_stores_the_value_and_an_invalidation_drops_it(
    cache: tc.Cache, mode: str
) -> None:
    load, calls = decorate(cache, mode, lambda u: "computed")
    assert await call(load.set, "given", "u1") is None
    assert await call(load, "u1") == "given"
    assert calls == []
    cache.invalidate(user="u1")
    assert await call(load, "u1") == "computed"
    assert calls == ["u1"]


async def test_set_applies_none_ttl_to_a_none(cache: tc.Cache) -> None:
    load, calls = decorate(cache, "sync", lambda u: "computed", none_ttl=0)
    load.set(None, "u1")  # none_ttl=0: a None is never kept, set or computed
    assert load("u1") == "computed"
    assert calls == ["u1"]


def test_a_redis_count_added_without_a_kind_is_reported_under_star() -> None:
    with tc.Cache() as cache:
        stats = cache.engine.stats
        stats.redis_hit("session")
        stats.add(redis_hits=2)
        assert stats.kinds() == {"session": (1, 0, 0), "*": (2, 0, 0)}


@pytest.mark.parametrize("mode", MODES)
async def test_current_entry_reaches_a_computation_bounded_by_hard_timeout(
    cache: tc.Cache, mode: str
) -> None:
    """With ``hard_timeout`` the function runs in a thread (sync) or a task (async) of its own:
    the entry goes with it."""

    def body(user_id: str) -> str:
        entry = tc.current_entry()
        assert entry is not None
        entry.skip()
        return user_id

    load, calls = decorate(cache, mode, body, hard_timeout=30)
    assert [await call(load, "u1") for _ in range(2)] == ["u1", "u1"]
    assert calls == ["u1", "u1"]
