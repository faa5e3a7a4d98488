"""The tiers: L1 in-process (:mod:`.local`, cachetools) and L2 Redis (:mod:`.redis`, redis-py).

They store and fetch bytes and versions; every decision about what to serve is the engine's. This
layer imports nothing of tta-cache but :mod:`tta_cache.exceptions`.
"""

from __future__ import annotations

from .local import LocalEntry, LocalTier
from .redis import (
    BUMP_LUA,
    FILL_LUA,
    LEASE_READ_LUA,
    MAX_VERSION,
    NOT_AN_ENTRY,
    TOKEN,
    VERSIONS_LUA,
    AsyncLane,
    AsyncRedisTier,
    Lane,
    Lease,
    Read,
    RedisConfig,
    RedisTier,
    TierFigures,
    make_async_client,
    make_sentinel_clients,
    make_sync_client,
    mask_url,
    parse_version,
    tier_figures,
    translated,
)

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
