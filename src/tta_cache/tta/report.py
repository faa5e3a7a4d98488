"""The seed's health report, :func:`health_check_cache_system`, over ``cache.health()``."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from tta_cache.api import Cache
from tta_cache.exceptions import BackendError

from .connection import RedisConnectionManager

__all__ = ["health_check_cache_system"]


def _server_info(cache: Cache) -> dict[str, Any]:
    """A few INFO figures (summed over the primaries of a cluster); {} if Redis is unreachable."""
    tier = cache.engine.redis
    if tier is None:
        return {}
    try:
        info = tier.execute("INFO", lambda c: c.info())
    except BackendError:
        return {}
    nodes = (
        list(info.values()) if info and all(isinstance(v, dict) for v in info.values()) else [info]
    )
    first = nodes[0] if nodes else {}
    out: dict[str, Any] = {
        "redis_version": first.get("redis_version"),
        "role": first.get("role"),
        "uptime_in_seconds": first.get("uptime_in_seconds"),
    }
    for name in ("used_memory", "connected_clients", "keyspace_hits", "keyspace_misses"):
        out[name] = sum(int(n.get(name, 0)) for n in nodes)
    out["total_keys"] = sum(
        int(v.get("keys", 0)) for n in nodes for k, v in n.items() if k.startswith("db")
    )
    looked_up = out["keyspace_hits"] + out["keyspace_misses"]
    out["server_hit_rate"] = out["keyspace_hits"] / looked_up if looked_up else 0.0
    return out


def health_check_cache_system(
    conn_manager: RedisConnectionManager,
    *,
    min_hit_rate: float | None = None,
    min_operations: int = 100,
    max_ping_latency: float | None = None,
) -> dict[str, Any]:
    """The seed's health report: ``overall_status`` (healthy / degraded / unhealthy), ``reasons``,
    ``connection`` and ``stats`` with ``redis_info`` (``hit_rate``: this process's cache hit rate;
    ``server_hit_rate``: Redis keyspace hits over lookups; memory, clients, keys, PING latency)
    and ``cache`` (the full ``cache.stats()``).

    Alert thresholds: a hit rate under ``min_hit_rate`` (once ``min_operations`` reads were
    made) or a PING slower than ``max_ping_latency`` seconds makes a healthy report degraded.
    """
    cache = conn_manager.cache
    conn_manager.health_check()
    report = cache.health()
    stats = report["stats"]
    status: str = report["overall_status"]
    reasons: list[str] = list(report["reasons"])
    redis_info: dict[str, Any] = {
        **_server_info(cache),
        "connected": report["redis"].get("connected", False),
        "ping_latency": report["redis"].get("ping_latency"),
        "hits": stats["hits"],
        "misses": stats["misses"],
        "hit_rate": stats["hit_rate"],
    }
    if (
        min_hit_rate is not None
        and stats["total_operations"] >= min_operations
        and stats["hit_rate"] < min_hit_rate
    ):
        reasons.append(f"hit rate {stats['hit_rate']:.1%} is under {min_hit_rate:.1%}")
        status = "degraded" if status == "healthy" else status
    latency = redis_info["ping_latency"]
    if max_ping_latency is not None and latency is not None and latency > max_ping_latency:
        reasons.append(f"PING took {latency * 1000:.1f} ms (limit {max_ping_latency * 1000:.1f})")
        status = "degraded" if status == "healthy" else status
    return {
        "overall_status": status,
        "reasons": reasons,
        "timestamp": datetime.now(timezone.utc).isoformat(),
        "connection": conn_manager.get_connection_stats(),
        "redis": report["redis"],
        "stats": {"redis_info": redis_info, "cache": stats},
    }
