"""Observability: what a cache reports about itself, and the hooks around every step it takes.

- :mod:`.stats`: :class:`Stats`, the counters behind ``cache.stats()``;
- :mod:`.middleware`: the ordered chain of middleware around every tier operation and
  computation (:class:`Chain`, :class:`Operation`, :class:`BaseMiddleware`,
  :class:`LoggingMiddleware`, ...);
- :mod:`.telemetry`: :class:`Telemetry`, the OpenTelemetry middleware (spans), and
  :mod:`.instruments`, its metrics;
- :mod:`.health`: :class:`ConnectionStats`, :class:`HealthMonitor`, :func:`probe` and
  :func:`check` (``cache.health()``).

Observability knows the tiers, the codec, keys and policy; the engine and the cache it reports on
are handed to it (their types are imported for type checking only). :class:`Telemetry` and
:func:`sdk_configured` are imported on first use, so a process that never turns telemetry on
never loads that module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .health import ConnectionStats, HealthMonitor, check, probe
from .middleware import (
    FLOW_STATE,
    AsyncMiddleware,
    BaseMiddleware,
    Chain,
    LoggingMiddleware,
    Middleware,
    Operation,
    error_type,
    flow_state,
    redact,
)
from .stats import Stats

if TYPE_CHECKING:
    from .telemetry import Telemetry, sdk_configured

__all__ = [
    "FLOW_STATE",
    "AsyncMiddleware",
    "BaseMiddleware",
    "Chain",
    "ConnectionStats",
    "HealthMonitor",
    "LoggingMiddleware",
    "Middleware",
    "Operation",
    "Stats",
    "Telemetry",
    "check",
    "error_type",
    "flow_state",
    "probe",
    "redact",
    "sdk_configured",
]

_LAZY = frozenset({"Telemetry", "sdk_configured"})


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from . import telemetry

        return getattr(telemetry, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
