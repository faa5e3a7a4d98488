"""The codec layer: envelope, serializers, compression, signing (invariant I7), typed decoding."""

from __future__ import annotations

import collections.abc
import dataclasses
import enum
import os
import pickle
import struct
import sys
import threading
import zlib
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Annotated, Any, Literal, NamedTuple, NewType, Optional, TypedDict, Union
from uuid import UUID, uuid4

import msgpack
import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tta_cache.codec import (
    CloudpickleSerializer,
    Codec,
    Entry,
    JsonSerializer,
    MsgpackSerializer,
    OrjsonSerializer,
    PickleSerializer,
    get_serializer,
    register_serializer,
    registry,
    typed,
)
from tta_cache.exceptions import ConfigurationError, DecodeError, SerializationError

KEY = b"k" * 32
OTHER_KEY = b"o" * 32
MAGIC = b"\xf7\xcc"
HEADER = struct.Struct("<2sBBBddfHI")  # the documented envelope header (v2)
FLAGS_AT = 4
ZLIB, ZSTD, SIGNED = 0x01, 0x02, 0x04


def envelope(serializer_id: int, payload: bytes, flags: int = 0, version: int = 2) -> bytes:
    """An envelope built by hand, the way an attacker or another writer could."""
    header = HEADER.pack(MAGIC, version, serializer_id, flags, 0.0, 0.0, 0.0, 0, len(payload))
    return header + payload


# --- types for typed decoding -----------------------------------------------------------------


class Mood(enum.Enum):
    CALM = "calm"
    ANXIOUS = "anxious"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


UserId = NewType("UserId", UUID)


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


def make_character() -> Character:
    tz = timezone(timedelta(hours=2))
    mentor = Character(
        id=UserId(uuid4()),
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
        id=UserId(uuid4()),
        mood=Mood.ANXIOUS,
        level=Level.LOW,
        born=date(2001, 2, 3),
        wakes=time(7, 30, 15, 250),
        items=[
            Item("lamp", Decimal("12.50"), datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)),
            Item("key", Decimal("0.10"), datetime(2024, 5, 2, 8, 30, 1, 999, tzinfo=tz)),
        ],
        inventory={uuid4(): 3, uuid4(): 0},
        position=(4, -2),
        history=("woke", "walked"),
        flags=frozenset({"brave", "tired"}),
        portrait=bytes(range(256)),
        nickname="Ash",
        mentor=mentor,
        scores={Mood.CALM: 0.25, Mood.ANXIOUS: 0.75},
    )


# --- codec fixtures ---------------------------------------------------------------------------


def all_codecs() -> list[Any]:
    """Every serializer, compressed or not, signed or not (pickle family: signed only)."""
    params = []
    for name in ("json", "stdlib-json", "msgpack", "pickle", "cloudpickle"):
        for compression in ("none", "zlib", "zstd"):
            for signed in (False, True):
                if name in ("pickle", "cloudpickle") and not signed:
                    continue
                params.append(
                    pytest.param(
                        (name, compression, signed),
                        id=f"{name}-{compression}-{'signed' if signed else 'plain'}",
                    )
                )
    return params


def build(name: str, compression: str = "zlib", signed: bool = False, **kw: Any) -> Codec:
    if compression == "zstd":
        pytest.importorskip("zstandard")
    serializer: Any = JsonSerializer() if name == "stdlib-json" else name
    return Codec(
        serializer,
        compression=compression,
        compress_min_bytes=kw.pop("compress_min_bytes", 64),
        signing_key=KEY if signed else None,
        **kw,
    )


BIG_VALUE = {
    "text": "the lamp flickers " * 200,
    "numbers": list(range(300)),
    "nested": [{"a": None}],
}


@pytest.mark.parametrize("config", all_codecs())
@pytest.mark.parametrize(
    "value",
    [None, 0, -(2**63), "é \u2603 text", [1, 2.5, "x"], {"a": {"b": [True, False]}}, BIG_VALUE],
)
def test_round_trip_every_serializer(config: tuple[str, str, bool], value: Any) -> None:
    codec = build(*config)
    data = codec.encode(
        value,
        stamp=[("session:s1", 3), ("user:u\u00e91", -1), ("", 2**63 - 1)],
        created=1_700_000_000.5,
        fresh_until=1_700_000_060.25,
        compute_time=0.125,
    )
    entry = codec.decode(data)
    assert entry == Entry(
        value,
        (("session:s1", 3), ("user:u\u00e91", -1), ("", 2**63 - 1)),
        1_700_000_000.5,
        1_700_000_060.25,
        0.125,
    )
    _, compression, signed = config
    flags = data[FLAGS_AT]
    assert bool(flags & SIGNED) is signed
    if value is BIG_VALUE and compression != "none":
        assert flags & (ZLIB if compression == "zlib" else ZSTD)
        assert len(data) < len(codec._serializer.dumps(value))
    else:
        assert not flags & (ZLIB | ZSTD)


def test_entry_defaults_are_empty() -> None:
    entry = Codec().decode(Codec().encode({"a": 1}))
    assert entry == Entry({"a": 1}, (), 0.0, 0.0, 0.0)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=20,
)
stamps = st.lists(
    st.tuples(st.text().filter(lambda t: "\x00" not in t), st.integers(-(2**63), 2**63 - 1)),
    max_size=4,
)


@pytest.mark.parametrize("name", ["json", "stdlib-json", "msgpack"])
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=json_values, stamp=stamps, signed=st.booleans())
def test_round_trip_any_plain_value(
    name: str, value: Any, stamp: list[tuple[str, int]], signed: bool
) -> None:
    codec = build(name, signed=signed, compress_min_bytes=16)
    entry = codec.decode(codec.encode(value, stamp=stamp))
    assert entry.value == value
    assert entry.stamp == tuple(stamp)


# --- typed decoding ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["json", "stdlib-json", "msgpack"])
def test_typed_decode_rebuilds_a_nested_dataclass(name: str) -> None:
    codec = build(name)
    character = make_character()
    plain = codec.decode(codec.encode(character)).value
    assert isinstance(plain, dict)  # without a hint: plain data
    assert plain["mood"] == "anxious"

    rebuilt = codec.decode(codec.encode(character), Character).value
    assert rebuilt == character
    assert type(rebuilt.id) is UUID
    assert rebuilt.items[1].acquired.utcoffset() == timedelta(hours=2)
    assert type(rebuilt.position) is tuple
    assert isinstance(rebuilt.mentor, Character)
    assert rebuilt.mentor.nickname is None


@pytest.mark.parametrize("name", ["json", "stdlib-json", "msgpack"])
def test_typed_decode_of_a_pydantic_model(name: str) -> None:
    pydantic = pytest.importorskip("pydantic")

    class Session(pydantic.BaseModel):  # type: ignore[name-defined,misc]
        id: UUID
        started: datetime
        mood: Mood
        turns: list[int]
        budget: Decimal

    session = Session(
        id=uuid4(),
        started=datetime(2024, 1, 1, tzinfo=timezone.utc),
        mood=Mood.CALM,
        turns=[1, 2],
        budget=Decimal("9.99"),
    )
    codec = build(name)
    assert codec.decode(codec.encode(session), Session).value == session
    assert codec.decode(codec.encode([session]), list[Session]).value == [session]
    assert codec.decode(codec.encode({"s": session}), dict[str, Session | None]).value == {
        "s": session
    }


@pytest.mark.parametrize(
    ("hint", "value"),
    [
        (dict[UUID, int], {UUID(int=1): 1, UUID(int=2): 2}),
        (dict[int, str], {1: "a", -2: "b"}),
        (dict[bool, int], {True: 1, False: 0}),
        (dict[Level, str], {Level.LOW: "low"}),
        (dict[Mood, list[date]], {Mood.CALM: [date(2020, 1, 1)]}),
        (dict[date, int], {date(2020, 1, 1): 1}),
        (set[int], {1, 2, 3}),
        (frozenset[UUID], frozenset({UUID(int=5)})),
        (tuple[int, str, Mood], (1, "a", Mood.CALM)),
        (tuple[()], ()),
        (tuple[Decimal, ...], (Decimal("1.5"), Decimal("-0"))),
        (tuple, (1, 2)),
        (list[tuple[int, int]], [(1, 2), (3, 4)]),
        (Literal["a", "b"], "b"),
        (Literal[Mood.CALM], Mood.CALM),
        (UserId, UserId(UUID(int=7))),
        (Annotated[UUID, [1]], UUID(int=9)),  # unhashable metadata: compiled uncached
        (datetime | None, None),
        (Optional[datetime], datetime(2020, 1, 1, 1, 2, 3)),  # noqa: UP045 - typing.Union origin
        (int | datetime, 5),
        (int | datetime, datetime(2020, 1, 1)),
        (Item | Mood, Mood.CALM),
        (Union[Item, Mood], Item("x", Decimal(1), datetime(2020, 1, 1))),  # noqa: UP007
        (bytes, b"\x00\xff binary"),
        (bytearray, bytearray(b"xyz")),
        (Point, Point(1, date(2020, 2, 2))),
        (Node, Node("root", [Node("a", [Node("b")]), Node("c")])),
        (Any, {"x": [1]}),
        (object, [1, "2"]),
    ],
)
@pytest.mark.parametrize("name", ["json", "stdlib-json", "msgpack"])
def test_typed_decode_rebuilds_each_supported_hint(name: str, hint: Any, value: Any) -> None:
    codec = build(name)
    decoded = codec.decode(codec.encode(value), hint).value
    assert decoded == value
    assert type(decoded) is type(value)


@pytest.mark.parametrize(
    "hint",
    [
        None,
        Any,
        dict,
        list,
        int,
        str,
        dict[str, Any],
        list[int],
        dict[str, list[int]] | None,
        Union[int, str],  # noqa: UP007 - typing.Union origin
    ],
)
def test_plain_json_hints_compile_to_identity(hint: Any) -> None:
    assert typed.typed_decoder(hint) is None


def test_converters_are_compiled_once_per_hint() -> None:
    first = typed.typed_decoder(list[Character])
    assert first is not None
    assert typed.typed_decoder(list[Character]) is first


@pytest.mark.parametrize(
    ("hint", "value"),
    [
        (Character, [1, 2]),  # a list where a dataclass is expected
        (Item, {"name": "x"}),  # missing field
        (Item, {"name": "x", "price": "1", "acquired": "2020-01-01"}),  # a date is no datetime
        (UUID, "not-a-uuid"),
        (datetime, 12),
        (Decimal, "twelve"),
        (Mood, "furious"),
        (Literal["a"], "b"),
        (tuple[int, int], [1, 2, 3]),
        (bytes, "not base64!"),
        (UUID | datetime, "neither"),
        (dict[int, str], {"one": "a"}),
    ],
)
def test_a_value_that_does_not_convert_is_a_decode_error(hint: Any, value: Any) -> None:
    codec = Codec()
    with pytest.raises(DecodeError):
        codec.decode(codec.encode(value), hint)


@pytest.mark.parametrize("name", ["json", "stdlib-json", "msgpack"])
def test_fields_a_dataclass_does_not_declare_are_ignored(name: str) -> None:
    # Rolling deploys: an entry written by a release whose Item has one more field is read.
    codec = build(name)
    item = Item("x", Decimal("1.5"), datetime(2020, 1, 1, tzinfo=timezone.utc))
    newer = {**dataclasses.asdict(item), "colour": "red"}
    assert codec.decode(codec.encode(newer), Item).value == item


@pytest.mark.parametrize("name", ["json", "stdlib-json", "msgpack"])
def test_a_field_holding_what_its_annotation_does_not_allow_is_a_decode_error(name: str) -> None:
    codec = build(name)
    stored = Item(None, Decimal(1), datetime(2020, 1, 1))  # type: ignore[arg-type]
    with pytest.raises(DecodeError):
        codec.decode(codec.encode(stored), Item)


class Profile(TypedDict):
    name: str
    born: date


class Handle(str):
    pass


@pytest.mark.parametrize("name", ["json", "stdlib-json", "msgpack"])
@pytest.mark.parametrize(
    ("hint", "value"),
    [
        (Profile, Profile(name="Ada", born=date(1815, 12, 10))),
        (Handle, Handle("ada")),
        (dict[str, Handle], {"a": Handle("ada")}),
        (collections.abc.Iterable[Item], [Item("x", Decimal(1), datetime(2020, 1, 1))]),
        (collections.abc.Sequence[UUID], [UUID(int=1)]),
    ],
)
def test_typed_decode_rebuilds_typeddicts_str_subclasses_and_abstract_containers(
    name: str, hint: Any, value: Any
) -> None:
    codec = build(name)
    decoded = codec.decode(codec.encode(value), hint).value
    assert decoded == value
    assert type(decoded) is type(value)
    assert all(type(a) is type(b) for a, b in zip(decoded, value, strict=True))


class Opaque:
    """A class no decoder knows how to build."""


@dataclasses.dataclass
class WithOpaque:
    name: str
    opaque: Opaque | None = None


@dataclasses.dataclass
class WithRefusedUnion:
    when: list[UUID | datetime]


def test_a_class_no_decoder_knows_is_used_as_decoded_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    codec = Codec()
    data = codec.encode({"a": 1})
    with caplog.at_level("WARNING", logger="tta_cache.codec"):
        assert codec.decode(data, Opaque).value == {"a": 1}
        assert codec.decode(data, Opaque).value == {"a": 1}
    assert [r.getMessage() for r in caplog.records if "Opaque" in r.getMessage()] == [
        f"values of {Opaque!r} are used as decoded: msgspec does not know the class"
    ]


def test_an_unknown_class_inside_a_dataclass_is_a_decode_error_only_when_present() -> None:
    codec = Codec()
    assert codec.decode(codec.encode(WithOpaque("a")), WithOpaque).value == WithOpaque("a")
    with pytest.raises(DecodeError):
        codec.decode(codec.encode({"name": "a", "opaque": {"x": 1}}), WithOpaque)


@pytest.mark.parametrize(
    ("hint", "value"),
    [
        (list[UUID | datetime], [UUID(int=1), datetime(2020, 1, 1)]),
        (WithRefusedUnion, WithRefusedUnion([datetime(2020, 1, 1)])),
    ],
)
def test_a_union_msgspec_refuses_inside_a_type_is_a_decode_error_with_a_warning(
    caplog: pytest.LogCaptureFixture, hint: Any, value: Any
) -> None:
    # Served as a dict or list of str, the value would break a caller expecting objects.
    codec = Codec()
    data = codec.encode(value)
    with caplog.at_level("WARNING", logger="tta_cache.codec"), pytest.raises(DecodeError):
        codec.decode(data, hint)
    assert "cannot be rebuilt, so they are misses" in caplog.text
    assert codec.decode(data).value  # read untyped, the entry is intact


def test_a_typed_json_payload_is_parsed_once_straight_into_the_type() -> None:
    class NoLoads(JsonSerializer):
        def loads(self, data: bytes) -> Any:
            raise AssertionError("typed JSON is read by msgspec, not parsed first")

    codec = Codec(NoLoads())
    character = make_character()
    assert codec.decode(codec.encode(character), Character).value == character
    with pytest.raises(DecodeError):
        codec.decode(codec.encode(character))  # untyped: the serializer parses


def test_pickle_values_come_back_as_they_were_without_conversion() -> None:
    codec = Codec("pickle", signing_key=KEY)
    character = make_character()
    assert codec.decode(codec.encode(character), Character).value == character


# --- rolling deploys: the header picks the serializer ---------------------------------------


def test_a_json_reader_decodes_what_a_msgpack_writer_wrote() -> None:
    character = make_character()
    written = Codec("msgpack").encode(character, stamp=[("user:u1", 4)])
    entry = Codec("json").decode(written, Character)
    assert entry.value == character
    assert entry.stamp == (("user:u1", 4),)


def test_stdlib_and_orjson_json_read_each_other() -> None:
    character = make_character()
    fast, slow = Codec(OrjsonSerializer()), Codec(JsonSerializer())
    assert slow.decode(fast.encode(character), Character).value == character
    assert fast.decode(slow.encode(character), Character).value == character


def test_stdlib_json_is_used_when_orjson_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "orjson", None)
    with pytest.raises(ConfigurationError):
        OrjsonSerializer()
    serializer = registry._json_serializer()
    assert isinstance(serializer, JsonSerializer)
    assert serializer.loads(serializer.dumps({"at": datetime(2020, 1, 1), 1: {2}})) == {
        "at": "2020-01-01T00:00:00",
        "1": [2],
    }


def test_stdlib_json_writes_what_orjson_writes() -> None:
    value = {
        "a": [1, 2.5, None, True],
        "b": {"c": "\u2603"},
        3: Mood.CALM,
        UUID(int=1): date(2020, 1, 1),
    }
    assert JsonSerializer().dumps(value) == OrjsonSerializer().dumps(value)


# --- registry and configuration ---------------------------------------------------------------


class ReversedJson:
    """A custom serializer: JSON, reversed (so only it can read it)."""

    name = "reversed-json"

    def dumps(self, value: Any) -> bytes:
        return orjson.dumps(value)[::-1]

    def loads(self, data: bytes) -> Any:
        return orjson.loads(data[::-1])


def test_a_registered_custom_serializer_is_read_by_any_codec() -> None:
    register_serializer(ReversedJson(), 200)
    register_serializer(ReversedJson(), 200)  # idempotent
    written = Codec(ReversedJson()).encode({"a": [1]})
    assert written[3] == 200
    assert Codec("json").decode(written).value == {"a": [1]}
    assert Codec("reversed-json").decode(written).value == {"a": [1]}
    assert get_serializer("reversed-json").name == "reversed-json"


@pytest.mark.parametrize("bad_id", [0, 1, 63, 255, 1000])
def test_custom_serializer_ids_are_64_to_254(bad_id: int) -> None:
    with pytest.raises(ConfigurationError):
        register_serializer(ReversedJson(), bad_id)


def test_registering_clashing_names_or_ids_is_refused() -> None:
    register_serializer(
        ReversedJson(), 201 if registry._custom_ids.get("reversed-json") == 201 else 200
    )
    taken = registry._custom_ids["reversed-json"]
    with pytest.raises(ConfigurationError):
        register_serializer(ReversedJson(), 202 if taken != 202 else 203)  # same name, other id

    class Clash(ReversedJson):
        name = "clash"

    with pytest.raises(ConfigurationError):
        register_serializer(Clash(), taken)  # other name, same id

    class Builtin(ReversedJson):
        name = "json"

    with pytest.raises(ConfigurationError):
        register_serializer(Builtin(), 210)


def test_an_unregistered_custom_serializer_is_a_configuration_error() -> None:
    class Unregistered(ReversedJson):
        name = "never-registered"

    with pytest.raises(ConfigurationError, match="register_serializer"):
        Codec(Unregistered())


def test_unknown_serializer_names_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="unknown serializer"):
        get_serializer("yaml")
    with pytest.raises(ConfigurationError):
        Codec("yaml")


def test_builtin_serializers_by_name() -> None:
    assert isinstance(get_serializer("json"), OrjsonSerializer)  # orjson is installed here
    assert isinstance(get_serializer("msgpack"), MsgpackSerializer)
    assert type(get_serializer("pickle")) is PickleSerializer
    assert isinstance(get_serializer("cloudpickle"), CloudpickleSerializer)
    assert Codec("msgpack").serializer_name == "msgpack"


def test_missing_optional_dependencies_are_configuration_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "msgpack", None)
    monkeypatch.setitem(sys.modules, "zstandard", None)
    with pytest.raises(ConfigurationError, match="msgpack"):
        MsgpackSerializer()
    with pytest.raises(ConfigurationError, match="zstandard"):
        Codec(compression="zstd")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"compression": "lz4"},
        {"compress_min_bytes": -1},
        {"max_decoded_bytes": 0},
        {"signing_key": b""},
        {"signing_key": []},
        {"signing_key": [KEY, ""]},
        {"signing_key": [123]},
    ],
)
def test_bad_settings_are_configuration_errors(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        Codec(**kwargs)


# --- encoding errors --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["json", "stdlib-json", "msgpack", "pickle", "cloudpickle"])
def test_an_unserializable_value_raises_serialization_error_naming_its_type(name: str) -> None:
    codec = build(name, signed=True)
    with pytest.raises(SerializationError, match="lock"):
        codec.encode({"state": [threading.Lock()]})


@pytest.mark.parametrize("name", ["json", "stdlib-json", "msgpack"])
def test_a_plain_object_is_not_serializable_as_data(name: str) -> None:
    class Opaque:
        pass

    with pytest.raises(SerializationError, match="Opaque"):
        build(name).encode(Opaque())


@pytest.mark.parametrize("name", ["json", "stdlib-json"])
def test_unsupported_json_keys_raise_serialization_error(name: str) -> None:
    with pytest.raises(SerializationError):
        build(name).encode({(1, 2): "tuple key"})


@pytest.mark.parametrize(
    "stamp",
    [[("tag\x00with nul", 1)], [("t", 2**63)], [("t", "1")], [("\ud800", 1)], [("t",)]],
)
def test_a_stamp_that_does_not_fit_raises_serialization_error(stamp: Any) -> None:
    with pytest.raises(SerializationError):
        Codec().encode(1, stamp=stamp)


def test_a_value_larger_than_max_decoded_bytes_is_not_written() -> None:
    with pytest.raises(SerializationError, match="max_decoded_bytes"):
        Codec(max_decoded_bytes=100).encode("x" * 200)


# --- I7: signing and pickle -------------------------------------------------------------------

UNPICKLED: list[str] = []


def _record_unpickling(marker: str) -> str:
    UNPICKLED.append(marker)
    return marker


class Exploit:
    """Unpickling this runs code: it appends to ``UNPICKLED``."""

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (_record_unpickling, ("pwned",))


@pytest.fixture
def unpickled() -> list[str]:
    UNPICKLED.clear()
    return UNPICKLED


@pytest.mark.parametrize("name", ["pickle", "cloudpickle"])
def test_the_pickle_family_requires_a_signing_key(name: str) -> None:
    with pytest.raises(ConfigurationError, match="signing_key"):
        Codec(name)


def test_the_exploit_payload_runs_code_when_signed_and_verified(unpickled: list[str]) -> None:
    codec = Codec("pickle", signing_key=KEY)
    assert codec.decode(codec.encode(Exploit())).value == "pwned"
    assert unpickled == ["pwned"]  # the side effect the other tests check for is real


@pytest.mark.parametrize("serializer_id", [3, 4])
@pytest.mark.parametrize(
    "reader",
    [
        lambda: Codec("json"),
        lambda: Codec("json", signing_key=KEY),
        lambda: Codec("pickle", signing_key=KEY),
        lambda: Codec("cloudpickle", signing_key=[OTHER_KEY, KEY]),
    ],
)
def test_an_unsigned_pickle_payload_is_never_unpickled(
    unpickled: list[str], serializer_id: int, reader: Any
) -> None:
    crafted = envelope(serializer_id, pickle.dumps(Exploit()))
    with pytest.raises(DecodeError):
        reader().decode(crafted)
    assert unpickled == []


def test_a_pickle_payload_signed_with_another_key_is_never_unpickled(unpickled: list[str]) -> None:
    foreign = Codec("pickle", signing_key=OTHER_KEY).encode(Exploit())
    for reader in (Codec("pickle", signing_key=KEY), Codec("json", signing_key=KEY), Codec("json")):
        with pytest.raises(DecodeError):
            reader.decode(foreign)
    assert unpickled == []


def test_a_pickle_payload_marked_signed_with_a_forged_mac_is_never_unpickled(
    unpickled: list[str],
) -> None:
    crafted = envelope(3, pickle.dumps(Exploit()), flags=SIGNED) + bytes(32)
    for reader in (Codec("pickle", signing_key=KEY), Codec("json")):
        with pytest.raises(DecodeError):
            reader.decode(crafted)
    assert unpickled == []


def test_a_json_reader_with_the_key_reads_verified_pickle() -> None:
    written = Codec("pickle", signing_key=KEY).encode({"at": datetime(2020, 1, 1)})
    assert Codec("json", signing_key=KEY).decode(written).value == {"at": datetime(2020, 1, 1)}


def test_with_a_signing_key_an_unsigned_payload_is_refused() -> None:
    unsigned = Codec("json").encode({"a": 1})
    with pytest.raises(DecodeError, match="not signed"):
        Codec("json", signing_key=KEY).decode(unsigned)
    # stripping the MAC and clearing the flag of a signed payload is the same downgrade
    signed = bytearray(Codec("json", signing_key=KEY).encode({"a": 1}))
    signed[FLAGS_AT] &= ~SIGNED
    with pytest.raises(DecodeError):
        Codec("json", signing_key=KEY).decode(bytes(signed[:-32]))


def test_a_reader_without_keys_accepts_signed_json() -> None:
    signed = Codec("json", signing_key=KEY).encode({"a": 1})
    assert Codec("json").decode(signed).value == {"a": 1}


def test_key_rotation_the_first_key_signs_and_all_verify() -> None:
    old = Codec("pickle", signing_key=KEY)
    rotating = Codec("pickle", signing_key=[OTHER_KEY, KEY])
    new_only = Codec("pickle", signing_key=OTHER_KEY)
    written_before = old.encode({"v": 1})
    assert rotating.decode(written_before).value == {"v": 1}
    written_after = rotating.encode({"v": 2})
    assert new_only.decode(written_after).value == {"v": 2}
    with pytest.raises(DecodeError, match="signature"):
        old.decode(written_after)


def test_signing_keys_may_be_str_bytes_or_bytearray() -> None:
    written = Codec(signing_key=KEY).encode(1)
    assert Codec(signing_key="k" * 32).decode(written).value == 1  # str keys are UTF-8
    assert Codec(signing_key=bytearray(KEY)).decode(written).value == 1  # type: ignore[arg-type]
    assert Codec(signing_key=(bytearray(OTHER_KEY), KEY)).decode(written).value == 1  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["json", "pickle"])
@pytest.mark.parametrize("compression", ["none", "zlib"])
def test_a_tampered_byte_anywhere_is_a_decode_error(name: str, compression: str) -> None:
    codec = build(name, compression, signed=True)
    data = codec.encode(
        BIG_VALUE, stamp=[("user:u1", 1)], created=1.0, fresh_until=2.0, compute_time=0.5
    )
    assert codec.decode(data).value == BIG_VALUE
    for index in range(len(data)):
        for flip in (0x01, 0x80):
            tampered = bytearray(data)
            tampered[index] ^= flip
            with pytest.raises(DecodeError):
                codec.decode(bytes(tampered))


@pytest.mark.parametrize(
    "config",
    [
        ("json", "none", False),
        ("json", "zlib", False),
        ("json", "zlib", True),
        ("msgpack", "zstd", False),
        ("pickle", "zlib", True),
    ],
)
def test_a_truncated_payload_is_a_decode_error_at_every_length(
    config: tuple[str, str, bool],
) -> None:
    codec = build(*config)
    data = codec.encode(BIG_VALUE, stamp=[("session:s1", 7), ("user:u1", 8)])
    assert codec.decode(data + b"").value == BIG_VALUE
    for length in range(len(data)):
        with pytest.raises(DecodeError):
            codec.decode(data[:length])


# --- foreign and malformed input --------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xf7",
        b'{"a": 1}',
        b"[1, 2, 3]",
        b"null",
        pickle.dumps({"a": 1}),
        msgpack.packb({"a": 1}),
        zlib.compress(b'{"a": 1}'),
        MAGIC + b"\x01",
        envelope(1, b'{"a":1}', version=3),  # unknown format version
        envelope(1, b'{"a":1}', version=1),  # the format before the payload length
        envelope(1, b'{"a":1}', version=0),
        envelope(99, b'{"a":1}'),  # unknown serializer id
        envelope(1, b'{"a":1}', flags=0x08),  # reserved flag
        envelope(1, zlib.compress(b'{"a":1}'), flags=ZLIB | ZSTD),
        envelope(1, b'{"a":1}', flags=ZLIB),  # says compressed, is not
        envelope(1, zlib.compress(b'{"a":1}') + b"trailing", flags=ZLIB),
        envelope(1, b'{"a":'),  # payload does not parse
        envelope(1, b"\xff\xfe"),
        envelope(2, b"\xc1"),  # msgpack: never-used byte
        HEADER.pack(MAGIC, 2, 1, 0, 0.0, 0.0, 0.0, 3, 2) + b"\x00" * 20,  # stamp count past the end
        HEADER.pack(MAGIC, 2, 1, 0, 0.0, 0.0, 0.0, 65535, 2) + b"{}",
        HEADER.pack(MAGIC, 2, 1, 0, 0.0, 0.0, 0.0, 1, 2) + struct.pack("<qI", 1, 2**32 - 1) + b"{}",
        HEADER.pack(MAGIC, 2, 1, 0, 0.0, 0.0, 0.0, 2, 2)
        + struct.pack("<qqI", 1, 2, 1)
        + b"a{}",  # 1 tag, 2 versions
        HEADER.pack(MAGIC, 2, 1, 0, 0.0, 0.0, 0.0, 1, 2)
        + struct.pack("<qI", 1, 2)
        + b"\xff\xff{}",  # tag not UTF-8
    ],
)
def test_foreign_or_malformed_bytes_are_a_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError):
        Codec("json").decode(data)


@pytest.mark.parametrize("data", ["a str", None, 12, [b"x"]])
def test_a_non_bytes_payload_is_a_decode_error(data: Any) -> None:
    with pytest.raises(DecodeError):
        Codec().decode(data)


def test_bytearray_and_memoryview_payloads_decode() -> None:
    data = Codec().encode([1])
    assert Codec().decode(bytearray(data)).value == [1]  # type: ignore[arg-type]
    assert Codec().decode(memoryview(data)).value == [1]  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200))
def test_random_bytes_are_a_decode_error(data: bytes) -> None:
    assume(not data.startswith(MAGIC))
    for codec in (Codec("json"), Codec("msgpack", signing_key=KEY)):
        with pytest.raises(DecodeError):
            codec.decode(data)


@settings(max_examples=500, deadline=None)
@given(
    header=st.tuples(
        st.sampled_from([0, 1, 2, 3]), st.integers(0, 255), st.integers(0, 255), st.integers(0, 4)
    ),
    rest=st.binary(max_size=120),
    hint=st.sampled_from([None, Character, list[int], dict[UUID, Mood], Item | None]),
)
def test_anything_behind_our_magic_decodes_or_is_a_decode_error(
    header: tuple[int, int, int, int], rest: bytes, hint: Any
) -> None:
    version, serializer_id, flags, count = header
    data = HEADER.pack(MAGIC, version, serializer_id, flags, 0.0, 0.0, 0.0, count, len(rest)) + rest
    for codec in (Codec("json"), Codec("msgpack", signing_key=KEY)):
        try:
            entry = codec.decode(data, hint)
        except DecodeError:
            continue
        assert isinstance(entry, Entry)


# --- compression ------------------------------------------------------------------------------


@pytest.mark.parametrize("compression", ["zlib", "zstd"])
def test_a_decompression_bomb_is_a_decode_error(compression: str) -> None:
    writer = build("json", compression, max_decoded_bytes=2**24)
    bomb = writer.encode("A" * 2_000_000)
    assert len(bomb) < 20_000
    with pytest.raises(DecodeError, match="more than"):
        build("json", compression, max_decoded_bytes=1_000_000).decode(bomb)
    assert (
        build("json", compression, max_decoded_bytes=2_100_000).decode(bomb).value
        == "A" * 2_000_000
    )


def test_a_zstd_bomb_without_a_declared_size_is_a_decode_error() -> None:
    zstandard = pytest.importorskip("zstandard")
    payload = zstandard.ZstdCompressor(write_content_size=False).compress(
        b'"' + b"A" * 2_000_000 + b'"'
    )
    bomb = envelope(1, payload, flags=ZSTD)
    assert Codec(max_decoded_bytes=2_100_000).decode(bomb).value == "A" * 2_000_000
    with pytest.raises(DecodeError):
        Codec(max_decoded_bytes=1_000_000).decode(bomb)


def test_a_zlib_bomb_crafted_by_hand_is_a_decode_error() -> None:
    bomb = envelope(1, zlib.compress(b" " * 20_000_000 + b"1"), flags=ZLIB)
    assert len(bomb) < 50_000
    with pytest.raises(DecodeError, match="more than"):
        Codec(max_decoded_bytes=10_000_000).decode(bomb)
    assert Codec(max_decoded_bytes=20_000_001).decode(bomb).value == 1


def test_compression_is_kept_only_when_it_shrinks_the_payload() -> None:
    codec = Codec("msgpack", compress_min_bytes=100)
    noise = os.urandom(4096)
    incompressible = codec.encode(noise)
    assert not incompressible[FLAGS_AT] & ZLIB
    assert codec.decode(incompressible).value == noise
    compressible = codec.encode(b"\x00" * 4096)
    assert compressible[FLAGS_AT] & ZLIB
    assert len(compressible) < 200


@pytest.mark.parametrize(
    ("kwargs", "size", "compressed"),
    [
        ({"compress_min_bytes": 1024}, 1023, False),
        ({"compress_min_bytes": 1024}, 1024, True),
        ({"compress_min_bytes": None}, 100_000, False),
        ({"compression": "none", "compress_min_bytes": 0}, 100_000, False),
        ({"compress_min_bytes": 0}, 50, True),
    ],
)
def test_compression_starts_at_compress_min_bytes(
    kwargs: dict[str, Any], size: int, compressed: bool
) -> None:
    codec = Codec(**kwargs)
    value = "a" * (size - 2)  # JSON adds the two quotes
    data = codec.encode(value)
    assert bool(data[FLAGS_AT] & ZLIB) is compressed
    assert codec.decode(data).value == value


def test_a_zstd_payload_is_read_by_a_zlib_configured_codec() -> None:
    pytest.importorskip("zstandard")
    written = Codec(compression="zstd", compress_min_bytes=0).encode(BIG_VALUE)
    assert written[FLAGS_AT] & ZSTD
    assert Codec(compression="zlib").decode(written).value == BIG_VALUE
