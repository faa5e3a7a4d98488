"""Fuzzing with hypothesis: the envelope decoder over raw bytes and over mutated genuine envelopes
in every configuration, and the key encoder over structured values and raw bytes (the checks are
in ``helpers/fuzzing.py``, shared with the atheris target run by ``nox -s fuzz``)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tta_cache as tc
from helpers.fuzzing import (
    CONFIGS,
    PROTECTED,
    SERIALIZERS_MODULE,
    Spies,
    check_decode,
    check_key_encoding,
    mutate,
    pickle_spy,
    spied_codec,
)
from tta_cache.core.keys import MAX_KEY_LENGTH, encode_args

NAMES = sorted(CONFIGS)
FUZZ = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture
def spies(monkeypatch: pytest.MonkeyPatch) -> Spies:
    counted = Spies()
    monkeypatch.setattr(SERIALIZERS_MODULE, "pickle", pickle_spy(counted))
    return counted


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
stamps = st.lists(
    st.tuples(
        st.text(
            alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
            max_size=12,
        ),
        st.integers(-(2**63), 2**63 - 1),
    ),
    max_size=4,
)
ops = st.lists(
    st.tuples(st.integers(0, 5), st.integers(0, 10_000), st.integers(0, 255)),
    min_size=1,
    max_size=4,
)


@FUZZ
@given(name=st.sampled_from(NAMES), data=st.binary(max_size=300))
def test_raw_bytes_decode_or_are_a_decode_error_in_every_configuration(
    spies: Spies, name: str, data: bytes
) -> None:
    codec = spied_codec(name, spies)
    check_decode(codec, spies, data, original=None, protected=name in PROTECTED)


@FUZZ
@given(
    name=st.sampled_from(NAMES),
    value=json_values,
    stamp=stamps,
    changes=ops,
    times=st.tuples(st.floats(0, 2e9), st.floats(0, 2e9), st.floats(0, 60, width=32)),
)
def test_a_mutated_envelope_is_refused_unverified_by_every_protected_configuration(
    spies: Spies,
    name: str,
    value: Any,
    stamp: list[tuple[str, int]],
    changes: list[tuple[int, int, int]],
    times: tuple[float, float, float],
) -> None:
    codec = spied_codec(name, spies)
    created, fresh_until, compute_time = times
    original = codec.encode(
        value,
        stamp=stamp,
        created=created,
        fresh_until=fresh_until,
        compute_time=compute_time,
        key="tta:emotional:fuzz.target:'u1",
        kind="emotional",
    )
    check_decode(codec, spies, original, original=original, protected=name in PROTECTED)
    forged = mutate(original, changes)
    check_decode(codec, spies, forged, original=original, protected=name in PROTECTED)


@FUZZ
@given(name=st.sampled_from(sorted(PROTECTED)), value=json_values, cut=st.integers(0, 10_000))
def test_every_prefix_and_every_splice_of_two_envelopes_is_refused(
    spies: Spies, name: str, value: Any, cut: int
) -> None:
    codec = spied_codec(name, spies)
    a = codec.encode(value, key="tta:emotional:fuzz.target:'u1", kind="emotional")
    b = codec.encode([value], key="tta:emotional:fuzz.target:'u1", kind="emotional")
    at = cut % len(a)
    for forged in (a[:at], a[:at] + b[at:], b[:at] + a[at:]):
        if forged not in (a, b):
            check_decode(codec, spies, forged, original=a, protected=True)


# --- the key encoder --------------------------------------------------------------------------


class Colour(enum.Enum):
    RED = "red"


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: str


scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text()
    | st.binary()
    | st.uuids()
    | st.dates()
    | st.datetimes()
    | st.decimals(allow_nan=False)
    | st.just(Colour.RED)
    | st.builds(Point, st.integers(), st.text())
    | st.just(object())  # no encoding: a KeyEncodingError
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=5) | st.integers(), inner, max_size=3)
        | st.frozensets(st.integers() | st.text(max_size=5), max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=500, deadline=None)
@given(args=st.lists(values, max_size=4).map(tuple))
def test_the_key_encoder_returns_bounded_key_text_or_a_key_encoding_error(
    args: tuple[Any, ...],
) -> None:
    check_key_encoding(args)


@settings(max_examples=500, deadline=None)
@given(raw=st.binary(max_size=400))
def test_the_key_encoder_over_raw_bytes_as_bytes_and_as_text(raw: bytes) -> None:
    check_key_encoding((raw,))
    check_key_encoding((raw.decode("utf-8", "surrogateescape"),))
    check_key_encoding((raw.decode("latin-1"), raw))


@settings(max_examples=300, deadline=None)
@given(session_id=st.text(max_size=1200), user_id=st.text(max_size=300))
def test_a_decorated_call_has_one_well_formed_key_or_a_key_encoding_error(
    session_id: str, user_id: str
) -> None:
    cache = tc.Cache(None)

    @cache.cached(kind="character", tags=("session:{session_id}", "user:{user_id}"))
    def load(session_id: str, user_id: str) -> str:
        return session_id + user_id

    try:
        key = load.cache_key(session_id, user_id)
        assert load(session_id, user_id) == session_id + user_id
    except tc.KeyEncodingError:
        return
    assert key.startswith("tta:character:{")
    assert len(key) <= MAX_KEY_LENGTH
    assert key.isascii()
    assert key.count(":") == 4  # namespace, kind, hash tag, function: user text never adds one
    assert key.count("{") == key.count("}") == 1


def test_unsupported_argument_types_are_a_key_encoding_error_naming_the_parameter() -> None:
    with pytest.raises(tc.KeyEncodingError, match="argument 'x'"):
        encode_args((object(),), ("x",))
    # The property tests above draw these too; keep one of each as a plain test.
    for value in (dt.timedelta(1), decimal.Decimal("nan"), uuid.uuid4().bytes, float("nan")):
        check_key_encoding((value,))
