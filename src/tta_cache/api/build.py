"""How a :class:`~tta_cache.Cache`'s options become its engine: the Redis configuration, the
circuit breaker reporting to the connection figures, and the middleware chain with telemetry
outermost."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..codec import Codec
from ..core.policy import CircuitBreaker
from ..engine import Engine
from ..observability import ConnectionStats, Middleware
from ..tiers import RedisConfig

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

__all__ = ["build_engine", "middleware_chain"]


def build_engine(
    redis_url: str | None,
    *,
    namespace: str,
    local_maxsize: int,
    codec: Codec,
    on_error: str,
    lock_timeout: float,
    error_throttle: float,
    clock: Callable[[], float] | None,
    rng: random.Random | None,
    breaker: CircuitBreaker | None,
    breaker_options: tuple[int, float, float],
    redis_options: Mapping[str, Any],
    max_value_bytes: int | None = None,
) -> Engine:
    """The engine for these options; ``breaker_options`` is (threshold, window, reset timeout)."""
    cfg = None if redis_url is None else RedisConfig.from_url(redis_url, **redis_options)
    connection = ConnectionStats(clock or time.time)
    if breaker is None:
        threshold, window, reset_timeout = breaker_options
        breaker = CircuitBreaker(
            failure_threshold=threshold,
            window=window,
            reset_timeout=reset_timeout,
            clock=clock or time.monotonic,
            on_change=connection.breaker_moved,
        )
    return Engine(
        namespace=namespace,
        redis=cfg,
        local_maxsize=local_maxsize,
        codec=codec,
        on_error=on_error,
        lock_timeout=lock_timeout,
        clock=clock or time.time,
        rng=rng,
        breaker=breaker,
        connection=connection,
        error_throttle=error_throttle,
        max_value_bytes=max_value_bytes,
    )


def middleware_chain(
    engine: Engine,
    middleware: Sequence[Middleware],
    telemetry: bool | None,
    tracer_provider: TracerProvider | None,
    meter_provider: MeterProvider | None,
) -> list[Middleware]:
    """``middleware``, with OpenTelemetry outermost (so a span covers what the others add) when
    asked for, or when ``None`` and providers are given or an SDK is configured globally."""
    chain = list(middleware)
    if telemetry is None:
        from ..observability import sdk_configured

        telemetry = tracer_provider is not None or meter_provider is not None or sdk_configured()
    if telemetry:
        from ..observability import Telemetry

        chain.insert(
            0, Telemetry(engine, tracer_provider=tracer_provider, meter_provider=meter_provider)
        )
    return chain
