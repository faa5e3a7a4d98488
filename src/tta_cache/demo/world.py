"""The story: characters, choices, scenes, and the clock the rows' versions come from.

Every row carries the instant it was last written, in microseconds (its ``version`` column, see
``schema.py``): the *version* a value read from it has (:func:`version`), which the staleness
check compares.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

from ..tta.models import EmotionalStateType

__all__ = ["CHARACTERS", "OPTIONS", "SCENES", "at", "now_us", "version"]

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
