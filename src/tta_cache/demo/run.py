"""Running the demo: the Redis it uses, the seeded database, the worker processes, the merge.

:func:`run_demo` uses the Redis of ``config.redis_url``, or starts an embedded one (or none:
``local_only``), seeds the database (a SQLite file in a temporary directory, or
``config.database_url``), starts ``config.workers``
spawned processes that play at once for ``config.duration`` seconds in a namespace of their own,
and merges their reports into a :class:`~.report.DemoReport`.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import queue
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..exceptions import BackendError
from ..operations import EmbeddedRedis
from ..tiers import RedisConfig, make_sync_client, mask_url, translated
from .config import DEMO_TTL, DemoConfig
from .measures import Histogram, WorkerReport, count_stale, new_tiers
from .report import DemoReport
from .schema import Database
from .worker import worker_main

__all__ = ["run_demo"]

log = logging.getLogger("tta_cache.demo")


@contextlib.contextmanager
def _client(url: str, operation: str, op_timeout: float) -> Iterator[Any]:
    """A client of ``url``; its errors (and a Cluster client's at connect) as BackendError."""
    with translated(operation):
        client = make_sync_client(RedisConfig.from_url(url, op_timeout=op_timeout))
        try:
            yield client
        finally:
            client.close()


def _check_reachable(url: str) -> None:
    """Raise :class:`BackendError` now rather than from every worker."""
    with _client(url, "PING", 2.0) as client:
        client.ping()


def _drop_namespace(redis_url: str, namespace: str) -> None:
    """Remove the demo's keys from a Redis the demo did not start (they expire anyway)."""
    try:
        with _client(redis_url, "SCAN", 5.0) as client:
            pipe = client.pipeline(transaction=False)
            # One key per command: in a Cluster the keys of a batch live in different slots.
            for n, key in enumerate(client.scan_iter(match=f"{namespace}:*", count=1000), 1):
                pipe.unlink(key)
                if n % 500 == 0:
                    pipe.execute()
            pipe.execute()
    except BackendError as exc:
        log.warning(
            "could not remove the demo's keys (%s:*; they expire in %.0f s): %s",
            namespace,
            DEMO_TTL,
            exc,
        )


@contextlib.contextmanager
def _redis_for(config: DemoConfig) -> Iterator[tuple[str | None, str, bool]]:
    """(url, description, whether the demo started it)."""
    if config.local_only:
        yield None, "none (--local-only: each process has only its L1)", False
    elif config.redis_url is not None:
        yield config.redis_url, mask_url(config.redis_url), False
    else:
        with EmbeddedRedis() as server:
            yield server.url, f"embedded {server.binary} on {server.url}, removed after", True


def run_demo(config: DemoConfig, on_progress: Callable[[float], None] | None = None) -> DemoReport:
    """Run the simulation and return the merged report.

    Starts ``config.workers`` spawned processes for ``config.duration`` seconds; calls
    ``on_progress(fraction)`` from the calling thread while they run. Raises ``RuntimeError`` if a
    worker fails (its traceback in the message).
    """
    if config.workers < 1 or config.players < 1 or config.duration <= 0:
        raise ValueError("workers and players must be >= 1 and duration > 0")
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tta-cache-demo-")))
        url, where, embedded = stack.enter_context(_redis_for(config))
        if url is not None:
            _check_reachable(url)
        config = replace(config, redis_url=url)
        # A namespace of its own: the demo never reads or removes anyone else's keys.
        namespace = f"{config.namespace}-demo-{secrets.token_hex(4)}"
        database_url = config.database_url or f"sqlite:///{tmp / 'tta.sqlite3'}"
        db = Database(database_url)
        try:
            db.create(config.players)
        finally:
            db.dispose()
        if url is not None and not embedded:
            stack.callback(_drop_namespace, url, namespace)
        reports = _run_workers(config, database_url, namespace, on_progress)
    tiers = new_tiers()
    lags = Histogram()
    for report in reports:
        for name, hist in report.tiers.items():
            tiers[name].merge(hist)
        for lag in report.lags:
            lags.add(lag)
    stale = count_stale(reports)
    return DemoReport(
        config=config,
        redis=where,
        workers=reports,
        tiers=tiers,
        lags=lags,
        stale_reads=stale.count,
        stale_by_tier=stale.by_tier,
        worst_staleness=stale.worst,
        own_stale_reads=sum(r.own_stale for r in reports),
    )


def _run_workers(
    config: DemoConfig,
    database_url: str,
    namespace: str,
    on_progress: Callable[[float], None] | None,
) -> list[WorkerReport]:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(config.workers + 1)
    results = ctx.Queue()
    processes = [
        ctx.Process(
            target=worker_main,
            kwargs={
                "index": i,
                "config": config,
                "database_url": database_url,
                "namespace": namespace,
                "barrier": barrier,
                "results": results,
            },
            name=f"tta-cache-demo-{i}",
            daemon=True,
        )
        for i in range(config.workers)
    ]
    for process in processes:
        process.start()
    reports: list[WorkerReport] = []
    try:
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait(timeout=120)
        go = time.monotonic()
        while len(reports) < config.workers:
            if on_progress is not None:
                on_progress(min(1.0, (time.monotonic() - go) / config.duration))
            try:
                reports.append(results.get(timeout=0.1))
            except queue.Empty:
                if not any(p.is_alive() for p in processes) and results.empty():
                    break
                if time.monotonic() - go > config.duration + 120:
                    break
    finally:
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()
                process.join()
    failed = [r.error for r in reports if r.error]
    if failed or len(reports) < config.workers:
        detail = "\n".join(failed) or "a worker exited without a report"
        raise RuntimeError(f"demo worker failed:\n{detail}")
    return sorted(reports, key=lambda r: r.index)
