"""Batch loaders across real OS processes (``spawn``): overlapping batches under ``lock=True``
compute each id once, and one id's invalidation in one process drops only that id in another,
within I2's bound.

Each computation is counted in Redis (``INCR runs:<id>``), outside the caches. The interleaving
is forced with multiprocessing Events, never sleeps.
"""

from __future__ import annotations

import json
import multiprocessing
import statistics
import time
from pathlib import Path
from typing import Any

import pytest
import redis

import tta_cache as tc

NS = "batchp"
TAGS = ("user:{user_id}", "character:{item}")
IDS = [f"c{i:03d}" for i in range(100)]
WAIT = 30.0
ROUNDS = 20
ATTEMPTS = 3
BOUND_MS = 50.0  # I2


def _loader(cache: tc.Cache, url: str, name: str, hooks: dict[str, Any]) -> Any:
    counter = redis.Redis.from_url(url)

    @cache.cached_many(kind="character", over="ids", tags=TAGS, lock=True)
    def load(user_id: str, ids: list[str]) -> dict[str, str]:
        pipe = counter.pipeline()
        for c in ids:
            pipe.incr(f"runs:{c}")
        pipe.rpush(f"calls:{name}", json.dumps(ids))
        pipe.execute()
        hook = hooks.get("computing")
        if hook is not None:
            hook()
        return {c: f"{name}:{c}" for c in ids}

    return load


def _overlap_process(
    url: str, name: str, ids: list[str], first: Any, second: Any, start: Any, out: str
) -> None:
    """Round 1: forced interleaving (``a`` holds its leases until ``b`` has read and computes);
    round 2: both released by one Barrier on a fresh user."""
    # op_timeout 5 s: this tests leases, not latency (a fill timing out on a loaded machine would
    # leave the other process waiting for a notice that never comes, then computing)
    cache = tc.Cache(url, namespace=NS, lock_timeout=10.0, op_timeout=5.0, health_check_interval=0)
    assert cache.wait_ready(WAIT)
    hooks: dict[str, Any] = {}
    load = _loader(cache, url, name, hooks)
    if name == "a":
        hooks["computing"] = lambda: (first.set(), second.wait(WAIT))
    else:
        assert first.wait(WAIT)  # a holds the leases of its 60 ids
        hooks["computing"] = second.set
    got1 = load("u1", ids)
    hooks.clear()
    start.wait(WAIT)
    got2 = load("u2", ids)
    leases = cache.stats()["leases"]
    Path(out).write_text(json.dumps({"one": got1, "two": got2, "leases": leases}))
    cache.close()


@pytest.mark.slow
def test_two_processes_loading_overlapping_batches_compute_each_id_once(
    redis_url: str, tmp_path: Path
) -> None:
    ctx = multiprocessing.get_context("spawn")
    first, second = ctx.Event(), ctx.Event()
    start = ctx.Barrier(2)
    batches = {"a": IDS[:60], "b": IDS[40:]}
    files = {name: tmp_path / f"{name}.json" for name in batches}
    procs = [
        ctx.Process(
            target=_overlap_process,
            args=(redis_url, name, ids, first, second, start, str(files[name])),
            daemon=True,
        )
        for name, ids in batches.items()
    ]
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join(120)
        assert [p.exitcode for p in procs] == [0, 0]
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
    counter = redis.Redis.from_url(redis_url)
    try:
        runs = {c: int(counter.get(f"runs:{c}") or 0) for c in IDS}
        assert runs == dict.fromkeys(IDS, 2), runs  # once per user, across both processes
        calls_b = [json.loads(c) for c in counter.lrange("calls:b", 0, -1)]
    finally:
        counter.close()
    a, b = (json.loads(files[n].read_text()) for n in "ab")
    # round 1: b computed only the ids a did not hold, then waited for a's fill of the others
    assert calls_b[0] == IDS[60:]
    assert a["one"] == {c: f"a:{c}" for c in IDS[:60]}
    assert b["one"] == {c: f"{'a' if c < 'c060' else 'b'}:{c}" for c in IDS[40:]}
    assert b["leases"]["wakeups"] >= 1
    # round 2 (free-running): every id had one value, whoever computed it
    overlap = set(IDS[40:60])
    assert all(a["two"][c] == b["two"][c] for c in overlap)
    assert list(a["two"]) == IDS[:60]
    assert list(b["two"]) == IDS[40:]


def _reader_process(url: str, truth: Any, armed: Any, seen: Any, commands: Any, out: str) -> None:
    """Reads the batch of 10 ids in a tight loop each round until the watched id's value moves;
    records when, and which ids were computed meanwhile."""
    cache = tc.Cache(url, namespace=NS, health_check_interval=0)
    assert cache.wait_ready(WAIT)
    computed: list[str] = []
    ids = IDS[:10]

    @cache.cached_many(kind="character", over="ids", tags=TAGS)
    def load(user_id: str, ids: list[str]) -> dict[str, int]:
        computed.extend(ids)
        return {c: int(truth[int(c[1:])]) for c in ids}

    load("u1", ids)
    rounds = []
    while (command := commands.get(timeout=WAIT)) is not None:
        index, value = command
        computed.clear()
        armed.set()
        deadline = time.monotonic() + WAIT
        while load("u1", ids)[ids[index]] != value:
            assert time.monotonic() < deadline, "the invalidation never arrived"
        rounds.append({"at": time.time_ns(), "computed": list(computed)})
        seen.set()
    Path(out).write_text(json.dumps(rounds))
    cache.close()


def _measure_invalidation_lags(redis_url: str, tmp_path: Path) -> list[float]:
    """One reader process, ROUNDS invalidations of one id's tag each; the ms from each
    ``invalidate()`` call to the reader's first read of the new value. Asserts that each round
    recomputed only that id."""
    ctx = multiprocessing.get_context("spawn")
    truth = ctx.RawArray("q", 100)
    armed, seen = ctx.Event(), ctx.Event()
    commands = ctx.Queue()
    tmp_path.mkdir(exist_ok=True)
    out = tmp_path / "reader.json"
    proc = ctx.Process(
        target=_reader_process,
        args=(redis_url, truth, armed, seen, commands, str(out)),
        daemon=True,
    )
    proc.start()
    cache = tc.Cache(redis_url, namespace=NS, health_check_interval=0)
    sent: list[int] = []
    try:
        assert cache.wait_ready(WAIT)
        for r in range(ROUNDS):
            index = r % 10
            armed.clear()
            seen.clear()
            commands.put((index, int(truth[index]) + 1))
            assert armed.wait(WAIT)  # the reader loops on L1 hits
            truth[index] += 1
            sent.append(time.time_ns())
            cache.invalidate(tags=[f"character:{IDS[index]}"])
            assert seen.wait(WAIT)
        commands.put(None)
        proc.join(WAIT)
        assert proc.exitcode == 0
    finally:
        cache.close()
        if proc.is_alive():
            proc.kill()
    rounds = json.loads(out.read_text())
    for r, got in enumerate(rounds):
        assert got["computed"] == [IDS[r % 10]]  # only that id, recomputed once
    return sorted((got["at"] - t) / 1e6 for got, t in zip(rounds, sent, strict=True))


@pytest.mark.slow
def test_one_ids_invalidation_drops_only_that_id_in_another_process_within_50ms(
    redis_url: str, tmp_path: Path
) -> None:
    # I2 as a measured p90 of 20 rounds under 50 ms. A 2-core machine shared with other work
    # can starve either process for tens of ms now and then, so the measurement is retried
    # (up to ATTEMPTS times, each printed); the "only that id" part is asserted every round.
    tried: list[list[float]] = []
    for attempt in range(ATTEMPTS):
        lags = _measure_invalidation_lags(redis_url, tmp_path / f"attempt{attempt}")
        tried.append(lags)
        p90 = lags[int(0.9 * len(lags)) - 1]
        print(
            f"\nbatch invalidation seen by the other process (attempt {attempt + 1}): median "
            f"{statistics.median(lags):.2f} ms, p90 {p90:.2f} ms, max {lags[-1]:.2f} ms"
        )
        if p90 < BOUND_MS:
            return
    pytest.fail(f"p90 over {BOUND_MS} ms in {ATTEMPTS} attempts: {tried}")
