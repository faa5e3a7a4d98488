"""What a demo run simulates (:class:`DemoConfig`) and the figures every part of it shares."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEMO_TTL", "MEASURED", "STALENESS_WINDOW", "TIERS", "DemoConfig"]

STALENESS_WINDOW = 0.050
"""How long another process may still serve a value after an invalidation returned (I2)."""

TIERS = ("l1", "l2", "miss")
"""Where a read was served from: L1, L2, or the database (a miss)."""

MEASURED = (*TIERS, "write")
"""Every latency a worker measures: the reads by tier, and the writes with their invalidation."""

DEMO_TTL = 600.0
"""The longest TTL of a demo entry: demo keys in a shared Redis expire soon even if the run is
killed."""


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
    seed: int | None = None
    database_url: str | None = None  # None: a SQLite file in a temporary directory
