"""The engine: read-through, fill, invalidation and raw access, decided once for sync and async.

See :mod:`tta_cache.engine.engine` for the map of its parts.
"""

from __future__ import annotations

from .call import MISSING, Call, Flight, LeaseWait, Loaded
from .engine import Engine
from .leases import lease_key

__all__ = ["MISSING", "Call", "Engine", "Flight", "LeaseWait", "Loaded", "lease_key"]
