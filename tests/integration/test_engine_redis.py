"""The engine against real Redis: tier order, invalidation (I1, I3), single-flight, pool limits."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import redis

import tta_cache as tc
from helpers.caches import aclose_all

MakeCache = Callable[..., tc.Cache]
WAIT = 10.0  # seconds a test waits for something that should happen at once (never asserted)
LONG = 120.0


@pytest.fixture
def make(redis_url: str) -> Iterator[MakeCache]:
    """Make caches on the test's Redis (``url=None`` for a local-only one); all are closed."""
    made: list[tc.Cache] = []

    def factory(url: str | None = redis_url, **options: Any) -> tc.Cache:
        cache = tc.Cache(url, **options)
        made.append(cache)
        return cache

    yield factory
    for cache in made:
        cache.close()


@pytest.fixture
async def amake(redis_url: str) -> AsyncIterator[MakeCache]:
    """Like ``make``, closing each cache's asyncio client on the test's event loop."""
    made: list[tc.Cache] = []

    def factory(url: str | None = redis_url, **options: Any) -> tc.Cache:
        cache = tc.Cache(url, **options)
        made.append(cache)
        return cache

    yield factory
    await aclose_all(made)


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


class Store:
    """The source of truth: a dict, and how often each process read it."""

    def __init__(self, **data: str) -> None:
        self.data = dict(data)
        self.reads: list[str] = []

    def read(self, key: str, reader: str = "") -> str:
        self.reads.append(reader or key)
        return self.data[key]


def loader(cache: tc.Cache, store: Store, reader: str, **options: Any) -> Any:
    """The same function (so the same key) decorated on ``cache``; ``reader`` names who ran it."""

    @cache.cached(tags=("user:{user_id}",), **options)
    def load(user_id: str) -> str:
        return store.read(user_id, reader)

    return load


def aloader(cache: tc.Cache, store: Store, reader: str) -> Any:
    @cache.cached(tags=("user:{user_id}",))
    async def load(user_id: str) -> str:
        await asyncio.sleep(0)
        return store.read(user_id, reader)

    return load


def eventually(check: Callable[[], bool], timeout: float = WAIT) -> bool:
    """Poll ``check`` until it is true or ``timeout`` passes; returns its last answer."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


# --- tier order: L1, then L2, then the function -----------------------------------------------


def test_reads_go_l1_then_l2_then_the_function(make: MakeCache, client: redis.Redis) -> None:
    store = Store(u1="v1")
    a, b = make(), make()
    assert a.wait_ready(WAIT)
    assert b.wait_ready(WAIT)
    load_a, load_b = loader(a, store, "a"), loader(b, store, "b")
    key = load_a.cache_key("u1")

    assert load_a("u1") == "v1"
    assert store.reads == ["a"]
    assert client.exists(key) == 1
    assert client.pttl(key) > 0  # I6: every key written has a TTL

    assert load_b("u1") == "v1"  # b's L1 is cold: served from L2, b's function never runs
    assert store.reads == ["a"]
    assert b.stats()["redis"]["hits"] == 1

    store.data["u1"] = "changed behind the cache's back"
    client.delete(key)
    assert load_a("u1") == "v1"  # L1 does not look at Redis
    assert a.stats()["local"]["hits"] == 1

    a.engine.local.clear()
    assert load_b("u1") == "v1"  # b still has it in L1
    assert client.exists(key) == 0
    assert load_a("u1") == "changed behind the cache's back"  # both tiers gone: the function
    assert store.reads == ["a", "a"]

    a.engine.local.clear()
    assert load_a("u1") == "changed behind the cache's back"  # now from L2
    assert store.reads == ["a", "a"]
    assert a.stats()["redis"]["hits"] == 1


async def test_async_reads_go_l1_then_l2_then_the_function(
    amake: MakeCache, client: redis.Redis
) -> None:
    store = Store(u1="v1")
    a, b = amake(), amake()
    load_a, load_b = aloader(a, store, "a"), aloader(b, store, "b")

    assert await load_a("u1") == "v1"
    assert await load_b("u1") == "v1"
    assert store.reads == ["a"]
    client.delete(load_a.cache_key("u1"))
    b.engine.local.clear()
    assert await load_b("u1") == "v1"  # the key is gone: b computes
    assert store.reads == ["a", "b"]
    a.engine.local.clear()
    assert await load_a("u1") == "v1"  # b's fill, from L2
    assert store.reads == ["a", "b"]


# --- invalidation seen by a second cache on the same Redis ------------------------------------


def _invalidators(cache: tc.Cache) -> dict[str, Callable[[], None]]:
    @cache.invalidates(user="{user_id}")
    def save(user_id: str) -> None:
        pass

    @cache.invalidates(tags=[lambda a: f"user:{a['uid']}"])
    def save_callable(uid: str) -> None:
        pass

    return {
        "named": lambda: cache.invalidate(user="u1"),
        "tags": lambda: cache.invalidate(tags=["user:u1"]),
        "decorator": lambda: save("u1"),
        "callable": lambda: save_callable("u1"),
        "all": cache.invalidate_all,
    }


@pytest.mark.parametrize("how", ["named", "tags", "decorator", "callable", "all"])
def test_tag_invalidation_reaches_another_cache(make: MakeCache, how: str) -> None:
    store = Store(u1="old")
    a, b = make(), make()
    assert a.wait_ready(WAIT)
    assert b.wait_ready(WAIT)
    load_a, load_b = loader(a, store, "a"), loader(b, store, "b")
    assert load_a("u1") == "old"
    assert load_b("u1") == "old"
    assert load_b("u1") == "old"  # now in b's L1

    store.data["u1"] = "new"
    _invalidators(a)[how]()
    assert load_a("u1") == "new"  # I1 in the issuing cache: at once
    assert eventually(lambda: load_b("u1") == "new")
    assert load_b("u1") == "new"


def test_custom_tag_invalidation_reaches_another_cache(make: MakeCache) -> None:
    store = Store(x="old")
    a, b = make(), make()
    assert a.wait_ready(WAIT)
    assert b.wait_ready(WAIT)

    def load_on(cache: tc.Cache) -> Any:
        @cache.cached(tags=["custom:{name}"])
        def load(name: str) -> str:
            return store.read(name)

        return load

    load_a, load_b = load_on(a), load_on(b)
    assert load_a("x") == load_b("x") == "old"
    store.data["x"] = "new"
    a.invalidate(tags=["custom:x"])
    assert eventually(lambda: load_b("x") == "new")


def test_per_call_invalidation_reaches_another_cache(make: MakeCache, client: redis.Redis) -> None:
    store = Store(u1="old", u2="old")
    a, b = make(), make()
    assert a.wait_ready(WAIT)
    assert b.wait_ready(WAIT)
    load_a, load_b = loader(a, store, "a"), loader(b, store, "b")
    assert [load_a("u1"), load_b("u1"), load_b("u2")] == ["old"] * 3
    store.data.update(u1="new", u2="new")
    load_a.invalidate("u1")
    assert client.exists(load_a.cache_key("u1")) == 0
    assert load_a("u1") == "new"
    assert eventually(lambda: load_b("u1") == "new")
    assert load_b("u2") == "old"  # only that call's entry


def test_per_call_invalidation_reaches_every_call_sharing_the_key(make: MakeCache) -> None:
    store = Store(u1="old")
    a, b = make(), make()
    assert a.wait_ready(WAIT)
    assert b.wait_ready(WAIT)

    def load_on(cache: tc.Cache) -> Any:
        @cache.cached(key="{user_id}")
        def load(user_id: str, fmt: str = "plain") -> str:
            return f"{store.read(user_id)}/{fmt}"

        return load

    load_a, load_b = load_on(a), load_on(b)
    assert load_b("u1") == "old/plain"
    assert load_b("u1", "fancy") == "old/plain"  # the key ignores fmt: an L2 hit in Redis
    b.engine.local.clear()
    assert load_b("u1", "fancy") == "old/plain"
    assert load_b("u1") == "old/plain"
    assert len(b.engine.local) == 2  # two L1 entries for one Redis key
    store.data["u1"] = "new"
    load_a.invalidate("u1")
    assert eventually(lambda: len(b.engine.local) == 0)
    assert load_b("u1", "fancy") == "new/fancy"


async def test_async_per_call_and_tag_invalidation(amake: MakeCache) -> None:
    store = Store(u1="old")
    cache = amake()
    load = aloader(cache, store, "a")
    assert await load("u1") == "old"
    store.data["u1"] = "v2"
    await load.invalidate("u1")
    assert await load("u1") == "v2"
    store.data["u1"] = "v3"
    await cache.ainvalidate(user="u1")
    assert await load("u1") == "v3"


# --- I1: read-your-invalidation, on the L1 path and on the L2 path ----------------------------


@pytest.mark.parametrize("ready", [True, False], ids=["channel-up", "any-state"])
@pytest.mark.parametrize("path", ["l1", "l2"])
def test_no_read_after_invalidate_returns_the_old_value(
    make: MakeCache, path: str, ready: bool
) -> None:
    store = Store(u1="0")
    cache = make()
    if ready:
        assert cache.wait_ready(WAIT)
    load = loader(cache, store, "a")
    for i in range(1, 60):
        assert load("u1") == str(i - 1)
        if path == "l2":
            cache.engine.local.clear()  # the old value now lives in Redis only
        store.data["u1"] = str(i)
        cache.invalidate(user="u1")
        assert load("u1") == str(i)


@pytest.mark.parametrize("path", ["l1", "l2"])
def test_no_read_after_per_call_invalidate_returns_the_old_value(
    make: MakeCache, path: str
) -> None:
    store = Store(u1="0")
    cache = make()
    load = loader(cache, store, "a")
    for i in range(1, 60):
        assert load("u1") == str(i - 1)
        if path == "l2":
            cache.engine.local.clear()
        store.data["u1"] = str(i)
        load.invalidate("u1")
        assert load("u1") == str(i)


# --- I3: a value computed before an invalidation is never served after it ---------------------


class Gate:
    """Blocks the first computation after it read the store, until the test releases it."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.computations = 0

    def pass_first(self) -> None:
        self.computations += 1
        if self.computations == 1:
            self.entered.set()
            assert self.release.wait(WAIT)


def _gated_loader(cache: tc.Cache, store: Store, gate: Gate) -> Any:
    @cache.cached(tags=("user:{user_id}",))
    def load(user_id: str) -> str:
        value = store.read(user_id)
        gate.pass_first()
        return value

    return load


class AsyncGate:
    """``Gate`` for coroutines."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.computations = 0

    async def pass_first(self) -> None:
        self.computations += 1
        if self.computations == 1:
            self.entered.set()
            await self.release.wait()


def _gated_aloader(cache: tc.Cache, store: Store, gate: AsyncGate) -> Any:
    @cache.cached(tags=("user:{user_id}",))
    async def load(user_id: str) -> str:
        value = store.read(user_id)
        await gate.pass_first()
        return value

    return load


def assert_old_value_is_dead_in_l2(
    client: redis.Redis, cache: tc.Cache, key: str, old: str
) -> None:
    """Whatever L2 holds under ``key``: if it is the old value, its stamp is not current, so no
    process can serve it. (A fill that raced an invalidation may still land there when a change
    of channel trust left this process unable to tell its stamp was behind; the stamp keeps it
    dead.)"""
    raw = client.get(key)
    if raw is None:
        return
    entry = cache.engine.codec.decode(raw)
    if entry.value == old:
        current = [int(client.get(cache.engine.tag_key(t)) or 0) for t, _ in entry.stamp]
        assert [v for _, v in entry.stamp] != current


def _invalidate(cache: tc.Cache, load: Any, how: str) -> None:
    if how == "tag":
        cache.invalidate(user="u1")
    else:
        load.invalidate("u1")


@pytest.mark.parametrize("backend", ["redis", "local"])
@pytest.mark.parametrize("how", ["tag", "call"])
@pytest.mark.parametrize("late_caller", [True, False], ids=["late-caller", "no-late-caller"])
def test_computation_racing_an_invalidation_is_not_served_after_it(
    make: MakeCache,
    client: redis.Redis,
    redis_url: str,
    backend: str,
    how: str,
    late_caller: bool,
) -> None:
    store = Store(u1="old")
    gate = Gate()
    # A joiner would wait this long for the old flight, so it cannot give up and pass by luck.
    cache = make(redis_url if backend == "redis" else None, lock_timeout=LONG)
    assert cache.wait_ready(WAIT)
    load = _gated_loader(cache, store, gate)

    first: list[str] = []
    thread = threading.Thread(target=lambda: first.append(load("u1")))
    thread.start()
    assert gate.entered.wait(WAIT)  # it read "old" and is still computing
    store.data["u1"] = "new"
    _invalidate(cache, load, how)
    late: list[str] = []
    if late_caller:
        # Arrives after the invalidation: it must not join the flight that read "old". A correct
        # engine answers while that flight is still blocked; a joiner waits for the release
        # below and then returns "old".
        caller = threading.Thread(target=lambda: late.append(load("u1")))
        caller.start()
        caller.join(WAIT)
    gate.release.set()
    thread.join(WAIT)
    assert first == ["old"]  # its own caller may get it
    if late_caller:
        caller.join(WAIT)
        assert late == ["new"]

    assert load("u1") == "new"  # not from L1
    cache.engine.local.clear()
    assert load("u1") == "new"  # not from L2
    if backend == "redis":
        assert_old_value_is_dead_in_l2(client, cache, load.cache_key("u1"), "old")
        assert _gated_loader(make(), store, Gate())("u1") == "new"


@pytest.mark.parametrize("backend", ["redis", "local"])
@pytest.mark.parametrize("how", ["tag", "call"])
@pytest.mark.parametrize("late_caller", [True, False], ids=["late-caller", "no-late-caller"])
async def test_async_computation_racing_an_invalidation_is_not_served_after_it(
    amake: MakeCache,
    client: redis.Redis,
    redis_url: str,
    backend: str,
    how: str,
    late_caller: bool,
) -> None:
    store = Store(u1="old")
    gate = AsyncGate()
    cache = amake(redis_url if backend == "redis" else None, lock_timeout=LONG)
    load = _gated_aloader(cache, store, gate)

    first = asyncio.create_task(load("u1"))
    await asyncio.wait_for(gate.entered.wait(), WAIT)
    store.data["u1"] = "new"
    if how == "tag":
        await cache.ainvalidate(user="u1")
    else:
        await load.invalidate("u1")
    if late_caller:
        late = asyncio.create_task(load("u1"))  # must not join the flight that read "old"
        await asyncio.wait({late}, timeout=WAIT)
    gate.release.set()
    assert await first == "old"
    if late_caller:
        assert await late == "new"

    assert await load("u1") == "new"
    cache.engine.local.clear()
    assert await load("u1") == "new"
    if backend == "redis":
        assert_old_value_is_dead_in_l2(client, cache, load.cache_key("u1"), "old")
        assert await _gated_aloader(amake(), store, AsyncGate())("u1") == "new"


# --- I5 and the connection pool ---------------------------------------------------------------


async def test_256_tasks_on_one_cold_key_compute_once(amake: MakeCache) -> None:
    cache = amake()
    calls = 0

    @cache.cached
    async def load(key: str) -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return f"value of {key}"

    results = await asyncio.gather(*(load("k") for _ in range(256)), return_exceptions=True)
    assert results == ["value of k"] * 256
    assert calls == 1


def test_threads_on_one_cold_key_compute_once(make: MakeCache) -> None:
    cache = make()
    calls = 0
    entered, release = threading.Event(), threading.Event()

    @cache.cached
    def load(key: str) -> str:
        nonlocal calls
        calls += 1
        entered.set()
        assert release.wait(WAIT)
        return f"value of {key}"

    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(load("k"))) for _ in range(32)]
    threads[0].start()
    assert entered.wait(WAIT)
    for t in threads[1:]:
        t.start()
    assert eventually(lambda: len(cache.engine.flights.sync) == 1)
    release.set()
    for t in threads:
        t.join(WAIT)
    assert results == ["value of k"] * 32
    assert calls == 1


async def test_256_tasks_on_256_cold_keys_share_the_blocking_pool(
    amake: MakeCache, client: redis.Redis
) -> None:
    # max_connections defaults to 50. on_error="raise": a pool that refused a task (rather than
    # making it wait) would fail that caller. Generous socket and pool-wait timeouts keep a
    # loaded machine's slow replies from counting as failures (the pool wait is not a Cache
    # option, so it is set on the tier's config before the first client is made).
    cache = amake(on_error="raise", op_timeout=5.0)
    tier = cache.engine.aredis
    assert tier is not None
    tier.cfg = dataclasses.replace(tier.cfg, pool_timeout=30.0)

    @cache.cached
    async def load(i: int) -> int:
        await asyncio.sleep(0.05)
        return i * i

    results = await asyncio.gather(*(load(i) for i in range(256)), return_exceptions=True)
    assert results == [i * i for i in range(256)]
    stats = cache.stats()
    assert stats["errors"] == 0, stats["errors_by_type"]
    assert stats["computations"] == 256
    keys = [load.cache_key(i) for i in range(256)]
    assert sum(client.exists(k) for k in keys) == 256  # every fill reached Redis
    clients = client.client_list()
    assert len(clients) <= 50 + 2  # the pool, the channel, this client


async def test_aclose_releases_every_connection(redis_url: str, client: redis.Redis) -> None:
    cache = tc.Cache(redis_url)
    before = len(client.client_list())

    @cache.cached
    async def load(i: int) -> int:
        return i

    assert await asyncio.gather(*(load(i) for i in range(20))) == list(range(20))
    pool = cache.engine.aredis._clients[asyncio.get_running_loop()].connection_pool  # type: ignore[union-attr]
    await cache.aclose()
    try:
        assert eventually(lambda: len(client.client_list()) <= before, timeout=2)
    finally:
        await pool.aclose()
