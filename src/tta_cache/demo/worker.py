"""One worker process: its own Cache and :class:`~.game.Game`, the player turns it plays, and
what it measures of each read and write (:class:`~.measures.WorkerReport`)."""

from __future__ import annotations

import random
import time
import traceback
from collections.abc import Callable
from typing import Any

from ..api import DEFAULT_TTL, Cache
from ..tta.models import EmotionalState
from .config import DEMO_TTL, DemoConfig
from .game import Game
from .measures import WorkerReport, new_tiers
from .schema import Database
from .world import CHARACTERS, OPTIONS, version

__all__ = ["Worker", "worker_main"]


class Worker:
    """One process's share of the traffic: its own Cache, loaders and measurements."""

    def __init__(self, index: int, config: DemoConfig, database_url: str, namespace: str) -> None:
        self.index = index
        self.config = config
        self.rng = random.Random(None if config.seed is None else config.seed * 1000 + index)
        self.db = Database(database_url)
        self.report = WorkerReport(index, tiers=new_tiers())
        self.floor: dict[str, int] = {}  # entity -> version this process wrote last
        ttl = {kind: min(seconds, DEMO_TTL) for kind, seconds in DEFAULT_TTL.items()}
        self.cache = Cache(config.redis_url, namespace=namespace, ttl=ttl)
        if config.local_only:
            # Without Redis nothing tells other processes of a choice: each owns its players.
            self.players = [p for p in range(config.players) if p % config.workers == index] or [
                index % config.players
            ]
        else:
            self.players = list(range(config.players))
        self.game = Game(self.cache, self.db, rng=self.rng)

    def _read(self, entity: str, load: Callable[..., Any], *args: str) -> Any:
        local, stats, report, game = (
            self.cache.engine.local,
            self.cache.engine.stats,
            self.report,
            self.game,
        )
        l1, l2, loads = local.hits, stats.redis_hits, game.loads
        began = time.time()
        started = time.perf_counter()
        value = load(*args)
        elapsed = time.perf_counter() - started
        if game.loads != loads:
            tier = "miss"
        elif local.hits != l1:
            tier = "l1"
        elif stats.redis_hits != l2:
            tier = "l2"
        else:
            tier = "other"  # e.g. a stale value served while Redis failed
        if tier in report.tiers:
            report.tiers[tier].add(elapsed)
        report.reads += 1
        moment = value.timestamp if isinstance(value, EmotionalState) else value.last_updated
        read = version(moment)
        if read < self.floor.get(entity, 0):
            report.own_stale += 1  # I1: this process's own invalidation had returned
        key = (entity, read, tier)
        if began > report.observed.get(key, 0.0):
            report.observed[key] = began
        return value

    def turn(self) -> None:
        """One player turn: five reads, and sometimes a choice."""
        game = self.game
        p = self.rng.choice(self.players)
        user, session = f"player-{p}", f"session-{p}"
        character = self.rng.choice(tuple(CHARACTERS))
        self._read(f"session:{session}", game.load_session, session)
        self._read(f"narrative:{session}", game.load_narrative, session)
        self._read(
            f"character:{session}:{character}", game.load_character, session, character, user
        )
        self._read(f"emotional:{user}", game.load_emotional, user)
        self._read(f"progress:{user}", game.load_progress, user)
        self.report.turns += 1
        if self.rng.random() < self.config.choice_rate:
            option = self.rng.randrange(len(OPTIONS))
            self._write(game.make_choice, user, session, character, option)
            self.report.choices += 1
            gain = OPTIONS[option][3]
            if gain > 0:
                self._write(game.record_progress, user, gain)

    def _write(self, write: Callable[..., dict[str, int]], *args: Any) -> None:
        started = time.perf_counter()
        written = write(*args)
        done = time.time()  # the invalidation has returned: from now on nothing older may be read
        self.report.tiers["write"].add(time.perf_counter() - started)
        for entity, written_version in written.items():
            self.report.writes.append((entity, written_version, done))
            self.floor[entity] = max(self.floor.get(entity, 0), written_version)

    def run(self, barrier: Any) -> WorkerReport:
        """Wait for the others at ``barrier``, play turns for the configured duration, report."""
        if self.config.redis_url is not None and not self.cache.wait_ready(10.0):
            raise RuntimeError(f"worker {self.index}: invalidation channel did not come up")
        barrier.wait(timeout=120)
        deadline = time.monotonic() + self.config.duration
        while time.monotonic() < deadline:
            self.turn()
        self.report.stats = self.cache.stats()
        self.report.loads = self.game.loads
        self.report.queries = self.db.queries
        self.report.loads_by_kind = dict(self.game.loads_by_kind)
        self.report.queries_by_kind = dict(self.game.queries_by_kind)
        subscriber = self.cache.engine.subscriber
        self.report.lags = list(subscriber.lags) if subscriber is not None else []
        return self.report

    def close(self) -> None:
        self.cache.close()
        self.db.dispose()


def worker_main(
    *,
    index: int,
    config: DemoConfig,
    database_url: str,
    namespace: str,
    barrier: Any,
    results: Any,
) -> None:
    """A worker process's target: put its report (or its traceback) on ``results``."""
    worker: Worker | None = None
    try:
        worker = Worker(index, config, database_url, namespace)
        results.put(worker.run(barrier))
    except BaseException:
        barrier.abort()
        results.put(WorkerReport(index, error=traceback.format_exc()))
    finally:
        if worker is not None:
            worker.close()
