"""Leases (I5 across processes): with ``lock=True`` a cold key computes once in all processes.

The stampede tests spawn real interpreters (``spawn``), each with its own ``Cache``; the function
counts its runs in Redis (``INCR``), so "exactly once" is counted outside every cache. A run's
value carries a random token: everyone getting the same token is everyone getting *its* value.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import secrets
import signal
import threading
import time
from collections.abc import Iterator
from multiprocessing.context import SpawnProcess
from pathlib import Path
from typing import Any

import pytest
import redis

import tta_cache as tc
from helpers.caches import aclose_all
from tta_cache.coherence import Message
from tta_cache.tiers import Lease, RedisConfig, RedisTier

NS = "lease"
WAIT = 10.0  # bound on every wait in these tests; never reached when things work


@pytest.fixture
def caches(redis_url: str) -> Iterator[list[tc.Cache]]:
    """Two caches on one Redis: two "processes" as far as leases and the channel go."""
    made = [
        tc.Cache(redis_url, namespace=NS, lock_timeout=5.0, health_check_interval=0)
        for _ in range(2)
    ]
    for cache in made:
        assert cache.wait_ready(WAIT)
    yield made
    for cache in made:
        cache.close()


# ---------------------------------------------------------------------- the scripts


def test_lease_read_grants_one_caller_and_names_the_holder_to_the_others(redis_url: str) -> None:
    tier = RedisTier(RedisConfig.from_url(redis_url), lambda: 86_400)
    try:
        first = Lease("k:lease", "tok-1", 5_000, "ns:invalidate")
        second = Lease("k:lease", "tok-2", 5_000, "ns:invalidate")
        got = tier.lease_read("k", (), first, False)
        assert (got.raw, got.granted, got.holder) == (None, True, "tok-1")
        other = tier.lease_read("k", ("ns:tag:*",), second, False)
        assert (other.raw, other.granted, other.holder) == (None, False, "tok-1")
        assert other.versions is not None
        assert len(other.versions) == 1
        # a present entry is returned without touching the lease, unless forced
        tier.write("k", b"payload", 60_000)
        seen = tier.lease_read("k", (), second, False)
        assert (seen.raw, seen.granted, seen.holder) == (b"payload", False, None)
        forced = tier.lease_read("k", (), second, True)
        assert (forced.raw, forced.granted, forced.holder) == (b"payload", False, "tok-1")
        assert 0 < tier.client.pttl("k:lease") <= 5_000  # a dead holder frees the key
    finally:
        tier.close()


def test_fill_writes_releases_only_its_own_lease_and_publishes_the_notice(redis_url: str) -> None:
    tier = RedisTier(RedisConfig.from_url(redis_url), lambda: 86_400)
    listener = redis.Redis.from_url(redis_url)
    pubsub = listener.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe("ns:invalidate")
    try:
        mine = Lease("k:lease", "tok-1", 5_000, "ns:invalidate")
        not_mine = Lease("k:lease", "tok-2", 5_000, "ns:invalidate")
        assert tier.lease_read("k", (), mine, False).granted
        tier.fill("k", b"v", 60_000, not_mine, Message.for_fills("o2", ["k"]))
        assert tier.client.get("k:lease") == b"tok-1"  # another's token releases nothing
        tier.fill("k", b"v2", 60_000, mine, Message.for_fills("o1", ["k"]))
        assert tier.client.get("k") == b"v2"
        assert tier.client.get("k:lease") is None
        assert 0 < tier.client.pttl("k") <= 60_000
        notices = []
        deadline = time.monotonic() + WAIT
        while len(notices) < 2 and time.monotonic() < deadline:
            msg = pubsub.get_message(timeout=0.1)
            if msg is not None:
                notices.append(Message(json.loads(msg["data"])))
        assert [(m.origin, m.fills, m.sent_ns) for m in notices] == [
            ("o2", ("k",), 0),
            ("o1", ("k",), 0),
        ]
    finally:
        pubsub.close()
        listener.close()
        tier.close()


# ---------------------------------------------------------------------- in one process


def test_waiter_gets_the_holders_value_and_is_woken_by_the_fill_notice(
    caches: list[tc.Cache], monkeypatch: pytest.MonkeyPatch
) -> None:
    # B's re-reads are paced to the end of its wait (5 s, lock_timeout): before then only A's
    # fill notice can send it reading again. Without the pacing, B's own 5 ms re-read could find
    # A's fill first, and whether the notice woke it would be the scheduler's choice.
    leases = caches[1].engine.leases
    pause = leases.pause

    def slow_pause(wait: Any, holder: str | None) -> float | None:
        paced = pause(wait, holder)
        return None if paced is None else max(paced, wait.until - time.monotonic())

    monkeypatch.setattr(leases, "pause", slow_pause)
    runs: list[str] = []
    entered = threading.Event()
    release = threading.Event()

    def make(cache: tc.Cache, name: str) -> Any:
        @cache.cached(lock=True)
        def load(k: str) -> str:
            runs.append(name)
            entered.set()
            assert release.wait(WAIT)
            return f"{name}:{k}"

        return load

    holder, waiter = (make(c, n) for c, n in zip(caches, ("A", "B"), strict=True))
    got: dict[str, str] = {}
    a = threading.Thread(target=lambda: got.setdefault("A", holder("x")))
    a.start()
    assert entered.wait(WAIT)
    b = threading.Thread(target=lambda: got.setdefault("B", waiter("x")))
    b.start()
    deadline = time.monotonic() + WAIT
    while not caches[1].stats()["leases"]["waits"] and time.monotonic() < deadline:
        time.sleep(0.005)  # B is waiting on A's lease
    release.set()
    a.join(WAIT)
    b.join(WAIT)
    assert got == {"A": "A:x", "B": "A:x"}
    assert runs == ["A"]
    counted = caches[1].stats()["leases"]
    assert counted["waits"] == 1
    assert counted["wakeups"] == 1  # A's notice reached B through the channel
    assert counted["timeouts"] == 0  # and B did not wait its lease out
    assert caches[0].stats()["leases"]["granted"] == 1


def test_a_stuck_holder_is_waited_for_at_most_lock_timeout(redis_url: str) -> None:
    caches = [
        tc.Cache(redis_url, namespace=NS, lock_timeout=0.3, health_check_interval=0)
        for _ in range(2)
    ]
    release = threading.Event()
    entered = threading.Event()
    try:
        for cache in caches:
            assert cache.wait_ready(WAIT)

        @caches[0].cached(lock=True)
        def stuck(k: str) -> str:
            entered.set()
            release.wait(WAIT)
            return "stuck"

        @caches[1].cached(lock=True)
        def fine(k: str) -> str:
            return "fine"

        holder = threading.Thread(target=stuck, args=("x",))
        holder.start()
        assert entered.wait(WAIT)
        assert fine("x") == "fine"  # took the expired lease over and computed
        assert caches[1].stats()["leases"]["granted"] == 1
    finally:
        release.set()
        holder.join(WAIT)
        for cache in caches:
            cache.close()


def test_a_fill_behind_an_invalidation_is_not_written_but_wakes_the_waiters(
    caches: list[tc.Cache],
) -> None:
    truth = {"v": 1}
    entered = threading.Event()
    release = threading.Event()

    def make(cache: tc.Cache, stall: bool) -> Any:
        @cache.cached(lock=True, tags=("doc:{k}",))
        def load(k: str) -> int:  # one function (one key) in two "processes"
            seen = truth["v"]
            if stall:
                entered.set()
                assert release.wait(WAIT)
            return seen

        return load

    holder, waiter = make(caches[0], True), make(caches[1], False)

    got: dict[str, int] = {}
    a = threading.Thread(target=lambda: got.setdefault("holder", holder("d")))
    a.start()
    assert entered.wait(WAIT)
    b = threading.Thread(target=lambda: got.setdefault("waiter", waiter("d")))
    b.start()
    deadline = time.monotonic() + WAIT
    while not caches[1].stats()["leases"]["waits"] and time.monotonic() < deadline:
        time.sleep(0.005)
    truth["v"] = 2
    caches[0].invalidate(doc="d")  # the holder computed from version 1: its fill is stale (I3)
    release.set()
    a.join(WAIT)
    b.join(WAIT)
    assert got == {"holder": 1, "waiter": 2}
    assert caches[0].stats()["leases"]["granted"] == 1
    assert caches[1].stats()["leases"]["granted"] == 1  # woken, found nothing, took the lease
    assert holder("d") == 2
    assert waiter("d") == 2


def test_an_invalidated_entry_is_recomputed_once_under_the_lease(caches: list[tc.Cache]) -> None:
    # The old entry is still in Redis but stamped behind: the readers claim the lease over it.
    truth = {"v": 1}
    runs: list[int] = []

    def make(cache: tc.Cache) -> Any:
        @cache.cached(lock=True, tags=("doc:{k}",))
        def load(k: str) -> int:
            runs.append(truth["v"])
            time.sleep(0.05)
            return truth["v"]

        return load

    loads = [make(c) for c in caches]
    assert loads[0]("d") == 1
    truth["v"] = 2
    caches[0].invalidate(doc="d")
    deadline = time.monotonic() + WAIT
    while caches[1].stats()["invalidations"]["received"] < 1 and time.monotonic() < deadline:
        time.sleep(0.005)
    got: list[int] = []
    threads = [
        threading.Thread(target=lambda f=f: got.append(f("d"))) for f in loads for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    assert got == [2] * 16
    assert runs == [1, 2]


async def test_async_waiters_get_the_holders_value(caches: list[tc.Cache]) -> None:
    runs: list[str] = []

    def make(cache: tc.Cache, name: str) -> Any:
        @cache.cached(lock=True)
        async def load(k: str) -> str:
            runs.append(name)
            await asyncio.sleep(0.1)
            return f"{name}:{k}"

        return load

    a, b = (make(c, n) for c, n in zip(caches, ("A", "B"), strict=True))
    try:
        results = await asyncio.gather(*(f("x") for _ in range(50) for f in (a, b)))
    finally:
        await aclose_all(caches)
    assert len(set(results)) == 1
    assert len(runs) == 1
    assert results[0] == f"{runs[0]}:x"
    assert sum(c.stats()["leases"]["granted"] for c in caches) == 1


def test_leases_in_cluster_mode_compute_once(redis_cluster_url: str) -> None:
    # op_timeout 5 s: this tests the lease, not latency (under a CPU hog a lease read outlasted
    # the default 250 ms once, failed open, and the waiter computed a second time)
    caches = [
        tc.Cache(
            redis_cluster_url,
            namespace=NS,
            lock_timeout=5.0,
            op_timeout=5.0,
            health_check_interval=0,
        )
        for _ in range(2)
    ]
    runs: list[str] = []
    release = threading.Event()
    try:
        for cache in caches:
            assert cache.wait_ready(WAIT)

        def make(cache: tc.Cache, name: str) -> tuple[Any, Any]:
            @cache.cached(lock=True)
            def plain(k: str) -> str:  # the key and its lease sit in different slots
                runs.append(f"plain-{name}")
                release.wait(0.1)
                return name

            @cache.cached(lock=True)
            def session(session_id: str) -> str:  # a hash tag: one slot, an atomic script
                runs.append(f"session-{name}")
                release.wait(0.1)
                return name

            return plain, session

        loads = [make(cache, name) for name, cache in zip("AB", caches, strict=True)]
        for which in (0, 1):
            got: list[str] = []
            threads = [
                threading.Thread(target=lambda f=pair[which], out=got: out.append(f("s1")))
                for pair in loads
                for _ in range(4)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join(WAIT)
            assert len(got) == 8
            assert len(set(got)) == 1
        assert sorted(r.split("-")[0] for r in runs) == ["plain", "session"]
    finally:
        for cache in caches:
            cache.close()


# ---------------------------------------------------------------------- across processes


def _stampede_process(
    url: str,
    index: int,
    callers: int,
    use_async: bool,
    lock_timeout: float,
    key: str,
    stall_first: bool,
    go: Any,
    ready: Any,
    out: str,
) -> None:
    """One process of a stampede: ``callers`` threads (or tasks) call the cold ``key`` at ``go``.

    The function takes 100 ms and counts its runs in Redis; with ``stall_first`` the first run
    (across all processes) records its pid and stalls for a minute, to be killed."""
    counter = redis.Redis.from_url(url)
    cache = tc.Cache(url, namespace=NS, lock_timeout=lock_timeout, health_check_interval=0)
    if not cache.wait_ready(WAIT):
        raise RuntimeError("invalidation channel not up")

    def run(k: str) -> tuple[dict[str, Any], float]:
        n = int(counter.incr(f"runs:{k}"))
        stall = stall_first and k == key and n == 1
        if stall:
            counter.set("first-holder", os.getpid())
        value = {"run": n, "pid": os.getpid(), "token": secrets.token_hex(8)}
        return value, 60.0 if stall else 0.1

    warm: dict[str, int] = {}
    if use_async:

        @cache.cached(lock=True)
        async def aload(k: str) -> dict[str, Any]:
            value, seconds = run(k)
            await asyncio.sleep(seconds)
            return value

        async def main() -> list[list[Any]]:
            await aload(f"warm{index}")  # connections, scripts, code paths
            warm.update(cache.stats()["leases"])
            ready.release()
            await asyncio.get_running_loop().run_in_executor(None, go.wait)
            started = time.time()

            async def one() -> list[Any]:
                return [await aload(key), time.time()]

            return [[started, None], *await asyncio.gather(*(one() for _ in range(callers)))]

        results = asyncio.run(main())
    else:

        @cache.cached(lock=True)
        def load(k: str) -> dict[str, Any]:
            value, seconds = run(k)
            time.sleep(seconds)
            return value

        load(f"warm{index}")
        warm.update(cache.stats()["leases"])
        barrier = threading.Barrier(callers + 1)
        results = [[0.0, None] for _ in range(callers + 1)]

        def one(i: int) -> None:
            barrier.wait()
            results[i + 1] = [load(key), time.time()]

        threads = [threading.Thread(target=one, args=(i,)) for i in range(callers)]
        for t in threads:
            t.start()
        ready.release()
        go.wait()
        results[0] = [time.time(), None]
        barrier.wait()
        for t in threads:
            t.join()
    after = cache.stats()["leases"]
    leases = {k: after[k] - warm[k] for k in after}  # the stampede's own
    Path(out).write_text(json.dumps({"results": results, "leases": leases}))
    cache.close()
    counter.close()


class Stampede:
    """``processes`` spawned interpreters released together; results read back from files."""

    def __init__(self, url: str, tmp: Path, processes: int, callers: int, **options: Any) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.go = ctx.Event()
        self.ready = ctx.Semaphore(0)
        self.files = [tmp / f"p{i}.json" for i in range(processes)]
        self.procs: list[SpawnProcess] = [
            ctx.Process(
                target=_stampede_process,
                args=(
                    url,
                    i,
                    callers,
                    options.get("use_async", False),
                    options.get("lock_timeout", 5.0),
                    options.get("key", "cold"),
                    options.get("stall_first", False),
                    self.go,
                    self.ready,
                    str(self.files[i]),
                ),
                daemon=True,
            )
            for i in range(processes)
        ]
        for p in self.procs:
            p.start()
        for _ in self.procs:
            assert self.ready.acquire(timeout=60), "a process never got ready"

    def release(self) -> None:
        self.go.set()

    def join(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        for p in self.procs:
            p.join(max(0.0, deadline - time.monotonic()))
        assert not any(p.is_alive() for p in self.procs), "a caller hangs"

    def kill_all(self) -> None:
        for p in self.procs:
            if p.is_alive():
                p.kill()
                p.join(5)

    def outcomes(self) -> tuple[list[dict[str, Any]], float, list[dict[str, Any]]]:
        """(every caller's value, the stampede's wall time, per-process lease stats)."""
        values, ends, starts, leases = [], [], [], []
        for f in self.files:
            if not f.exists():
                continue  # a killed process
            data = json.loads(f.read_text())
            starts.append(data["results"][0][0])
            for value, end in data["results"][1:]:
                values.append(value)
                ends.append(end)
            leases.append(data["leases"])
        return values, max(ends) - min(starts), leases


def run_stampede(url: str, tmp: Path, processes: int, callers: int, **opts: Any) -> Any:
    stampede = Stampede(url, tmp, processes, callers, **opts)
    try:
        stampede.release()
        stampede.join()
        for p in stampede.procs:
            assert p.exitcode == 0
        return stampede.outcomes()
    finally:
        stampede.kill_all()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("use_async", "callers"), [(False, 32), (True, 256)], ids=["threads", "tasks"]
)
def test_stampede_across_processes_computes_once(
    redis_url: str, tmp_path: Path, use_async: bool, callers: int
) -> None:
    counter = redis.Redis.from_url(redis_url)
    try:
        one = tmp_path / "one"
        many = tmp_path / "many"
        one.mkdir()
        many.mkdir()
        base_values, baseline, _ = run_stampede(
            redis_url, one, 1, 1, use_async=use_async, key="alone"
        )
        assert len(base_values) == 1
        values, wall, leases = run_stampede(redis_url, many, 4, callers, use_async=use_async)
        assert len(values) == 4 * callers
        assert int(counter.get("runs:cold") or 0) == 1  # once across every process
        assert len({v["token"] for v in values}) == 1  # and everyone got that run's value
        assert sum(s["granted"] for s in leases) == 1
        kind = "tasks" if use_async else "threads"
        print(
            f"\nstampede 4 processes x {callers} {kind}, function 100 ms: wall "
            f"{wall * 1000:.1f} ms; one uncontended miss {baseline * 1000:.1f} ms; "
            f"ratio {wall / baseline:.2f}x; lease waits {[s['waits'] for s in leases]}, "
            f"fill-notice wakeups {[s['wakeups'] for s in leases]}"
        )
    finally:
        counter.close()


@pytest.mark.slow
@pytest.mark.parametrize("use_async", [False, True], ids=["threads", "tasks"])
def test_killed_lease_holder_frees_the_key_once_its_lease_expires(
    redis_url: str, tmp_path: Path, use_async: bool
) -> None:
    counter = redis.Redis.from_url(redis_url)
    stampede = Stampede(
        redis_url, tmp_path, 3, 8, use_async=use_async, lock_timeout=1.0, stall_first=True
    )
    try:
        stampede.release()
        deadline = time.monotonic() + WAIT
        while (pid := counter.get("first-holder")) is None and time.monotonic() < deadline:
            time.sleep(0.005)
        assert pid is not None
        killed_at = time.monotonic()
        os.kill(int(pid), signal.SIGKILL)  # mid-computation: its function sleeps 60 s
        stampede.join(timeout=20.0)  # nobody hangs
        took = time.monotonic() - killed_at
        survivors = [p for p in stampede.procs if p.pid != int(pid)]
        assert [p.exitcode for p in survivors] == [0, 0]
        values, _, leases = stampede.outcomes()
        assert len(values) == 16
        runs = int(counter.get("runs:cold") or 0)
        assert runs == 2, (leases, values)  # the dead run, and one other
        assert {v["run"] for v in values} == {2}
        assert len({v["token"] for v in values}) == 1
        print(
            f"\nholder SIGKILLed ({'tasks' if use_async else 'threads'}, lock_timeout 1 s): the "
            f"survivors had the value {took:.2f} s later; runs {int(counter.get('runs:cold'))}; "
            f"leases granted {[s['granted'] for s in leases]}"
        )
    finally:
        stampede.kill_all()
        counter.close()
