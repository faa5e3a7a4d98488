"""OpenTelemetry against a real Redis: span names, kinds, attributes and parents, error spans,
metrics equal to ``stats()``, and the attribute allow-list (no user data in any attribute)."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import time
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import tta_cache as tc
from tta_cache.observability import Telemetry
from tta_cache.tiers import FILL_LUA

WAIT = 10.0  # seconds a test waits for something that should happen at once (never asserted)
USER_ID = "user-7f3a9c"
SESSION_ID = "sess-51d2e8"

ALLOWED_ATTRIBUTES = frozenset(
    {
        "db.system.name",
        "db.operation.name",
        "db.namespace",
        "db.operation.batch.size",
        "db.stored_procedure.name",
        "server.address",
        "server.port",
        "error.type",
        "cache.name",
        "cache.kind",
        "cache.tier",
        "cache.result",
        "cache.invalidation.direction",
        "code.function.name",
    }
)


@dataclass
class Otel:
    """An SDK of the test's own (never the global one): spans in memory, metrics on demand."""

    tracer_provider: TracerProvider = field(default_factory=TracerProvider)
    spans: InMemorySpanExporter = field(default_factory=InMemorySpanExporter)
    reader: InMemoryMetricReader = field(default_factory=InMemoryMetricReader)
    meter_provider: MeterProvider = field(init=False)

    def __post_init__(self) -> None:
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    @property
    def providers(self) -> dict[str, Any]:
        return {"tracer_provider": self.tracer_provider, "meter_provider": self.meter_provider}

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def metrics(self) -> dict[str, list[tuple[dict[str, Any], Any]]]:
        """Metric name -> [(attributes, data point)] as collected now."""
        out: dict[str, list[tuple[dict[str, Any], Any]]] = {}
        data = self.reader.get_metrics_data()
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    for point in metric.data.data_points:
                        out.setdefault(metric.name, []).append(
                            (dict(point.attributes or {}), point)
                        )
        return out

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


@pytest.fixture
def otel() -> Iterator[Otel]:
    o = Otel()
    yield o
    o.shutdown()


MakeCache = Callable[..., tc.Cache]


@pytest.fixture
def make(redis_url: str, otel: Otel) -> Iterator[MakeCache]:
    """Caches on the test's Redis reporting to ``otel`` unless told otherwise; all closed."""
    made: list[tc.Cache] = []

    def factory(url: str | None = redis_url, **options: Any) -> tc.Cache:
        cache = tc.Cache(url, **{**otel.providers, **options})
        made.append(cache)
        return cache

    yield factory
    for cache in made:
        cache.close()


@pytest.fixture
async def amake(redis_url: str, otel: Otel) -> AsyncIterator[MakeCache]:
    made: list[tc.Cache] = []

    def factory(url: str | None = redis_url, **options: Any) -> tc.Cache:
        cache = tc.Cache(url, **{**otel.providers, **options})
        made.append(cache)
        return cache

    yield factory
    loop = asyncio.get_running_loop()
    for cache in made:
        client = cache.engine.aredis._clients.get(loop) if cache.engine.aredis else None
        await cache.aclose()
        if client is not None:  # aclose() leaves the pool open today (see test_engine_redis)
            await client.connection_pool.aclose()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def eventually(check: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + WAIT
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def by_name(spans: list[ReadableSpan]) -> dict[str, ReadableSpan]:
    return {s.name: s for s in spans}


def total(points: list[tuple[dict[str, Any], Any]], **match: str) -> int:
    return sum(p.value for attrs, p in points if all(attrs.get(k) == v for k, v in match.items()))


def requests(otel: Otel, tier: str, result: str) -> int:
    return total(otel.metrics()["cache.requests"], **{"cache.tier": tier, "cache.result": result})


# --- spans ------------------------------------------------------------------------------------


def test_a_miss_is_client_spans_per_redis_step_and_a_compute_span_parenting_the_fill(
    make: MakeCache, otel: Otel, redis_server: Any
) -> None:
    cache = make()
    assert cache.wait_ready()

    @cache.cached(kind="character", tags=("user:{user_id}",))
    def load_character(user_id: str, character_id: str) -> dict[str, str]:
        return {"name": character_id}

    tracer = otel.tracer_provider.get_tracer("test")
    with tracer.start_as_current_span("request") as request:
        load_character(USER_ID, "c1")
    function = load_character.cache_key(USER_ID, "c1").split(":")[2]

    spans = otel.finished()
    assert [s.name for s in spans] == [
        "PIPELINE tta",
        f"cache.compute {function}",
        "SET tta",
        "request",
    ]
    read, compute, fill, _ = spans
    redis_attributes = {
        "db.system.name": "redis",
        "db.namespace": "0",
        "server.address": "127.0.0.1",
        "server.port": redis_server.port,
        "cache.name": "tta",
        "cache.kind": "character",
        "code.function.name": function,
    }
    assert read.kind is SpanKind.CLIENT
    assert dict(read.attributes or {}) == {
        **redis_attributes,
        "db.operation.name": "PIPELINE",
        "db.operation.batch.size": 2,
    }
    assert fill.kind is SpanKind.CLIENT
    assert dict(fill.attributes or {}) == {**redis_attributes, "db.operation.name": "SET"}
    assert compute.kind is SpanKind.INTERNAL
    assert dict(compute.attributes or {}) == {
        "cache.name": "tta",
        "cache.kind": "character",
        "code.function.name": function,
    }
    request_id = request.get_span_context().span_id
    assert read.parent is not None
    assert read.parent.span_id == request_id
    assert compute.parent is not None
    assert compute.parent.span_id == request_id
    assert fill.parent is not None
    assert fill.parent.span_id == compute.context.span_id
    assert all(s.status.status_code is StatusCode.UNSET for s in spans)


def test_an_l2_hit_is_one_get_span_and_no_computation(make: MakeCache, otel: Otel) -> None:
    cache = make(local_maxsize=0)
    assert cache.wait_ready()

    @cache.cached_session
    def load_session(session_id: str) -> str:
        return session_id

    load_session(SESSION_ID)
    otel.spans.clear()
    load_session(SESSION_ID)
    [hit] = otel.finished()
    assert (hit.name, hit.kind) == ("GET tta", SpanKind.CLIENT)
    assert "db.operation.batch.size" not in (hit.attributes or {})
    assert cache.stats()["redis"]["hits"] == 1


async def test_async_operations_make_the_same_spans_and_parents(
    amake: MakeCache, otel: Otel
) -> None:
    cache = amake()
    assert await asyncio.get_running_loop().run_in_executor(None, cache.wait_ready)

    @cache.cached_session
    async def load_session(session_id: str) -> str:
        await asyncio.sleep(0)
        return session_id

    await load_session(SESSION_ID)
    read, compute, fill = otel.finished()
    assert [read.name, fill.name] == ["PIPELINE tta", "SET tta"]
    assert compute.name.startswith("cache.compute ")
    assert fill.parent is not None
    assert fill.parent.span_id == compute.context.span_id
    assert read.parent is None
    assert compute.parent is None


def test_with_a_lease_the_fill_script_is_the_computations_child(
    make: MakeCache, otel: Otel
) -> None:
    cache = make()
    assert cache.wait_ready()

    @cache.cached(kind="narrative", lock=True)
    def load_narrative(session_id: str) -> str:
        return session_id

    load_narrative(SESSION_ID)
    lease, compute, fill = otel.finished()
    assert [lease.name, fill.name] == ["PIPELINE tta", "EVALSHA tta"]
    assert compute.name.startswith("cache.compute ")
    assert fill.parent is not None
    assert fill.parent.span_id == compute.context.span_id
    script = (fill.attributes or {})["db.stored_procedure.name"]
    assert script == hashlib.sha1(FILL_LUA.encode()).hexdigest()


def test_version_scripts_and_batches_carry_their_attributes(make: MakeCache, otel: Otel) -> None:
    cache = make()
    assert cache.wait_ready()
    cache.set_many({"a": 1, "b": 2, "c": 3})
    cache.invalidate(user=USER_ID)
    spans = by_name(otel.finished())
    assert spans["PIPELINE SET tta"].attributes["db.operation.batch.size"] == 3  # type: ignore[index]
    bump = spans["EVALSHA tta"].attributes or {}
    assert len(str(bump["db.stored_procedure.name"])) == 40  # the script's SHA1
    assert bump["cache.kind"] == "tag"


def test_redis_down_gives_error_spans_error_metrics_and_an_open_breaker(
    own_redis: Any, otel: Otel
) -> None:
    breaker = tc.CircuitBreaker(failure_threshold=3, reset_timeout=3600)
    with tc.Cache(own_redis.url, breaker=breaker, **otel.providers) as cache:
        assert cache.wait_ready()

        @cache.cached_session
        def load_session(session_id: str) -> str:
            return session_id

        own_redis.kill()
        for i in range(3):
            assert load_session(f"{SESSION_ID}-{i}") == f"{SESSION_ID}-{i}"
        stats = cache.stats()
        figures = otel.metrics()

    reads = [s for s in otel.finished() if s.kind is SpanKind.CLIENT]
    assert [s.name for s in reads] == ["PIPELINE tta"] * 3  # no fill: versions were unknowable
    [error_type] = stats["errors_by_type"]
    for span in reads:
        assert span.status.status_code is StatusCode.ERROR
        assert (span.attributes or {})["error.type"] == error_type
        assert not span.events  # no exception event: its message could carry a key
    computes = [s for s in otel.finished() if s.name.startswith("cache.compute")]
    assert len(computes) == 3
    assert all(s.status.status_code is StatusCode.UNSET for s in computes)

    durations = figures["db.client.operation.duration"]
    assert sum(p.count for a, p in durations if a.get("error.type") == error_type) == 3
    assert {a["error.type"]: p.value for a, p in figures["cache.errors"]} == stats["errors_by_type"]
    [(_, state)] = figures["cache.breaker.state"]
    assert state.value == 2  # open


# --- metrics ----------------------------------------------------------------------------------


def test_metric_totals_equal_stats_after_a_scripted_workload(make: MakeCache) -> None:
    a_otel, b_otel = Otel(), Otel()
    try:
        a = make(**a_otel.providers)
        b = make(**b_otel.providers)
        assert a.wait_ready()
        assert b.wait_ready()
        caches = {"a": (a, a_otel), "b": (b, b_otel)}

        def session_loader(cache: tc.Cache) -> Callable[[str], dict[str, str]]:
            @cache.cached_session
            def load_session(session_id: str) -> dict[str, str]:
                return {"id": session_id}

            return load_session

        load_a, load_b = session_loader(a), session_loader(b)
        for sid in ("s1", "s2", "s3"):
            load_a(sid)  # misses: compute and fill
            load_a(sid)  # L1 hits
            load_b(sid)  # L2 hits in b
        a.set("raw", 1)
        assert b.get("raw") == 1
        assert b.get("absent") is None
        a.invalidate(session="s1")
        assert eventually(lambda: b.stats()["invalidations"]["received"] == 1)
        load_b("s1")  # invalidated: a miss in b

        for cache, otel in caches.values():
            stats = cache.stats()
            figures = otel.metrics()
            assert requests(otel, "local", "hit") == stats["local"]["hits"]
            assert requests(otel, "local", "miss") == stats["local"]["misses"]
            assert requests(otel, "redis", "hit") == stats["redis"]["hits"]
            assert requests(otel, "redis", "miss") == stats["redis"]["misses"]
            assert requests(otel, "redis", "stale") == stats["stale_served"]
            inv = figures["cache.invalidations"]
            for direction in ("sent", "received"):
                exported = total(inv, **{"cache.invalidation.direction": direction})
                assert exported == stats["invalidations"][direction]
            computed = sum(p.count for _, p in figures["cache.compute.duration"])
            assert computed == stats["computations"]
            durations = figures["db.client.operation.duration"]
            ok = sum(p.count for attrs, p in durations if "error.type" not in attrs)
            assert ok == stats["redis"]["operations"]
            assert total(figures["cache.local.size"]) == stats["local"]["size"]
            assert "cache.errors" not in figures
            assert not stats["errors_by_type"]

        b_stats = b.stats()
        assert (b_stats["local"]["hits"], b_stats["redis"]["hits"]) == (0, 4)  # the workload ran
    finally:
        a_otel.shutdown()
        b_otel.shutdown()


def test_invalidation_lags_are_exported_once_each(make: MakeCache) -> None:
    b_otel = Otel()
    try:
        a, b = make(), make(**b_otel.providers)
        assert a.wait_ready()
        assert b.wait_ready()
        for n in range(3):
            a.invalidate(user=f"{USER_ID}-{n}")
        assert eventually(lambda: b.stats()["invalidations"]["received"] == 3)
        assert b.engine.subscriber is not None

        def exported() -> int:
            [(attrs, lag)] = b_otel.metrics()["cache.invalidation.lag"]
            assert attrs == {"cache.name": "tta"}
            return int(lag.count)

        assert exported() == len(b.engine.subscriber.lags) == 3
        assert exported() == 3  # collected again: nothing new, nothing counted twice
        a.invalidate(user=USER_ID)
        assert eventually(lambda: b.stats()["invalidations"]["received"] == 4)
        assert exported() == 4
    finally:
        b_otel.shutdown()


def test_two_caches_on_one_meter_provider_both_report(otel: Otel) -> None:
    with tc.Cache(**otel.providers) as one, tc.Cache(namespace="other", **otel.providers) as two:

        @one.cached
        def f(x: int) -> int:
            return x

        @two.cached
        def g(x: int) -> int:
            return x

        f(1), f(1), g(1), g(2), g(2), g(3)
        figures = otel.metrics()
    hits = {
        attrs["cache.name"]: p.value
        for attrs, p in figures["cache.requests"]
        if attrs["cache.result"] == "hit"
    }
    assert hits == {"tta": 1, "other": 1}
    assert {a["cache.name"]: p.value for a, p in figures["cache.local.size"]} == {
        "tta": 1,
        "other": 3,
    }
    assert {a["cache.tier"] for a, _ in figures["cache.requests"]} == {"local"}  # no Redis


# --- privacy ----------------------------------------------------------------------------------


def test_every_attribute_is_allow_listed_and_carries_no_user_data(
    make: MakeCache, otel: Otel
) -> None:
    a, b = make(), make()
    assert a.wait_ready()
    assert b.wait_ready()

    @a.cached(kind="character", tags=("user:{user_id}", "session:{session_id}"))
    def load_character(session_id: str, user_id: str) -> dict[str, str]:
        if user_id.endswith("bad"):
            raise LookupError(f"no character for {user_id} in {session_id}")
        return {"owner": user_id, "session": session_id}

    @a.cached_session
    def load_session(session_id: str, user_id: str) -> str:
        return f"{session_id}/{user_id}"

    load_character(SESSION_ID, USER_ID)
    load_character(SESSION_ID, USER_ID)
    with pytest.raises(LookupError):
        load_character(SESSION_ID, USER_ID + "-bad")
    load_session(SESSION_ID, USER_ID)
    a.set(f"profile:{USER_ID}", {"user": USER_ID}, tags=[f"user:{USER_ID}"])
    a.get_many([f"profile:{USER_ID}", f"prefs:{SESSION_ID}"])
    a.invalidate(user=USER_ID, session=SESSION_ID)
    load_character.invalidate(SESSION_ID, USER_ID)
    a.delete(f"profile:{USER_ID}")
    assert eventually(lambda: b.stats()["invalidations"]["received"] >= 2)

    spans = otel.finished()
    figures = otel.metrics()
    assert {s.name.split()[0] for s in spans} >= {"PIPELINE", "SET", "MGET", "EVALSHA"}
    assert {"cache.requests", "db.client.operation.duration", "cache.compute.duration"} <= set(
        figures
    )
    seen: list[tuple[str, object]] = []
    for span in spans:
        seen.append(("span name", span.name))
        seen.append(("status", span.status.description))
        seen.extend((k, v) for k, v in (span.attributes or {}).items())
        for event in span.events:
            seen.extend((k, v) for k, v in (event.attributes or {}).items())
    for points in figures.values():
        for attrs, _ in points:
            seen.extend(attrs.items())
    names = {k for k, _ in seen} - {"span name", "status"}
    assert names <= ALLOWED_ATTRIBUTES, names - ALLOWED_ATTRIBUTES
    for name, value in seen:
        for secret in (USER_ID, SESSION_ID, "51d2e8", "7f3a9c"):
            assert secret not in str(value), (name, value)


# --- no SDK -----------------------------------------------------------------------------------


def test_without_an_sdk_the_default_runs_no_telemetry(redis_url: str) -> None:
    # the global providers are the API's proxies: the default (telemetry=None) adds no middleware
    with tc.Cache(redis_url) as cache:
        assert not cache.engine.chain


def test_without_an_sdk_the_telemetry_is_a_no_op(redis_url: str) -> None:
    with tc.Cache(redis_url, telemetry=True) as cache:  # the API's no-op proxies
        assert isinstance(cache.engine.chain.middleware[0], Telemetry)

        @cache.cached
        def load(key: str) -> str:
            assert not trace.get_current_span().is_recording()
            return key

        assert load("k") == "k"
        assert load("k") == "k"
        assert cache.stats()["computations"] == 1
