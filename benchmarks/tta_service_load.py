"""Load run of ``examples/tta_service``: uvicorn with 2 workers over a SQLite file and Redis, an
asyncio httpx client issuing 10,000 requests, with the cache on and with it off.

``python -m benchmarks.tta_service_load [--requests N] [--concurrency C] [--players P]``

The traffic is the demo's: a player turn reads the session, narrative, a character, the
emotional state and the progress (five GETs), and 5 % of turns make a choice (a POST, which
commits and invalidates). Every read's version (its ``last_updated``) is checked against the
choices' responses: a read is stale if it began more than 50 ms (I2) after a choice's response
returned and shows an older version of an entity that choice wrote. Database queries are the
SQL statements each worker ran (its ``/stats``), summed over both workers.

uvicorn picks httptools and uvloop when they are installed (``pip install 'uvicorn[standard]'``),
and so does this client's event loop: without them both spend most of their time in pure-Python
HTTP parsing, and the run measures that instead of the service.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from tta_cache.operations import EmbeddedRedis

ROOT = Path(__file__).resolve().parents[1]
CHARACTERS = ("guide", "companion", "shadow")
OPTIONS = 5
WINDOW = 0.050


def version(body: dict[str, Any]) -> int:
    moment = datetime.fromisoformat(str(body.get("last_updated") or body["timestamp"]))
    return int(moment.timestamp() * 1_000_000 + 0.5)


class Run:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.reads: list[tuple[str, int, float]] = []  # (entity, version, began)
        self.writes: list[tuple[str, int, float]] = []  # (entity, version, returned)
        self.errors = 0
        self.choices = 0
        self.client_cpu = 0.0  # the client's CPU seconds per second of the run


async def turn(client: httpx.AsyncClient, rng: random.Random, players: int, run: Run) -> int:
    p = rng.randrange(players)
    user, session = f"player-{p}", f"session-{p}"
    character = rng.choice(CHARACTERS)
    reads = [
        (f"session:{session}", f"/sessions/{session}"),
        (f"narrative:{session}", f"/sessions/{session}/narrative"),
        (f"character:{session}:{character}", f"/sessions/{session}/characters/{character}"),
        (f"emotional:{user}", f"/users/{user}/emotional"),
        (f"progress:{user}", f"/users/{user}/progress"),
    ]
    sent = 0
    for entity, path in reads:
        began = time.time()
        started = time.perf_counter()
        response = await client.get(path)
        run.latencies.append(time.perf_counter() - started)
        sent += 1
        if response.status_code != 200:
            run.errors += 1
            continue
        run.reads.append((entity, version(response.json()), began))
    if rng.random() < 0.05:
        option = rng.randrange(OPTIONS)
        started = time.perf_counter()
        response = await client.post(
            f"/sessions/{session}/choices", json={"character_id": character, "option": option}
        )
        run.latencies.append(time.perf_counter() - started)
        sent += 1
        if response.status_code != 200:
            run.errors += 1
        else:
            done = time.time()
            run.choices += 1
            run.writes.extend((e, v, done) for e, v in response.json().items())
    return sent


async def traffic(base: str, requests: int, concurrency: int, players: int) -> tuple[Run, float]:
    run = Run()
    left = [requests]
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:

        async def player(i: int) -> None:
            rng = random.Random(i)
            while left[0] > 0:
                left[0] -= 6  # at most a turn's worth, reserved before it is sent
                sent = await turn(client, rng, players, run)
                left[0] += 6 - sent

        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(player(i) for i in range(concurrency)))
        elapsed = time.perf_counter() - started
        run.client_cpu = (time.process_time() - cpu) / elapsed
    return run, elapsed


def stale_reads(run: Run) -> int:
    timeline: dict[str, tuple[list[float], list[int]]] = {}
    for entity, v, done in sorted(run.writes, key=lambda w: w[2]):
        times, newest = timeline.setdefault(entity, ([], []))
        times.append(done)
        newest.append(max(v, newest[-1] if newest else 0))
    stale = 0
    for entity, v, began in run.reads:
        if entity not in timeline:
            continue
        times, newest = timeline[entity]
        i = bisect.bisect_left(times, began - WINDOW)
        if i and v < newest[i - 1]:
            stale += 1
    return stale


def worker_stats(base: str) -> dict[int, dict[str, Any]]:
    """Each worker's /stats (a new connection per call: the kernel spreads them)."""
    seen: dict[int, dict[str, Any]] = {}
    for _ in range(200):
        with httpx.Client(base_url=base, timeout=10) as client:
            stats = client.get("/stats").json()
        seen[stats["pid"]] = stats
        if len(seen) == 2:
            break
    return seen


def serve(mode: str, redis_url: str, players: int, tmp: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp / f'{mode}.sqlite3'}",
        "REDIS_URL": redis_url,
        "TTA_CACHE": mode,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
    }
    subprocess.run(
        [sys.executable, "-m", "examples.tta_service.app", "seed", str(players)],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    cmd = [sys.executable, "-m", "uvicorn", "examples.tta_service.app:app", "--workers", "2"]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    server = subprocess.Popen(cmd, cwd=ROOT, env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while len(worker_stats_quiet(base)) < 2:
        if time.monotonic() > deadline:
            server.terminate()
            raise RuntimeError("uvicorn did not start two workers")
        time.sleep(0.2)
    return server


def worker_stats_quiet(base: str) -> dict[int, dict[str, Any]]:
    try:
        return worker_stats(base)
    except httpx.TransportError:
        return {}


def run_loop(main: Any) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--players", type=int, default=200)
    args = parser.parse_args()
    rows = []
    with EmbeddedRedis() as redis, tempfile.TemporaryDirectory(prefix="tta-load-") as tmp:
        for mode in ("on", "off"):
            port = 18_000 + random.randrange(1000)
            server = serve(mode, redis.url, args.players, Path(tmp), port)
            base = f"http://127.0.0.1:{port}"
            try:
                run, elapsed = run_loop(
                    traffic(base, args.requests, args.concurrency, args.players)
                )
                stats = worker_stats(base)
            finally:
                server.terminate()
                server.wait(30)
            n = len(run.latencies)
            queries = sum(s["queries"] for s in stats.values())
            rows.append(
                (
                    f"cache {mode}",
                    f"{n:,}",
                    f"{n / elapsed:,.0f}",
                    f"{quantile(run.latencies, 0.5) * 1000:.2f} ms",
                    f"{quantile(run.latencies, 0.99) * 1000:.2f} ms",
                    f"{queries / n:.2f}",
                    f"{run.choices:,}",
                    str(stale_reads(run)),
                    str(run.errors),
                    f"{run.client_cpu:.0%}",
                )
            )
    head = (
        "",
        "requests",
        "req/s",
        "p50",
        "p99",
        "db queries/req",
        "choices",
        "stale",
        "errors",
        "client CPU",
    )
    widths = [max(len(r[i]) for r in (head, *rows)) for i in range(len(head))]
    print(
        f"load average: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} CPUs; "
        f"uvicorn --workers 2, SQLite file, {args.concurrency} concurrent clients"
    )
    for row in (head, *rows):
        print(
            "  ".join(
                c.rjust(w) if i else c.ljust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )


if __name__ == "__main__":
    main()
