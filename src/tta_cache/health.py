"""Health: ``cache.health()``: overall status with reasons, PING latency, breaker, channel, stats."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from .exceptions import BackendError
from .redis_tier import mask_url

if TYPE_CHECKING:
    from .cache import Cache

__all__ = ["check"]


def check(cache: Cache) -> dict[str, Any]:
    """One health report; PINGs Redis once (bounded by ``op_timeout``)."""
    engine = cache.engine
    reasons: list[str] = []
    redis_info: dict[str, Any] = {"configured": engine.redis is not None}
    status = "healthy"
    if engine.redis is not None:
        assert cache.redis_url is not None
        redis_info["url"] = mask_url(cache.redis_url)
        redis_info["mode"] = engine.redis.cfg.mode
        started = time.perf_counter()
        try:
            engine.redis.ping()
            redis_info["connected"] = True
            redis_info["ping_latency"] = time.perf_counter() - started
        except BackendError as exc:
            redis_info["connected"] = False
            redis_info["error"] = str(exc)
            reasons.append(f"redis unreachable: {exc}")
            status = "unhealthy"
        state = engine.health_state()
        redis_info.update(state)
        if state["channel"] != "up" and status == "healthy":
            reasons.append("invalidation channel down: L1 serves no tagged entry")
            status = "degraded"
        if state["breaker"] != "closed" and status == "healthy":
            reasons.append(f"circuit breaker {state['breaker']}")
            status = "degraded"
        if state["queued_invalidations"]:
            reasons.append(f"{state['queued_invalidations']} invalidations waiting for Redis")
            status = "degraded" if status == "healthy" else status
    return {
        "overall_status": status,
        "reasons": reasons,
        "redis": redis_info,
        "stats": cache.stats(),
    }
