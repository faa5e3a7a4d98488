"""What a namespace holds: entries per kind, tag versions, listening processes, Redis's figures.

One SCAN of ``<ns>:*`` (counting, never reading values), one INFO (summed over a Cluster's
nodes) and one PUBSUB NUMSUB of the invalidation channel.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..exceptions import ConfigurationError
from .layout import key_kind

if TYPE_CHECKING:
    from ..api import Cache

__all__ = ["namespace_inventory"]


def namespace_inventory(
    cache: Cache, progress: Callable[[int], None] | None = None
) -> dict[str, Any]:
    """The figures of ``cache``'s namespace; ``progress(keys counted)`` is called as the scan
    goes. Raises :class:`~tta_cache.BackendError` when Redis fails."""
    tier = cache.engine.redis
    if tier is None:
        raise ConfigurationError("a local-only cache has no namespace in Redis")
    ns = cache.namespace
    tag_prefix = f"{ns}:tag:"
    by_kind: dict[str, int] = {}
    tags = 0

    def scan(client: Any) -> None:
        nonlocal tags
        for n, raw in enumerate(client.scan_iter(match=f"{ns}:*", count=1000), 1):
            key = raw.decode() if isinstance(raw, bytes) else str(raw)
            if key.startswith(tag_prefix):
                tags += 1
            else:
                kind = key_kind(key, ns)
                by_kind[kind] = by_kind.get(kind, 0) + 1
            if progress is not None:
                progress(n)

    tier.execute("SCAN", scan)
    info = _merged_info(tier.execute("INFO", lambda c: c.info()))
    channel = f"{ns}:invalidate"
    subscribers = tier.execute("PUBSUB NUMSUB", lambda c: c.pubsub_numsub(channel))
    hits, misses = int(info.get("keyspace_hits", 0)), int(info.get("keyspace_misses", 0))
    return {
        "namespace": ns,
        "entries": sum(by_kind.values()),
        "entries_by_kind": dict(sorted(by_kind.items())),
        "tag_versions": tags,
        "listening_processes": int(dict(_pairs(subscribers)).get(channel, 0)),
        "redis_info": {
            "version": info.get("redis_version"),
            "used_memory": info.get("used_memory_human"),
            "connected_clients": info.get("connected_clients"),
            "keyspace_hits": hits,
            "keyspace_misses": misses,
            "hit_rate": hits / (hits + misses) if hits + misses else 0.0,
        },
    }


def _pairs(raw: Any) -> list[tuple[str, int]]:
    out = []
    for name, count in raw or ():
        out.append((name.decode() if isinstance(name, bytes) else str(name), int(count)))
    return out


def _merged_info(info: Mapping[str, Any]) -> dict[str, Any]:
    """INFO of one server, or of a Cluster's nodes summed (redis-py returns one dict per node)."""
    if "redis_version" in info or not all(isinstance(v, Mapping) for v in info.values()):
        return dict(info)
    merged: dict[str, Any] = {}
    for node in info.values():
        for key, value in node.items():
            if isinstance(value, int) and isinstance(merged.get(key, 0), int):
                merged[key] = merged.get(key, 0) + value
            else:
                merged.setdefault(key, value)
    return merged
