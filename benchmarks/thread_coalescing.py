"""Would coalescing pay for the sync client? A probe for issue 14's "threads" item.

Auto-pipelining pays in asyncio because tasks waiting on one loop cost nothing to wake. Threads
are woken by the kernel and then wait for the GIL, so the question is whether one pipeline per
round trip, shared by the threads that arrive while another's commands are on the wire, beats
each thread sending its own ``GET`` on a pooled connection. This measures the best case of it, on
bare redis-py (no cache library, no envelope), beside the plain pool, at 1, 8 and 32 threads:

- ``redis-py pool=50``: each thread ``GET`` s its own key on a 50-connection pool;
- ``coalesced (leader/follower)``: a thread that finds nothing on the wire sends at once; threads
  arriving meanwhile queue, and when the leader's reply is in, the first of them is woken to send
  everything queued as one pipeline and wake each caller with its reply (no flusher thread, no
  timer: the design the asyncio lane uses, with threads);
- ``hand-built pipeline``: one thread sending one pipeline of as many ``GET`` s as there are
  threads per round trip (the ceiling, nobody to wake).

    .venv/bin/python -m benchmarks.thread_coalescing [--quick]

Not part of ``nox -s bench``'s gated rows: a probe whose figures decide whether the sync client
gets a coalescer (``docs/performance.md`` reports them).
"""

from __future__ import annotations

import argparse
import threading
from collections.abc import Callable
from typing import Any

import redis

from ._harness import redis_server
from .bench_throughput import Figures, _load, _table, _threads

__all__ = ["Coalescer", "main"]

THREADS = (1, 8, 32)


class _Waiter:
    __slots__ = ("event", "key", "lead", "value")

    def __init__(self, key: str) -> None:
        self.key = key
        self.event = threading.Event()
        self.lead = False
        self.value: Any = None


class Coalescer:
    """``GET`` for many threads over one connection, leader/follower (see the module doc)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.lock = threading.Lock()
        self.queue: list[_Waiter] = []
        self.busy = False

    def get(self, key: str) -> Any:
        me = _Waiter(key)
        with self.lock:
            self.queue.append(me)
            lead = not self.busy
            self.busy = True
        if not lead:
            me.event.wait()
            if not me.lead:
                return me.value
        with self.lock:
            batch, self.queue = self.queue, []
        pipe = self.client.pipeline(transaction=False)
        for waiter in batch:
            pipe.get(waiter.key)
        values = pipe.execute()
        with self.lock:
            following = self.queue[0] if self.queue else None
            if following is None:
                self.busy = False
            else:
                following.lead = True
        for waiter, value in zip(batch, values, strict=True):
            waiter.value = value
            if waiter is not me:
                waiter.event.set()
        if following is not None:
            following.event.set()
        return me.value


def main(quick: bool = False) -> dict[str, dict[int, Figures]]:
    per, rounds = (300, 2) if quick else (2_000, 5)
    out: dict[str, dict[int, Figures]] = {}
    with redis_server() as server:
        pool = redis.ConnectionPool.from_url(server.url, max_connections=50)
        client = redis.Redis(connection_pool=pool)
        keys = [f"probe:{w}" for w in range(max(THREADS))]
        client.mset(dict.fromkeys(keys, b"x" * 64))
        coalescer = Coalescer(redis.Redis.from_url(server.url))

        def pooled(w: int) -> Any:
            return client.get(keys[w])

        def coalesced(w: int) -> Any:
            return coalescer.get(keys[w])

        systems: dict[str, Callable[[int], Any]] = {
            "redis-py pool=50": pooled,
            "coalesced (leader/follower)": coalesced,
        }
        try:
            for threads in THREADS:
                names = list(systems)
                for r in range(rounds + 1):  # round 0 warms up
                    for i in range(len(names)):
                        name = names[(r + i) % len(names)]
                        figures = out.setdefault(name, {}).setdefault(threads, Figures())
                        if not r:
                            figures = Figures()
                        figures.loads.append(_load())
                        _threads(systems[name], threads, per, figures)
                    ceiling = out.setdefault("hand-built pipeline", {}).setdefault(
                        threads, Figures()
                    )
                    if r:
                        _pipelined(client, keys[:threads], per, ceiling)
        finally:
            client.close()
            coalescer.client.close()
    _table("threads (bare redis-py GETs of 64 bytes)", out, "thr")
    return out


def _pipelined(client: redis.Redis, keys: list[str], per: int, into: Figures) -> None:
    """``per`` round trips of one pipeline of ``len(keys)`` GETs, timed as reads/s."""
    from time import perf_counter_ns

    into.loads.append(_load())
    start = perf_counter_ns()
    for _ in range(per):
        t = perf_counter_ns()
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.get(key)
        pipe.execute()
        took = perf_counter_ns() - t
        into.latencies.extend([took] * len(keys))
    into.rates.append(len(keys) * per / ((perf_counter_ns() - start) / 1e9))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m benchmarks.thread_coalescing")
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    main(parser.parse_args().quick)
