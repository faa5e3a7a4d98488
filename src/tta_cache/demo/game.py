"""The game's data access in one worker: the decorated loaders of the five kinds of state, and the
writers whose ``@invalidates`` reach every process.

A player's choice changes the story, the character's memory and the player's emotional state, and
invalidates ``user:<id>`` and ``session:<id>``; a helpful choice also moves the therapeutic
progress, tagged ``therapeutic:<id>`` apart from ``user:``. Every load and write costs the
database's simulated latency; a load is counted in the worker's report (so a read can tell it
was a miss).
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
from typing import Any

from ..api import Cache
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
from .measures import WorkerReport
from .world import CHARACTERS, OPTIONS, SCENES, at, now_us, transaction

__all__ = ["Game"]


class Game:
    """The loaders (``load_session`` ... ``load_progress``) and writers (``make_choice``,
    ``record_progress``) of one process, over its ``cache`` and database connection ``db``."""

    def __init__(
        self,
        cache: Cache,
        db: sqlite3.Connection,
        report: WorkerReport,
        *,
        rng: random.Random,
        latency: tuple[float, float],
    ) -> None:
        self.db = db
        self.report = report
        self.rng = rng
        self.latency = latency
        self._define_loaders(cache)
        self._define_writers(cache)

    def _wait(self) -> None:
        time.sleep(self.rng.uniform(*self.latency))

    def _load(self, sql: str, *params: str) -> Any:
        """The row a loader starts from, after the database's latency; counted as a load."""
        self._wait()
        self.report.loads += 1
        return self.db.execute(sql, params).fetchone()

    def _recent_choices(self, columns: str, session_id: str) -> list[Any]:
        """The session's last five choices, oldest first."""
        rows = self.db.execute(
            f"SELECT {columns} FROM choices WHERE session_id = ? ORDER BY turn DESC LIMIT 5",
            (session_id,),
        ).fetchall()
        return list(reversed(rows))

    def _define_loaders(self, cache: Cache) -> None:
        load, recent = self._load, self._recent_choices

        @cache.cached_session
        def load_session(session_id: str) -> SessionState:
            user, scene, turn, created, updated = load(
                "SELECT user_id, scene, turn, created_us, updated_us FROM sessions "
                "WHERE session_id = ?",
                session_id,
            )
            return SessionState(
                session_id,
                user,
                current_scenario_id=scene,
                narrative_position=turn,
                choices=[c for (c,) in recent("choice_id", session_id)],
                context={"scenes": len(SCENES)},
                created_at=at(created),
                last_updated=at(updated),
            )

        @cache.cached(kind="narrative", tags=("session:{session_id}",))
        def load_narrative(session_id: str) -> NarrativeContext:
            scene, turn, updated = load(
                "SELECT scene, turn, updated_us FROM sessions WHERE session_id = ?", session_id
            )
            return NarrativeContext(
                session_id,
                current_scene_id=scene,
                story_arc="the lighthouse",
                narrative_position=turn,
                user_choices=[
                    UserChoice(c, text=t, scene_id=s, made_at=at(m))
                    for c, t, s, m in recent("choice_id, text, scene, made_us", session_id)
                ],
                active_characters=list(CHARACTERS),
                last_updated=at(updated),
            )

        @cache.cached(kind="character", tags=("session:{session_id}", "character:{character_id}"))
        def load_character(session_id: str, character_id: str, user_id: str) -> CharacterState:
            mood, trust, memory, updated = load(
                "SELECT mood, trust, memory, updated_us FROM characters "
                "WHERE session_id = ? AND character_id = ?",
                session_id,
                character_id,
            )
            name, role, style = CHARACTERS[character_id]
            return CharacterState(
                character_id,
                name=name,
                session_id=session_id,
                personality_traits={"warmth": 0.8, "patience": 0.6},
                current_mood=mood,
                relationships={user_id: trust},
                memory=json.loads(memory),
                dialogue_style=style,
                therapeutic_role=role,
                last_updated=at(updated),
            )

        @cache.cached(kind="emotional", tags=("user:{user_id}",))
        def load_emotional(user_id: str) -> EmotionalState:
            session, emotion, intensity, trigger, updated = load(
                "SELECT session_id, emotion, intensity, trigger, updated_us FROM emotions "
                "WHERE user_id = ?",
                user_id,
            )
            primary = EmotionalStateType(emotion)
            return EmotionalState(
                user_id,
                primary_emotion=primary,
                intensity=intensity,
                emotion_scores={primary: intensity},
                triggers=[trigger] if trigger else [],
                session_id=session,
                timestamp=at(updated),
            )

        @cache.cached(kind="therapeutic", tags=("therapeutic:{user_id}",))
        def load_progress(user_id: str) -> TherapeuticProgress:
            grounding, achievements, updated = load(
                "SELECT grounding, achievements, updated_us FROM progress WHERE user_id = ?",
                user_id,
            )
            return TherapeuticProgress(
                user_id,
                goals=[TherapeuticGoal("grounding", "stay present", progress=grounding)],
                achievements=json.loads(achievements),
                skill_levels={"grounding": grounding},
                overall_progress=grounding,
                last_updated=at(updated),
            )

        self.load_session = load_session
        self.load_narrative = load_narrative
        self.load_character = load_character
        self.load_emotional = load_emotional
        self.load_progress = load_progress

    def _define_writers(self, cache: Cache) -> None:
        db = self.db

        @cache.invalidates(user="{user_id}", session="{session_id}")
        def make_choice(
            user_id: str, session_id: str, character_id: str, option: int
        ) -> dict[str, int]:
            """Write a choice's consequences; returns the version each changed entity now has."""
            self._wait()
            key, text, emotion, trust_delta = OPTIONS[option]
            with transaction(db):
                now = now_us()
                (turn, s_up) = db.execute(
                    "SELECT turn, updated_us FROM sessions WHERE session_id = ?", (session_id,)
                ).fetchone()
                scene = SCENES[(turn + 1) // 4 % len(SCENES)]
                s_ver = max(now, s_up + 1)
                db.execute(
                    "UPDATE sessions SET turn = ?, scene = ?, updated_us = ? WHERE session_id = ?",
                    (turn + 1, scene, s_ver, session_id),
                )
                db.execute(
                    "INSERT INTO choices VALUES (?, ?, ?, ?, ?, ?)",
                    (session_id, turn + 1, f"{session_id}-c{turn + 1}", text, scene, s_ver),
                )
                trust, memory, c_up = db.execute(
                    "SELECT trust, memory, updated_us FROM characters "
                    "WHERE session_id = ? AND character_id = ?",
                    (session_id, character_id),
                ).fetchone()
                c_ver = max(now, c_up + 1)
                memory = [*json.loads(memory), f"turn {turn + 1}: the player chose to {text}"]
                db.execute(
                    "UPDATE characters SET mood = ?, trust = ?, memory = ?, updated_us = ? "
                    "WHERE session_id = ? AND character_id = ?",
                    (
                        "hopeful" if trust_delta > 0 else "concerned",
                        min(1.0, max(-1.0, trust + trust_delta)),
                        json.dumps(memory[-5:]),
                        c_ver,
                        session_id,
                        character_id,
                    ),
                )
                (e_up,) = db.execute(
                    "SELECT updated_us FROM emotions WHERE user_id = ?", (user_id,)
                ).fetchone()
                e_ver = max(now, e_up + 1)
                db.execute(
                    "UPDATE emotions SET session_id = ?, emotion = ?, intensity = ?, trigger = ?, "
                    "updated_us = ? WHERE user_id = ?",
                    (session_id, emotion.value, self.rng.uniform(0.2, 0.9), key, e_ver, user_id),
                )
            return {
                f"session:{session_id}": s_ver,
                f"narrative:{session_id}": s_ver,
                f"character:{session_id}:{character_id}": c_ver,
                f"emotional:{user_id}": e_ver,
            }

        @cache.invalidates(therapeutic="{user_id}")
        def record_progress(user_id: str, gain: float) -> dict[str, int]:
            """A helpful choice moves therapeutic progress (tagged apart from ``user:``)."""
            self._wait()
            with transaction(db):
                grounding, achievements, updated = db.execute(
                    "SELECT grounding, achievements, updated_us FROM progress WHERE user_id = ?",
                    (user_id,),
                ).fetchone()
                version = max(now_us(), updated + 1)
                grounding = min(1.0, grounding + gain)
                done = json.loads(achievements)
                if grounding >= 0.1 * (len(done) + 1):
                    done.append(f"grounding level {len(done) + 1}")
                db.execute(
                    "UPDATE progress SET grounding = ?, achievements = ?, updated_us = ? "
                    "WHERE user_id = ?",
                    (grounding, json.dumps(done), version, user_id),
                )
            return {f"progress:{user_id}": version}

        self.make_choice = make_choice
        self.record_progress = record_progress
