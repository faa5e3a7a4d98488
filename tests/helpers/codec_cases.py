"""Values of every kind the codec rebuilds, the codec configurations, and the codec of f6527d3.

``tests/test_codec_compat.py`` proves the envelope stays byte-compatible with the release before
the codec moved to msgspec: golden envelopes written by that code (``tests/golden/``) are read by
today's codec, and, where git can show the old ``codecs.py``, every value goes both ways between
the old and the new codec. Rewrite the golden file (only ever from the old code) with::

    cd tests && PYTHONPATH=../src python -m helpers.codec_cases

Annotations here are strings (``from __future__ import annotations``), as in most services.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import importlib.util
import json
import subprocess
import sys
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any, Literal, NamedTuple, NewType, Optional, TypedDict, Union
from uuid import UUID

import pydantic

from tta_cache.tta import (
    CharacterState,
    EmotionalState,
    EmotionalStateType,
    NarrativeContext,
    SessionState,
    SessionStatus,
    TherapeuticGoal,
    TherapeuticProgress,
    UserChoice,
    UserPreferences,
)

OLD_COMMIT = "f6527d3"
REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "golden" / f"codec_envelopes_{OLD_COMMIT}.json"
KEY = b"golden-signing-key-0123456789abc"
STAMP = (("session:s1", 3), ("user:u\u00e91", -1), ("", 2**63 - 1))
META = {"created": 1_700_000_000.5, "fresh_until": 1_700_000_060.25, "compute_time": 0.125}

T0 = datetime(2025, 8, 6, 12, 30, 15, 123456, tzinfo=timezone.utc)
CET = timezone(timedelta(hours=2))


class Mood(enum.Enum):
    CALM = "calm"
    ANXIOUS = "anxious"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


UserId = NewType("UserId", UUID)


class Handle(str):
    """A str subclass (rebuilt by calling the class)."""


@dataclasses.dataclass(frozen=True)
class Item:
    name: str
    price: Decimal
    acquired: datetime


@dataclasses.dataclass
class Character:
    id: UserId
    mood: Mood
    level: Level
    born: date
    wakes: time
    items: list[Item]
    inventory: dict[UUID, int]
    position: tuple[int, int]
    history: tuple[str, ...]
    flags: frozenset[str]
    portrait: bytes
    nickname: str | None = None
    mentor: Character | None = None
    scores: dict[Mood, float] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Node:
    label: str
    children: list[Node] = dataclasses.field(default_factory=list)


class Point(NamedTuple):
    x: int
    when: date


class Profile(TypedDict):
    name: str
    born: date


class Visit(pydantic.BaseModel):
    id: UUID
    started: datetime
    mood: Mood
    turns: list[int]
    budget: Decimal


@dataclasses.dataclass
class Ledger:
    """A dataclass holding pydantic models."""

    owner: Handle
    visits: list[Visit]
    last: Visit | None = None


def character() -> Character:
    mentor = Character(
        id=UserId(UUID(int=1)),
        mood=Mood.CALM,
        level=Level.HIGH,
        born=date(1970, 1, 1),
        wakes=time(6, 0),
        items=[],
        inventory={},
        position=(0, 0),
        history=(),
        flags=frozenset(),
        portrait=b"",
    )
    return Character(
        id=UserId(UUID(int=2**128 - 1)),
        mood=Mood.ANXIOUS,
        level=Level.LOW,
        born=date(2001, 2, 3),
        wakes=time(7, 30, 15, 250),
        items=[
            Item("lamp", Decimal("12.50"), datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)),
            Item("key", Decimal("0.10"), datetime(2024, 5, 2, 8, 30, 1, 999, tzinfo=CET)),
        ],
        inventory={UUID(int=3): 3, UUID(int=4): 0},
        position=(4, -2),
        history=("woke", "walked"),
        flags=frozenset({"brave"}),  # one: a str set's order changes with PYTHONHASHSEED
        portrait=bytes(range(256)),
        nickname="Ash",
        mentor=mentor,
        scores={Mood.CALM: 0.25, Mood.ANXIOUS: 0.75},
    )


def session_state() -> SessionState:
    """A session with every nested TTA model filled."""
    guide = CharacterState(
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
    return SessionState(
        "s1",
        "user_456",
        status=SessionStatus.PAUSED,
        current_scenario_id="lantern",
        narrative_position=7,
        choices=["c1"],
        character_states={"guide": guide},
        emotional_state=EmotionalState(
            "user_456",
            primary_emotion=EmotionalStateType.ANXIOUS,
            intensity=0.6,
            emotion_scores={EmotionalStateType.ANXIOUS: 0.6, EmotionalStateType.HOPEFUL: 0.3},
            secondary_emotions=[EmotionalStateType.HOPEFUL],
            triggers=["deadline"],
            session_id="s1",
            confidence=0.8,
            timestamp=T0,
        ),
        therapeutic_progress=TherapeuticProgress(
            "user_456",
            goals=[
                TherapeuticGoal("g1", "breathe", 0.5, False, T0 + timedelta(days=7)),
                TherapeuticGoal("g2", "name the feeling", 1.0, True),
            ],
            achievements=["first reflection"],
            completed_interventions=["box-breathing"],
            skill_levels={"breathing": 0.5},
            overall_progress=0.4,
            next_focus="reframing",
            last_updated=T0,
        ),
        narrative_context=NarrativeContext(
            "s1",
            current_scene_id="forest-gate",
            story_arc="the lost lantern",
            narrative_position=7,
            user_choices=[UserChoice("c1", "Ask Mira", "forest-gate", T0, {"mira": "trust+1"})],
            active_characters=["guide"],
            flags={"met_mira": True},
            last_updated=T0,
        ),
        context={"locale": "en", "turns": 12, "nested": {"a": [1, 2.5, None, True]}},
        created_at=T0,
        last_updated=T0,
    )


def visit() -> Visit:
    return Visit(id=UUID(int=9), started=T0, mood=Mood.CALM, turns=[1, 2], budget=Decimal("9.99"))


def typed_cases() -> list[tuple[str, Any, Any]]:
    """(name, annotation, value): every kind of annotation the codec rebuilds from JSON/msgpack."""
    session = session_state()
    return [
        ("session_state", SessionState, session),
        (
            "session_state_new",
            SessionState,
            SessionState("s2", "u2", created_at=T0, last_updated=T0),
        ),
        ("character_state", CharacterState, session.character_states["guide"]),
        ("emotional_state", EmotionalState, session.emotional_state),
        ("therapeutic_progress", TherapeuticProgress, session.therapeutic_progress),
        ("narrative_context", NarrativeContext, session.narrative_context),
        ("user_preferences", UserPreferences, UserPreferences("u1", {"volume": 0.3}, T0)),
        ("sessions_by_id", dict[str, SessionState], {"s1": session}),
        ("optional_session", Optional[SessionState], None),  # noqa: UP045 - typing.Union origin
        ("character", Character, character()),
        ("tree", Node, Node("root", [Node("a", [Node("b")]), Node("c")])),
        ("namedtuple", Point, Point(1, date(2020, 2, 2))),
        ("typeddict", Profile, Profile(name="Ada", born=date(1815, 12, 10))),
        ("pydantic", Visit, visit()),
        ("pydantic_list", list[Visit], [visit(), visit()]),
        ("pydantic_optional_dict", dict[str, Visit | None], {"a": visit(), "b": None}),
        ("pydantic_in_dataclass", Ledger, Ledger(Handle("ada"), [visit()], visit())),
        ("str_subclass", Handle, Handle("ada")),
        ("dict_uuid_keys", dict[UUID, int], {UUID(int=1): 1, UUID(int=2): 2}),
        ("dict_int_keys", dict[int, str], {1: "a", -2: "b"}),
        ("dict_float_keys", dict[float, str], {1.5: "a", -0.25: "b"}),
        ("dict_bool_keys", dict[bool, int], {True: 1, False: 0}),
        ("dict_intenum_keys", dict[Level, str], {Level.LOW: "low"}),
        ("dict_enum_keys", dict[Mood, list[date]], {Mood.CALM: [date(2020, 1, 1)]}),
        ("dict_date_keys", dict[date, int], {date(2020, 1, 1): 1}),
        ("dict_datetime_keys", dict[datetime, int], {datetime(2020, 1, 1, 5, tzinfo=CET): 1}),
        ("set", set[int], {1, 2, 3}),
        ("frozenset", frozenset[UUID], frozenset({UUID(int=5)})),
        ("tuple_fixed", tuple[int, str, Mood], (1, "a", Mood.CALM)),
        ("tuple_empty", tuple[()], ()),
        ("tuple_var", tuple[Decimal, ...], (Decimal("1.5"), Decimal("-0"), Decimal("1E+3"))),
        ("tuple_bare", tuple, (1, "2")),
        ("list_of_tuples", list[tuple[int, int]], [(1, 2), (3, 4)]),
        ("literal_str", Literal["a", "b"], "b"),
        ("literal_enum", Literal[Mood.CALM], Mood.CALM),
        ("newtype", UserId, UserId(UUID(int=7))),
        ("optional_none", datetime | None, None),
        ("optional_naive", Optional[datetime], datetime(2020, 1, 1, 1, 2, 3)),  # noqa: UP045
        ("union_int", int | datetime, 5),
        ("union_datetime", int | datetime, datetime(2020, 1, 1)),
        ("union_enum", Item | Mood, Mood.CALM),
        ("union_dataclass", Union[Item, Mood], Item("x", Decimal(1), T0)),  # noqa: UP007
        ("union_two_strlike", UUID | datetime, UUID(int=3)),
        ("union_two_dataclasses", Item | Node, Node("x")),
        ("datetime_utc", datetime, T0),
        ("datetime_offset", datetime, datetime(2020, 6, 1, 23, 59, 59, 1, tzinfo=CET)),
        (
            "datetime_negative_offset",
            datetime,
            datetime(2020, 6, 1, tzinfo=timezone(-timedelta(hours=9, minutes=30))),
        ),
        ("datetime_naive", datetime, datetime(1999, 12, 31, 23, 59, 59)),
        ("datetime_min", datetime, datetime.min),
        ("date", date, date(9999, 12, 31)),
        ("time", time, time(7, 30, 15, 250)),
        ("decimal", Decimal, Decimal("-123456789.000000001")),
        ("uuid", UUID, UUID("12345678-1234-5678-1234-567812345678")),
        ("bytes", bytes, b"\x00\xff binary"),
        ("bytearray", bytearray, bytearray(b"xyz")),
        ("enum", Mood, Mood.ANXIOUS),
        ("intenum", Level, Level.HIGH),
        ("any", Any, {"x": [1, None]}),
        ("object", object, [1, "2"]),
        ("plain_dict", dict[str, Any], {"a": {"b": [True, 1.5]}}),
    ]


# name, compression, signed: every serializer, compressed or not, signed or not (pickle: signed)
COMBOS = [
    (name, compression, signed)
    for name in ("json", "stdlib-json", "msgpack", "pickle", "cloudpickle")
    for compression in ("none", "zlib", "zstd")
    for signed in (False, True)
    if signed or name not in ("pickle", "cloudpickle")
]


# where every typed case is written: each typed serializer, one signed
TYPED_COMBOS = [("json", "none", False), ("stdlib-json", "none", False), ("msgpack", "none", True)]


def combo_id(combo: tuple[str, str, bool]) -> str:
    name, compression, signed = combo
    return f"{name}-{compression}-{'signed' if signed else 'plain'}"


def build(module: Any, combo: tuple[str, str, bool]) -> Any:
    """A ``Codec`` of ``module`` (``tta_cache.codec`` or the old ``codecs``) for ``combo``."""
    name, compression, signed = combo
    serializer = module.JsonSerializer() if name == "stdlib-json" else name
    return module.Codec(
        serializer,
        compression=compression,
        compress_min_bytes=0,
        signing_key=KEY if signed else None,
    )


def untyped_values() -> dict[str, Any]:
    """What every combination is written with: a plain value, and a large compressible one."""
    return {
        "plain": {"a": [1, 2.5, "\u2603", None, True], "b": {"c": -(2**63)}},
        "large": {"text": "the lamp flickers " * 40, "numbers": list(range(40))},
    }


def old_codecs(commit: str = OLD_COMMIT) -> ModuleType | None:
    """``src/tta_cache/codecs.py`` as it was at ``commit``, imported under another name; ``None``
    when git or the commit is not available (an sdist, a shallow clone)."""
    try:
        source = subprocess.run(
            ["git", "-C", str(REPO), "show", f"{commit}:src/tta_cache/codecs.py"],
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    name = f"tta_cache_codecs_{commit}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_loader(name, loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    exec(compile(source, f"<{commit}:src/tta_cache/codecs.py>", "exec"), module.__dict__)
    return module


def main() -> None:
    """Write the golden envelopes with the old codec: every combination, every typed case."""
    old = old_codecs()
    if old is None:
        raise SystemExit(f"git cannot show {OLD_COMMIT}:src/tta_cache/codecs.py")
    out: dict[str, dict[str, str]] = {}
    for combo in COMBOS:
        codec = build(old, combo)
        out[combo_id(combo)] = {
            name: base64.b64encode(codec.encode(value, stamp=STAMP, **META)).decode()
            for name, value in untyped_values().items()
        }
    for combo in TYPED_COMBOS:
        codec = build(old, combo)
        out[f"typed:{combo_id(combo)}"] = {
            name: base64.b64encode(codec.encode(value)).decode() for name, _, value in typed_cases()
        }
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}")


if __name__ == "__main__":
    main()
