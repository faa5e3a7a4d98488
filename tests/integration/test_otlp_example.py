"""examples/otel_otlp.py, run as its own process against a real Redis, exports through the real
OTLP/HTTP exporter to a receiver in this process, which decodes what arrives."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from helpers.otlp_receiver import OtlpReceiver

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "otel_otlp.py"
SPAN_KIND_CLIENT = 3  # opentelemetry.proto.trace.v1.Span.SpanKind.SPAN_KIND_CLIENT
SPAN_KIND_INTERNAL = 1


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    return subprocess.run(
        [sys.executable, str(EXAMPLE), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_example_sends_its_spans_and_metrics_over_otlp_http(redis_url: str) -> None:
    with OtlpReceiver() as receiver:
        done = _run(
            "--endpoint", receiver.endpoint, "--redis-url", redis_url, "--namespace", "otlp"
        )
        assert done.returncode == 0, done.stderr
        assert "sent to" in done.stdout
        spans = receiver.spans()
        points = receiver.metric_points()
        content_types = receiver.content_types

    assert content_types == {"application/x-protobuf"}
    assert spans, "no span arrived"
    assert {resource.get("service.name") for resource, _ in spans} == {"tta-cache-example"}
    by_name: dict[str, list[object]] = {}
    for _, span in spans:
        by_name.setdefault(span.name.split()[0], []).append(span)
    assert {"cache.compute", "GET", "PIPELINE"} <= set(by_name), sorted(by_name)
    port = int(redis_url.rsplit(":", 1)[1].split("/", maxsplit=1)[0])
    redis_spans = [s for _, s in spans if not s.name.startswith("cache.compute")]
    for span in redis_spans:
        attrs = {kv.key: kv.value for kv in span.attributes}
        assert span.kind == SPAN_KIND_CLIENT, span.name
        assert span.name.endswith(" otlp"), span.name  # {db.operation.name} {namespace}
        assert attrs["db.system.name"].string_value == "redis"
        assert attrs["server.port"].int_value == port
        assert attrs["cache.name"].string_value == "otlp"
    computes = [s for _, s in spans if s.name.startswith("cache.compute")]
    kinds = set()
    functions = set()
    for span in computes:
        attrs = {kv.key: kv.value.string_value for kv in span.attributes}
        assert span.kind == SPAN_KIND_INTERNAL
        kinds.add(attrs["cache.kind"])
        functions.add(attrs["code.function.name"])
    assert kinds == {"session", "character"}
    assert functions == {"__main__.load_session", "__main__.load_character"}
    # 3 sessions + 3 characters + the character read again after end_scene
    assert len(computes) == 7
    compute_ids = {s.span_id for s in computes}
    assert any(s.parent_span_id in compute_ids for s in redis_spans), "no fill under its compute"

    expected = {
        "cache.requests",
        "db.client.operation.duration",
        "cache.compute.duration",
        "cache.invalidations",
        "cache.local.size",
        "cache.breaker.state",
    }
    assert expected <= set(points), sorted(points)
    # cumulative counters, exported more than once: the latest (largest) figure of each series,
    # summed over kinds (the Redis tier counts per kind)
    latest: dict[tuple[str, str, str], int] = {}
    for a, p in points["cache.requests"]:
        series = (a["cache.tier"], a["cache.result"], a["cache.kind"])
        latest[series] = max(latest.get(series, 0), p.as_int)
    requests: dict[tuple[str, str], int] = {}
    for (tier, result, _), count in latest.items():
        requests[(tier, result)] = requests.get((tier, result), 0) + count
    assert requests[("local", "hit")] >= 3  # the second read of each session
    assert requests[("redis", "miss")] >= 7
    sent = [
        p.as_int
        for a, p in points["cache.invalidations"]
        if a["cache.invalidation.direction"] == "sent"
    ]
    assert max(sent) == 1
    assert {a["db.system.name"] for a, _ in points["db.client.operation.duration"]} == {"redis"}
    assert sum(p.count for _, p in points["cache.compute.duration"]) >= 7

    for _, span in spans:  # no user data left the process
        for kv in span.attributes:
            assert "user-" not in str(kv.value), kv
            assert "session-" not in str(kv.value), kv


def test_without_an_endpoint_the_example_sends_nothing_and_says_so() -> None:
    done = _run()
    assert done.returncode == 0, done.stderr
    assert "no collector" in done.stdout
