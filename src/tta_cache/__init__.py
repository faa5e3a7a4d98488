"""tta-cache: cache-aside decorators for sync and async Python, L1 (cachetools) + Redis.

::

    import tta_cache as tc

    cache = tc.Cache("redis://127.0.0.1:6379/0", namespace="tta")

    @cache.cached_session
    def load_session(session_id: str) -> SessionState: ...

    @cache.invalidates(user="{user_id}")
    def save_preferences(user_id: str, prefs: dict) -> None: ...
"""

from __future__ import annotations

from .api import DEFAULT_TTL, AsyncCachedFunction, Cache, CachedFunction, configure, default_cache
from .api import module_cached as cached
from .api import module_cached_many as cached_many
from .api import module_cached_session as cached_session
from .api import module_invalidates as invalidates
from .codec import Codec, Entry, Serializer, get_serializer, register_serializer
from .core.policy import BreakerState, CircuitBreaker, Freshness
from .engine import CurrentEntry, current_entry
from .exceptions import (
    BackendError,
    BackendTimeout,
    CacheError,
    ComputeTimeout,
    ConfigurationError,
    DecodeError,
    KeyEncodingError,
    LeaseTimeout,
    SerializationError,
    TemplateError,
)

__all__ = [
    "DEFAULT_TTL",
    "AsyncCachedFunction",
    "BackendError",
    "BackendTimeout",
    "BreakerState",
    "Cache",
    "CacheError",
    "CachedFunction",
    "CircuitBreaker",
    "Codec",
    "ComputeTimeout",
    "ConfigurationError",
    "CurrentEntry",
    "DecodeError",
    "Entry",
    "Freshness",
    "KeyEncodingError",
    "LeaseTimeout",
    "SerializationError",
    "Serializer",
    "TemplateError",
    "cached",
    "cached_many",
    "cached_session",
    "configure",
    "current_entry",
    "default_cache",
    "get_serializer",
    "invalidates",
    "register_serializer",
]

__version__ = "0.1.0"
