"""Real OS processes for the coherence tests: readers, a writer, and a group that bounds them.

Processes are started with the ``spawn`` context (a fresh interpreter each, importing tta_cache
from the editable install), so nothing is shared with the test process but what is passed in:

- the *source of truth* is a shared-memory integer (``Control.truth``), outside the cache and
  outside Redis, so it stays readable while Redis is down. The cached function returns it, so the
  value a reader gets *is* the version of the data it was computed from.
- ``Control.go`` / ``Control.stop`` are shared flags; ``Control.ready`` has a slot per process.

A reader calls the cached function in a tight loop and records, run-length encoded, every read:
``[version, first read's time_ns, last read's time_ns, reads, tag version]`` per run of reads
that got the same version while the reader's map held the same tag version (read just before
the call; 0 when unknown). One entry per change instead of one per read; nothing is lost for the
staleness figures.
Each process writes a JSON result file and exits 0; an exception exits non-zero.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.context import SpawnContext, SpawnProcess
from pathlib import Path
from typing import Any

import redis

import tta_cache as tc

NAMESPACE = "coh"
TAG = "doc:d1"
CHANNEL = f"{NAMESPACE}:invalidate"


def spawn_context() -> SpawnContext:
    return multiprocessing.get_context("spawn")


@dataclass
class Control:
    """Shared memory between the test and its processes (pass it as a Process argument)."""

    truth: Any  # RawValue("q"): the current version of the source of truth
    go: Any  # RawValue("i"): 1 once every process is ready
    stop: Any  # RawValue("i"): 1 when readers should finish
    ready: Any  # RawArray("i", n): slot i is 1 once process i has warmed up

    @classmethod
    def create(cls, ctx: SpawnContext, processes: int, truth: int = 1) -> Control:
        return cls(
            truth=ctx.RawValue("q", truth),
            go=ctx.RawValue("i", 0),
            stop=ctx.RawValue("i", 0),
            ready=ctx.RawArray("i", processes),
        )

    def wait_ready(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while sum(self.ready[:count]) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {sum(self.ready[:count])}/{count} processes got ready")
            time.sleep(0.005)


def make_cache(url: str, truth: Any, **options: Any) -> tuple[tc.Cache, Callable[[str], int]]:
    """The cache every process uses, and the tagged function that reads the source of truth."""
    cache = tc.Cache(url, namespace=NAMESPACE, local_maxsize=1000, **options)

    @cache.cached(kind="doc", tags=("doc:{doc_id}",))
    def load(doc_id: str) -> int:
        return int(truth.value)

    return cache, load


def channel_report(cache: tc.Cache) -> dict[str, Any]:
    sub = cache.engine.subscriber
    return {
        "origin": cache.engine.origin,
        "stats": cache.stats(),
        "transitions": list(sub.transitions) if sub is not None else [],
        "lags": list(sub.lags) if sub is not None else [],
    }


def quiet_logs() -> None:
    # Fail-open warnings (Redis down, channel lost) are expected here and counted in stats().
    logging.getLogger("tta_cache").setLevel(logging.ERROR)


def reader(
    index: int, url: str, ctl: Control, out: str, max_seconds: float, doc_id: str = "d1"
) -> None:
    """Read the tagged entry (tag ``doc:<doc_id>``) in a tight loop until ``ctl.stop``; write
    runs and figures."""
    quiet_logs()
    cache, load = make_cache(url, ctl.truth)
    tag = f"doc:{doc_id}"
    if not cache.wait_ready(15.0):
        raise RuntimeError("invalidation channel not up")
    for _ in range(2000):  # warm-up: L1 filled, code paths hot
        load(doc_id)
    ctl.ready[index] = 1
    deadline = time.monotonic() + max_seconds
    while not ctl.go.value:
        if time.monotonic() > deadline:
            raise TimeoutError("never told to go")
        time.sleep(0.001)
    runs: list[list[int]] = []
    older: list[list[int]] = []  # [time_ns, version read, newer version read before]
    time_ns = time.time_ns
    versions = cache.engine.versions
    map_lock = versions.lock
    stop = ctl.stop
    cur = top = cur_map = -1
    first = last = count = 0
    deadline_ns = time_ns() + int(max_seconds * 1e9)
    while not stop.value and last < deadline_ns:
        for _ in range(64):
            t = time_ns()
            with map_lock:  # merge moves the map, then gen, under this lock: see both or neither
                m = versions.get(tag) or 0
            v = load(doc_id)
            if v != cur or m != cur_map:
                if count:
                    runs.append([cur, first, last, count, cur_map])
                if v < top:
                    older.append([t, v, top])
                top = max(top, v)
                cur, cur_map, first, count = v, m, t, 0
            last = t
            count += 1
    runs.append([cur, first, last, count, cur_map])
    Path(out).write_text(json.dumps({"runs": runs, "older": older, **channel_report(cache)}))
    cache.close()


def follower(index: int, url: str, ctl: Control, out: str, want: int, max_seconds: float) -> None:
    """Serve the tagged entry from L1, then read it in a tight loop until it returns ``want`` or
    ``max_seconds`` pass; write whether it got there (``reached``) and the channel figures."""
    quiet_logs()
    cache, load = make_cache(url, ctl.truth)
    if not cache.wait_ready(15.0):
        raise RuntimeError("invalidation channel not up")
    for _ in range(200):
        load("d1")
    ctl.ready[index] = 1
    deadline = time.monotonic() + max_seconds
    reads = 0
    reached = False
    while not reached and time.monotonic() < deadline:
        reads += 1
        reached = load("d1") >= want
    Path(out).write_text(json.dumps({"reached": reached, "reads": reads, **channel_report(cache)}))
    cache.close()


def writer(
    index: int,
    url: str,
    ctl: Control,
    out: str,
    count: int,
    interval: float,
    kill_every: int,
    quiet: float,
    seed: int,
) -> None:
    """Bump the source of truth and invalidate its tag ``count`` times; log each invalidation.

    Every ``kill_every``-th time (0: never) the channel is cut first with ``CLIENT KILL TYPE
    pubsub`` (a plain client), so the invalidation is published while every subscriber is gone,
    and then nothing is invalidated for ``quiet`` seconds: a process that missed the message and
    kept trusting its map would serve the old value all that time.
    """
    quiet_logs()
    cache, _ = make_cache(url, ctl.truth)
    if not cache.wait_ready(15.0):
        raise RuntimeError("invalidation channel not up")
    admin = redis.Redis.from_url(url)
    rng = random.Random(seed)
    ctl.ready[index] = 1
    deadline = time.monotonic() + 60
    while not ctl.go.value:
        if time.monotonic() > deadline:
            raise TimeoutError("never told to go")
        time.sleep(0.001)
    log: list[list[int]] = []  # [version, call start ns, call end ns, killed, tag version]
    kills: list[int] = []
    version = int(ctl.truth.value)
    for k in range(1, count + 1):
        time.sleep(interval * (0.5 + rng.random()))
        kill = bool(kill_every) and k % kill_every == 0
        if kill:
            kills.append(int(admin.client_kill_filter(_type="pubsub")))
        version += 1
        ctl.truth.value = version
        t0 = time.time_ns()
        cache.invalidate(tags=[TAG])
        t1 = time.time_ns()
        log.append([version, t0, t1, int(kill), cache.engine.versions.get(TAG) or 0])
        if kill:
            time.sleep(quiet)
    Path(out).write_text(json.dumps({"log": log, "kills": kills, **channel_report(cache)}))
    admin.close()
    cache.close()


class ProcessGroup:
    """Spawned processes that never outlive the test: ``close()`` kills stragglers."""

    def __init__(self, ctx: SpawnContext) -> None:
        self.ctx = ctx
        self.processes: list[SpawnProcess] = []

    def start(self, target: Callable[..., None], *args: Any, name: str = "") -> SpawnProcess:
        process = self.ctx.Process(target=target, args=args, name=name or target.__name__)
        process.start()
        self.processes.append(process)
        return process

    def join(self, timeout: float, processes: list[SpawnProcess] | None = None) -> None:
        """Wait for ``processes`` (default: all) to exit; fail if one is late or exits non-zero."""
        deadline = time.monotonic() + timeout
        for process in processes if processes is not None else self.processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                raise TimeoutError(f"{process.name} still running after {timeout}s")
            if process.exitcode != 0:
                raise RuntimeError(f"{process.name} exited with {process.exitcode}")

    def close(self) -> None:
        for process in self.processes:
            if process.is_alive():
                process.terminate()
        for process in self.processes:
            process.join(3)
            if process.is_alive():
                process.kill()
                process.join(3)
            process.close()
        self.processes.clear()


@contextlib.contextmanager
def process_group() -> Iterator[ProcessGroup]:
    group = ProcessGroup(spawn_context())
    try:
        yield group
    finally:
        group.close()
