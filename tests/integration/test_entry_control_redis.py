"""Choosing what is cached (DESIGN.md §9) against real Redis, sync and async: what one cache
stores (or not) a second cache on the same Redis sees (or not) in L2, and I3 for tags added
inside a computation, also when the tag is invalidated before the fill."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

import tta_cache as tc
from helpers.entries import MODES, WAIT, Clock, Make, applied, caches, call, decorate


@pytest.fixture
async def make(redis_url: str) -> AsyncIterator[Make]:
    async for factory in caches(redis_url):
        yield factory


# --- cache_if and none_ttl ----------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_a_result_cache_if_refuses_is_in_neither_tier(make: Make, mode: str) -> None:
    a, b = make(), make()
    accept = {"cache_if": lambda r: r != "BAD"}
    load_a, calls_a = decorate(a, mode, str.upper, **accept)
    load_b, calls_b = decorate(b, mode, str.upper, **accept)
    assert await call(load_a, "ok") == "OK"
    assert await call(load_a, "bad") == "BAD"
    assert await call(load_b, "ok") == "OK"  # from Redis
    assert await call(load_b, "bad") == "BAD"  # computed: never stored
    assert await call(load_a, "bad") == "BAD"
    assert (calls_a, calls_b) == (["ok", "bad", "bad"], ["bad"])
    assert a.stats()["not_cached"]["refused"] == 2


@pytest.mark.parametrize("mode", MODES)
async def test_a_raising_cache_if_stores_nothing_and_is_counted(make: Make, mode: str) -> None:
    a, b = make(), make()

    def pred(result: Any) -> bool:
        raise ValueError("bug")

    load_a, _ = decorate(a, mode, str.upper, cache_if=pred)
    load_b, calls_b = decorate(b, mode, str.upper)
    assert await call(load_a, "u1") == "U1"
    assert await call(load_b, "u1") == "U1"
    assert calls_b == ["u1"]
    assert a.stats()["not_cached"]["cache_if_errors"] == 1


@pytest.mark.parametrize("mode", MODES)
async def test_none_is_cached_by_default_and_kept_none_ttl_seconds_when_set(
    make: Make, mode: str
) -> None:
    clock = Clock()
    a, b = make(clock=clock), make(clock=clock)
    plain_b, plain_calls = decorate(b, mode, lambda u: None, kind="plain")
    plain_a, _ = decorate(a, mode, lambda u: None, kind="plain")
    short_a, _ = decorate(a, mode, lambda u: None, none_ttl=5)
    short_b, short_calls = decorate(b, mode, lambda u: None, none_ttl=5)
    await call(plain_a, "u1")
    await call(short_a, "u1")
    assert await call(plain_b, "u1") is None
    assert await call(short_b, "u1") is None
    assert plain_calls == short_calls == []  # both from Redis
    clock.now += 6
    await call(plain_b, "u1")
    await call(short_b, "u1")
    assert (plain_calls, short_calls) == ([], ["u1"])


@pytest.mark.parametrize("mode", MODES)
async def test_none_ttl_zero_keeps_no_none_in_redis(make: Make, mode: str) -> None:
    a, b = make(), make()
    load_a, _ = decorate(a, mode, lambda u: None, none_ttl=0)
    load_b, calls_b = decorate(b, mode, lambda u: None, none_ttl=0)
    await call(load_a, "u1")
    await call(load_b, "u1")
    assert calls_b == ["u1"]
    assert a.stats()["not_cached"]["nones"] == 1


# --- current_entry ------------------------------------------------------------------------


def controlled(user_id: str) -> str:
    """A body that decides per id: ``short`` lives 5 s, ``never`` is skipped, ``doc`` is tagged
    ``doc:<id>`` once loaded."""
    entry = tc.current_entry()
    assert entry is not None
    if user_id == "short":
        entry.ttl = 5
    elif user_id == "never":
        entry.skip()
    elif user_id.startswith("doc"):
        entry.add_tags(f"doc:{user_id}")
    return user_id.upper()


@pytest.mark.parametrize("mode", MODES)
async def test_entry_ttl_and_skip_are_what_redis_keeps(make: Make, mode: str) -> None:
    clock = Clock()
    a, b = make(clock=clock), make(clock=clock)
    load_a, _ = decorate(a, mode, controlled)
    load_b, calls_b = decorate(b, mode, controlled)
    for u in ("short", "long", "never"):
        await call(load_a, u)
    for u in ("short", "long", "never"):
        await call(load_b, u)
    assert calls_b == ["never"]
    clock.now += 6
    for u in ("short", "long"):
        await call(load_b, u)
    assert calls_b == ["never", "short"]


@pytest.mark.parametrize("l1", [10_000, 0], ids=["l1", "l1-off"])
@pytest.mark.parametrize("mode", MODES)
async def test_an_added_tag_is_checked_by_every_cache(make: Make, mode: str, l1: int) -> None:
    """The second read of ``b`` is an L1 hit, or (L1 off) the plain GET whose added tag the map
    now knows."""
    a, b = make(local_maxsize=l1), make(local_maxsize=l1)
    load_a, calls_a = decorate(a, mode, controlled)
    load_b, calls_b = decorate(b, mode, controlled)
    assert await call(load_a, "doc1") == "DOC1"
    assert await call(load_b, "doc1") == "DOC1"  # from Redis: its added tag read and current
    assert await call(load_b, "doc1") == "DOC1"  # from b's L1, or Redis again
    assert calls_b == []
    b.invalidate(doc="doc1")
    c = make(local_maxsize=l1)  # a new cache: its tag map has never seen doc:doc1
    load_c, calls_c = decorate(c, mode, controlled)
    other_c, _ = decorate(c, mode, str.upper, kind="other")
    await call(other_c, "doc1")  # c's map learns the entry's own tags (not the added one)
    assert await call(load_c, "doc1") == "DOC1"  # the entry in Redis is behind: computed
    applied(a, b, "doc:doc1")
    assert await call(load_a, "doc1") == "DOC1"  # not its L1 copy: c's fill, from Redis
    assert await call(load_b, "doc1") == "DOC1"
    assert (calls_a, calls_b, calls_c) == (["doc1"], [], ["doc1"])


@pytest.mark.parametrize("known", [False, True], ids=["version-fetched", "version-from-map"])
@pytest.mark.parametrize("mode", MODES)
async def test_a_tag_added_then_invalidated_before_the_fill_is_never_served(
    make: Make, mode: str, known: bool
) -> None:
    """I3 for add_tags: the version is read when the tag is added, so an invalidation of it
    between then and the fill (by another cache) leaves the entry behind, in both caches."""
    a, b = make(), make()
    if known:  # a's map knows the tag's version: add_tags reads no Redis
        a.invalidate(doc="d1")
        assert a.engine.versions.get("doc:d1") is not None
    runs: list[str] = []

    def body(user_id: str) -> str:
        entry = tc.current_entry()
        assert entry is not None
        entry.add_tags("doc:d1")
        if not runs:
            b.invalidate(doc="d1")  # another cache, while a computes: the data just changed
        runs.append(user_id)
        return f"v{len(runs)}"

    load_a, _ = decorate(a, mode, body)
    load_b, _ = decorate(b, mode, body)
    assert await call(load_a, "u1") == "v1"  # computed from data read before the change
    applied(a, b, "doc:d1")
    assert await call(load_a, "u1") == "v2"
    assert await call(load_b, "u1") == "v2"  # v2 was stored (nothing invalidated it)
    assert runs == ["u1", "u1"]


async def test_aadd_tags_reads_the_version_without_blocking_and_holds_i3(make: Make) -> None:
    a, b = make(), make()
    runs: list[str] = []

    async def body(doc_id: str) -> str:
        entry = tc.current_entry()
        assert entry is not None
        await entry.aadd_tags(f"doc:{doc_id}")
        if not runs:
            await b.ainvalidate(doc=doc_id)
        runs.append(doc_id)
        return f"v{len(runs)}"

    load_a = a.cached(kind="docs")(body)
    load_b = b.cached(kind="docs")(body)
    assert await load_a("d1") == "v1"
    applied(a, b, "doc:d1")
    assert await load_a("d1") == "v2"
    assert await load_b("d1") == "v2"
    assert runs == ["d1", "d1"]


@pytest.mark.parametrize("mode", MODES)
async def test_current_entry_works_in_a_background_refresh(make: Make, mode: str) -> None:
    clock = Clock()
    a = make(clock=clock, stale_ttl=100)
    seen: list[tuple[str, ...]] = []

    def body(user_id: str) -> str:
        entry = tc.current_entry()
        assert entry is not None
        entry.add_tags(f"doc:{len(seen)}")
        seen.append(entry.tags)
        return f"v{len(seen)}"

    load, _ = decorate(a, mode, body, ttl=10)
    assert await call(load, "u1") == "v1"
    clock.now += 11  # stale: served, refreshed behind the caller
    assert await call(load, "u1") == "v1"
    assert await a.engine.await_refreshes(WAIT)
    assert await call(load, "u1") == "v2"
    a.invalidate(doc="1")  # the tag the refresh added
    assert await call(load, "u1") == "v3"
    assert seen == [("user:u1", "doc:0"), ("user:u1", "doc:1"), ("user:u1", "doc:2")]
