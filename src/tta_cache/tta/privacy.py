"""What anonymizing a user keeps of their TTA state: the therapeutic progress, under a pseudonym.

:data:`THERAPEUTIC_PROGRESS` re-stores a user's :class:`~.models.TherapeuticProgress` with its
free text dropped (goal descriptions, ``next_focus``) and its dates cut to the day.
:class:`CacheInvalidationManager` is the seed's manager: the operations one
(:class:`tta_cache.operations.CacheInvalidationManager`) with that pseudonymizer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tta_cache import operations
from tta_cache.operations import Pseudonymizer

from .models import Kind, TherapeuticGoal, TherapeuticProgress

if TYPE_CHECKING:
    from tta_cache.api import Cache

__all__ = ["THERAPEUTIC_PROGRESS", "CacheInvalidationManager", "anonymous_progress"]


def _day(value: datetime) -> datetime:
    return value.replace(hour=0, minute=0, second=0, microsecond=0)


def anonymous_progress(progress: TherapeuticProgress, pseudonym: str) -> TherapeuticProgress:
    """``progress`` as ``pseudonym``'s, without free text, its dates cut to the day."""
    return dataclasses.replace(
        progress,
        user_id=pseudonym,
        goals=[
            TherapeuticGoal(
                goal_id=g.goal_id,
                progress=g.progress,
                completed=g.completed,
                target_date=None if g.target_date is None else _day(g.target_date),
            )
            for g in progress.goals
        ],
        next_focus=None,
        last_updated=_day(progress.last_updated),
    )


THERAPEUTIC_PROGRESS = Pseudonymizer(
    Kind.THERAPEUTIC.value, TherapeuticProgress, anonymous_progress
)
"""Keeps the facade's therapeutic progress of an anonymized user (:func:`anonymous_progress`)."""


class CacheInvalidationManager(operations.CacheInvalidationManager):
    """The seed's invalidation manager: :class:`tta_cache.operations.CacheInvalidationManager`
    whose ``anonymize_user`` keeps the user's therapeutic progress (:data:`THERAPEUTIC_PROGRESS`).
    """

    def __init__(
        self,
        cache: Cache | Callable[[], Cache],
        *,
        pseudonymizers: Sequence[Pseudonymizer[Any]] = (THERAPEUTIC_PROGRESS,),
        **options: Any,
    ) -> None:
        super().__init__(cache, pseudonymizers=pseudonymizers, **options)
