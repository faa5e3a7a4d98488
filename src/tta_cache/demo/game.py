"""The game's data layer over a :class:`~.schema.Database` and a cache: the decorated loaders of
the five kinds of state, and the writers, whose invalidations are bound to their transaction.

A player's choice changes the story, the character's memory and the player's emotional state in
one transaction, and invalidates ``user:<id>`` and ``session:<id>``; a helpful choice also moves
the therapeutic progress (its own transaction), tagged ``therapeutic:<id>`` apart from
``user:``. The invalidations are issued inside the transactions: :func:`tta_cache.sqlalchemy.bind`
holds them until the commit, so no process caches the rows before they are committed. A writer
returns the version each entity has after its commit (the rows' ``version`` column).

Used by the demo's worker processes and by ``examples/tta_service`` (the FastAPI service).
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..api import Cache
from ..sqlalchemy import Binding, bind
from ..tta.models import (
    CharacterState,
    EmotionalState,
    EmotionalStateType,
    NarrativeContext,
    SessionState,
    TherapeuticGoal,
    TherapeuticProgress,
    UserChoice,
)
from .schema import CharacterRow, ChoiceRow, Database, EmotionRow, ProgressRow, SessionRow
from .world import CHARACTERS, OPTIONS, SCENES, at, now_us

__all__ = ["Game", "NotFound"]


class NotFound(LookupError):
    """No such session, character or player."""


class Game:
    """``load_session`` ... ``load_progress`` (cached) and ``make_choice``,
    ``record_progress`` (transactional, invalidating) over ``db`` and ``cache``.

    ``loads`` counts the loader computations (the cache's misses), ``loads_by_kind`` per kind;
    ``bound=False`` leaves the invalidations unbound (they are then sent inside the
    transaction, before it commits: what the demo and the tests show going wrong).
    """

    def __init__(
        self, cache: Cache, db: Database, *, rng: random.Random | None = None, bound: bool = True
    ) -> None:
        self.cache = cache
        self.db = db
        self.rng = rng or random.Random()
        self.binding: Binding | None = bind(cache, db.WriteSession) if bound else None
        self._lock = threading.Lock()
        self.loads = 0
        self.loads_by_kind: dict[str, int] = {}
        self.queries_by_kind: dict[str, int] = {}
        self._define_loaders(cache)
        self._define_writers(cache)

    def _counted(self, kind: str, body: Callable[[Session], Any]) -> Any:
        """Run a loader's ``body`` in a read session; count the load and its queries."""
        before = self.db.queries
        with self.db.read() as session:
            value = body(session)
        with self._lock:
            self.loads += 1
            self.loads_by_kind[kind] = self.loads_by_kind.get(kind, 0) + 1
            spent = self.db.queries - before
            self.queries_by_kind[kind] = self.queries_by_kind.get(kind, 0) + spent
        return value

    @staticmethod
    def _recent(session: Session, session_id: str) -> list[ChoiceRow]:
        """The session's last five choices, oldest first."""
        rows = session.scalars(
            select(ChoiceRow)
            .where(ChoiceRow.session_id == session_id)
            .order_by(ChoiceRow.turn.desc())
            .limit(5)
        ).all()
        return list(reversed(rows))

    @staticmethod
    def _get(session: Session, row_type: Any, *key: str, lock: bool = False) -> Any:
        """The row, or NotFound; ``lock``: ``SELECT ... FOR UPDATE`` (a writer's: two writers of
        one player then queue on PostgreSQL, as ``BEGIN IMMEDIATE`` makes them on SQLite)."""
        row = session.get(row_type, key if len(key) > 1 else key[0], with_for_update=lock)
        if row is None:
            raise NotFound(f"{row_type.__tablename__}: {key}")
        return row

    def _define_loaders(self, cache: Cache) -> None:
        counted, recent, get = self._counted, self._recent, self._get

        @cache.cached_session
        def load_session(session_id: str) -> SessionState:
            def body(s: Session) -> SessionState:
                row: SessionRow = get(s, SessionRow, session_id)
                return SessionState(
                    session_id,
                    row.user_id,
                    current_scenario_id=row.scene,
                    narrative_position=row.turn,
                    choices=[c.choice_id for c in recent(s, session_id)],
                    context={"scenes": len(SCENES)},
                    created_at=at(row.created_us),
                    last_updated=at(row.version),
                )

            return counted("session", body)  # type: ignore[no-any-return]

        @cache.cached(kind="narrative", tags=("session:{session_id}",))
        def load_narrative(session_id: str) -> NarrativeContext:
            def body(s: Session) -> NarrativeContext:
                row: SessionRow = get(s, SessionRow, session_id)
                return NarrativeContext(
                    session_id,
                    current_scene_id=row.scene,
                    story_arc="the lighthouse",
                    narrative_position=row.turn,
                    user_choices=[
                        UserChoice(
                            c.choice_id, text=c.text, scene_id=c.scene, made_at=at(c.made_us)
                        )
                        for c in recent(s, session_id)
                    ],
                    active_characters=list(CHARACTERS),
                    last_updated=at(row.version),
                )

            return counted("narrative", body)  # type: ignore[no-any-return]

        @cache.cached(kind="character", tags=("session:{session_id}", "character:{character_id}"))
        def load_character(session_id: str, character_id: str, user_id: str) -> CharacterState:
            def body(s: Session) -> CharacterState:
                row: CharacterRow = get(s, CharacterRow, session_id, character_id)
                name, role, style = CHARACTERS[character_id]
                return CharacterState(
                    character_id,
                    name=name,
                    session_id=session_id,
                    personality_traits={"warmth": 0.8, "patience": 0.6},
                    current_mood=row.mood,
                    relationships={user_id: row.trust},
                    memory=json.loads(row.memory),
                    dialogue_style=style,
                    therapeutic_role=role,
                    last_updated=at(row.version),
                )

            return counted("character", body)  # type: ignore[no-any-return]

        @cache.cached(kind="emotional", tags=("user:{user_id}",))
        def load_emotional(user_id: str) -> EmotionalState:
            def body(s: Session) -> EmotionalState:
                row: EmotionRow = get(s, EmotionRow, user_id)
                primary = EmotionalStateType(row.emotion)
                return EmotionalState(
                    user_id,
                    primary_emotion=primary,
                    intensity=row.intensity,
                    emotion_scores={primary: row.intensity},
                    triggers=[row.trigger] if row.trigger else [],
                    session_id=row.session_id,
                    timestamp=at(row.version),
                )

            return counted("emotional", body)  # type: ignore[no-any-return]

        @cache.cached(kind="therapeutic", tags=("therapeutic:{user_id}",))
        def load_progress(user_id: str) -> TherapeuticProgress:
            def body(s: Session) -> TherapeuticProgress:
                row: ProgressRow = get(s, ProgressRow, user_id)
                return TherapeuticProgress(
                    user_id,
                    goals=[TherapeuticGoal("grounding", "stay present", progress=row.grounding)],
                    achievements=json.loads(row.achievements),
                    skill_levels={"grounding": row.grounding},
                    overall_progress=row.grounding,
                    last_updated=at(row.version),
                )

            return counted("therapeutic", body)  # type: ignore[no-any-return]

        self.load_session = load_session
        self.load_narrative = load_narrative
        self.load_character = load_character
        self.load_emotional = load_emotional
        self.load_progress = load_progress

    def _define_writers(self, cache: Cache) -> None:
        rng = self.rng

        @cache.invalidates(user="{user_id}", session="{session_id}")
        def choose(
            s: Session, user_id: str, session_id: str, character_id: str, option: int
        ) -> dict[str, int]:
            """A choice's consequences, in the caller's transaction ``s``."""
            key, text, emotion, trust_delta = OPTIONS[option]
            session_row: SessionRow = self._get(s, SessionRow, session_id, lock=True)
            turn = session_row.turn + 1
            scene = SCENES[turn // 4 % len(SCENES)]
            session_row.turn, session_row.scene = turn, scene
            s.add(
                ChoiceRow(
                    session_id=session_id,
                    turn=turn,
                    choice_id=f"{session_id}-c{turn}",
                    text=text,
                    scene=scene,
                    made_us=now_us(),
                )
            )
            character: CharacterRow = self._get(s, CharacterRow, session_id, character_id)
            memory = [*json.loads(character.memory), f"turn {turn}: the player chose to {text}"]
            character.mood = "hopeful" if trust_delta > 0 else "concerned"
            character.trust = min(1.0, max(-1.0, character.trust + trust_delta))
            character.memory = json.dumps(memory[-5:])
            feeling: EmotionRow = self._get(s, EmotionRow, user_id)
            feeling.session_id, feeling.emotion = session_id, emotion.value
            feeling.intensity, feeling.trigger = rng.uniform(0.2, 0.9), key
            s.flush()  # the versions move here
            return {
                f"session:{session_id}": session_row.version,
                f"narrative:{session_id}": session_row.version,
                f"character:{session_id}:{character_id}": character.version,
                f"emotional:{user_id}": feeling.version,
            }

        @cache.invalidates(therapeutic="{user_id}")
        def progress(s: Session, user_id: str, gain: float) -> dict[str, int]:
            row: ProgressRow = self._get(s, ProgressRow, user_id, lock=True)
            row.grounding = min(1.0, row.grounding + gain)
            done = json.loads(row.achievements)
            if row.grounding >= 0.1 * (len(done) + 1):
                done.append(f"grounding level {len(done) + 1}")
            row.achievements = json.dumps(done)
            s.flush()
            return {f"progress:{user_id}": row.version}

        self._choose = choose
        self._progress = progress

    def make_choice(
        self, user_id: str, session_id: str, character_id: str, option: int
    ) -> dict[str, int]:
        """Record a choice in one transaction; returns the version of each entity it changed.
        When this returns the transaction has committed and its invalidations are sent."""
        if not 0 <= option < len(OPTIONS) or character_id not in CHARACTERS:
            raise NotFound(f"option {option} / character {character_id!r}")
        return self.db.write(lambda s: self._choose(s, user_id, session_id, character_id, option))

    def record_progress(self, user_id: str, gain: float) -> dict[str, int]:
        """Move therapeutic progress by ``gain`` (a helpful choice), in its own transaction."""
        return self.db.write(lambda s: self._progress(s, user_id, gain))
