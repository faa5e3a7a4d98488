"""Batch loaders (``cache.cached_many``) against real Redis, in one process: one round trip for
the read, one function call with only the missing ids, one fill pipeline; per-entry stamps (I3);
``.invalidate`` and ``.cache_key``; corrupt entries; fail-open; Cluster; sync and async.

Processes loading overlapping batches, and invalidations crossing processes, are in
``test_batch_processes.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

import tta_cache as tc
from helpers.caches import aclose_all
from helpers.proxy import TcpProxy
from helpers.trips import counted

MakeCache = Callable[..., tc.Cache]
WAIT = 10.0  # seconds a test waits for something that should happen at once (never asserted)
TAGS = ("user:{user_id}", "character:{item}")
IDS = [f"c{i:03d}" for i in range(100)]


@pytest.fixture
def make(redis_url: str) -> Iterator[MakeCache]:
    made: list[tc.Cache] = []

    def factory(url: str | None = redis_url, **options: Any) -> tc.Cache:
        cache = tc.Cache(url, namespace="batch", health_check_interval=0, **options)
        made.append(cache)
        return cache

    yield factory
    for cache in made:
        cache.close()


@pytest.fixture
async def amake(redis_url: str) -> AsyncIterator[MakeCache]:
    made: list[tc.Cache] = []

    def factory(url: str | None = redis_url, **options: Any) -> tc.Cache:
        cache = tc.Cache(url, namespace="batch", health_check_interval=0, **options)
        made.append(cache)
        return cache

    yield factory
    await aclose_all(made)


@pytest.fixture
def admin(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def loader(cache: tc.Cache, seen: list[list[str]], **options: Any) -> Any:
    """A sync batch loader of characters that records each call's ids; it leaves out "gone"."""

    @cache.cached_many(kind="character", over="character_ids", tags=TAGS, **options)
    def load_characters(user_id: str, character_ids: list[str]) -> dict[str, str]:
        seen.append(list(character_ids))
        return {c: f"{user_id}/{c}" for c in character_ids if c != "gone"}

    return load_characters


def aloader(cache: tc.Cache, seen: list[list[str]], **options: Any) -> Any:
    @cache.cached_many(kind="character", over="character_ids", tags=TAGS, **options)
    async def load_characters(user_id: str, character_ids: list[str]) -> dict[str, str]:
        seen.append(list(character_ids))
        return {c: f"{user_id}/{c}" for c in character_ids if c != "gone"}

    return load_characters


def expected(ids: list[str], user: str = "u1") -> dict[str, str]:
    return {c: f"{user}/{c}" for c in dict.fromkeys(ids) if c != "gone"}


# ---------------------------------------------------------------------- the round trips


def test_100_ids_60_cached_one_read_one_call_with_the_40_others_one_fill(
    make: MakeCache, admin: redis.Redis
) -> None:
    writer, reader = make(), make()  # the 60 come from another cache: the reader's L1 is empty
    assert writer.wait_ready(WAIT)
    assert reader.wait_ready(WAIT)
    seen: list[list[str]] = []
    load_w, load_r = loader(writer, seen), loader(reader, seen)
    cached = IDS[::5] + [c for i, c in enumerate(IDS) if i % 5 in (1, 2)]  # 60, scattered
    assert load_w("u1", cached) == expected(cached)
    load_r("u1", ["warm"])  # the reader learns the user's and the namespace's tag versions
    seen.clear()
    order = IDS[::-1]  # the caller's order, not the keys'
    with counted(admin) as trips:
        got = load_r("u1", order)
    assert got == expected(order)
    assert list(got) == order  # {id: value} in the caller's order
    missing = [c for c in order if c not in cached]
    assert seen == [missing]  # one call, exactly the 40 others, in the caller's order
    # one round trip for the read (the MGET and the 100 per-id tags' versions, pipelined),
    # one for the fill (40 SETs in one pipeline)
    assert trips.sent == 2, trips
    assert trips.commands["mget"] == 1
    assert trips.commands["evalsha"] == 1  # the versions of the 100 character tags, unknown yet
    assert trips.commands["set"] >= 40  # the fills (and the versions the script created)
    seen.clear()
    with counted(admin) as trips:
        assert reader.engine.local.maxsize
        assert load_r("u1", order) == expected(order)
    assert seen == []
    assert trips.sent == 0


def test_warm_batch_with_versions_known_is_one_mget(make: MakeCache, admin: redis.Redis) -> None:
    writer, reader = make(), make(local_maxsize=0)
    assert writer.wait_ready(WAIT)
    assert reader.wait_ready(WAIT)
    seen: list[list[str]] = []
    load_w, load_r = loader(writer, seen), loader(reader, seen)
    load_w("u1", IDS)
    load_r("u1", IDS)  # learns the versions
    seen.clear()
    with counted(admin) as trips:
        assert load_r("u1", IDS) == expected(IDS)
    assert seen == []
    assert trips.sent == 1
    assert {k: v for k, v in trips.commands.items() if k != "get"} == {"mget": 1}
    stats = reader.stats()
    assert stats["redis"]["hits"] >= 100
    assert stats["redis"]["by_kind"]["character"]["hits"] == stats["redis"]["hits"]


async def test_async_batch_reads_in_one_round_trip_and_computes_the_rest_once(
    amake: MakeCache, admin: redis.Redis
) -> None:
    writer, reader = amake(), amake()
    assert writer.wait_ready(WAIT)
    assert reader.wait_ready(WAIT)
    seen: list[list[str]] = []
    load_w, load_r = aloader(writer, seen), aloader(reader, seen)
    cached = IDS[:60]
    assert await load_w("u1", cached) == expected(cached)
    await load_r("u1", IDS)  # learns versions, fills the 40
    seen.clear()
    reader.engine.local.clear()
    with counted(admin) as trips:
        got = await load_r("u1", [*IDS, "c001", "gone"])
    assert got == expected(IDS)
    assert seen == [["gone"]]  # left out by the function: not cached, asked again
    assert trips.sent == 1  # the read; nothing to fill
    seen.clear()
    assert await load_r("u1", ["gone", "c005"]) == expected(["c005"])
    assert seen == [["gone"]]


# ---------------------------------------------------------------------- keys and invalidation


def test_each_id_is_the_entry_a_single_id_call_would_be(
    make: MakeCache, admin: redis.Redis
) -> None:
    cache = make()
    seen: list[list[str]] = []
    load = loader(cache, seen)

    def load_characters(user_id: str, character_ids: str) -> str:  # same module and qualname
        return f"{user_id}/{character_ids}"

    load_characters.__qualname__ = load.__wrapped__.__qualname__
    single = cache.cached(kind="character", tags=("user:{user_id}",))(load_characters)
    assert load.cache_key("u1", "c1") == single.cache_key("u1", "c1")
    assert load.cache_key("u1", "c1") == load.cache_key(user_id="u1", character_ids="c1")
    load("u1", ["c1", "c2"])
    assert admin.exists(load.cache_key("u1", "c1"), load.cache_key("u1", "c2")) == 2


def test_invalidate_drops_those_ids_and_a_tag_drops_one(
    make: MakeCache, admin: redis.Redis
) -> None:
    cache = make()
    assert cache.wait_ready(WAIT)
    seen: list[list[str]] = []
    load = loader(cache, seen)
    load("u1", ["c1", "c2", "c3", "c4"])
    load.invalidate("u1", ["c1", "c2"])
    assert admin.exists(load.cache_key("u1", "c1")) == 0
    seen.clear()
    assert load("u1", ["c1", "c2", "c3", "c4"]) == expected(["c1", "c2", "c3", "c4"])
    assert seen == [["c1", "c2"]]
    cache.invalidate(tags=["character:c3"])
    seen.clear()
    load("u1", ["c1", "c2", "c3", "c4"])
    assert seen == [["c3"]]
    cache.invalidate(user="u1")  # every id of the user
    seen.clear()
    load("u1", ["c4", "c1"])
    assert seen == [["c4", "c1"]]


def test_bad_over_or_templates_fail_at_decoration() -> None:
    cache = tc.Cache()
    with pytest.raises(tc.ConfigurationError, match="over='ids'"):

        @cache.cached_many(over="ids")
        def a(user_id: str, character_ids: list[str]) -> dict[str, int]: ...

    with pytest.raises(tc.ConfigurationError, match="scene_id"):

        @cache.cached_many(over="character_ids", tags=("scene:{scene_id}",))
        def b(user_id: str, character_ids: list[str]) -> dict[str, int]: ...

    with pytest.raises(tc.ConfigurationError, match="'item'"):

        @cache.cached_many(over="ids")
        def c(item: str, ids: list[str]) -> dict[str, int]: ...

    with pytest.raises(tc.ConfigurationError, match="over='missing'"):

        @tc.cached_many(over="missing")
        def d(ids: list[str]) -> dict[str, int]: ...

    cache.close()


def test_first_key_parameter_is_the_default_and_methods_skip_self() -> None:
    cache = tc.Cache()
    seen: list[list[int]] = []

    class Repo:
        @cache.cached_many(tags=("n:{item}",))
        def load(self, ids: list[int]) -> dict[int, int]:
            seen.append(list(ids))
            return {i: i * 2 for i in ids}

    repo = Repo()
    assert repo.load([3, 1, 3]) == {3: 6, 1: 2}
    assert repo.load([1, 2]) == {1: 2, 2: 4}
    assert seen == [[3, 1], [2]]
    with pytest.raises(TypeError, match="collection of ids"):
        repo.load("12")

    @cache.cached_many()
    def bad(ids: list[int]) -> Any:
        return [1]

    with pytest.raises(TypeError, match="mapping of id to value"):
        bad([1])
    cache.close()


# ---------------------------------------------------------------------- I3, corruption, I4


def test_an_invalidation_landing_while_the_batch_computes_keeps_that_entry_out(
    make: MakeCache, admin: redis.Redis
) -> None:
    cache = make()
    assert cache.wait_ready(WAIT)
    computing, landed = threading.Event(), threading.Event()
    calls: list[list[str]] = []

    @cache.cached_many(kind="character", over="ids", tags=TAGS)
    def load(user_id: str, ids: list[str]) -> dict[str, str]:
        calls.append(list(ids))
        if len(calls) == 1:
            computing.set()
            assert landed.wait(WAIT)
        return {c: f"v{len(calls)}" for c in ids}

    def invalidate() -> None:
        assert computing.wait(WAIT)
        cache.invalidate(tags=["character:c2"])  # a tag of one id
        load.invalidate("u1", ["c3"])  # and one id's key
        landed.set()

    t = threading.Thread(target=invalidate)
    t.start()
    assert load("u1", ["c1", "c2", "c3", "c4"]) == dict.fromkeys(["c1", "c2", "c3", "c4"], "v1")
    t.join()
    assert admin.exists(load.cache_key("u1", "c2"), load.cache_key("u1", "c3")) == 0
    assert admin.exists(load.cache_key("u1", "c1"), load.cache_key("u1", "c4")) == 2
    assert load("u1", ["c1", "c2", "c3", "c4"]) == {"c1": "v1", "c2": "v2", "c3": "v2", "c4": "v1"}
    assert calls[1] == ["c2", "c3"]
    assert cache.engine.stats.skipped_stale_fills == 2


def test_a_corrupt_entry_in_the_batch_is_a_counted_miss(
    make: MakeCache, admin: redis.Redis
) -> None:
    cache = make(local_maxsize=0)
    seen: list[list[str]] = []
    load = loader(cache, seen)
    load("u1", ["c1", "c2", "c3"])
    admin.set(load.cache_key("u1", "c2"), b"\x00garbage")
    admin.delete(load.cache_key("u1", "c3"))
    admin.lpush(load.cache_key("u1", "c3"), b"a list, not an entry")  # MGET reads it as absent
    seen.clear()
    assert load("u1", ["c1", "c2", "c3"]) == expected(["c1", "c2", "c3"])
    assert seen == [["c2", "c3"]]
    assert cache.stats()["decode_errors"] == 1
    seen.clear()
    assert load("u1", ["c1", "c2", "c3"]) == expected(["c1", "c2", "c3"])
    assert seen == []  # the fill overwrote both


@pytest.mark.parametrize("fault", ["blackhole", "refuse"])
def test_redis_down_serves_l1_and_computes_without_raising(
    make: MakeCache, redis_proxy: TcpProxy, fault: str
) -> None:
    cache = make(redis_proxy.url, op_timeout=0.2)
    assert cache.wait_ready(WAIT)
    seen: list[list[str]] = []
    load = loader(cache, seen)
    load("u1", ["c1", "c2"])
    getattr(redis_proxy, fault)()
    redis_proxy.cut()
    seen.clear()
    started = time.monotonic()
    assert load("u1", ["c1", "c2", "c3"]) == expected(["c1", "c2", "c3"])
    took = time.monotonic() - started
    # c1 and c2 come from L1 while the map is trusted; once the channel is known lost, tagged
    # entries are not served from L1 (I2) and are computed too
    assert len(seen) == 1
    assert seen[0][-1] == "c3"
    assert set(seen[0]) <= {"c1", "c2", "c3"}
    assert took < 5.0  # bounded by op_timeout (generous: one read, no fill, on a loaded machine)
    assert cache.stats()["errors"] >= 1


async def test_async_redis_down_computes_without_raising(
    amake: MakeCache, redis_proxy: TcpProxy
) -> None:
    cache = amake(redis_proxy.url, op_timeout=0.2)
    seen: list[list[str]] = []
    load = aloader(cache, seen, lock=True)
    redis_proxy.blackhole()
    assert await load("u1", ["c1", "c2"]) == expected(["c1", "c2"])
    assert seen == [["c1", "c2"]]
    assert cache.stats()["errors"] >= 1


def test_local_only_cache_batches_in_l1() -> None:
    cache = tc.Cache()
    seen: list[list[str]] = []
    load = loader(cache, seen)
    assert load("u1", ["a", "b"]) == expected(["a", "b"])
    assert load("u1", ["b", "c"]) == expected(["b", "c"])
    assert seen == [["a", "b"], ["c"]]
    cache.invalidate(tags=["character:a"])
    load("u1", ["a", "b"])
    assert seen[-1] == ["a"]
    cache.close()


# ---------------------------------------------------------------------- leases in one process


def test_lock_two_threads_with_overlapping_batches_compute_each_id_once(make: MakeCache) -> None:
    a, b = make(lock_timeout=5.0), make(lock_timeout=5.0)
    assert a.wait_ready(WAIT)
    assert b.wait_ready(WAIT)
    first_in, second_in = threading.Event(), threading.Event()
    calls: list[tuple[str, list[str]]] = []

    def make_loader(cache: tc.Cache, name: str) -> Any:
        @cache.cached_many(kind="character", over="ids", tags=TAGS, lock=True)
        def load(user_id: str, ids: list[str]) -> dict[str, str]:
            calls.append((name, list(ids)))
            if name == "a":
                first_in.set()
                assert second_in.wait(WAIT)  # b read while a held its leases
            else:
                second_in.set()
            return {c: f"{name}:{c}" for c in ids}

        return load

    load_a, load_b = make_loader(a, "a"), make_loader(b, "b")
    out: dict[str, Any] = {}
    t = threading.Thread(target=lambda: out.update(a=load_a("u1", IDS[:60])))
    t.start()
    assert first_in.wait(WAIT)
    got_b = load_b("u1", IDS[40:])
    t.join(WAIT)
    assert calls == [("a", IDS[:60]), ("b", IDS[60:])]  # b waited for 40..59, woken by a's fill
    assert out["a"] == {c: f"a:{c}" for c in IDS[:60]}
    assert got_b == {c: f"{'a' if c < 'c060' else 'b'}:{c}" for c in IDS[40:]}
    assert b.stats()["leases"]["wakeups"] >= 1


# ---------------------------------------------------------------------- Cluster


def test_cluster_batch_groups_ids_by_node_and_keeps_the_callers_order(
    redis_cluster_url: str,
) -> None:
    caches = [
        tc.Cache(redis_cluster_url, namespace="batch", health_check_interval=0) for _ in range(2)
    ]
    try:
        for cache in caches:
            assert cache.wait_ready(WAIT)
        seen: list[list[str]] = []
        load_a, load_b = loader(caches[0], seen), loader(caches[1], seen, lock=True)
        ids = [f"c{i}" for i in range(40)][::-1]
        assert list(load_a("u1", ids[:25])) == ids[:25]
        nodes = {
            caches[0].engine.redis.client.get_node_from_key(load_a.cache_key("u1", c)).name
            for c in ids
        }
        assert len(nodes) >= 2  # the ids live on several masters
        seen.clear()
        got = load_b("u1", ids)  # lock=True: leases taken in a second round trip
        assert list(got) == ids
        assert got == expected(ids)
        assert seen == [ids[25:]]
        seen.clear()
        caches[1].engine.local.clear()
        with counted() as trips:
            assert list(load_b("u1", ids)) == ids
        assert seen == []
        assert trips.sent <= len(nodes)  # one pipeline per node
        load_b.invalidate("u1", ids[:3])
        caches[1].invalidate(tags=["character:c0"])  # I1: this process sees it at once
        caches[1].engine.local.clear()
        seen.clear()
        assert load_b("u1", ids) == expected(ids)
        assert seen == [[*ids[:3], "c0"]]  # in the caller's order
    finally:
        for cache in caches:
            cache.close()


# ---------------------------------------------------------------------- choosing what is cached


def _judged(ids: list[str]) -> dict[str, str | None]:
    return {
        c: None if c.startswith("none") else c.upper() if c.startswith("draft") else c for c in ids
    }


def test_cache_if_and_none_ttl_judge_each_id(make: MakeCache, admin: redis.Redis) -> None:
    cache = make(local_maxsize=0)
    seen: list[list[str]] = []
    entries: list[object] = []

    @cache.cached_many(over="ids", tags=TAGS, cache_if=lambda v: v is None or not v.isupper())
    def drafts(user_id: str, ids: list[str]) -> dict[str, str | None]:
        seen.append(list(ids))
        entries.append(tc.current_entry())  # one computation of many entries: no entry handle
        return _judged(ids)

    @cache.cached_many(over="ids", tags=TAGS, none_ttl=0)
    def nones(user_id: str, ids: list[str]) -> dict[str, str | None]:
        seen.append(list(ids))
        return _judged(ids)

    ids = ["a", "draft1", "none1"]
    assert drafts("u1", ids) == {"a": "a", "draft1": "DRAFT1", "none1": None}
    assert entries == [None]
    assert [admin.exists(drafts.cache_key("u1", c)) for c in ids] == [1, 0, 1]
    seen.clear()
    assert drafts("u1", ids) == {"a": "a", "draft1": "DRAFT1", "none1": None}
    assert seen == [["draft1"]]  # refused by cache_if: computed again, the others served
    assert nones("u1", ids) == {"a": "a", "draft1": "DRAFT1", "none1": None}
    assert [admin.exists(nones.cache_key("u1", c)) for c in ids] == [1, 1, 0]
    seen.clear()
    nones("u1", ids)
    assert seen == [["none1"]]  # none_ttl=0: a None is never kept
    assert cache.stats()["not_cached"]["refused"] >= 2


async def test_async_none_ttl_keeps_a_none_for_its_own_ttl(
    amake: MakeCache, admin: redis.Redis
) -> None:
    cache = amake()
    seen: list[list[str]] = []

    @cache.cached_many(over="ids", tags=TAGS, ttl=600, none_ttl=30)
    async def load(user_id: str, ids: list[str]) -> dict[str, str | None]:
        seen.append(list(ids))
        return _judged(ids)

    assert await load("u1", ["a", "none1"]) == {"a": "a", "none1": None}
    kept = admin.pttl(load.cache_key("u1", "none1"))
    assert 0 < kept <= 40_000 < admin.pttl(load.cache_key("u1", "a"))  # 30 s, jittered
    cache.engine.local.clear()
    assert await load("u1", ["none1", "a"]) == {"none1": None, "a": "a"}
    assert seen == [["a", "none1"]]  # both served from Redis, the None included


# ---------------------------------------------------------------------- middleware


def test_middleware_sees_the_batch_steps(make: MakeCache) -> None:
    from tta_cache.observability import BaseMiddleware, Operation

    class Recorder(BaseMiddleware):
        def __init__(self) -> None:
            self.ops: list[Operation] = []

        def __call__(self, op: Operation, call_next: Callable[[], Any], /) -> Any:
            self.ops.append(op)
            return call_next()

    recorder = Recorder()
    cache = make(middleware=[recorder], telemetry=False)
    assert cache.wait_ready(WAIT)
    load = loader(cache, [])
    load("u1", ["c1", "c2", "c3"])
    shapes = [(op.name, op.command, op.batch_size, op.kind) for op in recorder.ops]
    assert shapes == [
        ("read_many", "PIPELINE MGET", 3, "character"),
        ("compute", "", 0, "character"),
        ("fill_many", "PIPELINE SET", 3, "character"),
    ]


# ---------------------------------------------------------------------- the example


def test_the_batch_loading_example_runs(redis_url: str) -> None:
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "TTA_CACHE_REDIS_URL": redis_url}
    done = subprocess.run(
        [sys.executable, str(root / "examples" / "batch_loading.py")],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "queries: [['keeper', 'gull', 'nobody'], ['ferryman', 'guide'], ['keeper']]" in (
        done.stdout
    )


def test_the_usage_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "usage.md").read_text()
    start = text.index("## Batch loaders\n\n```python\n") + len("## Batch loaders\n\n```python\n")
    exec(compile(text[start : text.index("```", start)], "usage.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert printed[:3] == [
        "query ['keeper', 'gull']",
        "query ['guide', 'nobody']",
        "query ['keeper', 'gull']",
    ]
