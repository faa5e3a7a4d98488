"""The story and its "database": characters, choices, scenes, and the SQLite file behind them.

Every row carries the instant it was last written, in microseconds (``updated_us``): the
*version* a value read from it has (:func:`version`), which the staleness check compares.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

from ..tta.models import EmotionalStateType

__all__ = [
    "CHARACTERS",
    "OPTIONS",
    "SCENES",
    "at",
    "connect",
    "now_us",
    "seed_database",
    "transaction",
    "version",
]

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

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
"""A choice: (id, what the player does, how they feel after, the trust and progress it moves)."""
SCENES = ("forest-edge", "river-crossing", "old-lighthouse", "quiet-garden")


def now_us() -> int:
    """The wall clock in microseconds: what a write stamps its row with."""
    return time.time_ns() // 1000


def at(us: int) -> datetime:
    """The instant ``us`` microseconds after the epoch, as a model's datetime."""
    return EPOCH + timedelta(microseconds=us)


def version(moment: datetime) -> int:
    """A value's version: the instant its row was written (``at``'s inverse)."""
    return (moment - EPOCH) // timedelta(microseconds=1)


def connect(path: Path) -> sqlite3.Connection:
    """A connection to the database at ``path`` in autocommit mode (writes use
    :func:`transaction`); waits for a busy writer rather than failing."""
    db = sqlite3.connect(path, timeout=30, isolation_level=None)
    db.execute("PRAGMA busy_timeout = 30000")
    return db


def seed_database(path: Path, players: int) -> None:
    """Create the database at ``path``: ``players`` players, each with a session at the first
    scene, every character, a calm emotional state and no progress."""
    db = connect(path)
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
    now = now_us()
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


@contextlib.contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` .. ``COMMIT``, rolled back if the block raises."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
