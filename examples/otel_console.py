"""OpenTelemetry: a short TTA workload printing its spans and metrics to the console.

Run ``python examples/otel_console.py``: the cache is local only (no Redis needed), so the spans
are the computations after each miss. With ``--redis-url redis://127.0.0.1:6380/0`` the Redis
operations are spans too (``PIPELINE tta``, ``SET tta``, ``EVALSHA tta`` ...), each fill a child
of its computation.

The OpenTelemetry SDK is set up here as an application would (global providers, console
exporters); the cache's telemetry is on by default and reports to them. No key, session id or
user id appears in any span or metric attribute.
"""

from __future__ import annotations

import argparse
import json

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

import tta_cache as tc
from tta_cache.tta import CharacterState, SessionState


def span_line(span: ReadableSpan) -> str:
    parent = f" parent={span.parent.span_id:016x}" if span.parent else ""
    return (
        f"span {span.context.span_id:016x}{parent} {span.kind.name:8} {span.name}  "
        f"{json.dumps(dict(span.attributes or {}))}\n"
    )


def metric_lines(data: MetricsData) -> str:
    lines = []
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for point in metric.data.data_points:
                    value = getattr(point, "value", None)
                    if value is None:  # a histogram
                        value = f"count={point.count} sum={point.sum:.6f}s"  # type: ignore[union-attr]
                    lines.append(
                        f"metric {metric.name} {json.dumps(dict(point.attributes or {}))} {value}"
                    )
    return "\n".join(lines) + "\n"


def setup_opentelemetry() -> tuple[TracerProvider, MeterProvider]:
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(
        SimpleSpanProcessor(ConsoleSpanExporter(formatter=span_line))
    )
    # One export at shutdown; a service would export every minute or so.
    reader = PeriodicExportingMetricReader(
        ConsoleMetricExporter(formatter=metric_lines), export_interval_millis=3_600_000
    )
    meter_provider = MeterProvider(metric_readers=[reader])
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(meter_provider)
    return tracer_provider, meter_provider


@tc.cached_session  # kind "session", tagged session:{session_id} and user:{user_id}
def load_session(session_id: str, user_id: str) -> SessionState:
    return SessionState(session_id, user_id)  # stands for the database read


@tc.cached(kind="character", tags=("session:{session_id}",))
def load_character(session_id: str, character_id: str) -> CharacterState:
    return CharacterState(character_id, name="Guide", session_id=session_id)


@tc.invalidates(session="{session_id}")  # after it returns, the session's entries are stale
def end_scene(session_id: str) -> None: ...


def workload() -> None:
    tracer = trace.get_tracer("examples.otel_console")
    for n in range(3):
        with tracer.start_as_current_span("turn"):  # a game turn: the cache spans nest under it
            session_id, user_id = f"session-{n}", f"user-{n}"
            load_session(session_id, user_id)
            load_session(session_id, user_id)  # an L1 hit: no span, counted in cache.requests
            load_character(session_id, "guide")
    end_scene("session-0")
    load_character("session-0", "guide")  # invalidated: computed again


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", help="a Redis to use as L2 (default: local only)")
    args = parser.parse_args()
    tracer_provider, meter_provider = setup_opentelemetry()
    with tc.configure(args.redis_url) as cache:  # the default cache behind tc.cached & co
        cache.wait_ready()
        workload()
        stats = cache.stats()
    print(f"stats(): hits={stats['hits']} misses={stats['misses']} local={stats['local']}")
    tracer_provider.shutdown()
    meter_provider.shutdown()  # exports the metrics once more, at the end


if __name__ == "__main__":
    main()
