"""The soak: one long run of the full mix, with a connection cut and a channel kill every
``EVERY`` seconds, the RSS of each worker and Redis's ``used_memory`` sampled.

*Flat* means: the median of the last 20 % of the samples is within the bound of the median of
the samples taken between 10 % and 30 % of the run (after start-up and the first fills), for
every worker and for Redis. No leaked connections: ``CLIENT LIST`` counts the same before the
workers start and after they exit.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from .scenarios import QUEUED_WHY, RECONNECT_MS, Scenario, Standalone

EVERY = 10.0  # seconds between samples (and between fault rounds)
RSS_BOUND = 16 * 2**20  # a worker's RSS may grow by this much
REDIS_BOUND = 8 * 2**20  # Redis used_memory may grow by this much
MiB = 2**20


def soak_round(topo: Standalone, seconds: float) -> dict[str, Any]:
    assert topo.proxy is not None
    time.sleep(seconds / 2)
    topo.proxy.cut()
    time.sleep(seconds / 2)
    with topo.server.client(socket_timeout=2.0) as admin:
        admin.client_kill_filter(_type="pubsub")
    return {}


SOAK = Scenario(
    "soak",
    "soak: cut + channel kill every 10 s",
    Standalone,
    soak_round,
    {"short": 60, "full": 600},
    cfg={"rss_every": EVERY},
    stale_bound_ms=RECONNECT_MS,
    bound_why=QUEUED_WHY,
)


def growth(samples: list[list[float]]) -> tuple[float, float]:
    """(early median, late median) of ``[[time, bytes], ...]``."""
    values = [s[1] for s in samples]
    n = len(values)
    early = values[max(0, n // 10) : max(1, (3 * n) // 10)] or values[:1]
    late = values[-max(1, n // 5) :]
    return statistics.median(early), statistics.median(late)


def verdict(rss: list[list[list[float]]], used_memory: list[list[float]]) -> tuple[bool, list[str]]:
    lines, ok = [], True
    for index, samples in enumerate(rss):
        early, late = growth(samples)
        flat = late - early <= RSS_BOUND
        ok &= flat
        lines.append(
            f"worker {index} RSS: {early / MiB:.1f} MiB -> {late / MiB:.1f} MiB "
            f"({(late - early) / MiB:+.1f}; bound +{RSS_BOUND / MiB:.0f}) "
            f"{'flat' if flat else 'GROWING'} [{len(samples)} samples]"
        )
    early, late = growth(used_memory)
    flat = late - early <= REDIS_BOUND
    ok &= flat
    lines.append(
        f"redis used_memory: {early / MiB:.2f} MiB -> {late / MiB:.2f} MiB "
        f"({(late - early) / MiB:+.2f}; bound +{REDIS_BOUND / MiB:.0f}) "
        f"{'flat' if flat else 'GROWING'} [{len(used_memory)} samples]"
    )
    return ok, lines
