"""The instruments tta-cache creates, read from the code, and their names in Prometheus.

:func:`instruments` runs :class:`tta_cache.observability.instruments.Instruments` against a meter
that only records what it is asked to create, so the names, kinds and units are the code's own.
:func:`prometheus_name` applies the OpenTelemetry-to-Prometheus naming that the Collector's
Prometheus exporters and Prometheus's OTLP receiver use: dots (any character outside
``[a-zA-Z0-9_:]``) become underscores, the unit becomes a suffix (units in braces are dropped;
``1`` on a gauge is ``_ratio``), a monotonic counter ends in ``_total``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from tta_cache.observability.instruments import Instruments


@dataclass(frozen=True)
class Instrument:
    name: str
    kind: str  # "counter" | "histogram" | "gauge" | "updowncounter"
    unit: str


class _RecordingMeter:
    """Just enough of ``opentelemetry.metrics.Meter`` to see what is created."""

    def __init__(self) -> None:
        self.created: list[Instrument] = []

    def _make(self, kind: str) -> Any:
        def create(name: str, *args: Any, unit: str = "", **kwargs: Any) -> Any:
            self.created.append(Instrument(name, kind, unit))
            return _Recorder()

        return create

    def __getattr__(self, attr: str) -> Any:
        kinds = {
            "create_counter": "counter",
            "create_observable_counter": "counter",
            "create_histogram": "histogram",
            "create_gauge": "gauge",
            "create_observable_gauge": "gauge",
            "create_up_down_counter": "updowncounter",
            "create_observable_up_down_counter": "updowncounter",
        }
        if attr not in kinds:
            raise AttributeError(attr)
        return self._make(kinds[attr])


class _Recorder:
    def record(self, *args: Any, **kwargs: Any) -> None: ...
    def add(self, *args: Any, **kwargs: Any) -> None: ...


def instruments() -> list[Instrument]:
    """Every instrument ``Instruments`` creates, in order."""
    meter = _RecordingMeter()
    Instruments(meter)  # type: ignore[arg-type]
    return meter.created


_UNITS = {"s": "seconds", "ms": "milliseconds", "By": "bytes", "%": "percent"}


def prometheus_name(instrument: Instrument) -> str:
    """The metric's name in Prometheus (a histogram's base name: add _bucket, _sum, _count)."""
    tokens = [t for t in re.split(r"[^a-zA-Z0-9:]+", instrument.name) if t]
    unit = re.sub(r"\{[^}]*\}", "", instrument.unit)
    if unit == "1":
        unit = "ratio" if instrument.kind == "gauge" else ""
    elif unit:
        unit = _UNITS.get(unit, re.sub(r"[^a-zA-Z0-9]+", "_", unit))
    if unit and unit not in tokens:
        tokens.append(unit)
    if instrument.kind == "counter":
        tokens = [t for t in tokens if t != "total"] + ["total"]
    return "_".join(tokens)


def prometheus_series(instrument: Instrument) -> set[str]:
    """The series names a query can use for the instrument."""
    base = prometheus_name(instrument)
    if instrument.kind == "histogram":
        return {f"{base}_bucket", f"{base}_sum", f"{base}_count"}
    return {base}


def prometheus_label(attribute: str) -> str:
    """An attribute's label name in Prometheus (``cache.tier`` -> ``cache_tier``)."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", attribute)
