"""Typed decoding: a JSON or msgpack value rebuilt as the function's return annotation.

A converter is compiled once per annotation (:func:`converter_for`) and applied to the value the
serializer loaded: dataclasses, pydantic models, NamedTuples, enums, datetime/date/time, UUID,
Decimal, bytes, Literals, unions and nested containers. ``None`` means: use the value as is.
"""

from __future__ import annotations

import base64
import collections.abc
import dataclasses
import types
from collections.abc import Callable
from datetime import date, datetime, time
from decimal import Decimal
from enum import Enum
from functools import partial
from typing import (
    Annotated,
    Any,
    ForwardRef,
    Literal,
    TypeVar,
    Union,
    get_args,
    get_origin,
    get_type_hints,
)
from uuid import UUID

from .serializers import _json_key, pydantic_model_class, type_name

__all__ = ["converter_for"]

_Converter = Callable[[Any], Any]
_NoneType = type(None)
_converters: dict[Any, _Converter | None] = {}


def converter_for(hint: Any) -> _Converter | None:
    """The converter rebuilding ``hint`` from decoded data; ``None`` means use the data as is."""
    try:
        return _converters[hint]
    except KeyError:
        pass
    except TypeError:  # unhashable hint, e.g. Annotated with a list in its metadata
        return _compile(hint)
    converter = _converters[hint] = _compile(hint)
    return converter


def _unwrap(hint: Any) -> Any:
    """Strip NewType, Annotated and ``type`` aliases down to the type they stand for."""
    while True:
        if get_origin(hint) is Annotated:
            hint = get_args(hint)[0]
        elif hasattr(hint, "__supertype__"):  # typing.NewType
            hint = hint.__supertype__
        elif type(hint).__name__ == "TypeAliasType":  # `type X = ...` (3.12)
            hint = hint.__value__
        else:
            return hint


def _compile(hint: Any) -> _Converter | None:
    hint = _unwrap(hint)
    if hint is None or hint is Any or hint is object or hint is _NoneType:
        return None
    if isinstance(hint, (str, ForwardRef, TypeVar)):
        return None  # unresolved: nothing to convert to
    origin = get_origin(hint)
    if origin is Union or origin is types.UnionType:
        return _union_converter(get_args(hint))
    if origin is Literal:
        return _literal_converter(get_args(hint))
    if origin is not None:
        return _generic_converter(origin, get_args(hint))
    if isinstance(hint, type):
        return _class_converter(hint)
    return None


def _fail(value: Any, target: str) -> Any:
    raise TypeError(f"cannot convert {type_name(value)} to {target}")


def _to_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        # Python 3.10's fromisoformat does not take the "Z" suffix other writers use.
        return datetime.fromisoformat(value[:-1] + "+00:00" if value[-1:] == "Z" else value)
    return _fail(value, "datetime")  # type: ignore[no-any-return]


def _to_date(value: Any) -> date:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str):
        return date.fromisoformat(value)
    return _fail(value, "date")  # type: ignore[no-any-return]


def _to_time(value: Any) -> time:
    if isinstance(value, time):
        return value
    if isinstance(value, str):
        return time.fromisoformat(value)
    return _fail(value, "time")  # type: ignore[no-any-return]


def _to_uuid(value: Any) -> UUID:
    if isinstance(value, UUID):
        return value
    if isinstance(value, str):
        return UUID(value)
    return _fail(value, "UUID")  # type: ignore[no-any-return]


def _to_decimal(value: Any) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    return _fail(value, "Decimal")  # type: ignore[no-any-return]


def _to_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value  # msgpack keeps bytes binary
    if isinstance(value, str):
        return base64.b64decode(value, validate=True)
    return _fail(value, "bytes")  # type: ignore[no-any-return]


def _as_sequence(value: Any) -> list[Any] | tuple[Any, ...]:
    if isinstance(value, (list, tuple)):
        return value
    return _fail(value, "a sequence")  # type: ignore[no-any-return]


def _map_list(item: _Converter, value: Any) -> list[Any]:
    return [item(x) for x in _as_sequence(value)]


def _class_converter(cls: type) -> _Converter | None:
    if cls in (str, int, float, bool, list, dict):
        return None
    if issubclass(cls, Enum):
        return cls  # Color("red") -> Color.RED, Color(Color.RED) -> Color.RED
    if cls is datetime:
        return _to_datetime
    if cls is date:
        return _to_date
    if cls is time:
        return _to_time
    if cls is UUID:
        return _to_uuid
    if cls is Decimal:
        return _to_decimal
    if cls is bytes:
        return _to_bytes
    if cls is bytearray:
        return lambda value: bytearray(_to_bytes(value))
    if cls in (tuple, set, frozenset):
        return lambda value: cls(_as_sequence(value))
    if dataclasses.is_dataclass(cls):
        return _dataclass_converter(cls)
    model = pydantic_model_class()
    if model is not None and issubclass(cls, model):
        return cls.model_validate  # type: ignore[attr-defined,no-any-return]
    if issubclass(cls, tuple) and hasattr(cls, "_fields"):  # NamedTuple
        return _namedtuple_converter(cls)
    if issubclass(cls, (str, int, float)):
        return cls  # e.g. class UserId(str)
    return None


def _field_converters(cls: type) -> list[tuple[str, bool, _Converter | None]]:
    hints = get_type_hints(cls)
    return [
        (f.name, f.init, converter_for(hints.get(f.name, Any))) for f in dataclasses.fields(cls)
    ]


def _dataclass_converter(cls: type) -> _Converter:
    # Fields are resolved on first use, so a dataclass may refer to itself (a tree of nodes).
    plan: list[tuple[str, bool, _Converter | None]] | None = None

    def convert(value: Any) -> Any:
        nonlocal plan
        if isinstance(value, cls):
            return value
        if not isinstance(value, dict):
            return _fail(value, cls.__qualname__)
        if plan is None:
            plan = _field_converters(cls)
        kwargs = {}
        known = 0
        for name, init, field_converter in plan:
            if name in value:
                known += 1
                if init:
                    item = value[name]
                    kwargs[name] = item if field_converter is None else field_converter(item)
        if known != len(value):
            raise ValueError(f"unknown fields for {cls.__qualname__}")
        return cls(**kwargs)

    return convert


def _namedtuple_converter(cls: type) -> _Converter:
    plan: list[_Converter | None] | None = None

    def convert(value: Any) -> Any:
        nonlocal plan
        if isinstance(value, cls):
            return value
        items = _as_sequence(value)
        if plan is None:
            hints = get_type_hints(cls)
            plan = [converter_for(hints.get(name, Any)) for name in cls._fields]  # type: ignore[attr-defined]
        if len(items) != len(plan):
            raise ValueError(f"{cls.__qualname__} takes {len(plan)} items, got {len(items)}")
        return cls(*(x if c is None else c(x) for c, x in zip(plan, items, strict=True)))

    return convert


def _generic_converter(origin: Any, args: tuple[Any, ...]) -> _Converter | None:
    abc = collections.abc
    if origin in (list, abc.Sequence, abc.MutableSequence, abc.Collection, abc.Iterable):
        item = converter_for(args[0]) if args else None
        if item is None:
            return None
        return partial(_map_list, item)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            item = converter_for(args[0])
            if item is None:
                return lambda value: tuple(_as_sequence(value))
            items_of = partial(_map_list, item)
            return lambda value: tuple(items_of(value))
        if args == ((),):  # tuple[()] on Python 3.10
            args = ()
        items = [converter_for(a) for a in args]

        def convert_tuple(value: Any) -> tuple[Any, ...]:
            seq = _as_sequence(value)
            if len(seq) != len(items):
                raise ValueError(f"expected {len(items)} items, got {len(seq)}")
            return tuple([x if c is None else c(x) for c, x in zip(items, seq, strict=True)])

        return convert_tuple
    if origin in (set, frozenset, abc.Set, abc.MutableSet):
        make = frozenset if origin in (frozenset, abc.Set) else set
        item = converter_for(args[0]) if args else None
        if item is None:
            return lambda value: make(_as_sequence(value))
        items_of = partial(_map_list, item)
        return lambda value: make(items_of(value))
    if origin in (dict, abc.Mapping, abc.MutableMapping):
        key = _key_converter(args[0]) if args else None
        val = converter_for(args[1]) if len(args) > 1 else None
        if key is None and val is None:
            return None

        def convert_dict(value: Any) -> dict[Any, Any]:
            if not isinstance(value, dict):
                return _fail(value, "dict")  # type: ignore[no-any-return]
            return {
                k if key is None else key(k): v if val is None else val(v) for k, v in value.items()
            }

        return convert_dict
    if isinstance(origin, type):  # a generic dataclass or model, e.g. Page[Item]
        return _class_converter(origin)
    return None


def _key_converter(hint: Any) -> _Converter | None:
    """Like :func:`_converter`, but for JSON object keys, which are always strings."""
    hint = _unwrap(hint)
    if hint is int:
        return lambda key: key if type(key) is int else int(key)
    if hint is float:
        return float
    if hint is bool:
        flags = {"true": True, "false": False, True: True, False: False}
        return flags.__getitem__
    if isinstance(hint, type) and issubclass(hint, Enum):
        members: dict[Any, Enum] = {}
        for member in hint:
            members[member.value] = member
            members[_json_key(member.value)] = member
        return members.__getitem__
    return converter_for(hint)


def _literal_converter(args: tuple[Any, ...]) -> _Converter:
    # Keyed by (type, value) so that Literal[1] does not take True, and enums match by value.
    allowed = {}
    for arg in args:
        raw = arg.value if isinstance(arg, Enum) else arg
        allowed[type(raw), raw] = arg
        allowed[type(arg), arg] = arg

    def convert(value: Any) -> Any:
        try:
            return allowed[type(value), value]
        except (KeyError, TypeError):
            raise ValueError(f"value is not one of {args!r}") from None

    return convert


def _runtime_class(hint: Any) -> type | tuple[type, ...] | None:
    """The class a union member checks with ``isinstance``; ``None`` accepts anything."""
    hint = _unwrap(hint)
    cls = get_origin(hint) or hint
    if cls is float:
        return (int, float)
    if isinstance(cls, type) and cls is not object:
        return cls
    return None


def _union_converter(args: tuple[Any, ...]) -> _Converter | None:
    members = [a for a in args if a is not _NoneType]
    optional = len(members) != len(args)
    if len(members) == 1:
        inner = converter_for(members[0])
        if inner is None:
            return None
        return lambda value: None if value is None else inner(value)
    tries = [(_runtime_class(m), converter_for(m)) for m in members]
    if all(converter is None for _, converter in tries):
        return None

    def convert(value: Any) -> Any:
        if value is None and optional:
            return None
        for cls, converter in tries:
            if converter is None:
                if cls is None or isinstance(value, cls):
                    return value
                continue
            try:
                return converter(value)
            except Exception:  # a failed member means: try the next one
                continue
        raise ValueError(f"value of type {type_name(value)} matches no member of the union")

    return convert
