"""The seed's API (``redis_cache_enhanced``), thin over :class:`~tta_cache.Cache`: its entry point.

::

    conn_manager, session_cache, invalidation_manager = create_cache_system()
    conn_manager.connect()
    session_cache.cache_session_state(SessionState("session_123", "user_456"))
    session_cache.get_session_state("session_123")
    health_check_cache_system(conn_manager)["stats"]["redis_info"]["hit_rate"]

The parts, one module each: :mod:`~tta_cache.tta.config` (the config dict),
:mod:`~tta_cache.tta.connection` (:class:`RedisConnectionManager`),
:mod:`~tta_cache.tta.session_cache` (:class:`SessionCacheManager`, over one
:mod:`~tta_cache.tta.store` per kind laid out by :mod:`~tta_cache.tta.layout`),
:mod:`~tta_cache.tta.metrics` (:class:`CacheMetrics`), :mod:`~tta_cache.tta.report`
(:func:`health_check_cache_system`); the invalidation manager is
:class:`~tta_cache.tta.privacy.CacheInvalidationManager` (the operations one, keeping
therapeutic progress under a pseudonym when a user is anonymized).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .connection import RedisConnectionManager
from .privacy import CacheInvalidationManager
from .session_cache import SessionCacheManager

__all__ = ["create_cache_system"]


def create_cache_system(
    config: Mapping[str, Any] | None = None,
) -> tuple[RedisConnectionManager, SessionCacheManager, CacheInvalidationManager]:
    """The seed's entry point: ``(conn_manager, session_cache, invalidation_manager)`` over one
    cache configured by ``config`` (see :func:`~tta_cache.tta.cache_options_from_config`)."""
    conn_manager = RedisConnectionManager(config)
    session_cache = SessionCacheManager(conn_manager)
    invalidation_manager = CacheInvalidationManager(lambda: conn_manager.cache)
    return conn_manager, session_cache, invalidation_manager
