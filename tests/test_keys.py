"""Keys: typed, escaped, injective argument encoding; long arguments hashed; cluster hash tags."""

from __future__ import annotations

import datetime as dt
import enum
import re
import uuid
from binascii import crc_hqx
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.crc import key_slot

import tta_cache as tc
from tta_cache.core.keys import MAX_ARGS_LEN, encode_args, escape

# What an escaped piece of user text may contain: the safe set plus percent escapes.
ESCAPED = re.compile(r"(?:[A-Za-z0-9_.\-@+/|~!$^&;]|%[0-9A-F]{2})*")
FORBIDDEN = set("{}*?[] :,'\"\\\n\x00")


@pytest.fixture
def cache() -> Iterator[tc.Cache]:
    with tc.Cache() as cache:
        yield cache


def test_separator_inside_an_argument_cannot_shift_it_to_the_next(cache: tc.Cache) -> None:
    calls: list[tuple[str, str]] = []

    @cache.cached
    def f(a: str, b: str) -> str:
        calls.append((a, b))
        return f"{a}|{b}"

    assert f.cache_key("a:b", "c") != f.cache_key("a", "b:c")
    assert f.cache_key("a,b", "c") != f.cache_key("a", "b,c")
    assert f("a:b", "c") == "a:b|c"
    assert f("a", "b:c") == "a|b:c"
    assert f("a:b", "c") == "a:b|c"
    assert calls == [("a:b", "c"), ("a", "b:c")]


def test_equal_values_of_different_types_are_five_entries(cache: tc.Cache) -> None:
    calls: list[Any] = []

    @cache.cached
    def f(x: object) -> str:
        calls.append(x)
        return f"{type(x).__name__}:{x!r}"

    args: list[Any] = [1, "1", True, None, 1.0]
    expected = ["int:1", "str:'1'", "bool:True", "NoneType:None", "float:1.0"]
    for _ in range(3):  # every round after the first is served from L1
        assert [f(a) for a in args] == expected
    assert len(calls) == 5
    assert len({f.cache_key(a) for a in args}) == 5
    assert cache.stats()["hits"] == 10


def test_equal_values_nested_in_containers_keep_their_types(cache: tc.Cache) -> None:
    calls: list[Any] = []

    @cache.cached
    def f(x: object) -> str:
        calls.append(x)
        return repr(x)

    args: list[Any] = [(1,), (True,), (1.0,), frozenset({1}), frozenset({1.0}), [1], [True]]
    for _ in range(2):
        assert [f(a) for a in args] == [repr(a) for a in args]
    assert len(calls) == len(args)


def test_enum_argument_is_not_its_value(cache: tc.Cache) -> None:
    class Level(enum.IntEnum):
        ONE = 1

    @cache.cached
    def f(x: object) -> str:
        return type(x).__name__

    for _ in range(2):
        assert (f(1), f(Level.ONE), f(1.0)) == ("int", "Level", "float")
    assert f.cache_key(1) != f.cache_key(Level.ONE)


def test_a_str_enum_equal_to_a_string_shares_its_l1_entry_but_not_its_redis_key(
    cache: tc.Cache,
) -> None:
    # Documented: text arguments are not type-checked on an L1 hit (a third of its cost), so a
    # str-mixin Enum member that == the string shares the string's L1 entry; Redis keys differ.
    class Kind(str, enum.Enum):
        SESSION = "session"

    @cache.cached
    def f(x: object) -> str:
        return type(x).__name__

    assert f("session") == "str"
    assert f(Kind.SESSION) == "str"
    assert f.cache_key("session") != f.cache_key(Kind.SESSION)


@pytest.mark.parametrize(
    "text",
    ["{slot}", "a}b{c", "a*b?c[d]", "with space", "tab\there", "é😀ß", "x%41", "a:b,c'd", ""],
)
def test_user_text_is_escaped_in_keys(cache: tc.Cache, text: str) -> None:
    @cache.cached
    def f(name: str) -> str:
        return name

    key = f.cache_key(text)
    assert key.isascii()
    argument = key.rsplit(":", 1)[1]
    assert argument == "'" + escape(text)  # the type mark, then the escaped text
    assert not FORBIDDEN & set(escape(text))
    assert "{" not in key
    assert "}" not in key
    assert key_slot(key.encode()) == crc_hqx(key.encode(), 0) % 16384  # slot of the whole key
    assert f(text) == text


def test_escape_is_injective_on_lookalikes() -> None:
    assert escape("{") != escape("%7B")
    assert escape("%") != escape("%25") != escape("%2525")
    assert escape("a b") != escape("a%20b")


def test_long_arguments_are_hashed_but_stay_distinct(cache: tc.Cache) -> None:
    calls: list[str] = []

    @cache.cached
    def f(text: str) -> int:
        calls.append(text)
        return len(calls)

    a, b = "x" * 1000, "x" * 999 + "y"
    ka, kb = f.cache_key(a), f.cache_key(b)
    assert ka != kb
    assert len(ka.rsplit(":", 1)[1]) <= MAX_ARGS_LEN
    assert a not in ka
    assert (f(a), f(b), f(a), f(b)) == (1, 2, 1, 2)


def test_session_keys_carry_the_session_hash_tag(cache: tc.Cache) -> None:
    @cache.cached_session
    def load(session_id: str, character_id: str) -> str:
        return character_id

    @cache.cached(kind="narrative")
    def context(session_id: str) -> str:
        return session_id

    key = load.cache_key("s9", "c1")
    assert key.startswith("tta:session:{s9}:")
    assert key.count("{") == key.count("}") == 1
    assert context.cache_key("s9").startswith("tta:narrative:{s9}:")
    # one session's keys share a slot; the text of a hostile id cannot open another hash tag
    assert key_slot(key.encode()) == key_slot(context.cache_key("s9").encode())
    assert key_slot(key.encode()) == key_slot(b"s9")
    evil = load.cache_key("}x{other", "c1")
    assert evil.count("{") == evil.count("}") == 1
    assert key_slot(evil.encode()) == key_slot(escape("}x{other").encode())


def test_other_scalar_types_encode_distinctly() -> None:
    u = uuid.UUID(int=1)
    values: list[Any] = [
        b"1",
        bytearray(b"1"),
        u,
        str(u),
        dt.date(2020, 1, 1),
        dt.datetime(2020, 1, 1),
        "2020-01-01",
        (),
        [],
        {},
        frozenset(),
    ]
    encodings = [encode_args((v,)) for v in values]
    # bytes and bytearray are the same data to a cache; everything else differs
    assert len(set(encodings)) == len(values) - 1


# --- property: distinct argument tuples never share an encoding -------------------------------

_TRICKY = st.text(alphabet=":,'()[]<>=%{}*iTFNfbs0123 \x00é", max_size=6)
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-1000, max_value=1000)
    | st.floats(allow_nan=False, width=32)
    | _TRICKY
    | st.binary(max_size=4)
)
_HASHABLE = st.recursive(
    _SCALARS, lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=3), max_leaves=6
)
_VALUES = st.recursive(
    _HASHABLE,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.tuples(inner)
        | st.dictionaries(_HASHABLE, inner, max_size=3)
        | st.frozensets(_HASHABLE, max_size=3)
    ),
    max_leaves=8,
)
_ARGS = st.lists(_VALUES, max_size=3).map(tuple)


def typed(value: Any) -> Any:
    """A canonical form that tells apart equal values of different types (1, 1.0, True)."""
    t = type(value)
    if t is list or t is tuple:
        return (t.__name__, tuple(map(typed, value)))
    if t is dict:
        return ("dict", frozenset((typed(k), typed(v)) for k, v in value.items()))
    if t is frozenset or t is set:
        return ("set", frozenset(map(typed, value)))
    return (t.__name__, repr(value))


@given(_ARGS, _ARGS)
def test_distinct_argument_tuples_have_distinct_encodings(a: tuple[Any, ...], b: Any) -> None:
    if typed(a) != typed(b):
        assert encode_args(a) != encode_args(b)
    else:
        assert encode_args(a) == encode_args(b)


@given(_VALUES)
def test_an_encoding_is_shared_only_by_typed_equal_values(value: Any) -> None:
    # the pair (value, a near miss) is where collisions hide: same text, different structure
    for other in ([value], (value,), {"k": value}, str(value), repr(value)):
        if typed(other) != typed(value):
            assert encode_args((other,)) != encode_args((value,))


@given(st.text(), st.text())
def test_escape_is_injective_and_stays_in_the_safe_alphabet(a: str, b: str) -> None:
    assert ESCAPED.fullmatch(escape(a))
    assert (escape(a) == escape(b)) == (a == b)
