"""redis-py clients for a :class:`~.config.RedisConfig`: standalone (on a counted blocking pool),
Sentinel and Cluster, sync and asyncio, with the retry policy (one immediate retry of a broken
connection, none of a timeout, so no operation takes longer than ``op_timeout`` plus connect)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import redis
import redis.asyncio as aredis
from redis.asyncio.retry import Retry as ARetry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.retry import Retry

from .config import RedisConfig
from .figures import TierFigures
from .pools import blocking_pool

__all__ = [
    "CLUSTER_DOWN_PAUSE",
    "cluster_retries",
    "make_async_client",
    "make_sentinel_clients",
    "make_sync_client",
]

# redis-py's Cluster clients (sync and asyncio) sleep this long after a CLUSTERDOWN (a failover
# under way) before each retry, whatever the socket timeout says.
CLUSTER_DOWN_PAUSE = 0.25


def _retry() -> Retry:
    # One immediate retry heals a pooled connection that Redis closed (restart, CLIENT KILL);
    # timeouts are not retried, so no operation takes longer than op_timeout (plus connect).
    return Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,))


def _aretry() -> ARetry:
    return ARetry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,))


def cluster_retries(op_timeout: float) -> int:
    """Retries a Cluster command may take: as many CLUSTERDOWN pauses as fit in ``op_timeout``
    (one attempt and its pause at the default 0.25 s). redis-py's default (3, and 2 here before)
    made an ``invalidate()`` during a failover take 0.8-2 s against a 0.25 s ``op_timeout``."""
    return max(0, int(op_timeout / CLUSTER_DOWN_PAUSE + 1e-9) - 1)


def _sentinel_kwargs(cfg: RedisConfig) -> dict[str, Any]:
    """How to reach the Sentinels themselves: TLS as the data nodes (a Sentinel of a TLS
    deployment listens on its tls-port)."""
    tls = cfg.tls_kwargs()
    return {"socket_timeout": cfg.op_timeout, **({"ssl": True, **tls} if cfg.ssl else {})}


def make_sync_client(
    cfg: RedisConfig, *, op_timeout: float | None = None, figures: TierFigures | None = None
) -> Any:
    """A redis-py client for ``cfg`` (``op_timeout`` overrides the socket timeout, for pub/sub;
    ``figures`` counts its pool waits)."""
    common = cfg._common()
    if op_timeout is not None:
        common["socket_timeout"] = op_timeout
    if cfg.mode == "cluster":
        from redis.cluster import ClusterNode, RedisCluster

        nodes = [ClusterNode(h, p) for h, p in cfg.hosts]  # type: ignore[no-untyped-call, unused-ignore]
        common.pop("health_check_interval", None)
        return RedisCluster(
            startup_nodes=nodes,
            ssl=cfg.ssl,
            max_connections=cfg.max_connections,
            retry=Retry(ExponentialBackoff(cap=0.05, base=0.005), cluster_retries(cfg.op_timeout)),
            **common,
        )
    if cfg.mode == "sentinel":
        from redis.sentinel import Sentinel

        sentinel = Sentinel(  # type: ignore[no-untyped-call, unused-ignore]
            list(cfg.hosts),
            socket_timeout=cfg.op_timeout,
            sentinel_kwargs=_sentinel_kwargs(cfg),
        )
        return sentinel.master_for(  # type: ignore[no-untyped-call, unused-ignore]
            cfg.service_name, db=cfg.db, ssl=cfg.ssl, retry=_retry(), **common
        )
    pool = blocking_pool(redis, cfg, common, figures or TierFigures())
    return redis.Redis(connection_pool=pool, retry=_retry())


def make_sentinel_clients(cfg: RedisConfig) -> Callable[[], Any]:
    """For Sentinel URLs: a factory of clients to the Sentinels themselves, one after the other
    on each call (to hear their announcements, see :class:`~tta_cache.coherence.FailoverWatch`)."""
    hosts = itertools.cycle(cfg.hosts)

    def make() -> Any:
        host, port = next(hosts)
        return redis.Redis(
            host=host,
            port=port,
            socket_timeout=max(5.0, cfg.op_timeout),
            socket_connect_timeout=cfg.connect_timeout or cfg.op_timeout,
            **({"ssl": True, **cfg.tls_kwargs()} if cfg.ssl else {}),
        )

    return make


def make_async_client(cfg: RedisConfig, *, figures: TierFigures | None = None) -> Any:
    """A ``redis.asyncio`` client for ``cfg``; bound to the running event loop by its user."""
    common = cfg._common()
    if cfg.mode == "cluster":
        from redis.asyncio.cluster import ClusterNode, RedisCluster

        common.pop("health_check_interval", None)
        nodes = [ClusterNode(h, p) for h, p in cfg.hosts]
        return RedisCluster(
            startup_nodes=nodes,
            ssl=cfg.ssl,
            max_connections=cfg.max_connections,
            retry=ARetry(ExponentialBackoff(cap=0.05, base=0.005), cluster_retries(cfg.op_timeout)),
            **common,
        )
    if cfg.mode == "sentinel":
        from redis.asyncio.sentinel import Sentinel

        sentinel = Sentinel(  # type: ignore[no-untyped-call, unused-ignore]
            list(cfg.hosts),
            socket_timeout=cfg.op_timeout,
            sentinel_kwargs=_sentinel_kwargs(cfg),
        )
        return sentinel.master_for(cfg.service_name, db=cfg.db, ssl=cfg.ssl, **common)
    pool = blocking_pool(aredis, cfg, common, figures or TierFigures())
    return aredis.Redis(connection_pool=pool, retry=_aretry())
