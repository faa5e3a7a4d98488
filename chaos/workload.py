"""One worker process: a Cache, ``threads`` reader threads and ``tasks`` asyncio reader tasks,
one writer thread and one writer task, each read checked against the truth (:mod:`.truth`).

The mix is shaped like a TTA service: reads of a player's session and narrative context
(decorated functions, sync in threads and async in tasks), batch-ish reads of several players at
once (``get_many`` of raw entries the owners keep current, misses loaded one by one through the
decorated function), and a steady trickle of invalidations (each entity has one owner: its
writer bumps the truth, calls ``invalidate()``, records when it returned, and refreshes the
entity's raw entry). Actors pause a little between operations (players think); the pauses shape
the load, they order nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import threading
import time
from pathlib import Path
from typing import Any

import tta_cache as tc
from tta_cache.demo.measures import Histogram

from .truth import AFTER, CALM, FAULT, STOP, Control

NAMESPACE = "chaos"
BATCH = 6  # entities per batch read


def tag(entity: int) -> str:
    return f"ent:e{entity}"


def make_cache(cfg: dict[str, Any]) -> tc.Cache:
    return tc.Cache(
        cfg["url"],
        namespace=NAMESPACE,
        local_maxsize=cfg.get("local_maxsize", 5000),
        op_timeout=cfg.get("op_timeout", 0.25),
        bump_replicas=cfg.get("bump_replicas", 0),
        ttl={"session": 120, "narrative": 120, "default": 120},
    )


class Worker:
    """The actors of one process and what they measure."""

    def __init__(self, index: int, cfg: dict[str, Any], ctl: Control, cache: tc.Cache) -> None:
        self.index, self.cfg, self.ctl, self.cache = index, cfg, ctl, cache
        self.pid = os.getpid()
        self.entities = int(cfg["entities"])
        self.lock = threading.Lock()  # guards the figures below (threads and the loop thread)
        self.ops: dict[str, int] = {}
        self.errors: list[str] = []
        self.error_count = 0
        self.misrouted = 0
        self.cancelled = 0
        self.candidates: list[list[int]] = []
        self.invalidations: list[list[int]] = []
        self.hist = {p: Histogram() for p in ("calm", "fault")}
        self.invalidate_max_ms = {"calm": 0.0, "fault": 0.0, "sync": 0.0, "async": 0.0}
        self.recover_ns: int | None = None
        self.rss: list[list[float]] = []
        truth = ctl.truth
        writers = 2 * int(cfg["workers"])
        self.owned = {
            slot: [e for e in range(self.entities) if e % writers == 2 * index + slot]
            for slot in (0, 1)
        }

        @cache.cached(kind="session", tags=("ent:e{entity}",))
        def session(entity: int) -> list[Any]:
            return [f"s:{entity}", entity, truth[entity]]

        @cache.cached(kind="narrative", tags=("ent:e{entity}",))
        def narrative(entity: int) -> list[Any]:
            return [f"n:{entity}", entity, truth[entity]]

        @cache.cached(kind="session", tags=("ent:e{entity}",))
        async def asession(entity: int) -> list[Any]:
            return [f"s:{entity}", entity, truth[entity]]

        @cache.cached(kind="narrative", tags=("ent:e{entity}",))
        async def anarrative(entity: int) -> list[Any]:
            return [f"n:{entity}", entity, truth[entity]]

        self.sync_loads = (("s", session), ("n", narrative))
        self.async_loads = (("s", asession), ("n", anarrative))

    # ------------------------------------------------------------------ bookkeeping

    def _phase(self) -> str | None:
        phase = self.ctl.phase.value
        return "calm" if phase == CALM else "fault" if phase in (FAULT, AFTER) else None

    def _count(self, op: str) -> None:
        with self.lock:
            self.ops[op] = self.ops.get(op, 0) + 1

    def _error(self, op: str, exc: BaseException) -> None:
        with self.lock:
            self.error_count += 1
            if len(self.errors) < 5:
                self.errors.append(f"{op}: {type(exc).__name__}: {exc}")

    def _checked(self, prefix: str, entity: int, value: Any, began: int, floor: int) -> None:
        if not isinstance(value, list) or value[:2] != [f"{prefix}:{entity}", entity]:
            with self.lock:
                self.misrouted += 1
                if len(self.errors) < 5:
                    self.errors.append(f"wrong reply for {prefix}:{entity}: {value!r}")
            return
        if value[2] < floor:
            with self.lock:
                self.candidates.append([entity, int(value[2]), began, self.pid])

    def _timed(self, op: str, began: int, phase: str | None) -> None:
        if phase is not None:
            with self.lock:
                self.hist[phase].add((time.monotonic_ns() - began) / 1e9)
        self._count(op)

    # ------------------------------------------------------------------ sync actors

    def reader_thread(self, seed: int) -> None:
        rng = random.Random(seed)
        done, think = self.ctl.done, float(self.cfg["think"])
        while self.ctl.phase.value != STOP:
            phase = self._phase()
            if rng.random() < 0.2:
                self._batch(rng, phase)
            else:
                prefix, load = rng.choice(self.sync_loads)
                entity = rng.randrange(self.entities)
                began = time.monotonic_ns()
                floor = done[entity]
                try:
                    value = load(entity)
                except Exception as exc:
                    self._error("read", exc)
                else:
                    self._checked(prefix, entity, value, began, floor)
                self._timed("read", began, phase)
            time.sleep(rng.random() * think)

    def _batch(self, rng: random.Random, phase: str | None) -> None:
        entities = rng.sample(range(self.entities), BATCH)
        began = time.monotonic_ns()
        floors = [self.ctl.done[e] for e in entities]
        try:
            found = self.cache.get_many([f"b:{e}" for e in entities])
            for entity, floor in zip(entities, floors, strict=True):
                value = found.get(f"b:{entity}")
                if value is None:
                    self._checked("s", entity, self.sync_loads[0][1](entity), began, floor)
                else:
                    self._checked("s", entity, value, began, floor)
        except Exception as exc:
            self._error("batch", exc)
        self._timed("batch", began, phase)

    def writer_thread(self, seed: int) -> None:
        rng = random.Random(seed)
        owned = self.owned[0]
        while self.ctl.phase.value != STOP and owned:
            entity = rng.choice(owned)
            version = self._bump(entity)
            began = time.monotonic_ns()
            try:
                self.cache.invalidate(tags=[tag(entity)])
            except Exception as exc:
                self._error("invalidate", exc)
            self._returned(entity, version, began, "sync")
            with contextlib.suppress(Exception):  # fail-open; a failed refresh is a batch miss
                self.cache.set(f"b:{entity}", [f"s:{entity}", entity, version], tags=[tag(entity)])
            time.sleep(rng.uniform(0.5, 1.5) * float(self.cfg["write_every"]))

    def _bump(self, entity: int) -> int:
        version = int(self.ctl.truth[entity]) + 1  # one owner per entity: no lost update
        self.ctl.truth[entity] = version
        return version

    def _returned(self, entity: int, version: int, began: int, how: str) -> None:
        returned = time.monotonic_ns()
        self.ctl.done[entity] = version
        phase = self._phase()
        with self.lock:
            self.invalidations.append([entity, version, returned, self.pid])
            if phase is not None:
                ms = (returned - began) / 1e6
                for key in (phase, how) if phase == "fault" else (phase,):
                    self.invalidate_max_ms[key] = max(self.invalidate_max_ms[key], ms)
        self._count("invalidate")

    # ------------------------------------------------------------------ async actors

    async def reader_task(self, seed: int) -> None:
        rng = random.Random(seed)
        done, think = self.ctl.done, float(self.cfg["think"]) * 4
        cancel = float(self.cfg.get("cancel_after", 0.0))
        while self.ctl.phase.value != STOP:
            phase = self._phase()
            prefix, load = rng.choice(self.async_loads)
            entity = rng.randrange(self.entities)
            began = time.monotonic_ns()
            floor = done[entity]
            try:
                if cancel and self.ctl.phase.value == FAULT and rng.random() < 0.5:
                    value = await asyncio.wait_for(load(entity), rng.uniform(0.1, 2.0) * cancel)
                else:
                    value = await load(entity)
            except asyncio.TimeoutError:
                with self.lock:
                    self.cancelled += 1
            except Exception as exc:
                self._error("aread", exc)
            else:
                self._checked(prefix, entity, value, began, floor)
            self._timed("aread", began, phase)
            await asyncio.sleep(rng.random() * think)

    async def writer_task(self, seed: int) -> None:
        rng = random.Random(seed)
        owned = self.owned[1]
        while self.ctl.phase.value != STOP and owned:
            entity = rng.choice(owned)
            version = self._bump(entity)
            began = time.monotonic_ns()
            try:
                await self.cache.ainvalidate(tags=[tag(entity)])
            except Exception as exc:
                self._error("ainvalidate", exc)
            self._returned(entity, version, began, "async")
            with contextlib.suppress(Exception):
                value = [f"s:{entity}", entity, version]
                await self.cache.aset(f"b:{entity}", value, tags=[tag(entity)])
            await asyncio.sleep(rng.uniform(0.5, 1.5) * float(self.cfg["write_every"]))

    async def tasks_main(self, seed: int) -> None:
        actors = [self.reader_task(seed * 1000 + i) for i in range(int(self.cfg["tasks"]))]
        await asyncio.gather(self.writer_task(seed * 1000 + 999), *actors)

    # ------------------------------------------------------------------ monitor

    def monitor(self) -> None:
        """Samples RSS every ``rss_every`` s; notes the first L2 hit after the fault ended."""
        stats, ctl = self.cache.engine.stats, self.ctl
        rss_every = float(self.cfg.get("rss_every", 5.0))
        next_rss = 0.0
        hits = stats.redis_hits
        while ctl.phase.value != STOP:
            now_ns = time.monotonic_ns()
            end = ctl.fault_end_ns.value
            seen = stats.redis_hits
            if end and self.recover_ns is None and now_ns > end and seen > hits:
                self.recover_ns = now_ns - end
                ctl.recovered[self.index] = max(1, self.recover_ns)
            if not end or now_ns <= end:
                hits = seen
            if time.monotonic() >= next_rss:
                next_rss = time.monotonic() + rss_every
                self.rss.append([time.time(), rss_bytes()])
            time.sleep(0.01)

    # ------------------------------------------------------------------ run

    def run(self, seed: int) -> dict[str, Any]:
        threads = [threading.Thread(target=self.monitor, daemon=True)]
        threads.append(threading.Thread(target=self.writer_thread, args=(seed,), daemon=True))
        for i in range(int(self.cfg["threads"])):
            threads.append(
                threading.Thread(target=self.reader_thread, args=(seed * 100 + i,), daemon=True)
            )
        threads.append(
            threading.Thread(target=asyncio.run, args=(self.tasks_main(seed),), daemon=True)
        )
        for thread in threads:
            thread.start()
        self.ctl.ready[self.index] = 1
        for thread in threads:
            thread.join()
        return self.report()

    def report(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "pid": self.pid,
            "ops": self.ops,
            "errors": self.errors,
            "error_count": self.error_count,
            "misrouted": self.misrouted,
            "cancelled": self.cancelled,
            "candidates": self.candidates,
            "invalidations": self.invalidations,
            "hist": {p: h.counts for p, h in self.hist.items()},
            "invalidate_max_ms": self.invalidate_max_ms,
            "recover_ns": self.recover_ns,
            "rss": self.rss,
            "stats": {k: v for k, v in self.cache.stats().items() if not isinstance(v, dict)},
        }


def rss_bytes() -> int:
    with open("/proc/self/statm") as file:
        return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def quiet() -> None:
    # Fail-open warnings (Redis down, channel lost) are the expected case here.
    logging.getLogger("tta_cache").setLevel(logging.CRITICAL)


def _run(index: int, cfg: dict[str, Any], ctl: Control, out: str, cache: tc.Cache) -> None:
    worker = Worker(index, cfg, ctl, cache)
    result = worker.run(int(cfg.get("seed", 1)) * 100 + index)
    cache.close()
    Path(out).write_text(json.dumps(result))


def worker_main(index: int, cfg: dict[str, Any], ctl: Control, out: str) -> None:
    """A spawned worker: its own Cache, channel up before it reports ready."""
    quiet()
    cache = make_cache(cfg)
    if cfg["url"] is not None and not cache.wait_ready(30.0):
        raise RuntimeError("invalidation channel not up")
    _run(index, cfg, ctl, out, cache)


def prefork_main(cfg: dict[str, Any], ctl: Control, outs: list[str]) -> None:
    """A pre-fork server: makes and uses a Cache, then forks the workers, which inherit it."""
    import multiprocessing

    quiet()
    cache = make_cache(cfg)
    if not cache.wait_ready(30.0):
        raise RuntimeError("invalidation channel not up")
    warm = Worker(0, cfg, ctl, cache)  # the parent uses the cache before forking
    for entity in range(int(cfg["entities"])):
        warm.sync_loads[entity % 2][1](entity)
    cache.invalidate(tags=[tag(0)])
    ctx = multiprocessing.get_context("fork")
    children = [
        ctx.Process(target=_run, args=(i, cfg, ctl, out, cache), name=f"forked-{i}")
        for i, out in enumerate(outs)
    ]
    for child in children:
        child.start()
    for child in children:
        child.join()
        if child.exitcode != 0:
            raise RuntimeError(f"{child.name} exited with {child.exitcode}")
    cache.close()
