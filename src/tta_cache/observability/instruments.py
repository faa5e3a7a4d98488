"""The OpenTelemetry instruments of tta-cache: one set per meter provider, fed by each cache.

Metrics (one instrument set per meter provider; every figure is also in ``cache.stats()`` and read
from the same counters, so the two never disagree):

================================  ============  ==============================================
``cache.requests``                counter       ``cache.tier`` local|redis, ``cache.result``
                                                hit|miss|stale, ``cache.kind`` (the
                                                Redis tier per kind; L1: ``*``)
``db.client.operation.duration``  histogram, s  the span's ``db.*``/``server.*`` attributes,
                                                ``error.type`` on failure
``cache.compute.duration``        histogram, s  ``cache.kind``, ``code.function.name``,
                                                ``error.type`` on failure
``cache.invalidations``           counter       ``cache.invalidation.direction`` sent|received
``cache.invalidation.lag``        histogram, s  publish to receipt, every message the channel
                                                delivered (this process's own included)
``cache.errors``                  counter       ``error.type``: failures served around
``cache.local.size``              gauge         entries in L1
``cache.breaker.state``           gauge         0 closed, 1 half-open, 2 open
================================  ============  ==============================================

The ``cache.*`` metrics carry ``cache.name`` (the namespace). Counters are observable: L1 hits are
counted in-process by the local tier and never run the chain. Invalidation lags are exported when
metrics are collected; of more than the channel keeps (4096) between two collections, the oldest
are not exported.

A cache's :class:`~tta_cache.observability.telemetry.Telemetry` registers itself as a
:class:`FigureSource`: the observable instruments read every registered cache's counters when
metrics are collected.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Protocol

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

__all__ = [
    "DB_DURATION_BUCKETS",
    "VERSION",
    "AttrKey",
    "FigureSource",
    "Instruments",
    "instruments_for",
]

try:
    VERSION = version("tta-cache")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    VERSION = "0"

DB_DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0)
"""The database client conventions' bucket advice for ``db.client.operation.duration``."""

_LAG_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)
AttrKey = tuple[tuple[str, Any], ...]


class FigureSource(Protocol):
    """What the observable instruments read from each cache (its :class:`Telemetry`)."""

    namespace: str

    def requests(self) -> Iterator[tuple[AttrKey, int]]: ...
    def invalidations(self) -> Iterator[tuple[AttrKey, int]]: ...
    def errors(self) -> Iterator[tuple[AttrKey, int]]: ...
    def local_size(self) -> Iterator[tuple[AttrKey, int]]: ...
    def breaker_state(self) -> Iterator[tuple[AttrKey, int]]: ...
    def new_lags(self) -> list[float]: ...


class Instruments:
    """The instruments of one meter provider, shared by every cache reporting to it (an SDK
    keeps the first callbacks registered under a name, so each cache cannot register its own)."""

    def __init__(self, meter: metrics.Meter) -> None:
        self.sources: weakref.WeakSet[FigureSource] = weakref.WeakSet()
        self.db_duration = meter.create_histogram(
            "db.client.operation.duration",
            unit="s",
            description="Duration of Redis operations of the cache.",
            explicit_bucket_boundaries_advisory=DB_DURATION_BUCKETS,
        )
        self.compute_duration = meter.create_histogram(
            "cache.compute.duration",
            unit="s",
            description="Duration of computations of cached functions after a miss.",
            explicit_bucket_boundaries_advisory=DB_DURATION_BUCKETS,
        )
        self.lag = meter.create_histogram(
            "cache.invalidation.lag",
            unit="s",
            description="Time from publishing an invalidation to receiving it.",
            explicit_bucket_boundaries_advisory=_LAG_BUCKETS,
        )
        meter.create_observable_counter(
            "cache.requests",
            [self._observe(lambda source: source.requests())],
            unit="{request}",
            description="Cache lookups by tier and result.",
        )
        meter.create_observable_counter(
            "cache.invalidations",
            [self._invalidations],
            unit="{invalidation}",
            description="Invalidations sent to and received from the channel.",
        )
        meter.create_observable_counter(
            "cache.errors",
            [self._observe(lambda source: source.errors())],
            unit="{error}",
            description="Failed cache operations served around (fail-open), by error type.",
        )
        meter.create_observable_gauge(
            "cache.local.size",
            [self._observe(lambda source: source.local_size())],
            unit="{entry}",
            description="Entries in the in-process tier (L1).",
        )
        meter.create_observable_gauge(
            "cache.breaker.state",
            [self._observe(lambda source: source.breaker_state())],
            unit="1",
            description="Redis circuit breaker: 0 closed, 1 half-open, 2 open.",
        )

    def _observe(
        self, figures: Callable[[FigureSource], Iterable[tuple[AttrKey, int]]]
    ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            totals: dict[AttrKey, int] = {}
            for source in list(self.sources):
                for key, value in figures(source):
                    totals[key] = totals.get(key, 0) + value  # two caches, one namespace
            return [Observation(value, dict(key)) for key, value in totals.items()]

        return callback

    def _invalidations(self, options: CallbackOptions) -> Iterable[Observation]:
        for source in list(self.sources):
            attributes = {"cache.name": source.namespace}
            for lag in source.new_lags():
                self.lag.record(lag, attributes)
        return self._observe(lambda source: source.invalidations())(options)


_by_provider: weakref.WeakKeyDictionary[metrics.MeterProvider, Instruments] = (
    weakref.WeakKeyDictionary()
)
_global: Instruments | None = None
_instruments_lock = threading.Lock()


def instruments_for(meter_provider: metrics.MeterProvider | None) -> Instruments:
    global _global
    with _instruments_lock:
        if meter_provider is None:
            # One set for the global provider, whatever it is now: a proxy binds to the SDK
            # once one is set, so caches built before and after it share the instruments.
            if _global is None:
                _global = Instruments(metrics.get_meter("tta_cache", VERSION))
            return _global
        instruments = _by_provider.get(meter_provider)
        if instruments is None:
            meter = meter_provider.get_meter("tta_cache", VERSION)
            instruments = _by_provider[meter_provider] = Instruments(meter)
        return instruments
