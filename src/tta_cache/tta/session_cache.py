"""The seed's :class:`SessionCacheManager`: the TTA state models cached one at a time or in batches.

Each method is one call on the :class:`~tta_cache.tta.store.StateStore` of its kind; where each
kind is keyed and how it is tagged is in :mod:`tta_cache.tta.layout`.
"""

from __future__ import annotations

from collections.abc import Sequence

from tta_cache.api import Cache
from tta_cache.operations import state_key

from .connection import RedisConnectionManager
from .metrics import CacheMetrics
from .models import (
    CharacterState,
    EmotionalState,
    Kind,
    NarrativeContext,
    SessionState,
    TherapeuticProgress,
    UserPreferences,
)
from .store import StateStore

__all__ = ["SessionCacheManager"]


class SessionCacheManager:
    """Cache and fetch the TTA state models, one at a time or in batches (one round trip each).

    ``copy=True`` (the default) gives the seed's semantics: what you cache is a snapshot (later
    changes to your object do not leak into the cache) and what you get is yours to change. With
    ``copy=False`` the L1 object itself is returned: faster, and it must be treated as read-only.
    ``cache_*`` return False when Redis refused the write (the state is still in this process's
    L1); ``get_*`` return None (or leave the id out) when the state is not cached.
    """

    def __init__(
        self,
        connection: RedisConnectionManager | Cache,
        *,
        copy: bool = True,
        metrics: CacheMetrics | None = None,
    ) -> None:
        self._connection = connection
        self.copy = copy
        self.metrics = metrics or CacheMetrics(lambda: self.cache)
        self._sessions = StateStore(self, Kind.SESSION, SessionState)
        self._characters = StateStore(self, Kind.CHARACTER, CharacterState)
        self._narratives = StateStore(self, Kind.NARRATIVE, NarrativeContext)
        self._emotional = StateStore(self, Kind.EMOTIONAL, EmotionalState)
        self._therapeutic = StateStore(self, Kind.THERAPEUTIC, TherapeuticProgress)
        self._preferences = StateStore(self, Kind.USER_PREFERENCES, UserPreferences)

    @property
    def cache(self) -> Cache:
        """The cache this manager stores into."""
        c = self._connection
        return c if isinstance(c, Cache) else c.cache

    # ------------------------------------------------------------------ sessions

    @staticmethod
    def session_key(session_id: str) -> str:
        """The raw-cache key of a session (``session:<sid>``)."""
        return state_key(Kind.SESSION.value, session_id)

    def cache_session_state(self, session_state: SessionState, ttl: float | None = None) -> bool:
        """Cache a session (TTL of kind ``session`` unless ``ttl``)."""
        return self._sessions.put([session_state], ttl) == 1

    def get_session_state(self, session_id: str) -> SessionState | None:
        """The cached session, or None."""
        return self._sessions.get(session_id)

    def cache_multiple_sessions(self, sessions: Sequence[SessionState]) -> int:
        """Cache many sessions in one pipeline; returns how many were stored."""
        return self._sessions.put(sessions)

    def get_multiple_sessions(self, session_ids: Sequence[str]) -> dict[str, SessionState]:
        """The cached sessions among ``session_ids`` (one MGET for those L1 does not hold)."""
        return self._sessions.get_many(session_ids)

    def delete_session_state(self, session_id: str) -> None:
        """Remove a session entry from every process's L1 and from Redis."""
        self._sessions.delete(session_id)

    # ------------------------------------------------------------------ characters

    def cache_character_state(self, character: CharacterState) -> bool:
        """Cache a character's state in its session (``character.session_id`` is required);
        tagged ``user:<uid>`` too when the session is cached."""
        return self._characters.put([character]) == 1

    def cache_multiple_characters(self, characters: Sequence[CharacterState]) -> int:
        """Cache many character states in one pipeline; returns how many were stored."""
        return self._characters.put(characters)

    def get_character_state(self, session_id: str, character_id: str) -> CharacterState | None:
        """A character's state in a session, or None."""
        return self._characters.get(session_id, character_id)

    def get_multiple_characters(
        self, session_id: str, character_ids: Sequence[str]
    ) -> dict[str, CharacterState]:
        """The cached states among ``character_ids`` in one session."""
        return self._characters.get_many(character_ids, session_id)

    # ------------------------------------------------------------------ narrative

    def cache_narrative_context(self, context: NarrativeContext) -> bool:
        """Cache a session's narrative context."""
        return self._narratives.put([context]) == 1

    def cache_multiple_narratives(self, contexts: Sequence[NarrativeContext]) -> int:
        return self._narratives.put(contexts)

    def get_narrative_context(self, session_id: str) -> NarrativeContext | None:
        return self._narratives.get(session_id)

    def get_multiple_narratives(self, session_ids: Sequence[str]) -> dict[str, NarrativeContext]:
        return self._narratives.get_many(session_ids)

    # ------------------------------------------------------------------ per user

    def cache_emotional_state(self, state: EmotionalState) -> bool:
        """Cache a user's latest emotional state."""
        return self._emotional.put([state]) == 1

    def cache_multiple_emotional_states(self, states: Sequence[EmotionalState]) -> int:
        return self._emotional.put(states)

    def get_emotional_state(self, user_id: str) -> EmotionalState | None:
        return self._emotional.get(user_id)

    def get_multiple_emotional_states(self, user_ids: Sequence[str]) -> dict[str, EmotionalState]:
        return self._emotional.get_many(user_ids)

    def cache_therapeutic_progress(self, progress: TherapeuticProgress) -> bool:
        """Cache a user's therapeutic progress (kept a week)."""
        return self._therapeutic.put([progress]) == 1

    def cache_multiple_therapeutic_progress(self, items: Sequence[TherapeuticProgress]) -> int:
        return self._therapeutic.put(items)

    def get_therapeutic_progress(self, user_id: str) -> TherapeuticProgress | None:
        return self._therapeutic.get(user_id)

    def get_multiple_therapeutic_progress(
        self, user_ids: Sequence[str]
    ) -> dict[str, TherapeuticProgress]:
        return self._therapeutic.get_many(user_ids)

    def cache_user_preferences(self, preferences: UserPreferences) -> bool:
        """Cache a user's preferences (kept 30 days)."""
        return self._preferences.put([preferences]) == 1

    def get_user_preferences(self, user_id: str) -> UserPreferences | None:
        return self._preferences.get(user_id)
