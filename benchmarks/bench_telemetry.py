"""What telemetry costs: an L1 hit and an L2 hit, with an OpenTelemetry SDK configured vs off.

1. L1 hit of a decorated function on a cache reporting to an SDK (``TracerProvider`` with a batch
   span processor, ``MeterProvider`` with an in-memory reader) vs the same with
   ``telemetry=False``. L1 hits never run the middleware chain and are counted by the local tier
   either way, so the target is <= 1.1x.
2. L2 hit (``local_maxsize=0``: every call is one ``GET``) with spans and metrics on vs off
   (target <= 1.25x), and with the telemetry middleware left on but no SDK (the default: a
   no-op, reported).
3. The yardstick: the same L2 hit with spans and metrics on vs a bare redis-py ``GET`` traced by
   the official ``opentelemetry-instrumentation-redis`` on the same SDK (target <= 1.0x; skipped
   with a note when that package is not installed). Its instrumentation patches redis-py's
   client classes; the cache's hot commands go on its own connections, outside them, so the
   other runners are not traced by it.

Figures are median ns/op over interleaved rounds (``benchmarks._harness.measure``), against a
redis-server of our own on a free loopback port.

    .venv/bin/python -m benchmarks.bench_telemetry [--quick]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

import tta_cache as tc

from ._harness import Row, Settings, measure, print_table, redis_server


class _Dropped(SpanExporter):
    """Counts and drops: the cost measured is making spans, not shipping them."""

    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += len(spans)
        return SpanExportResult.SUCCESS


@contextmanager
def sdk() -> Iterator[dict[str, Any]]:
    """Providers of our own (the global ones are left alone), shut down on exit."""
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(_Dropped()))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    try:
        yield {"tracer_provider": tracer_provider, "meter_provider": meter_provider}
    finally:
        tracer_provider.shutdown()
        meter_provider.shutdown()


def _runner(cache: tc.Cache) -> Callable[[int], None]:
    @cache.cached(kind="character", tags=("session:{session_id}",))
    def load_character(session_id: str, character_id: str) -> dict[str, str]:
        return {"session": session_id, "character": character_id}

    load_character("s1", "c1")  # fill both tiers
    load_character("s1", "c1")

    def run(n: int) -> None:
        for _ in range(n):
            load_character("s1", "c1")

    return run


@contextmanager
def _instrumented_get(
    server: Any, providers: dict[str, Any]
) -> Iterator[Callable[[int], None] | None]:
    """A runner of bare redis-py GETs traced by the official instrumentation, or None."""
    try:
        from opentelemetry.instrumentation.redis import RedisInstrumentor
    except ImportError:
        yield None
        return
    client = server.client()
    client.set("bench:raw", b"x" * 64)
    instrumentor = RedisInstrumentor()
    instrumentor.instrument(**providers)
    try:

        def run(n: int) -> None:
            get = client.get
            for _ in range(n):
                get("bench:raw")

        yield run
    finally:
        instrumentor.uninstrument()
        client.close()


def main(quick: bool = False) -> list[Row]:
    """Print the figures; return the summary rows for ``python -m benchmarks``."""
    settings = Settings.for_mode(quick)
    with ExitStack() as stack:
        providers = stack.enter_context(sdk())
        server = stack.enter_context(redis_server())

        def cache(url: str | None, **options: Any) -> tc.Cache:
            made = stack.enter_context(tc.Cache(url, namespace="bench", **options))
            if url is not None:
                made.wait_ready()
            return made

        l1 = measure(
            {
                "sdk": _runner(cache(None, **providers)),
                "off": _runner(cache(None, telemetry=False)),
            },
            settings,
        )
        server.client().flushall()
        runners = {
            "sdk": _runner(cache(server.url, local_maxsize=0, **providers)),
            "no-op": _runner(cache(server.url, local_maxsize=0)),
            "off": _runner(cache(server.url, local_maxsize=0, telemetry=False)),
        }
        traced = stack.enter_context(_instrumented_get(server, providers))
        if traced is not None:
            runners["otel-redis GET"] = traced
        l2 = measure(runners, settings)
    rows = [
        Row(
            "L1 hit, OTel SDK configured",
            l1["sdk"].median,
            l1["off"].median,
            "telemetry=False",
            target=1.1,
            round_trips="0",
        ),
        Row(
            "L2 hit, spans + metrics (SDK)",
            l2["sdk"].median,
            l2["off"].median,
            "telemetry=False",
            round_trips="1 (get)",
        ),
        Row(
            "L2 hit, telemetry on, no SDK",
            l2["no-op"].median,
            l2["off"].median,
            "telemetry=False",
            round_trips="1 (get)",
        ),
    ]
    rows[1].target = 1.25
    if "otel-redis GET" in l2:
        rows.append(
            Row(
                "L2 hit, spans + metrics (SDK)",
                l2["sdk"].median,
                l2["otel-redis GET"].median,
                "redis-py GET + opentelemetry-instrumentation-redis",
                target=1.0,
                round_trips="1 (get)",
            )
        )
    else:
        print("  opentelemetry-instrumentation-redis not installed: its yardstick is skipped")
    print_table(rows, "telemetry: median ns/op over interleaved rounds")
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_telemetry")
    parser.add_argument("--quick", action="store_true", help="fewer iterations (CI smoke)")
    main(quick=parser.parse_args().quick)
