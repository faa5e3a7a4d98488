"""OpenTelemetry spans and metrics for a :class:`~tta_cache.Cache`, through ``opentelemetry-api``.

:class:`Telemetry` is the middleware ``Cache(telemetry=True)`` (the default) puts first in the
chain. Without an OpenTelemetry SDK it costs a no-op span per Redis step; with one, it emits:

Spans (the database client conventions for Redis):

- one per Redis step, kind CLIENT, named ``{db.operation.name} {cache namespace}`` (``GET tta``,
  ``PIPELINE tta``, ``PIPELINE SET tta``; the Redis conventions keep the numeric ``db.namespace``
  out of the name, the cache namespace is the key prefix the operation works on), with
  ``db.system.name="redis"``, ``db.operation.name``, ``db.namespace`` (the database index from
  the configuration, as a string), ``server.address``/``server.port`` (the first configured
  host), ``db.operation.batch.size`` for pipelines of several commands,
  ``db.stored_procedure.name`` (the SHA1) for a step that runs one Lua script, ``cache.name``,
  ``cache.kind`` and ``code.function.name`` when the step is for a cached function;
- one per computation after a miss, ``cache.compute {function}``, kind INTERNAL, current while the
  function runs (its own spans nest under it) and the parent of the fill that follows (``SET``,
  or the lease's fill script);
- on failure only: status ERROR and ``error.type``, the class name of the error (the Redis
  client's error rather than its wrapper; the names ``stats()["errors_by_type"]`` counts). No
  exception event is recorded: its message could carry a key or an argument.

Metrics: the instruments of :mod:`.instruments`, fed from this middleware's counters.

No key, tag value, argument or cached value ever becomes a span name or an attribute.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from ..core.policy import BreakerState
from ..tiers import BUMP_LUA, FILL_LUA, LEASE_READ_LUA, VERSIONS_LUA
from .instruments import VERSION, AttrKey, instruments_for
from .middleware import BaseMiddleware, Next, Operation, error_type, flow_state

if TYPE_CHECKING:
    from collections.abc import Awaitable
    from contextvars import Token

    from opentelemetry.context import Context
    from opentelemetry.util.types import Attributes

    from ..engine import Engine

__all__ = ["Telemetry", "sdk_configured"]

_SCRIPTS = {  # steps that run one script (a pipeline of several has no one procedure)
    name: hashlib.sha1(script.encode(), usedforsecurity=False).hexdigest()
    for name, script in (
        ("versions", VERSIONS_LUA),
        ("bump", BUMP_LUA),
        ("lease_read", LEASE_READ_LUA),
        ("fill", FILL_LUA),
    )
}
_BREAKER = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}
_PARENT = "tta_cache.telemetry.parent"  # flow_state() key: the computation's span context
_MAX_DESCRIBED = 1024

_Started = tuple[trace.Span, "Attributes", float, "Token[Context] | None"]


class Telemetry(BaseMiddleware):
    """The OpenTelemetry middleware of one cache (see the module docstring).

    ``tracer_provider`` / ``meter_provider`` default to the global ones, looked up lazily by the
    API, so an SDK configured after the cache was built is still used.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        self.engine = engine
        self.namespace = engine.namespace
        self.tracer = trace.get_tracer("tta_cache", VERSION, tracer_provider)
        self.instruments = instruments_for(meter_provider)
        self._db = _db_attributes(engine)
        self._described: dict[
            tuple[str, str, int, str, str], tuple[str, Attributes, Attributes]
        ] = {}
        self._last_lag: float | None = None
        self._lag_lock = threading.Lock()
        self.instruments.sources.add(self)

    # ------------------------------------------------------------------ the middleware

    def __call__(self, op: Operation, call_next: Next, /) -> Any:
        started = self._start(op)
        try:
            result = call_next()
        except BaseException as exc:
            self._end(op, started, exc)
            raise
        self._end(op, started, None)
        return result

    async def acall(self, op: Operation, call_next: Callable[[], Awaitable[Any]], /) -> Any:
        started = self._start(op)
        try:
            result = await call_next()
        except BaseException as exc:
            self._end(op, started, exc)
            raise
        self._end(op, started, None)
        return result

    def _describe(self, op: Operation) -> tuple[str, Attributes, Attributes]:
        """The span name, span attributes and metric attributes of ``op`` (made once per shape)."""
        key = (op.name, op.command, op.batch_size, op.kind, op.function)
        described = self._described.get(key)
        if described is not None:
            return described
        if op.tier == "compute":
            attributes: dict[str, Any] = {"cache.name": self.namespace, "cache.kind": op.kind}
            if op.function:
                attributes["code.function.name"] = op.function
            name = f"cache.compute {op.function}".rstrip()
            described = (name, attributes, attributes)
        else:
            metric: dict[str, Any] = {**self._db, "db.operation.name": op.command}
            span: dict[str, Any] = {**metric, "cache.name": self.namespace}
            if op.batch_size > 1:
                span["db.operation.batch.size"] = op.batch_size
            if op.name in _SCRIPTS and op.command == "EVALSHA":
                span["db.stored_procedure.name"] = _SCRIPTS[op.name]
            if op.kind != "*":
                span["cache.kind"] = op.kind
            if op.function:
                span["code.function.name"] = op.function
            described = (f"{op.command} {self.namespace}", span, metric)
        if len(self._described) >= _MAX_DESCRIBED:
            self._described.clear()
        self._described[key] = described
        return described

    def _start(self, op: Operation) -> _Started:
        name, attributes, metric = self._describe(op)
        token: Token[Context] | None
        if op.tier == "compute":
            span = self.tracer.start_span(name, kind=SpanKind.INTERNAL, attributes=attributes)
            # Current while the function runs: its own spans (and nested cache calls) nest here.
            token = otel_context.attach(trace.set_span_in_context(span))
        else:
            state = flow_state()
            parent = state.get(_PARENT) if state is not None else None
            span = self.tracer.start_span(
                name, context=parent, kind=SpanKind.CLIENT, attributes=attributes
            )
            # Current while Redis is called, so an instrumented client's spans nest under it.
            recording = span.is_recording()
            token = otel_context.attach(trace.set_span_in_context(span)) if recording else None
        return span, metric, time.perf_counter(), token

    def _end(self, op: Operation, started: _Started, exc: BaseException | None) -> None:
        span, metric, t0, token = started
        took = time.perf_counter() - t0
        if token is not None:
            otel_context.detach(token)
        if exc is not None:
            kind = error_type(exc)
            span.set_attribute("error.type", kind)
            span.set_status(Status(StatusCode.ERROR))
            metric = {**(metric or {}), "error.type": kind}
        elif op.tier == "compute":
            state = flow_state()
            if state is not None:  # the fill that follows is this computation's child
                state[_PARENT] = trace.set_span_in_context(span)
        span.end()
        if op.tier == "compute":
            self.instruments.compute_duration.record(took, metric)
        else:
            self.instruments.db_duration.record(took, metric)

    # ------------------------------------------------------------------ observed figures

    def requests(self) -> Iterator[tuple[AttrKey, int]]:
        """``cache.requests`` figures: L1 from the local tier, L2 from the stats counters."""
        local, stats = self.engine.local, self.engine.stats
        figures = [  # L1 hits are counted on the hit path, not per kind
            ("local", "hit", local.hits, "*"),
            ("local", "miss", local.misses, "*"),
        ]
        if self.engine.redis is not None:
            for kind, (hits, misses, stale) in stats.kinds().items():
                figures += [
                    ("redis", "hit", hits, kind),
                    ("redis", "miss", misses, kind),
                    ("redis", "stale", stale, kind),
                ]
        for tier, result, value, kind in figures:
            yield (
                (
                    ("cache.name", self.namespace),
                    ("cache.tier", tier),
                    ("cache.result", result),
                    ("cache.kind", kind),
                ),
                value,
            )

    def invalidations(self) -> Iterator[tuple[AttrKey, int]]:
        stats = self.engine.stats
        ns = ("cache.name", self.namespace)
        yield (ns, ("cache.invalidation.direction", "sent")), stats.invalidations_sent
        yield (ns, ("cache.invalidation.direction", "received")), stats.invalidations_received

    def errors(self) -> Iterator[tuple[AttrKey, int]]:
        for kind, count in dict(self.engine.stats.errors_by_type).items():
            yield (("cache.name", self.namespace), ("error.type", kind)), count

    def local_size(self) -> Iterator[tuple[AttrKey, int]]:
        yield (("cache.name", self.namespace),), len(self.engine.local)

    def breaker_state(self) -> Iterator[tuple[AttrKey, int]]:
        if self.engine.redis is not None:
            yield (("cache.name", self.namespace),), _BREAKER[self.engine.breaker.state]

    def new_lags(self) -> list[float]:
        """Invalidation lags received since the last call (the channel keeps the last 4096)."""
        sub = self.engine.subscriber
        if sub is None:
            return []
        with self._lag_lock:
            lags = list(sub.lags)
            start = 0
            last = self._last_lag
            if last is not None:
                # Each sample is a float object of its own: identity finds where we left off,
                # even after older samples fell off the bounded deque.
                for i in range(len(lags) - 1, -1, -1):
                    if lags[i] is last:
                        start = i + 1
                        break
            if lags:
                self._last_lag = lags[-1]
            return lags[start:]


def _db_attributes(engine: Engine) -> dict[str, Any]:
    attributes: dict[str, Any] = {"db.system.name": "redis"}
    cfg = engine.redis_cfg
    if cfg is None:
        return attributes
    attributes["db.namespace"] = str(cfg.db)
    parts = urlsplit(cfg.url)
    if parts.scheme == "unix":
        attributes["server.address"] = parts.path
    elif cfg.hosts:
        host, port = cfg.hosts[0]
        attributes["server.address"] = host
        attributes["server.port"] = port
    return attributes


def sdk_configured() -> bool:
    """Whether global OpenTelemetry tracer or meter providers have been set (not the API's
    proxies or no-ops): the default for ``Cache(telemetry=None)``."""
    from opentelemetry import metrics, trace

    tracer = trace.get_tracer_provider()
    meter = metrics.get_meter_provider()
    no_tracer = isinstance(tracer, (trace.ProxyTracerProvider, trace.NoOpTracerProvider))
    no_meter = isinstance(meter, metrics.NoOpMeterProvider) or type(meter).__name__ == (
        "_ProxyMeterProvider"
    )
    return not (no_tracer and no_meter)
