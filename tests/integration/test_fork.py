"""Pre-fork servers: a ``Cache`` made and used in a parent, then forked (issue: a forked worker's
invalidations never reached its parent, which took them for its own echo).

Real OS processes made with the ``fork`` start method and a real Redis. The source of truth is a
shared-memory integer; a writer bumps it, invalidates, and records when ``invalidate()`` returned
(``time.monotonic`` is one clock for every process on Linux); every other process then reads in a
tight loop until it gets the new value. The time from that return to the start of the last read
that still got the old value is the staleness I2 bounds by 50 ms. Turns are taken with a
Barrier, never with sleeps.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

import tta_cache as tc

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform == "win32", reason="no fork"),
    # Python 3.12+ warns about fork() with threads running; that is the case under test.
    pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning"),
]

BOUND = 0.050  # I2, seconds
ROUNDS = 50  # invalidations per writer
GIVE_UP = 2.0  # seconds a reader waits for a value before recording a failure


def fork_context() -> Any:
    return multiprocessing.get_context("fork")


def build(url: str, truth: Any) -> tuple[tc.Cache, Callable[[str], int]]:
    cache = tc.Cache(url, namespace="fork", local_maxsize=1000)

    @cache.cached(kind="doc", tags=("user:{user_id}",))
    def load(user_id: str) -> int:
        return int(truth.value)

    return cache, load


def staleness(load: Callable[[str], int], want: int, since: float) -> float | None:
    """Read until ``load`` returns ``want``: seconds from ``since`` (the writer's return) to the
    start of the last read that still returned an older value (0: none did), None on give-up.

    Measured at the start of a read, as in the coherence tests: a process that the scheduler
    keeps off the CPU serves nothing meanwhile, stale or fresh."""
    last_stale = None
    deadline = time.monotonic() + GIVE_UP
    while (started := time.monotonic()) < deadline:
        if load("u1") == want:
            return 0.0 if last_stale is None else max(0.0, last_stale - since)
        last_stale = started
    return None


def take_turns(
    me: int,
    processes: int,
    cache: tc.Cache,
    load: Callable[[str], int],
    truth: Any,
    returned: Any,
    lags: Any,
    barrier: Any,
    conns: Any,
) -> None:
    """Each process in turn writes ROUNDS times while the others read.

    ``lags[w][r][k]`` is the staleness reader r measured for writer w's k-th invalidation (-1: it
    never saw it); ``conns[2*me]`` and ``conns[2*me+1]`` get the CLIENT ID of this process's
    command connection and the local port of its channel's socket."""
    assert load("u1") == truth.value  # warm: L1 and Redis hold it, the channel is up
    assert cache.wait_ready(10)
    conns[2 * me], conns[2 * me + 1] = connection_identity(cache)
    for writer in range(processes):
        for k in range(ROUNDS):
            barrier.wait(30)
            slot = (writer * ROUNDS + k) * processes
            if me == writer:
                truth.value += 1
                cache.invalidate(user="u1")
                returned[writer * ROUNDS + k] = time.monotonic()
            barrier.wait(30)
            want = int(truth.value)
            if me != writer:
                stale = staleness(load, want, returned[writer * ROUNDS + k])
                lags[slot + me] = -1.0 if stale is None else stale
            else:
                assert load("u1") == want  # I1 in the writer itself


def connection_identity(cache: tc.Cache) -> tuple[int, int]:
    """(CLIENT ID of a command sent through the cache's pool, local port of its channel)."""
    tier = cache.engine.redis
    assert tier is not None
    client_id = tier.execute("client id", lambda client: client.client_id())
    sub = cache.engine.subscriber
    assert sub is not None
    assert sub._pubsub is not None
    return int(client_id), sub._pubsub.connection._sock.getsockname()[1]


def run_group(url: str, workers: int) -> tuple[list[list[list[float]]], list[int]]:
    """A master that builds and uses the cache, then forks ``workers`` that take turns with it."""
    ctx = fork_context()
    processes = workers + 1
    truth = ctx.RawValue("q", 1)
    returned = ctx.RawArray("d", processes * ROUNDS)
    lags = ctx.RawArray("d", processes * ROUNDS * processes)
    barrier = ctx.Barrier(processes)
    conns = ctx.RawArray("q", 2 * processes)
    cache, load = build(url, truth)
    try:
        assert load("u1") == 1  # the master uses it before forking: L1, lanes, channel
        assert cache.wait_ready(10)

        def worker(me: int) -> None:
            take_turns(me, processes, cache, load, truth, returned, lags, barrier, conns)

        children = [ctx.Process(target=worker, args=(i + 1,)) for i in range(workers)]
        for child in children:
            child.start()
        take_turns(0, processes, cache, load, truth, returned, lags, barrier, conns)
        for child in children:
            child.join(60)
            assert child.exitcode == 0, f"worker {child.name} exited {child.exitcode}"
    finally:
        barrier.abort()
        cache.close()
    by_writer = [
        [
            [lags[(w * ROUNDS + k) * processes + r] for k in range(ROUNDS)]
            for r in range(processes)
            if r != w
        ]
        for w in range(processes)
    ]
    return by_writer, list(conns)


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def report(by_writer: list[list[list[float]]]) -> None:
    """Print p50/p99/max per writer -> reader pair (``pytest -s``)."""
    for w, readers in enumerate(by_writer):
        others = [r for r in range(len(by_writer)) if r != w]
        for r, lags in zip(others, readers, strict=True):
            ok = sorted(x for x in lags if x >= 0)
            if ok:
                print(
                    f"writer {w} -> reader {r}: {len(ok)}/{len(lags)} seen, "
                    f"p50 {ok[len(ok) // 2] * 1e3:.2f} ms, p99 {p99(ok) * 1e3:.2f} ms, "
                    f"max {ok[-1] * 1e3:.2f} ms"
                )
            else:
                print(f"writer {w} -> reader {r}: 0/{len(lags)} seen")


def test_a_forked_childs_invalidations_reach_its_parent_and_back_within_the_bound(
    redis_url: str,
) -> None:
    by_writer, conns = run_group(redis_url, workers=1)
    report(by_writer)
    for writer, readers in enumerate(by_writer):
        for lags in readers:
            assert -1.0 not in lags, f"writer {writer}'s invalidation was never seen: {lags}"
            assert p99(lags) <= BOUND, (writer, lags)
    assert len(set(conns[0::2])) == 2, conns  # no command connection shared
    assert len(set(conns[1::2])) == 2, conns  # no channel connection shared


def test_a_preforked_master_and_three_workers_see_each_others_invalidations(
    redis_url: str,
) -> None:
    by_writer, conns = run_group(redis_url, workers=3)
    report(by_writer)
    every = [lag for readers in by_writer for lags in readers for lag in lags]
    assert -1.0 not in every, by_writer
    assert len(every) == 4 * 3 * ROUNDS
    assert p99(every) <= BOUND, sorted(every)[-10:]
    assert len(set(conns[0::2])) == 4, conns  # no command connection shared
    assert len(set(conns[1::2])) == 4, conns  # no channel connection shared


def test_a_forked_child_has_its_own_origin_channel_l1_and_async_client(redis_url: str) -> None:
    ctx = fork_context()
    truth = ctx.RawValue("q", 1)
    cache, load = build(redis_url, truth)

    @cache.cached(kind="doc", tags=("user:{user_id}",))
    async def aload(user_id: str) -> int:
        return int(truth.value)

    async def aread() -> int:
        try:
            return await aload("u1")
        finally:
            assert cache.engine.aredis is not None
            await cache.engine.aredis.aclose()  # this loop's client, before the loop closes

    try:
        assert load("u1") == 1
        assert asyncio.run(aread()) == 1  # the parent's loop had a client of its own
        assert cache.wait_ready(10)
        parent = {
            "origin": cache.engine.origin,
            "pid": os.getpid(),
        }
        out = ctx.Queue()

        def child() -> None:
            engine = cache.engine
            facts = {
                "origin": engine.origin,
                "l1_size": len(engine.local),
                "subscriber_before_use": engine.subscriber is not None,
                "trusted_before_use": engine.versions.current(),
            }
            facts["read"] = load("u1")
            facts["ready"] = cache.wait_ready(10)
            facts["subscriber_alive"] = engine.subscriber._thread.is_alive()
            facts["aread"] = asyncio.run(aread())
            facts["health"] = cache.health()["overall_status"]
            facts["errors"] = cache.stats()["errors"]
            out.put(facts)

        proc = ctx.Process(target=child)
        proc.start()
        facts = out.get(timeout=60)
        proc.join(30)
        assert proc.exitcode == 0
    finally:
        cache.close()
    assert facts["origin"] != parent["origin"]
    assert not facts["origin"].startswith(f"{parent['pid']}-")
    assert facts["l1_size"] == 0  # the parent's L1 is not trusted blind
    assert facts["subscriber_before_use"] is False  # the parent's thread is not in the child
    assert facts["trusted_before_use"] is False
    assert facts["read"] == 1
    assert facts["aread"] == 1
    assert facts["ready"] is True
    assert facts["subscriber_alive"] is True
    assert facts["health"] == "healthy"
    assert facts["errors"] == 0
