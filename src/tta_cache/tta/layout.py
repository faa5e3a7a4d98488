"""Where each kind of TTA state lives in the cache: its key's ids and its tags (pure).

State is stored as raw cache entries under :func:`~tta_cache.operations.state_key` keys, tagged
so that the invalidation manager can reach them: ``session:<sid>`` and ``user:<uid>`` on
sessions; ``session:``, ``character:<cid>`` (and ``user:`` when known) on character states;
``therapeutic:<uid>`` and *not* ``user:`` on therapeutic progress, so
``invalidate_user(uid, preserve_therapeutic=True)`` keeps exactly it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tta_cache.core.keys import tag

from .models import (
    CharacterState,
    EmotionalState,
    Kind,
    NarrativeContext,
    SessionState,
)

__all__ = ["LAYOUTS", "Layout"]


@dataclass(frozen=True, slots=True)
class Layout:
    """How one kind of state is keyed and tagged."""

    ids: Callable[[Any], tuple[str, ...]]
    """The ids in the state's key (after the kind): ``state_key(kind, *ids(state))``."""
    tags: Callable[[Any], list[str]]
    """The tags the entry carries."""
    tag_owner: bool = False
    """Also tag ``user:<uid>`` with the user of the state's session, when that is cached."""


def _by_session(s: SessionState | NarrativeContext) -> tuple[str, ...]:
    return (s.session_id,)


def _by_user(s: Any) -> tuple[str, ...]:
    return (s.user_id,)


def _character_ids(s: CharacterState) -> tuple[str, ...]:
    if not s.session_id:
        raise ValueError(f"character {s.character_id!r} needs a session_id to cache")
    return (s.session_id, s.character_id)


def _emotional_tags(s: EmotionalState) -> list[str]:
    tags = [tag("user", s.user_id)]
    if s.session_id:
        tags.append(tag("session", s.session_id))
    return tags


LAYOUTS: dict[Kind, Layout] = {
    Kind.SESSION: Layout(
        _by_session, lambda s: [tag("session", s.session_id), tag("user", s.user_id)]
    ),
    Kind.CHARACTER: Layout(
        _character_ids,
        lambda s: [tag("session", s.session_id), tag("character", s.character_id)],
        tag_owner=True,
    ),
    Kind.NARRATIVE: Layout(_by_session, lambda s: [tag("session", s.session_id)], tag_owner=True),
    Kind.EMOTIONAL: Layout(_by_user, _emotional_tags),
    # not user:, see invalidate_user(preserve_therapeutic=True)
    Kind.THERAPEUTIC: Layout(_by_user, lambda s: [tag("therapeutic", s.user_id)]),
    Kind.USER_PREFERENCES: Layout(_by_user, lambda s: [tag("user", s.user_id)]),
}
"""The layout of every kind."""
