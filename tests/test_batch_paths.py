"""The batch loader's shortcuts agree with the one-entry paths they stand in for.

``Codec.decode_many`` reads a batch's envelopes with what is common to the batch looked up once
and plain envelopes read inline; ``args_around`` encodes a batch's shared arguments once. Each
must give exactly what ``Codec.decode`` / ``encode_args`` give, corrupt and foreign input
included: a batch is never a way around a check.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers import fuzzing
from tta_cache.codec import Codec
from tta_cache.core.keys import args_around, encode_args
from tta_cache.exceptions import DecodeError, KeyEncodingError


@dataclasses.dataclass
class Scene:
    name: str
    at: datetime
    weight: float = 0.5


STAMP = (("tta", 1), ("user:u1", 7))
VALUE = Scene("the lighthouse", datetime(2026, 5, 9, 8, 12, tzinfo=UTC))


def _decode_one(codec: Codec, raw: Any, hint: Any, kind: str | None) -> Any:
    try:
        return codec.decode(raw, hint, key=fuzzing.KEY, kind=kind)
    except DecodeError as exc:
        return type(exc)


def _inputs(codec: Codec, other: Codec) -> list[Any]:
    good = codec.encode(VALUE, stamp=STAMP, fresh_until=2e9, key=fuzzing.KEY, kind=fuzzing.KIND)
    foreign = other.encode(VALUE, stamp=STAMP, key=fuzzing.KEY, kind=fuzzing.KIND)
    plain = Codec().encode(VALUE, stamp=STAMP, key=fuzzing.KEY)
    wrong_type = Codec().encode({"name": 3}, stamp=STAMP, key=fuzzing.KEY)
    cuts = [good[:n] for n in (0, 5, len(good) // 2, len(good) - 1)]
    flips = [fuzzing.mutate(good, [(0, at, 0x40)]) for at in range(0, len(good), 7)]
    return [
        good,
        None,
        bytearray(good),
        memoryview(good),
        foreign,
        plain,
        wrong_type,
        b"not an envelope",
        "text",
        12,
        *cuts,
        *flips,
    ]


@pytest.mark.parametrize("name", sorted(fuzzing.CONFIGS))
@pytest.mark.parametrize("hint", [Scene, None])
@pytest.mark.parametrize("kind", [fuzzing.KIND, "character", None])
def test_decode_many_is_decode_entry_by_entry(name: str, hint: Any, kind: str | None) -> None:
    codec = Codec(namespace="tta", **fuzzing.CONFIGS[name])
    other = Codec(namespace="tta", **fuzzing.CONFIGS["signed+encrypted pickle"])
    if name == "signed+encrypted pickle":
        other = Codec(namespace="tta", **fuzzing.CONFIGS["encrypted json"])
    raws = _inputs(codec, other)
    failures: list[DecodeError] = []
    got = codec.decode_many(raws, hint, [fuzzing.KEY] * len(raws), kind, failures.append)
    want = [None if raw is None else _decode_one(codec, raw, hint, kind) for raw in raws]
    assert len(got) == len(raws)
    for raw, entry, expected in zip(raws, got, want, strict=True):
        if expected is DecodeError:
            assert entry is None, (name, raw)
        else:
            assert entry == expected, (name, raw)
    assert len(failures) == sum(1 for w in want if w is DecodeError)
    assert all(type(f) is DecodeError for f in failures)
    # the good envelope itself: every configuration reads its own writing back
    if kind == fuzzing.KIND or not codec.encryptor:
        assert got[0] is not None
        assert got[0].stamp == STAMP


def test_decode_many_never_quotes_the_data_of_a_value_that_does_not_convert() -> None:
    codec = Codec()
    raw = codec.encode({"name": "secret-diary-entry", "at": "nope"}, key="k")
    failures: list[DecodeError] = []
    assert codec.decode_many([raw], Scene, ["k"], None, failures.append) == [None]
    assert len(failures) == 1
    assert "secret" not in str(failures[0])


_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=12)
    | st.binary(max_size=6)
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.tuples(inner) | st.frozensets(_SCALARS),
    max_leaves=6,
)


@given(st.lists(_VALUES, min_size=1, max_size=4).map(tuple), st.data())
def test_args_around_is_encode_args_with_the_item_in_place(
    values: tuple[Any, ...], data: st.DataObject
) -> None:
    at = data.draw(st.integers(0, len(values) - 1))
    item = data.draw(_VALUES | st.text(min_size=150, max_size=200))  # long: hashed alike
    names = tuple(f"p{i}" for i in range(len(values)))
    placed = (*values[:at], item, *values[at + 1 :])
    try:
        want: Any = encode_args(placed, names)
    except KeyEncodingError as exc:
        want = str(exc)
    try:
        got: Any = args_around(values, at, names)(item)
    except KeyEncodingError as exc:
        got = str(exc)
    assert got == want


def test_args_around_names_the_ids_parameter_when_an_id_cannot_be_a_key() -> None:
    encode = args_around(("u1", ["c1"]), 1, ("user_id", "character_ids"))
    with pytest.raises(KeyEncodingError, match="'character_ids'"):
        encode(object())
