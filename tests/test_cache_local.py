"""The local-only cache (no Redis): caching, invalidation, I1, the L1 bound (I6), stats, exports."""

from __future__ import annotations
import __future__

import asyncio
import re
import threading
import types
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tta_cache as tc


@pytest.fixture
def cache() -> Iterator[tc.Cache]:
    with tc.Cache() as cache:
        yield cache


class Store:
    """A source of truth the decorated functions read, counting the reads."""

    def __init__(self) -> None:
        self.data: dict[str, int] = {}
        self.reads = 0

    def read(self, key: str) -> int:
        self.reads += 1
        return self.data.get(key, 0)


# --- caching ----------------------------------------------------------------------------------


def test_sync_function_runs_once_per_arguments(cache: tc.Cache) -> None:
    store = Store()
    store.data.update(a=1, b=2)

    @cache.cached
    def load(key: str) -> int:
        return store.read(key)

    assert [load("a"), load("a"), load("b"), load("a"), load("b")] == [1, 1, 2, 1, 2]
    assert store.reads == 2
    store.data["a"] = 10  # without an invalidation the cached value stands
    assert load("a") == 1


async def test_async_function_runs_once_per_arguments(cache: tc.Cache) -> None:
    store = Store()
    store.data.update(a=1)

    @cache.cached
    async def load(key: str) -> int:
        await asyncio.sleep(0)
        return store.read(key)

    assert [await load("a"), await load("a"), await load("b")] == [1, 1, 0]
    assert store.reads == 2


def test_local_maxsize_zero_turns_l1_off(cache: tc.Cache) -> None:
    store = Store()
    with tc.Cache(local_maxsize=0) as off:

        @off.cached
        def load(key: str) -> int:
            return store.read(key)

        assert load("a") == load("a") == 0
        assert store.reads == 2
        assert len(off.engine.local) == 0


# --- invalidation -----------------------------------------------------------------------------


def test_invalidate_by_named_tag_custom_tag_and_all(cache: tc.Cache) -> None:
    store = Store()

    @cache.cached(tags=("user:{user_id}", "custom:{user_id}"))
    def load(user_id: str) -> int:
        return store.read(user_id)

    @cache.cached
    def untagged(user_id: str) -> int:
        return store.read(user_id)

    store.data["u1"] = 1
    assert load("u1") == untagged("u1") == 1
    store.data["u1"] = 2
    cache.invalidate(user="u1")
    assert load("u1") == 2
    assert untagged("u1") == 1  # another tag's invalidation leaves it alone
    store.data["u1"] = 3
    cache.invalidate(tags=["custom:u1"])
    assert load("u1") == 3
    store.data["u1"] = 4
    cache.invalidate(user="u2")
    assert load("u1") == 3
    cache.invalidate_all()
    assert load("u1") == untagged("u1") == 4


def test_invalidates_decorator_runs_after_success_only(cache: tc.Cache) -> None:
    store = Store()

    @cache.cached(tags=("user:{user_id}",))
    def load(user_id: str) -> int:
        return store.read(user_id)

    @cache.invalidates(user="{user_id}")
    def save(user_id: str, value: int, fail: bool = False) -> str:
        store.data[user_id] = value
        if fail:
            raise RuntimeError("write failed after changing the store")
        return "saved"

    @cache.invalidates(tags=["user:{uid}"])
    def save_tags(uid: str, value: int) -> None:
        store.data[uid] = value

    assert load("u1") == 0
    assert save("u1", 1) == "saved"
    assert load("u1") == 1
    with pytest.raises(RuntimeError):
        save("u1", 2, fail=True)
    assert load("u1") == 1  # not invalidated: the call did not succeed
    save_tags("u1", 3)
    assert load("u1") == 3


async def test_async_invalidates_and_per_call_invalidate(cache: tc.Cache) -> None:
    store = Store()

    @cache.cached(tags=("user:{user_id}",))
    async def load(user_id: str, depth: int = 1) -> int:
        return store.read(user_id) * depth

    @cache.invalidates(user="{user_id}")
    async def save(user_id: str, value: int) -> None:
        store.data[user_id] = value

    await save("u1", 1)
    assert await load("u1") == 1
    assert await load("u1", 2) == 2
    store.data["u1"] = 5
    await load.invalidate("u1", depth=2)  # one entry: the other keeps its value
    assert await load("u1", 2) == 10
    assert await load("u1") == 1
    await save("u1", 6)
    assert (await load("u1"), await load("u1", 2)) == (6, 12)


def test_per_call_invalidate_drops_one_entry(cache: tc.Cache) -> None:
    store = Store()

    @cache.cached
    def load(key: str) -> int:
        return store.read(key)

    assert (load("a"), load("b")) == (0, 0)
    store.data.update(a=1, b=1)
    load.invalidate("a")
    assert (load("a"), load("b")) == (1, 0)
    load.invalidate(key="b")
    assert load("b") == 1


def test_per_call_invalidate_drops_every_call_sharing_the_key(cache: tc.Cache) -> None:
    """A ``key=`` template may leave out a parameter: all calls it maps together go at once."""
    store = Store()

    @cache.cached(key="{user_id}")
    def load(user_id: str, fmt: str = "plain") -> str:
        return f"{store.read(user_id)}/{fmt}"

    assert (load("u1"), load("u1", "fancy"), load("u2")) == ("0/plain", "0/fancy", "0/plain")
    store.data.update(u1=1, u2=1)
    load.invalidate("u1")
    assert (load("u1"), load("u1", "fancy"), load("u2")) == ("1/plain", "1/fancy", "0/plain")
    assert len(cache.engine.local.by_key) == 2


def test_read_your_invalidation_in_a_loop(cache: tc.Cache) -> None:
    """I1: once invalidate() returns, no read returns a value computed before it."""
    store = Store()

    @cache.cached(tags=("user:{user_id}",))
    def load(user_id: str) -> int:
        return store.read(user_id)

    for i in range(200):
        store.data["u1"] = i
        cache.invalidate(user="u1")
        assert load("u1") == i
        assert load("u1") == i


# --- I6: L1 never exceeds local_maxsize -------------------------------------------------------


def test_l1_never_exceeds_local_maxsize() -> None:
    with tc.Cache(local_maxsize=16) as small:

        @small.cached
        def load(x: int) -> int:
            return x

        @small.cached
        def load_list(x: list[int]) -> list[int]:
            return x

        local = small.engine.local
        for i in range(500):
            assert load(i % 97) == i % 97
            assert load_list([i % 13]) == [i % 13]
            small.set(f"raw{i % 31}", i)
            assert len(local) <= 16
            assert len(local.by_key) <= 16
            assert small.stats()["local"]["size"] == len(local)
        assert len(local) == 16


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=1, max_value=8), st.lists(st.integers(0, 30), max_size=80))
def test_l1_bound_holds_for_any_call_sequence(maxsize: int, keys: list[int]) -> None:
    with tc.Cache(local_maxsize=maxsize) as small:

        @small.cached
        def load(x: int) -> int:
            return -x

        for k in keys:
            assert load(k) == -k
            assert len(small.engine.local) <= maxsize
            assert small.stats()["local"]["size"] <= maxsize
        assert len(small.engine.local) == min(maxsize, len(set(keys)))


# --- stats ------------------------------------------------------------------------------------


def test_stats_after_a_scripted_sequence(cache: tc.Cache) -> None:
    @cache.cached
    def load(x: int) -> int:
        return x

    for x in (1, 1, 2, 1, 2):  # miss hit miss hit hit
        load(x)
    cache.invalidate_all()
    load(1)  # miss
    stats = cache.stats()
    assert (stats["hits"], stats["misses"], stats["total_operations"]) == (3, 3, 6)
    assert stats["hit_rate"] == 0.5
    assert stats["computations"] == 3
    assert (stats["errors"], stats["decode_errors"]) == (0, 0)
    assert stats["local"] == {"hits": 3, "misses": 3, "hit_rate": 0.5, "size": 2}
    assert stats["redis"]["hits"] == stats["redis"]["misses"] == 0


def test_stats_are_exact_under_many_threads(cache: tc.Cache) -> None:
    threads, calls, distinct = 8, 400, 40

    @cache.cached
    def load(t: int, x: int) -> int:
        return t * 1000 + x

    barrier = threading.Barrier(threads)
    wrong: list[tuple[int, int]] = []

    def hammer(t: int) -> None:
        barrier.wait()
        for i in range(calls):
            if load(t, i % distinct) != t * 1000 + i % distinct:
                wrong.append((t, i))

    workers = [threading.Thread(target=hammer, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    stats = cache.stats()
    assert wrong == []
    assert stats["misses"] == stats["computations"] == threads * distinct
    assert stats["hits"] == threads * (calls - distinct)
    assert stats["total_operations"] == threads * calls


# --- exports ----------------------------------------------------------------------------------


def _isort_key(name: str) -> tuple[int, str]:
    # ruff's RUF022 order: CONSTANTS, then Classes, then functions
    if re.fullmatch(r"[A-Z0-9_]+", name):
        return (0, name)
    return (1 if name[0].isupper() else 2, name)


def test_all_is_exactly_the_public_names_sorted() -> None:
    public = {
        name
        for name, value in vars(tc).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and not isinstance(value, __future__._Feature)
    }
    assert set(tc.__all__) == public
    assert tc.__all__ == sorted(public, key=_isort_key)
