"""The tiers: L1 in-process (:mod:`.local`, cachetools) and L2 Redis (:mod:`.redis`, redis-py).

They store and fetch bytes and versions; every decision about what to serve is the engine's. This
layer imports nothing of tta-cache but :mod:`tta_cache.exceptions`.
"""

from __future__ import annotations

from .local import LocalEntry, LocalTier
from .redis.asyncio import AsyncRedisTier
from .redis.clients import make_async_client, make_sentinel_clients, make_sync_client
from .redis.commands import Lease
from .redis.config import RedisConfig, mask_url
from .redis.errors import translated
from .redis.figures import TierFigures, tier_figures
from .redis.lane import AsyncLane, Lane
from .redis.replies import MAX_VERSION, NOT_AN_ENTRY, TOKEN, Read, parse_version
from .redis.scripts import BUMP_LUA, FILL_LUA, LEASE_READ_LUA, VERSIONS_LUA
from .redis.sync import RedisTier

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
    "LocalEntry",
    "LocalTier",
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
