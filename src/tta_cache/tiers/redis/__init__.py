"""L2: Redis (standalone, Sentinel, Cluster) through redis-py, sync and asyncio.

::

    config    RedisConfig, URL parsing          clients   redis-py clients for a config
    pools     blocking pools, waits counted     lane      connections kept for hot commands
    scripts   the Lua scripts                   replies   Lease, Read; parsing what Redis answers
    errors    the one translation into BackendError
    figures   corrupt keys replaced, pool waits (for stats())
    base      what the two tiers share          sync, asyncio   the two tiers (I/O only)
"""

from __future__ import annotations

from .asyncio import AsyncRedisTier
from .clients import make_async_client, make_sentinel_clients, make_sync_client
from .config import RedisConfig, mask_url
from .errors import translated
from .figures import TierFigures, tier_figures
from .lane import AsyncLane, Lane
from .replies import MAX_VERSION, NOT_AN_ENTRY, TOKEN, Lease, Read, parse_version
from .scripts import BUMP_LUA, FILL_LUA, LEASE_READ_LUA, VERSIONS_LUA
from .sync import RedisTier

__all__ = [
    "BUMP_LUA",
    "FILL_LUA",
    "LEASE_READ_LUA",
    "MAX_VERSION",
    "NOT_AN_ENTRY",
    "TOKEN",
    "VERSIONS_LUA",
    "AsyncLane",
    "AsyncRedisTier",
    "Lane",
    "Lease",
    "Read",
    "RedisConfig",
    "RedisTier",
    "TierFigures",
    "make_async_client",
    "make_sentinel_clients",
    "make_sync_client",
    "mask_url",
    "parse_version",
    "tier_figures",
    "translated",
]
