"""How a maintenance operation runs: its statistics dict, its time limit, its error reporting.

Every sweep, purge and erasure returns the same statistics (``operation``, ``dry_run``,
``duration``, ``keys_scanned``, ``keys_deleted``, ``batches``, ``undecodable``, ``completed``,
``time_limit_reached``, ``error``) plus its own. A time limit stops an operation cleanly between
batches (the statistics say how far it got); Redis errors are reported there, never raised.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ..exceptions import BackendError

__all__ = ["Deadline", "new_stats", "run"]

log = logging.getLogger("tta_cache.maintenance")


class Deadline(Exception):
    """Raised inside an operation when its time limit has passed (caught by :func:`run`)."""


def new_stats(operation: str, dry_run: bool, **extra: Any) -> dict[str, Any]:
    """The statistics every operation starts from, then ``extra``."""
    return {
        "operation": operation,
        "dry_run": dry_run,
        "keys_scanned": 0,
        "keys_deleted": 0,
        "batches": 0,
        "undecodable": 0,
        "completed": False,
        "time_limit_reached": False,
        "error": None,
        "duration": 0.0,
        **extra,
    }


def run(
    stats: dict[str, Any],
    body: Callable[[float | None], None],
    monotonic: Callable[[], float],
    time_limit_s: float | None = None,
) -> dict[str, Any]:
    """Run ``body(deadline)`` (a ``monotonic()`` instant, or None) and fill the common stats."""
    operation = stats["operation"]
    started = monotonic()
    deadline = None if time_limit_s is None else started + time_limit_s
    try:
        body(deadline)
        stats["completed"] = True
    except Deadline:
        stats["time_limit_reached"] = True
        log.info("%s stopped at its time limit after %d keys", operation, stats["keys_scanned"])
    except BackendError as exc:
        stats["error"] = str(exc)
        log.warning("%s failed after %d keys: %s", operation, stats["keys_scanned"], exc)
    stats["duration"] = monotonic() - started
    return stats
