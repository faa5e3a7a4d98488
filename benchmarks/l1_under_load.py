"""L1 under CPU load: how many L1 hits of a decorated function stay L1 hits when other processes
keep the cores busy, and how many commands they send to Redis instead (issue 17, defect 4).

One process (this one) holds a Redis-backed cache with its invalidation channel up and a tagged
decorated function whose entry is in L1. ``--neighbours`` CPU-bound processes
(``python -c "while True: pass"``) run beside it. Nothing invalidates meanwhile, so every call
could be an L1 hit; a call that is not one went to Redis because the tag map's trust lapsed.

- *bursts*: ``--rounds`` times, idle ``--idle`` seconds (a service between requests), then call
  the function ``N`` times in a row (``--hits``: 200 and 2000). Per burst: L1 hits and the
  commands Redis received (``INFO commandstats`` deltas, without the channel's PING/SUBSCRIBE
  and our own INFO).
- *sustained*: ``--sustained`` calls in one hot loop (the process's main thread holds the GIL,
  the channel thread has to win it back), cut into consecutive windows of ``N`` calls. Per
  window: L1 hits (read from the tier's counters, which cost no I/O); commands for the whole run.

Figures only (no target): run it before and after a change, same conditions.

    .venv/bin/python -m benchmarks.l1_under_load [--neighbours 4] [--rounds 40] [--hits 200 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import redis

import tta_cache as tc

from ._harness import _command_calls, redis_server

NAMESPACE = "l1load"


@contextmanager
def neighbours(count: int) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``count`` CPU-bound processes, killed on exit."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield procs
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()


def _commands(admin: redis.Redis) -> int:
    return sum(_command_calls(admin).values())


def burst(cache: tc.Cache, load: Any, admin: redis.Redis, n: int) -> tuple[int, int]:
    """``n`` calls of ``load``: (L1 hits, commands Redis received)."""
    local = cache.engine.local
    hits = local.hits
    sent = _commands(admin)
    for _ in range(n):
        load("d1")
    return local.hits - hits, _commands(admin) - sent


def sustained(
    cache: tc.Cache, load: Any, admin: redis.Redis, calls: int, windows: Sequence[int]
) -> dict[str, Any]:
    """``calls`` calls in one loop; L1 hits per consecutive window of each size in ``windows``."""
    local = cache.engine.local
    step = min(windows)
    marks = [local.hits]
    sent = _commands(admin)
    for _ in range(calls // step):
        for _ in range(step):
            load("d1")
        marks.append(local.hits)
    sent = _commands(admin) - sent
    out: dict[str, Any] = {"calls": calls, "redis_commands": sent}
    for n in windows:
        k = n // step
        per = [marks[i + k] - marks[i] for i in range(0, len(marks) - k, k)]
        out[str(n)] = {
            "windows": len(per),
            "l1_hit_rate": round(sum(per) / (n * len(per)), 4),
            "l1_hit_rate_worst_window": round(min(per) / n, 4),
            "windows_not_all_l1": sum(1 for h in per if h < n),
        }
    return out


def run(url: str, hits: Sequence[int], rounds: int, idle: float, calls: int) -> dict[str, Any]:
    admin = redis.Redis.from_url(url)
    cache = tc.Cache(url, namespace=NAMESPACE, health_check_interval=0)
    try:
        if not cache.wait_ready(10.0):
            raise RuntimeError("invalidation channel not up")

        @cache.cached(kind="doc", tags=("doc:{doc_id}",))
        def load(doc_id: str) -> str:
            return doc_id

        load("d1")  # computed and filled: from now on every call can be an L1 hit
        bursts: dict[str, Any] = {}
        per: dict[int, list[tuple[int, int]]] = {n: [] for n in hits}
        for _ in range(rounds):
            for n in hits:
                time.sleep(idle)
                per[n].append(burst(cache, load, admin, n))
        for n, results in per.items():
            l1 = [h for h, _ in results]
            sent = [c for _, c in results]
            bursts[str(n)] = {
                "bursts": len(results),
                "l1_hit_rate": round(sum(l1) / (n * len(results)), 4),
                "l1_hit_rate_worst_burst": round(min(l1) / n, 4),
                "redis_commands_per_burst": {
                    "mean": round(statistics.fmean(sent), 2),
                    "max": max(sent),
                },
                "bursts_with_redis_commands": sum(1 for c in sent if c),
            }
        return {"bursts": bursts, "sustained": sustained(cache, load, admin, calls, hits)}
    finally:
        cache.close()
        admin.close()


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--neighbours", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--hits", type=int, nargs="+", default=[200, 2000])
    parser.add_argument("--idle", type=float, default=0.05, help="seconds before each burst")
    parser.add_argument("--sustained", type=int, default=400_000, help="calls in one loop")
    parser.add_argument("--url", help="an existing Redis (default: start one on a free port)")
    args = parser.parse_args(argv)
    with neighbours(args.neighbours):
        if args.url:
            figures = run(args.url, args.hits, args.rounds, args.idle, args.sustained)
        else:
            with redis_server() as server:
                figures = run(server.url, args.hits, args.rounds, args.idle, args.sustained)
    report = {
        "neighbours": args.neighbours,
        "idle_before_burst_s": args.idle,
        "cpus": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        **figures,
    }
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
