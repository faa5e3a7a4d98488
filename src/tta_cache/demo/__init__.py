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

==============  ==============================================================================
``run``         :func:`run_demo`: the Redis, the database, the worker processes, the merge
``worker``      one worker process: its turns and what it measures of each read and write
``game``        the decorated loaders and invalidating writers of one worker
``world``       the story (characters, choices, scenes) and its SQLite database
``measures``    latency histograms, a worker's report, the staleness check
``report``      the merged report: the figures and the printed table
``config``      :class:`DemoConfig` and the constants the parts share
==============  ==============================================================================
"""

from __future__ import annotations

from .config import STALENESS_WINDOW, DemoConfig
from .measures import Histogram, Staleness
from .report import DemoReport
from .run import run_demo

__all__ = ["STALENESS_WINDOW", "DemoConfig", "DemoReport", "Histogram", "Staleness", "run_demo"]
