"""The TTA state models: what a therapeutic text adventure keeps per session, character and user.

Plain typed dataclasses, so every serializer round-trips them: JSON and msgpack rebuild them from
the type hint given to ``Cache.get(..., type_hint=...)``, the pickle family from the payload itself.
Timestamps are timezone-aware (UTC by default); a naive one is refused, because two processes
comparing naive times in different zones would disagree about age.

:class:`Kind` names the six kinds of state; :data:`DEFAULT_TTL` is the seed's TTL for each.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from typing import Any

from tta_cache.api import DEFAULT_TTL

__all__ = [
    "DEFAULT_TTL",
    "MODEL_KINDS",
    "CharacterState",
    "EmotionalState",
    "EmotionalStateType",
    "Kind",
    "NarrativeContext",
    "SessionState",
    "SessionStatus",
    "TherapeuticGoal",
    "TherapeuticProgress",
    "UserChoice",
    "UserPreferences",
    "utcnow",
]


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(timezone.utc)


class Kind(str, Enum):
    """The six kinds of TTA state; each has its own TTL (see :data:`DEFAULT_TTL`)."""

    SESSION = "session"
    CHARACTER = "character"
    NARRATIVE = "narrative"
    EMOTIONAL = "emotional"
    THERAPEUTIC = "therapeutic"
    USER_PREFERENCES = "user_preferences"

    def __str__(self) -> str:
        return self.value


class SessionStatus(str, Enum):
    """Where a session is in its life."""

    ACTIVE = "active"
    PAUSED = "paused"
    COMPLETED = "completed"
    EXPIRED = "expired"


class EmotionalStateType(str, Enum):
    """The emotions the emotional analysis distinguishes."""

    CALM = "calm"
    HOPEFUL = "hopeful"
    EXCITED = "excited"
    CONFUSED = "confused"
    ANXIOUS = "anxious"
    FRUSTRATED = "frustrated"
    ANGRY = "angry"
    DEPRESSED = "depressed"
    OVERWHELMED = "overwhelmed"


_DATETIME_FIELDS: dict[type, tuple[str, ...]] = {}


def _datetime_fields(cls: type) -> tuple[str, ...]:
    """The fields of the dataclass ``cls`` annotated as datetimes, looked up once per class: a
    decode runs ``__post_init__``, and walking every field there cost more than the JSON parse."""
    names = _DATETIME_FIELDS.get(cls)
    if names is None:
        names = tuple(f.name for f in dataclasses.fields(cls) if "datetime" in str(f.type))
        _DATETIME_FIELDS[cls] = names
    return names


def _check_aware(obj: object) -> None:
    for name in _datetime_fields(type(obj)):
        value = getattr(obj, name)
        if isinstance(value, datetime) and value.tzinfo is None:
            raise ValueError(f"{type(obj).__name__}.{name} must be timezone-aware")


def _check_unit(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be within [0, 1], not {value!r}")


def _require(name: str, value: str) -> None:
    if not value:
        raise ValueError(f"{name} must not be empty")


@dataclass(slots=True)
class EmotionalState:
    """A user's emotional state as analysed from their latest input."""

    user_id: str
    primary_emotion: EmotionalStateType = EmotionalStateType.CALM
    intensity: float = 0.5
    """0 (barely) .. 1 (overwhelming)."""
    emotion_scores: dict[EmotionalStateType, float] = field(default_factory=dict)
    """Score per emotion, each within [0, 1]."""
    secondary_emotions: list[EmotionalStateType] = field(default_factory=list)
    triggers: list[str] = field(default_factory=list)
    session_id: str | None = None
    confidence: float = 1.0
    timestamp: datetime = field(default_factory=utcnow)

    def __post_init__(self) -> None:
        _require("user_id", self.user_id)
        _check_unit("intensity", self.intensity)
        _check_unit("confidence", self.confidence)
        for emotion, score in self.emotion_scores.items():
            _check_unit(f"emotion_scores[{emotion.value}]", score)
        _check_aware(self)


@dataclass(slots=True)
class CharacterState:
    """A non-player character as it stands in one session: personality, relationships, memory."""

    character_id: str
    name: str = ""
    session_id: str | None = None
    """The session this state belongs to (characters recur across sessions)."""
    personality_traits: dict[str, float] = field(default_factory=dict)
    current_mood: str = "neutral"
    relationships: dict[str, float] = field(default_factory=dict)
    """Relationship score per other party (a user or character id), -1 (hostile) .. 1 (close)."""
    memory: list[str] = field(default_factory=list)
    """What the character remembers of the conversation, oldest first."""
    dialogue_style: str = ""
    therapeutic_role: str = ""
    last_interaction: datetime | None = None
    last_updated: datetime = field(default_factory=utcnow)

    def __post_init__(self) -> None:
        _require("character_id", self.character_id)
        for other, score in self.relationships.items():
            if not -1.0 <= score <= 1.0:
                raise ValueError(f"relationships[{other!r}] must be within [-1, 1]")
        _check_aware(self)


@dataclass(slots=True)
class TherapeuticGoal:
    """One therapeutic goal and how far the user has come."""

    goal_id: str
    description: str = ""
    progress: float = 0.0
    """0 .. 1."""
    completed: bool = False
    target_date: datetime | None = None

    def __post_init__(self) -> None:
        _require("goal_id", self.goal_id)
        _check_unit("progress", self.progress)
        _check_aware(self)


@dataclass(slots=True)
class TherapeuticProgress:
    """A user's long-term therapeutic progress (kept a week: it outlives sessions)."""

    user_id: str
    goals: list[TherapeuticGoal] = field(default_factory=list)
    achievements: list[str] = field(default_factory=list)
    completed_interventions: list[str] = field(default_factory=list)
    skill_levels: dict[str, float] = field(default_factory=dict)
    """Skill name (e.g. ``"breathing"``) to level, 0 .. 1."""
    overall_progress: float = 0.0
    next_focus: str | None = None
    last_updated: datetime = field(default_factory=utcnow)

    def __post_init__(self) -> None:
        _require("user_id", self.user_id)
        _check_unit("overall_progress", self.overall_progress)
        for skill, level in self.skill_levels.items():
            _check_unit(f"skill_levels[{skill!r}]", level)
        _check_aware(self)


@dataclass(slots=True)
class UserChoice:
    """A choice the user made in the story."""

    choice_id: str
    text: str = ""
    scene_id: str = ""
    made_at: datetime = field(default_factory=utcnow)
    consequences: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _require("choice_id", self.choice_id)
        _check_aware(self)


@dataclass(slots=True)
class NarrativeContext:
    """The current story state of a session and the choices that led to it."""

    session_id: str
    current_scene_id: str = ""
    story_arc: str = ""
    narrative_position: int = 0
    user_choices: list[UserChoice] = field(default_factory=list)
    active_characters: list[str] = field(default_factory=list)
    flags: dict[str, bool] = field(default_factory=dict)
    last_updated: datetime = field(default_factory=utcnow)

    def __post_init__(self) -> None:
        _require("session_id", self.session_id)
        if self.narrative_position < 0:
            raise ValueError("narrative_position must not be negative")
        _check_aware(self)


@dataclass(slots=True)
class UserPreferences:
    """A user's settings (kept 30 days)."""

    user_id: str
    preferences: dict[str, Any] = field(default_factory=dict)
    """JSON-native values only (str, numbers, bools, None, lists and dicts of them)."""
    last_updated: datetime = field(default_factory=utcnow)

    def __post_init__(self) -> None:
        _require("user_id", self.user_id)
        _check_aware(self)


@dataclass(slots=True)
class SessionState:
    """A user's session: where they are in the story and the state that goes with it.

    ``SessionState("session_123", "user_456")`` is a new, active session at position 0.
    """

    session_id: str
    user_id: str
    status: SessionStatus = SessionStatus.ACTIVE
    current_scenario_id: str = ""
    narrative_position: int = 0
    choices: list[str] = field(default_factory=list)
    """Ids of the choices made so far (the full records live in :class:`NarrativeContext`)."""
    character_states: dict[str, CharacterState] = field(default_factory=dict)
    emotional_state: EmotionalState | None = None
    therapeutic_progress: TherapeuticProgress | None = None
    narrative_context: NarrativeContext | None = None
    context: dict[str, Any] = field(default_factory=dict)
    """Free-form JSON-native data."""
    created_at: datetime = field(default_factory=utcnow)
    last_updated: datetime = field(default_factory=utcnow)

    def __post_init__(self) -> None:
        _require("session_id", self.session_id)
        _require("user_id", self.user_id)
        if self.narrative_position < 0:
            raise ValueError("narrative_position must not be negative")
        _check_aware(self)

    def touch(self) -> None:
        """Mark the session as updated now."""
        self.last_updated = utcnow()


MODEL_KINDS: dict[type, Kind] = {
    SessionState: Kind.SESSION,
    CharacterState: Kind.CHARACTER,
    NarrativeContext: Kind.NARRATIVE,
    EmotionalState: Kind.EMOTIONAL,
    TherapeuticProgress: Kind.THERAPEUTIC,
    UserPreferences: Kind.USER_PREFERENCES,
}
"""The kind each model is cached as."""
