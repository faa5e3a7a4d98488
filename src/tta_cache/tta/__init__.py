"""The TTA domain layer: the state models and the seed-compatible facade (see :mod:`.facade`).

The seed's usage examples run with only the import path changed::

    from tta_cache.tta import SessionState, create_cache_system, health_check_cache_system
"""

from __future__ import annotations

from tta_cache.operations import state_key

from .config import DEFAULT_REDIS_URL, cache_options_from_config
from .connection import RedisConnectionManager
from .facade import create_cache_system
from .metrics import CacheMetrics
from .models import (
    DEFAULT_TTL,
    MODEL_KINDS,
    CharacterState,
    EmotionalState,
    EmotionalStateType,
    Kind,
    NarrativeContext,
    SessionState,
    SessionStatus,
    TherapeuticGoal,
    TherapeuticProgress,
    UserChoice,
    UserPreferences,
    utcnow,
)
from .privacy import CacheInvalidationManager
from .report import health_check_cache_system
from .session_cache import SessionCacheManager

__all__ = [
    "DEFAULT_REDIS_URL",
    "DEFAULT_TTL",
    "MODEL_KINDS",
    "CacheInvalidationManager",
    "CacheMetrics",
    "CharacterState",
    "EmotionalState",
    "EmotionalStateType",
    "Kind",
    "NarrativeContext",
    "RedisConnectionManager",
    "SessionCacheManager",
    "SessionState",
    "SessionStatus",
    "TherapeuticGoal",
    "TherapeuticProgress",
    "UserChoice",
    "UserPreferences",
    "cache_options_from_config",
    "create_cache_system",
    "health_check_cache_system",
    "state_key",
    "utcnow",
]
