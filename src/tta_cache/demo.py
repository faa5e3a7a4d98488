"""``tta-cache demo``: simulated TTA traffic across worker processes, measured tier by tier.

Players take turns in their sessions. A turn reads the player's session, narrative context, the
character they talk to, their emotional state and their therapeutic progress through decorated
loaders over a small SQLite "database" with a simulated latency of a few milliseconds per load;
sometimes the player makes a choice, which changes the story, the character's memory and the
player's emotional state in the database and invalidates ``user:<id>`` and ``session:<id>`` in
every process (a helpful choice also moves the therapeutic progress, tagged ``therapeutic:<id>``).
Each worker process has its own :class:`~tta_cache.Cache`; all share one Redis.

At the end the workers' figures are merged: hit rates and p50/p99 latency per tier, invalidations
and their lag, Redis round trips per request, and a coherence check. Every value carries the
instant its row was last written (``last_updated``), and every completed choice is recorded with
the instants it wrote; a read is *stale* if it returned a value older than a write whose
invalidation had returned in the same process before the read began (I1), or in any process more
than 50 ms before (I2).
"""

from __future__ import annotations

import bisect
import contextlib
import json
import logging
import math
import multiprocessing
import queue
import random
import secrets
import sqlite3
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from .cache import DEFAULT_TTL, Cache
from .embedded import EmbeddedRedis
from .exceptions import BackendError
from .tiers import RedisConfig, make_sync_client, mask_url, translated
from .tta.models import (
    CharacterState,
    EmotionalState,
    EmotionalStateType,
    NarrativeContext,
    SessionState,
    TherapeuticGoal,
    TherapeuticProgress,
    UserChoice,
)

__all__ = ["DemoConfig", "DemoReport", "Histogram", "Staleness", "run_demo"]

log = logging.getLogger("tta_cache.demo")

STALENESS_WINDOW = 0.050
"""How long another process may still serve a value after an invalidation returned (I2)."""

TIERS = ("l1", "l2", "miss")
_TIER_LABELS = {
    "l1": "L1 local",
    "l2": "L2 redis",
    "miss": "miss (db)",
    "write": "write + invalidate",
}
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_DEMO_TTL = 600.0  # demo keys in a shared Redis expire soon even if the run is killed

CHARACTERS = {
    "guide": ("Mira", "mentor", "warm, unhurried"),
    "companion": ("Tok", "peer support", "playful"),
    "shadow": ("The Shadow", "inner critic", "terse"),
}
OPTIONS = (
    ("listen", "listen to the guide", EmotionalStateType.CALM, 0.10),
    ("breathe", "take a slow breath", EmotionalStateType.HOPEFUL, 0.05),
    ("confront", "face the shadow", EmotionalStateType.EXCITED, 0.02),
    ("flee", "run from the shadow", EmotionalStateType.ANXIOUS, -0.10),
    ("withdraw", "sit alone by the fire", EmotionalStateType.OVERWHELMED, -0.05),
)
SCENES = ("forest-edge", "river-crossing", "old-lighthouse", "quiet-garden")


@dataclass(frozen=True)
class DemoConfig:
    """What to simulate; ``redis_url=None`` starts an embedded server unless ``local_only``."""

    workers: int = 4
    duration: float = 10.0
    players: int = 200
    redis_url: str | None = None
    local_only: bool = False
    namespace: str = "tta"
    choice_rate: float = 0.05
    db_latency: tuple[float, float] = (0.002, 0.005)
    seed: int | None = None


class Histogram:
    """Latencies in log-spaced buckets (2 % wide, 100 ns .. 100 s); merges across processes."""

    MIN = 1e-7
    RATIO = 1.02

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.total = 0

    def add(self, seconds: float) -> None:
        bucket = int(math.log(max(seconds, self.MIN) / self.MIN, self.RATIO))
        self.counts[bucket] = self.counts.get(bucket, 0) + 1
        self.total += 1

    def merge(self, other: Histogram) -> None:
        for bucket, n in other.counts.items():
            self.counts[bucket] = self.counts.get(bucket, 0) + n
        self.total += other.total

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile in seconds (bucket midpoint), or None when empty."""
        if not self.total:
            return None
        rank = max(1, math.ceil(q * self.total))
        seen = 0
        for bucket in sorted(self.counts):
            seen += self.counts[bucket]
            if seen >= rank:
                return float(self.MIN * self.RATIO ** (bucket + 0.5))
        raise AssertionError("unreachable")


@dataclass
class _WorkerReport:
    index: int
    turns: int = 0
    reads: int = 0
    choices: int = 0
    loads: int = 0
    tiers: dict[str, Histogram] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    lags: list[float] = field(default_factory=list)
    # (entity, version, tier that served it) -> latest instant a read that returned it began
    observed: dict[tuple[str, int, str], float] = field(default_factory=dict)
    # (entity, version written, instant the invalidation returned)
    writes: list[tuple[str, int, float]] = field(default_factory=list)
    own_stale: int = 0
    error: str | None = None


@dataclass
class DemoReport:
    """The merged result of a demo run; ``render()`` is the table, ``as_dict()`` the JSON."""

    config: DemoConfig
    redis: str
    workers: list[_WorkerReport]
    tiers: dict[str, Histogram]
    lags: Histogram
    stale_reads: int
    own_stale_reads: int
    stale_by_tier: dict[str, int]
    worst_staleness: float

    def _sum(self, attr: str) -> int:
        return sum(int(getattr(w, attr)) for w in self.workers)

    def _stat(self, *path: str) -> int:
        total = 0
        for w in self.workers:
            node: Any = w.stats
            for step in path:
                node = node.get(step, 0) if isinstance(node, dict) else 0
            total += int(node)
        return total

    def as_dict(self) -> dict[str, Any]:
        """Every figure the table shows, for scripts (``tta-cache demo --json``)."""
        turns, reads = self._sum("turns"), self._sum("reads")
        local_hits, local_misses = self._stat("local", "hits"), self._stat("local", "misses")
        redis_hits, redis_misses = self._stat("redis", "hits"), self._stat("redis", "misses")
        redis_ops = self._stat("redis", "operations")

        def rate(hits: int, misses: int) -> float | None:
            return hits / (hits + misses) if hits + misses else None

        def tier(name: str) -> dict[str, Any]:
            hist = self.tiers[name]
            return {"count": hist.total, "p50": hist.quantile(0.5), "p99": hist.quantile(0.99)}

        return {
            "redis": self.redis,
            "workers": self.config.workers,
            "players": self.config.players,
            "duration": self.config.duration,
            "requests": turns,
            "requests_per_second": turns / self.config.duration,
            "reads": reads,
            "choices": self._sum("choices"),
            "database_loads": self._sum("loads"),
            "hit_rate": {
                "overall": rate(reads - self._sum("loads"), self._sum("loads")),
                "local": rate(local_hits, local_misses),
                "redis": None if self.config.local_only else rate(redis_hits, redis_misses),
            },
            "latency": {name: tier(name) for name in (*TIERS, "write")},
            "invalidations": {
                "sent": self._stat("invalidations", "sent"),
                "received": self._stat("invalidations", "received"),
                "lag_p50": self.lags.quantile(0.5),
                "lag_p99": self.lags.quantile(0.99),
            },
            "redis_round_trips": redis_ops,
            "redis_round_trips_per_request": redis_ops / turns if turns else 0.0,
            "redis_round_trips_per_read": redis_ops / reads if reads else 0.0,
            "errors": self._stat("errors"),
            "stale_reads": self.stale_reads,
            "own_stale_reads": self.own_stale_reads,
            "stale_by_tier": self.stale_by_tier,
            "worst_staleness": self.worst_staleness,
            "versions_checked": sum(len(w.observed) for w in self.workers),
        }

    def render(self) -> str:
        """The human-readable summary: a header, an aligned table per tier, the checks."""
        d = self.as_dict()
        cfg = self.config
        hit_rates = {"l1": _pct(d["hit_rate"]["local"]), "l2": _pct(d["hit_rate"]["redis"])}
        rows = [("", "hit rate", "served", "p50", "p99")]
        for name in (*TIERS, "write"):
            lat = d["latency"][name]
            rows.append(
                (
                    _TIER_LABELS[name],
                    hit_rates.get(name, ""),
                    f"{lat['count']:,}",
                    _dur(lat["p50"]),
                    _dur(lat["p99"]),
                )
            )
        inv = d["invalidations"]
        saved = 1 - d["database_loads"] / d["reads"] if d["reads"] else 0.0
        return "\n".join(
            [
                f"tta-cache demo: {cfg.workers} workers x {d['duration']:.1f} s, "
                f"{cfg.players} players, {cfg.choice_rate:.0%} of turns make a choice",
                f"redis: {self.redis}",
                "",
                f"requests (player turns)  {d['requests']:>10,}  "
                f"({d['requests_per_second']:,.0f}/s; a turn reads 5 kinds of state)",
                f"cache reads              {d['reads']:>10,}",
                f"database loads           {d['database_loads']:>10,}  "
                f"({saved:.1%} of reads served by the cache)",
                "",
                *_table(rows),
                "",
                f"invalidations            sent {inv['sent']:,}, "
                f"received by the other processes {inv['received']:,}",
                f"invalidation lag         p50 {_dur(inv['lag_p50'])}, p99 {_dur(inv['lag_p99'])} "
                "(publish to receipt)",
                f"redis round trips        {d['redis_round_trips_per_request']:.2f} per request, "
                f"{d['redis_round_trips_per_read']:.2f} per read",
                f"errors                   {d['errors']:,}",
                f"stale reads: {d['stale_reads'] + d['own_stale_reads']}{self._stale_detail()}",
                f"  ({d['versions_checked']:,} versions read, checked against "
                f"{d['choices']:,} choices; window 0 ms in the writing process, "
                f"{STALENESS_WINDOW * 1000:.0f} ms in the others)",
            ]
        )

    def _stale_detail(self) -> str:
        if not (self.stale_reads or self.own_stale_reads):
            return ""
        return (
            f" (in the writing process: {self.own_stale_reads}; in the others: "
            f"{self.stale_reads} {self.stale_by_tier}, the worst {_dur(self.worst_staleness)} "
            "after the invalidation returned)"
        )


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _dur(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} us"
    if seconds < 1.0:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    out = []
    for n, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        out.append("  ".join(cells).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return out


# ---------------------------------------------------------------------- the "database"


def _us() -> int:
    return time.time_ns() // 1000


def _at(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def _version(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=30, isolation_level=None)
    db.execute("PRAGMA busy_timeout = 30000")
    return db


def _seed_database(path: Path, players: int) -> None:
    db = _connect(path)
    db.execute("PRAGMA journal_mode = WAL")
    db.executescript(
        """
        CREATE TABLE sessions (session_id TEXT PRIMARY KEY, user_id TEXT, scene TEXT,
                               turn INTEGER, created_us INTEGER, updated_us INTEGER);
        CREATE TABLE choices (session_id TEXT, turn INTEGER, choice_id TEXT, text TEXT,
                              scene TEXT, made_us INTEGER, PRIMARY KEY (session_id, turn));
        CREATE TABLE characters (session_id TEXT, character_id TEXT, mood TEXT, trust REAL,
                                 memory TEXT, updated_us INTEGER,
                                 PRIMARY KEY (session_id, character_id));
        CREATE TABLE emotions (user_id TEXT PRIMARY KEY, session_id TEXT, emotion TEXT,
                               intensity REAL, trigger TEXT, updated_us INTEGER);
        CREATE TABLE progress (user_id TEXT PRIMARY KEY, grounding REAL, achievements TEXT,
                               updated_us INTEGER);
        """
    )
    now = _us()
    db.execute("BEGIN")
    for p in range(players):
        user, session = f"player-{p}", f"session-{p}"
        db.execute(
            "INSERT INTO sessions VALUES (?, ?, ?, 0, ?, ?)", (session, user, SCENES[0], now, now)
        )
        for character in CHARACTERS:
            db.execute(
                "INSERT INTO characters VALUES (?, ?, 'neutral', 0.0, '[]', ?)",
                (session, character, now),
            )
        db.execute("INSERT INTO emotions VALUES (?, ?, 'calm', 0.3, '', ?)", (user, session, now))
        db.execute("INSERT INTO progress VALUES (?, 0.0, '[]', ?)", (user, now))
    db.execute("COMMIT")
    db.close()


# ---------------------------------------------------------------------- one worker process


class _Worker:
    """One process's share of the traffic: its own Cache, loaders and measurements."""

    def __init__(self, index: int, config: DemoConfig, db_path: Path, namespace: str) -> None:
        self.index = index
        self.config = config
        self.rng = random.Random(None if config.seed is None else config.seed * 1000 + index)
        self.db = _connect(db_path)
        self.report = _WorkerReport(index, tiers={name: Histogram() for name in (*TIERS, "write")})
        self.floor: dict[str, int] = {}  # entity -> version this process wrote last
        ttl = {kind: min(seconds, _DEMO_TTL) for kind, seconds in DEFAULT_TTL.items()}
        self.cache = Cache(config.redis_url, namespace=namespace, ttl=ttl)
        if config.local_only:
            # Without Redis nothing tells other processes of a choice: each owns its players.
            self.players = [p for p in range(config.players) if p % config.workers == index] or [
                index % config.players
            ]
        else:
            self.players = list(range(config.players))
        self._define_loaders()

    def _latency(self) -> None:
        time.sleep(self.rng.uniform(*self.config.db_latency))

    def _define_loaders(self) -> None:
        cache, db, report = self.cache, self.db, self.report

        @cache.cached_session
        def load_session(session_id: str) -> SessionState:
            self._latency()
            report.loads += 1
            user, scene, turn, created, updated = db.execute(
                "SELECT user_id, scene, turn, created_us, updated_us FROM sessions "
                "WHERE session_id = ?",
                (session_id,),
            ).fetchone()
            recent = db.execute(
                "SELECT choice_id FROM choices WHERE session_id = ? ORDER BY turn DESC LIMIT 5",
                (session_id,),
            ).fetchall()
            return SessionState(
                session_id,
                user,
                current_scenario_id=scene,
                narrative_position=turn,
                choices=[c for (c,) in reversed(recent)],
                context={"scenes": len(SCENES)},
                created_at=_at(created),
                last_updated=_at(updated),
            )

        @cache.cached(kind="narrative", tags=("session:{session_id}",))
        def load_narrative(session_id: str) -> NarrativeContext:
            self._latency()
            report.loads += 1
            scene, turn, updated = db.execute(
                "SELECT scene, turn, updated_us FROM sessions WHERE session_id = ?",
                (session_id,),
            ).fetchone()
            recent = db.execute(
                "SELECT choice_id, text, scene, made_us FROM choices WHERE session_id = ? "
                "ORDER BY turn DESC LIMIT 5",
                (session_id,),
            ).fetchall()
            return NarrativeContext(
                session_id,
                current_scene_id=scene,
                story_arc="the lighthouse",
                narrative_position=turn,
                user_choices=[
                    UserChoice(c, text=t, scene_id=s, made_at=_at(m))
                    for c, t, s, m in reversed(recent)
                ],
                active_characters=list(CHARACTERS),
                last_updated=_at(updated),
            )

        @cache.cached(kind="character", tags=("session:{session_id}", "character:{character_id}"))
        def load_character(session_id: str, character_id: str, user_id: str) -> CharacterState:
            self._latency()
            report.loads += 1
            mood, trust, memory, updated = db.execute(
                "SELECT mood, trust, memory, updated_us FROM characters "
                "WHERE session_id = ? AND character_id = ?",
                (session_id, character_id),
            ).fetchone()
            name, role, style = CHARACTERS[character_id]
            return CharacterState(
                character_id,
                name=name,
                session_id=session_id,
                personality_traits={"warmth": 0.8, "patience": 0.6},
                current_mood=mood,
                relationships={user_id: trust},
                memory=json.loads(memory),
                dialogue_style=style,
                therapeutic_role=role,
                last_updated=_at(updated),
            )

        @cache.cached(kind="emotional", tags=("user:{user_id}",))
        def load_emotional(user_id: str) -> EmotionalState:
            self._latency()
            report.loads += 1
            session, emotion, intensity, trigger, updated = db.execute(
                "SELECT session_id, emotion, intensity, trigger, updated_us FROM emotions "
                "WHERE user_id = ?",
                (user_id,),
            ).fetchone()
            primary = EmotionalStateType(emotion)
            return EmotionalState(
                user_id,
                primary_emotion=primary,
                intensity=intensity,
                emotion_scores={primary: intensity},
                triggers=[trigger] if trigger else [],
                session_id=session,
                timestamp=_at(updated),
            )

        @cache.cached(kind="therapeutic", tags=("therapeutic:{user_id}",))
        def load_progress(user_id: str) -> TherapeuticProgress:
            self._latency()
            report.loads += 1
            grounding, achievements, updated = db.execute(
                "SELECT grounding, achievements, updated_us FROM progress WHERE user_id = ?",
                (user_id,),
            ).fetchone()
            return TherapeuticProgress(
                user_id,
                goals=[TherapeuticGoal("grounding", "stay present", progress=grounding)],
                achievements=json.loads(achievements),
                skill_levels={"grounding": grounding},
                overall_progress=grounding,
                last_updated=_at(updated),
            )

        @cache.invalidates(user="{user_id}", session="{session_id}")
        def make_choice(
            user_id: str, session_id: str, character_id: str, option: int
        ) -> dict[str, int]:
            """Write a choice's consequences; returns the version each changed entity now has."""
            self._latency()
            key, text, emotion, trust_delta = OPTIONS[option]
            db.execute("BEGIN IMMEDIATE")
            try:
                now = _us()
                (turn, s_up) = db.execute(
                    "SELECT turn, updated_us FROM sessions WHERE session_id = ?", (session_id,)
                ).fetchone()
                scene = SCENES[(turn + 1) // 4 % len(SCENES)]
                s_ver = max(now, s_up + 1)
                db.execute(
                    "UPDATE sessions SET turn = ?, scene = ?, updated_us = ? WHERE session_id = ?",
                    (turn + 1, scene, s_ver, session_id),
                )
                db.execute(
                    "INSERT INTO choices VALUES (?, ?, ?, ?, ?, ?)",
                    (session_id, turn + 1, f"{session_id}-c{turn + 1}", text, scene, s_ver),
                )
                trust, memory, c_up = db.execute(
                    "SELECT trust, memory, updated_us FROM characters "
                    "WHERE session_id = ? AND character_id = ?",
                    (session_id, character_id),
                ).fetchone()
                c_ver = max(now, c_up + 1)
                memory = [*json.loads(memory), f"turn {turn + 1}: the player chose to {text}"]
                db.execute(
                    "UPDATE characters SET mood = ?, trust = ?, memory = ?, updated_us = ? "
                    "WHERE session_id = ? AND character_id = ?",
                    (
                        "hopeful" if trust_delta > 0 else "concerned",
                        min(1.0, max(-1.0, trust + trust_delta)),
                        json.dumps(memory[-5:]),
                        c_ver,
                        session_id,
                        character_id,
                    ),
                )
                (e_up,) = db.execute(
                    "SELECT updated_us FROM emotions WHERE user_id = ?", (user_id,)
                ).fetchone()
                e_ver = max(now, e_up + 1)
                db.execute(
                    "UPDATE emotions SET session_id = ?, emotion = ?, intensity = ?, trigger = ?, "
                    "updated_us = ? WHERE user_id = ?",
                    (session_id, emotion.value, self.rng.uniform(0.2, 0.9), key, e_ver, user_id),
                )
                written = {
                    f"session:{session_id}": s_ver,
                    f"narrative:{session_id}": s_ver,
                    f"character:{session_id}:{character_id}": c_ver,
                    f"emotional:{user_id}": e_ver,
                }
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return written

        @cache.invalidates(therapeutic="{user_id}")
        def record_progress(user_id: str, gain: float) -> dict[str, int]:
            """A helpful choice moves therapeutic progress (tagged apart from ``user:``)."""
            self._latency()
            db.execute("BEGIN IMMEDIATE")
            try:
                grounding, achievements, updated = db.execute(
                    "SELECT grounding, achievements, updated_us FROM progress WHERE user_id = ?",
                    (user_id,),
                ).fetchone()
                version = max(_us(), updated + 1)
                grounding = min(1.0, grounding + gain)
                done = json.loads(achievements)
                if grounding >= 0.1 * (len(done) + 1):
                    done.append(f"grounding level {len(done) + 1}")
                db.execute(
                    "UPDATE progress SET grounding = ?, achievements = ?, updated_us = ? "
                    "WHERE user_id = ?",
                    (grounding, json.dumps(done), version, user_id),
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return {f"progress:{user_id}": version}

        self.load_session = load_session
        self.load_narrative = load_narrative
        self.load_character = load_character
        self.load_emotional = load_emotional
        self.load_progress = load_progress
        self.make_choice = make_choice
        self.record_progress = record_progress

    def _read(self, entity: str, load: Callable[..., Any], *args: str) -> Any:
        local, stats, report = self.cache.engine.local, self.cache.engine.stats, self.report
        l1, l2, loads = local.hits, stats.redis_hits, report.loads
        began = time.time()
        started = time.perf_counter()
        value = load(*args)
        elapsed = time.perf_counter() - started
        if report.loads != loads:
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
        version = _version(moment)
        if version < self.floor.get(entity, 0):
            report.own_stale += 1  # I1: this process's own invalidation had returned
        key = (entity, version, tier)
        if began > report.observed.get(key, 0.0):
            report.observed[key] = began
        return value

    def turn(self) -> None:
        """One player turn: five reads, and sometimes a choice."""
        p = self.rng.choice(self.players)
        user, session = f"player-{p}", f"session-{p}"
        character = self.rng.choice(tuple(CHARACTERS))
        self._read(f"session:{session}", self.load_session, session)
        self._read(f"narrative:{session}", self.load_narrative, session)
        self._read(
            f"character:{session}:{character}", self.load_character, session, character, user
        )
        self._read(f"emotional:{user}", self.load_emotional, user)
        self._read(f"progress:{user}", self.load_progress, user)
        self.report.turns += 1
        if self.rng.random() < self.config.choice_rate:
            option = self.rng.randrange(len(OPTIONS))
            self._write(self.make_choice, user, session, character, option)
            self.report.choices += 1
            gain = OPTIONS[option][3]
            if gain > 0:
                self._write(self.record_progress, user, gain)

    def _write(self, write: Callable[..., dict[str, int]], *args: Any) -> None:
        started = time.perf_counter()
        written = write(*args)
        done = time.time()  # the invalidation has returned: from now on nothing older may be read
        self.report.tiers["write"].add(time.perf_counter() - started)
        for entity, version in written.items():
            self.report.writes.append((entity, version, done))
            self.floor[entity] = max(self.floor.get(entity, 0), version)

    def run(self, barrier: Any) -> _WorkerReport:
        if self.config.redis_url is not None and not self.cache.wait_ready(10.0):
            raise RuntimeError(f"worker {self.index}: invalidation channel did not come up")
        barrier.wait(timeout=120)
        deadline = time.monotonic() + self.config.duration
        while time.monotonic() < deadline:
            self.turn()
        self.report.stats = self.cache.stats()
        subscriber = self.cache.engine.subscriber
        self.report.lags = list(subscriber.lags) if subscriber is not None else []
        return self.report

    def close(self) -> None:
        self.cache.close()
        self.db.close()


def _worker_main(
    *, index: int, config: DemoConfig, db_path: str, namespace: str, barrier: Any, results: Any
) -> None:
    worker: _Worker | None = None
    try:
        worker = _Worker(index, config, Path(db_path), namespace)
        results.put(worker.run(barrier))
    except BaseException:
        barrier.abort()
        results.put(_WorkerReport(index, error=traceback.format_exc()))
    finally:
        if worker is not None:
            worker.close()


# ---------------------------------------------------------------------- the run


@dataclass
class Staleness:
    """Reads of a version older than one whose invalidation had returned > window before."""

    count: int = 0
    worst: float = 0.0
    """The worst such read's delay after the first newer version's invalidation returned."""
    by_tier: dict[str, int] = field(default_factory=dict)


def _count_stale(reports: list[_WorkerReport]) -> Staleness:
    """Check every worker's reads against every worker's writes (see the module docstring)."""
    writes: dict[str, list[tuple[float, int]]] = {}
    for report in reports:
        for entity, version, done in report.writes:
            writes.setdefault(entity, []).append((done, version))
    timeline: dict[str, tuple[list[float], list[int]]] = {}
    for entity, events in writes.items():
        events.sort()
        newest, running = [], 0
        for _, version in events:
            running = max(running, version)
            newest.append(running)
        timeline[entity] = ([done for done, _ in events], newest)
    out = Staleness()
    for report in reports:
        for (entity, version, tier), began in report.observed.items():
            if entity not in timeline:
                continue
            times, newest = timeline[entity]
            i = bisect.bisect_left(times, began - STALENESS_WINDOW)
            if i and version < newest[i - 1]:
                out.count += 1
                out.by_tier[tier] = out.by_tier.get(tier, 0) + 1
                first = bisect.bisect_right(newest, version)  # the first newer write
                out.worst = max(out.worst, began - times[first])
    return out


def _check_reachable(url: str) -> None:
    """Raise :class:`BackendError` now rather than from every worker."""
    with translated("PING"):  # a Cluster client connects when made
        client = make_sync_client(RedisConfig.from_url(url, op_timeout=2.0))
        try:
            client.ping()
        finally:
            client.close()


def _drop_namespace(redis_url: str, namespace: str) -> None:
    """Remove the demo's keys from a Redis the demo did not start (they expire anyway)."""
    try:
        with translated("SCAN"):
            client = make_sync_client(RedisConfig.from_url(redis_url, op_timeout=5.0))
            try:
                pipe = client.pipeline(transaction=False)
                # One key per command: in a Cluster the keys of a batch live in different slots.
                for n, key in enumerate(client.scan_iter(match=f"{namespace}:*", count=1000), 1):
                    pipe.unlink(key)
                    if n % 500 == 0:
                        pipe.execute()
                pipe.execute()
            finally:
                client.close()
    except BackendError as exc:
        log.warning(
            "could not remove the demo's keys (%s:*; they expire in %.0f s): %s",
            namespace,
            _DEMO_TTL,
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
        db_path = tmp / "tta.sqlite3"
        _seed_database(db_path, config.players)
        if url is not None and not embedded:
            stack.callback(_drop_namespace, url, namespace)
        reports = _run_workers(config, db_path, namespace, on_progress)
    tiers = {name: Histogram() for name in (*TIERS, "write")}
    lags = Histogram()
    for report in reports:
        for name, hist in report.tiers.items():
            tiers[name].merge(hist)
        for lag in report.lags:
            lags.add(lag)
    stale = _count_stale(reports)
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
    db_path: Path,
    namespace: str,
    on_progress: Callable[[float], None] | None,
) -> list[_WorkerReport]:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(config.workers + 1)
    results = ctx.Queue()
    processes = [
        ctx.Process(
            target=_worker_main,
            kwargs={
                "index": i,
                "config": config,
                "db_path": str(db_path),
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
    reports: list[_WorkerReport] = []
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
