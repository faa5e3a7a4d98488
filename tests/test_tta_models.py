"""The TTA state models: fields, validation, kinds, and round trips through every serializer."""

from __future__ import annotations

import dataclasses
import pickle
import typing
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from tta_cache import Codec
from tta_cache.exceptions import DecodeError
from tta_cache.tta import (
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
)

KEY = b"k" * 32
T0 = datetime(2025, 8, 6, 12, 30, 15, 123456, tzinfo=timezone.utc)
CET = timezone(timedelta(hours=2))


def full_session() -> SessionState:
    """A session with every nested model filled, so a round trip exercises every field type."""
    character = CharacterState(
        "guide",
        name="Mira",
        session_id="s1",
        personality_traits={"warmth": 0.9, "humour": 0.4},
        current_mood="curious",
        relationships={"user_456": 0.7, "rival": -0.5},
        memory=["player said they feel stuck", "player laughed"],
        dialogue_style="gentle",
        therapeutic_role="mentor",
        last_interaction=T0,
        last_updated=T0.astimezone(CET),
    )
    emotion = EmotionalState(
        "user_456",
        primary_emotion=EmotionalStateType.ANXIOUS,
        intensity=0.6,
        emotion_scores={EmotionalStateType.ANXIOUS: 0.6, EmotionalStateType.HOPEFUL: 0.3},
        secondary_emotions=[EmotionalStateType.HOPEFUL],
        triggers=["deadline"],
        session_id="s1",
        confidence=0.8,
        timestamp=T0,
    )
    progress = TherapeuticProgress(
        "user_456",
        goals=[
            TherapeuticGoal("g1", "breathe before answering", 0.5, False, T0 + timedelta(days=7)),
            TherapeuticGoal("g2", "name the feeling", 1.0, True),
        ],
        achievements=["first reflection"],
        completed_interventions=["box-breathing"],
        skill_levels={"breathing": 0.5},
        overall_progress=0.4,
        next_focus="reframing",
        last_updated=T0,
    )
    narrative = NarrativeContext(
        "s1",
        current_scene_id="forest-gate",
        story_arc="the lost lantern",
        narrative_position=7,
        user_choices=[
            UserChoice("c1", "Ask Mira for help", "forest-gate", T0, {"mira": "trust+1"}),
        ],
        active_characters=["guide"],
        flags={"met_mira": True},
        last_updated=T0,
    )
    return SessionState(
        "s1",
        "user_456",
        status=SessionStatus.PAUSED,
        current_scenario_id="lantern",
        narrative_position=7,
        choices=["c1"],
        character_states={"guide": character},
        emotional_state=emotion,
        therapeutic_progress=progress,
        narrative_context=narrative,
        context={"locale": "en", "turns": 12, "nested": {"a": [1, 2.5, None, True]}},
        created_at=T0,
        last_updated=T0,
    )


SERIALIZERS: list[tuple[str, dict[str, Any]]] = [
    ("json", {}),
    ("msgpack", {}),
    ("pickle", {"signing_key": KEY}),
    ("cloudpickle", {"signing_key": KEY}),
]


def test_session_state_takes_session_and_user_positionally() -> None:
    state = SessionState("session_123", "user_456")
    assert (state.session_id, state.user_id) == ("session_123", "user_456")
    assert state.status is SessionStatus.ACTIVE
    assert state.narrative_position == 0
    assert state.created_at.tzinfo is not None
    assert state.character_states == {}


@pytest.mark.parametrize(("serializer", "options"), SERIALIZERS, ids=[s for s, _ in SERIALIZERS])
@pytest.mark.parametrize("compress_min_bytes", [None, 0], ids=["plain", "compressed"])
def test_every_model_round_trips_through_every_serializer(
    serializer: str, options: dict[str, Any], compress_min_bytes: int | None
) -> None:
    codec = Codec(serializer, compress_min_bytes=compress_min_bytes, **options)
    session = full_session()
    values: list[Any] = [
        session,
        session.character_states["guide"],
        session.emotional_state,
        session.therapeutic_progress,
        session.narrative_context,
        UserPreferences("user_456", {"text_speed": "slow", "volume": 0.3}, T0),
        SessionState("session_123", "user_456"),
    ]
    for value in values:
        decoded = codec.decode(codec.encode(value), type(value)).value
        assert type(decoded) is type(value)
        assert decoded == value
    rebuilt = codec.decode(codec.encode(session), SessionState).value
    assert rebuilt.status is SessionStatus.PAUSED
    assert rebuilt.created_at == T0
    assert rebuilt.created_at.utcoffset() == timedelta(0)
    guide = rebuilt.character_states["guide"]
    assert guide.last_updated.utcoffset() == timedelta(hours=2)
    assert isinstance(guide, CharacterState)
    emotion = rebuilt.emotional_state
    assert emotion is not None
    assert set(emotion.emotion_scores) == {EmotionalStateType.ANXIOUS, EmotionalStateType.HOPEFUL}
    assert all(isinstance(k, EmotionalStateType) for k in emotion.emotion_scores)
    assert rebuilt.therapeutic_progress is not None
    assert isinstance(rebuilt.therapeutic_progress.goals[0], TherapeuticGoal)


def test_json_without_a_type_hint_gives_plain_data() -> None:
    codec = Codec("json")
    data = codec.decode(codec.encode(full_session())).value
    assert isinstance(data, dict)
    assert data["status"] == "paused"
    assert data["created_at"] == T0.isoformat()
    assert data["emotional_state"]["emotion_scores"] == {"anxious": 0.6, "hopeful": 0.3}


def test_pickle_family_refuses_payloads_signed_with_another_key() -> None:
    writer = Codec("pickle", signing_key=KEY)
    reader = Codec("pickle", signing_key=b"other" * 8)
    with pytest.raises(DecodeError):
        reader.decode(writer.encode(full_session()), SessionState)


def test_models_pickle_with_the_standard_library() -> None:
    session = full_session()
    assert pickle.loads(pickle.dumps(session)) == session


@pytest.mark.parametrize(
    "make",
    [
        lambda: SessionState("", "u1"),
        lambda: SessionState("s1", ""),
        lambda: SessionState("s1", "u1", narrative_position=-1),
        lambda: SessionState("s1", "u1", created_at=datetime(2025, 1, 1)),
        lambda: EmotionalState("u1", intensity=1.5),
        lambda: EmotionalState("u1", emotion_scores={EmotionalStateType.CALM: -0.1}),
        lambda: CharacterState("c1", relationships={"u1": 2.0}),
        lambda: TherapeuticProgress("u1", overall_progress=1.01),
        lambda: TherapeuticProgress("u1", skill_levels={"breathing": 7.0}),
        lambda: TherapeuticGoal("g1", progress=-0.5),
        lambda: NarrativeContext("s1", narrative_position=-3),
        lambda: UserChoice("c1", made_at=datetime(2025, 1, 1)),
        lambda: UserPreferences(""),
    ],
)
def test_invalid_state_is_refused(make: Any) -> None:
    with pytest.raises(ValueError):
        make()


MODELS_WITH_DATES = [
    (model, name)
    for model in (
        SessionState,
        EmotionalState,
        CharacterState,
        TherapeuticGoal,
        TherapeuticProgress,
        NarrativeContext,
        UserChoice,
        UserPreferences,
    )
    for name, hint in typing.get_type_hints(model).items()
    if datetime in (hint, *typing.get_args(hint))
]


def test_every_datetime_field_of_every_model_is_checked() -> None:
    assert len(MODELS_WITH_DATES) >= 10  # the list below is not empty by mistake
    for model, name in MODELS_WITH_DATES:
        required = {
            f.name: "x"
            for f in dataclasses.fields(model)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }
        model(**required, **{name: T0})  # aware: accepted
        with pytest.raises(ValueError, match=f"{model.__name__}.{name} must be timezone-aware"):
            model(**required, **{name: datetime(2025, 1, 1)})


def test_an_invalid_payload_does_not_decode_as_a_model() -> None:
    codec = Codec("json")
    bad = dataclasses.asdict(SessionState("s1", "u1"))
    bad["narrative_position"] = -5
    with pytest.raises(DecodeError):
        codec.decode(codec.encode(bad), SessionState)
    missing = dataclasses.asdict(SessionState("s1", "u1"))
    del missing["user_id"]
    with pytest.raises(DecodeError):
        codec.decode(codec.encode(missing), SessionState)


def test_a_model_written_with_a_field_this_release_lacks_is_read() -> None:
    # Rolling deploys: a newer release may add a field; its entries are read, the field dropped.
    codec = Codec("json")
    state = SessionState("s1", "u1", created_at=T0, last_updated=T0)
    newer = {**dataclasses.asdict(state), "added_in_a_newer_release": [1]}
    assert codec.decode(codec.encode(newer), SessionState).value == state


def test_kinds_and_their_default_ttls_are_the_seeds() -> None:
    assert {k.value for k in Kind} == set(DEFAULT_TTL)
    assert DEFAULT_TTL == {
        "session": 86_400,
        "character": 7_200,
        "narrative": 1_800,
        "emotional": 3_600,
        "therapeutic": 604_800,
        "user_preferences": 2_592_000,
    }
    assert MODEL_KINDS[SessionState] is Kind.SESSION
    assert MODEL_KINDS[TherapeuticProgress] is Kind.THERAPEUTIC
    assert str(Kind.USER_PREFERENCES) == "user_preferences"
    assert len(MODEL_KINDS) == len(Kind)


def test_touch_moves_last_updated_forward() -> None:
    state = SessionState("s1", "u1", last_updated=T0)
    state.touch()
    assert state.last_updated > T0
    assert state.last_updated.tzinfo is not None
