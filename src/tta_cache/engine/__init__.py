"""The engine: read-through, fill, invalidation and raw access, decided once for sync and async.

See :mod:`tta_cache.engine.engine` for the map of its parts.
"""

from __future__ import annotations

from .call import MISSING, Call, Flight, LeaseWait, Loaded
from .control import refresh_flow, store_flow
from .engine import Engine
from .entry import CurrentEntry, FillPolicy, current_entry
from .leases import lease_key

__all__ = [
    "MISSING",
    "Call",
    "CurrentEntry",
    "Engine",
    "FillPolicy",
    "Flight",
    "LeaseWait",
    "Loaded",
    "current_entry",
    "lease_key",
    "refresh_flow",
    "store_flow",
]
