"""Throughput under concurrency: reads/s and p50/p99 per call at 1, 16, 256 and 1,024 asyncio
tasks (and 1, 8, 32 threads), every read an L2 hit of its own task's key.

Systems, measured in the same run, interleaved (each round times every system once, in a rotated
order, so the shared machine's noise falls on all of them alike):

- ``tta-cache``: an ``async def`` decorated with ``@cache.cached``, ``local_maxsize=0`` (every
  call is a Redis read), auto-pipelining on (the default); ``pipelining=False``; and L1 on.
- ``redis.asyncio``: a bare ``GET`` per call on a client with a 50-connection blocking pool.
- ``hand-built pipeline``: the floor to approach: per round, one ``redis.asyncio`` pipeline of
  one ``GET`` per task (what perfect coalescing would send), each read's latency the round's.
- aiocache (``RedisCache``) and cashews (``redis://``) decorators, if importable (``nox -s bench``
  installs them; a note says when one is skipped).

A task reads in a loop; reads/s is the median over rounds of reads / wall time, p50/p99 are
over every call timed in every round, ``load`` the 1-minute load average when the system's rounds
ran. Sync: threads calling a decorated ``def`` vs redis-py ``GET`` on a 50-connection pool.

    .venv/bin/python -m benchmarks.bench_throughput [--quick] [--json P] [--plot P.png]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import logging
import os
import statistics
import threading
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter_ns
from types import ModuleType
from typing import Any

import redis
import redis.asyncio as aredis

import tta_cache as tc

from ._harness import Row, machine, print_table, redis_server, run_async, write_json

TASKS = (1, 16, 256, 1024)
THREADS = (1, 8, 32)
KEYS = 1024
TTL = 600

Read = Callable[[int], Awaitable[Any]]


@dataclass
class Figures:
    """One system at one concurrency, over every round."""

    rates: list[float] = field(default_factory=list)
    latencies: list[int] = field(default_factory=list)
    loads: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return statistics.median(self.rates)

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000 if ordered else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "reads_per_s": self.rate,
            "p50_us": self.pct(0.5),
            "p99_us": self.pct(0.99),
            "load": statistics.median(self.loads),
        }


def _load() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


async def _tasks(read: Read, tasks: int, per: int, into: Figures) -> None:
    """``tasks`` tasks, each reading its own key ``per`` times."""
    lat = into.latencies

    async def worker(w: int) -> None:
        for _ in range(per):
            t = perf_counter_ns()
            await read(w)
            lat.append(perf_counter_ns() - t)

    gc.disable()
    start = perf_counter_ns()
    try:
        await asyncio.gather(*(worker(w) for w in range(tasks)))
    finally:
        took = perf_counter_ns() - start
        gc.enable()
    into.rates.append(tasks * per / (took / 1e9))


def _pipeline_reader(
    client: Any, keys: list[str]
) -> Callable[[int, int, Figures], Awaitable[None]]:
    """The floor: ``per`` rounds, each one pipeline of one GET per task."""

    async def run(tasks: int, per: int, into: Figures) -> None:
        gc.disable()
        start = perf_counter_ns()
        try:
            for _ in range(per):
                t = perf_counter_ns()
                pipe = client.pipeline(transaction=False)
                for w in range(tasks):
                    pipe.get(keys[w])
                await pipe.execute()
                into.latencies.extend([perf_counter_ns() - t] * tasks)
        finally:
            took = perf_counter_ns() - start
            gc.enable()
        into.rates.append(tasks * per / (took / 1e9))

    return run


def _value(i: int) -> dict[str, Any]:
    return {"character": f"c{i}", "mood": "curious", "level": i % 40}


async def _systems(
    stack: AsyncExitStack, url: str, caches: list[tc.Cache]
) -> tuple[dict[str, Any], list[str]]:
    """name -> (tasks, per, figures) coroutine function; notes on skipped peers."""
    notes: list[str] = []
    systems: dict[str, Any] = {}
    reads: list[Read] = []

    def ours(**options: Any) -> Read:
        cache = tc.Cache(url, namespace="thru", **options)
        stack.push_async_callback(cache.aclose)
        caches.append(cache)

        @cache.cached(kind="character", ttl=TTL)
        async def load(i: int) -> dict[str, Any]:
            return _value(i)

        return load

    def tasked(read: Read) -> Callable[[int, int, Figures], Awaitable[None]]:
        reads.append(read)

        async def run(tasks: int, per: int, into: Figures) -> None:
            await _tasks(read, tasks, per, into)

        return run

    systems["tta-cache"] = tasked(ours(local_maxsize=0))
    systems["tta-cache pipelining=False"] = tasked(ours(local_maxsize=0, pipelining=False))
    systems["tta-cache L1 on"] = tasked(ours())
    pool = aredis.BlockingConnectionPool.from_url(url, max_connections=50)
    client = aredis.Redis(connection_pool=pool)
    stack.push_async_callback(client.aclose, close_connection_pool=True)
    keys = [f"raw:{i}" for i in range(KEYS)]
    await client.mset(dict.fromkeys(keys, b"x" * 64))

    async def raw(i: int) -> Any:
        return await client.get(keys[i])

    systems["redis.asyncio pool=50"] = tasked(raw)
    systems["hand-built pipeline"] = _pipeline_reader(client, keys)
    for name, make in (("aiocache", _aiocache), ("cashews", _cashews)):
        try:
            module = importlib.import_module(name)
        except ImportError:
            notes.append(f"{name}: skipped, not importable (nox -s bench installs it)")
            continue
        systems[name] = tasked(await make(module, url, stack))
    for read in reads:  # fill every key, one at a time
        for w in range(max(TASKS)):
            await read(w)
    for run in systems.values():  # warm every connection
        await run(max(TASKS), 1, Figures())
    return systems, notes


async def _aiocache(module: ModuleType, url: str, stack: AsyncExitStack) -> Read:
    host, port = url.split("//")[1].split("/", 1)[0].split(":")
    logging.getLogger("aiocache").setLevel(logging.CRITICAL)  # its misses are logged per call
    wrapper = module.cached(
        ttl=TTL,
        cache=module.RedisCache,
        endpoint=host,
        port=int(port),
        pool_max_size=50,  # as the raw client's: callers wait for a connection, not fail
        connection_pool_class=aredis.BlockingConnectionPool,
    )

    async def load(i: int) -> dict[str, Any]:
        return _value(i)

    decorated = wrapper(load)
    stack.push_async_callback(decorated.cache.close)
    return decorated  # type: ignore[no-any-return]


async def _cashews(module: ModuleType, url: str, stack: AsyncExitStack) -> Read:
    cache = module.Cache()
    cache.setup(url)
    stack.push_async_callback(cache.close)

    @cache(ttl=TTL)
    async def load(i: int) -> dict[str, Any]:
        return _value(i)

    return load  # type: ignore[no-any-return]


async def run_tasks(
    url: str, quick: bool, tasks_list: tuple[int, ...] = TASKS, rounds: int | None = None
) -> tuple[dict[str, dict[int, Figures]], list[str]]:
    budget = 150_000 if quick else 600_000  # reads per system per round, about
    rounds = rounds or (3 if quick else 7)
    caches: list[tc.Cache] = []
    async with AsyncExitStack() as stack:
        systems, notes = await _systems(stack, url, caches)
        errors = sum(c.stats()["errors"] for c in caches)
        out: dict[str, dict[int, Figures]] = {}
        for name in systems:
            out[name] = {}
        names = list(systems)
        for tasks in tasks_list:
            per = max(2, min(2_000, budget // 50 // tasks))
            for r in range(rounds):
                for i in range(len(names)):
                    name = names[(r + i) % len(names)]
                    figures = out[name].setdefault(tasks, Figures())
                    figures.loads.append(_load())
                    await systems[name](tasks, per, figures)
        errors = sum(c.stats()["errors"] for c in caches) - errors
        if errors:  # a fail-open read is no Redis read: the figures would flatter us
            notes.append(f"INVALID: tta-cache saw {errors} Redis errors while timed")
    return out, notes


def run_threads(url: str, quick: bool) -> dict[str, dict[int, Figures]]:
    rounds = 3 if quick else 7
    cache = tc.Cache(url, namespace="thru-sync", local_maxsize=0)

    @cache.cached(kind="character", ttl=TTL)
    def load(i: int) -> dict[str, Any]:
        return _value(i)

    client = redis.Redis(
        connection_pool=redis.BlockingConnectionPool.from_url(url, max_connections=50)
    )
    client.mset({f"raw:{i}": b"x" * 64 for i in range(KEYS)})
    systems: dict[str, Callable[[int], Any]] = {
        "tta-cache (sync)": load,
        "redis-py pool=50": lambda i: client.get(f"raw:{i}"),
    }
    out: dict[str, dict[int, Figures]] = {}
    for name in systems:
        out[name] = {}
    names = list(systems)
    try:
        for threads in THREADS:
            per = max(20, (600 if quick else 3000) // threads)
            for r in range(rounds + 1):  # round 0 warms up
                for i in range(len(names)):
                    name = names[(r + i) % len(names)]
                    figures = out[name].setdefault(threads, Figures()) if r else Figures()
                    figures.loads.append(_load())
                    _threads(systems[name], threads, per, figures)
    finally:
        cache.close()
        client.close()
    return out


def _threads(read: Callable[[int], Any], threads: int, per: int, into: Figures) -> None:
    barrier = threading.Barrier(threads + 1)
    lat = into.latencies

    def worker(w: int) -> None:
        barrier.wait()
        for _ in range(per):
            t = perf_counter_ns()
            read(w)
            lat.append(perf_counter_ns() - t)

    pool = [threading.Thread(target=worker, args=(w,)) for w in range(threads)]
    for thread in pool:
        thread.start()
    barrier.wait()
    start = perf_counter_ns()
    for thread in pool:
        thread.join()
    into.rates.append(threads * per / ((perf_counter_ns() - start) / 1e9))


def _table(title: str, out: dict[str, dict[int, Figures]], unit: str) -> None:
    print(f"\n{title}")
    print(f"{'system':32} {unit:>6} {'reads/s':>10} {'p50 us':>9} {'p99 us':>9} {'load':>5}")
    for name, by in out.items():
        for n, f in by.items():
            d = f.as_dict()
            print(
                f"{name:32} {n:>6} {d['reads_per_s']:>10,.0f} {d['p50_us']:>9,.0f}"
                f" {d['p99_us']:>9,.0f} {d['load']:>5.2f}"
            )


def _rows(out: dict[str, dict[int, Figures]]) -> list[Row]:
    """The targets, as ns per read (ours / floor): a ratio of 0.25 is 4x the floor's reads/s."""
    ours, raw, pipe = out["tta-cache"], out["redis.asyncio pool=50"], out["hand-built pipeline"]

    def per_read(by: dict[int, Figures], n: int) -> float:
        return 1e9 / by[n].rate

    rows = [Row("throughput, 1 task", per_read(ours, 1), per_read(raw, 1), "redis.asyncio", 1.0)]
    for n in (256, 1024):
        ours_ns = per_read(ours, n)
        rows.append(Row(f"throughput, {n} tasks", ours_ns, per_read(raw, n), ">=4x asyncio", 0.25))
        rows.append(
            Row(f"throughput, {n} tasks", ours_ns, per_read(pipe, n), ">=0.7x pipe", 1 / 0.7)
        )
    p99 = (ours[256].pct(0.99) * 1000, raw[256].pct(0.99) * 1000)
    rows.append(Row("p99 per call, 256 tasks", *p99, "redis.asyncio p99", target=1.0))
    return rows


def plot(rates: dict[str, dict[int, float]], path: str, caption: str) -> None:
    """reads/s against tasks, one line per system (log scales: L1 hits are 100x the rest)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=110)
    for name, by in rates.items():
        xs = sorted(by)
        ax.plot(xs, [by[x] for x in xs], marker="o", label=name)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(list(TASKS), [str(t) for t in TASKS])
    ax.set_xlabel("concurrent asyncio tasks (each reading its own key, L2 hits)")
    ax.set_ylabel("reads / s")
    ax.set_title("Reads per second against concurrency")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.text(0.01, 0.01, caption, fontsize=7, alpha=0.7)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path)
    print(f"  plot written to {path}")


def main(
    quick: bool = False,
    json_path: str | None = None,
    plot_path: str | None = None,
    tasks_list: tuple[int, ...] = TASKS,
    rounds: int | None = None,
) -> list[Row]:
    with redis_server() as server:
        tasks, notes = run_async(run_tasks(server.url, quick, tasks_list, rounds))
        threads = run_threads(server.url, quick) if tasks_list == TASKS else {}
    _table("asyncio tasks (L2 hits unless L1 on)", tasks, "tasks")
    _table("threads (L2 hits)", threads, "thr")
    for note in notes:
        print(f"  {note}")
    rows = _rows(tasks) if tasks_list == TASKS else []
    print_table(rows, "throughput targets: ns per read, ours / floor, same run")
    if json_path:
        as_json = {
            s: {n: f.as_dict() for n, f in by.items()} for s, by in {**tasks, **threads}.items()
        }
        write_json(json_path, {"machine": machine(), "figures": as_json, "notes": notes,
                               "rows": [r.as_dict() for r in rows]})  # fmt: skip
    if plot_path:
        info = machine()
        load = ", ".join(f"{x:.2f}" for x in info["load_average"] or ())
        caption = f"python {info['python']}, {info['cpus']} cpus, load average {load}"
        plot({s: {n: f.rate for n, f in by.items()} for s, by in tasks.items()}, plot_path, caption)
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_throughput")
    parser.add_argument("--quick", action="store_true", help="fewer rounds (CI smoke)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    parser.add_argument("--plot", metavar="PNG", help="also plot reads/s against concurrency")
    parser.add_argument(
        "--tasks", help="only these task counts, e.g. 1,256 (no threads, no targets)"
    )
    parser.add_argument("--rounds", type=int, help="rounds per system (default 3 quick, 7 full)")
    parser.add_argument("--replot", metavar="JSON", help="only plot a --json file into --plot")
    options = parser.parse_args()
    if options.replot:
        import json

        saved = json.loads(Path(options.replot).read_text())
        load = ", ".join(f"{x:.2f}" for x in saved["machine"]["load_average"])
        rates = {
            s: {int(n): d["reads_per_s"] for n, d in by.items()}
            for s, by in saved["figures"].items()
            if not s.endswith("(sync)") and not s.startswith("redis-py")
        }
        plot(rates, options.plot, f"{saved['machine']['cpus']} cpus, load average {load}")
        raise SystemExit(0)
    chosen = tuple(int(t) for t in options.tasks.split(",")) if options.tasks else TASKS
    main(options.quick, options.json, options.plot, chosen, options.rounds)
