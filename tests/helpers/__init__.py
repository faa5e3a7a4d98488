"""Test helpers: real redis-server processes (standalone, Cluster, Sentinel) and a fault proxy."""

from __future__ import annotations

from .proxy import TcpProxy
from .redis_server import (
    RedisClusterServers,
    RedisSentinelServers,
    RedisServer,
    find_redis_cli,
    find_redis_server,
    free_port,
)

__all__ = [
    "RedisClusterServers",
    "RedisSentinelServers",
    "RedisServer",
    "TcpProxy",
    "find_redis_cli",
    "find_redis_server",
    "free_port",
]
