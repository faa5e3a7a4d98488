"""OpenTelemetry over OTLP/HTTP: a short TTA workload sending its spans and metrics to a collector.

Run ``python examples/otel_otlp.py --endpoint http://collector:4318`` (or set
``OTEL_EXPORTER_OTLP_ENDPOINT``): spans go to ``<endpoint>/v1/traces`` and metrics to
``<endpoint>/v1/metrics`` through ``opentelemetry-exporter-otlp-proto-http``, as an OpenTelemetry
Collector (or any OTLP/HTTP receiver: Jaeger, Tempo, Prometheus's OTLP receiver) takes them.
With ``--redis-url`` the cache has Redis as L2 and every Redis step is a span (``GET tta``,
``EVALSHA tta``, ``PIPELINE tta`` ...); without it the cache is local only and the spans are the
computations after each miss. Without an endpoint it says so and exits (``python -m examples``
runs it that way).

The SDK is set up as a service would: a resource naming the service, a batch span processor and
a periodic metric reader; the cache is given the providers (``tracer_provider=``,
``meter_provider=``, here through ``tc.configure``), and shutting them down flushes what is
left. No key, session id or user id
is sent in any span or metric attribute.
"""

from __future__ import annotations

import argparse
import os

from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

import tta_cache as tc
from tta_cache.tta import CharacterState, SessionState

ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_ENDPOINT"


def providers(endpoint: str, service_name: str) -> tuple[TracerProvider, MeterProvider]:
    """Tracer and meter providers that export to the OTLP/HTTP receiver at ``endpoint``."""
    base = endpoint.rstrip("/")
    resource = Resource.create({"service.name": service_name})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{base}/v1/traces", timeout=10))
    )
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=f"{base}/v1/metrics", timeout=10),
        export_interval_millis=60_000,  # and once more at shutdown
    )
    return tracer_provider, MeterProvider(resource=resource, metric_readers=[reader])


@tc.cached_session  # kind "session", tagged session:{session_id} and user:{user_id}
def load_session(session_id: str, user_id: str) -> SessionState:
    return SessionState(session_id, user_id)  # stands for the database read


@tc.cached(kind="character", tags=("session:{session_id}",))
def load_character(session_id: str, character_id: str) -> CharacterState:
    return CharacterState(character_id, name="Guide", session_id=session_id)


@tc.invalidates(session="{session_id}")  # after it returns, the session's entries are stale
def end_scene(session_id: str) -> None: ...


def workload(turns: int) -> None:
    """Players' turns: sessions and characters read twice (a miss, then an L1 hit), one scene
    ended (an invalidation) and its character read again (computed again)."""
    for n in range(turns):
        session_id, user_id = f"session-{n}", f"user-{n}"
        load_session(session_id, user_id)
        load_session(session_id, user_id)
        load_character(session_id, "guide")
    end_scene("session-0")
    load_character("session-0", "guide")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--endpoint",
        default=os.environ.get(ENDPOINT_ENV),
        help="the OTLP/HTTP receiver's base URL, e.g. http://127.0.0.1:4318 "
        f"(default ${ENDPOINT_ENV})",
    )
    parser.add_argument("--redis-url", help="a Redis to use as L2 (default: local only)")
    parser.add_argument("--namespace", default="tta")
    parser.add_argument("--service-name", default="tta-cache-example")
    parser.add_argument("--turns", type=int, default=3)
    args = parser.parse_args(argv)
    if not args.endpoint:
        print(f"no collector: pass --endpoint URL or set ${ENDPOINT_ENV}; nothing sent")
        return 0
    tracer_provider, meter_provider = providers(args.endpoint, args.service_name)
    with tc.configure(  # the default cache behind tc.cached & co
        args.redis_url,
        namespace=args.namespace,
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
    ) as cache:
        cache.wait_ready()
        workload(args.turns)
        stats = cache.stats()
        meter_provider.force_flush()  # while the cache is open: its gauges are read now
    tracer_provider.shutdown()  # flushes the batch span processor
    meter_provider.shutdown()
    print(f"sent to {args.endpoint}: hits={stats['hits']} misses={stats['misses']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
