"""Typed decoding: a JSON or msgpack payload rebuilt as the function's return annotation.

One :class:`TypedDecoder` per annotation, built on first use and kept. It holds msgspec decoders
(``msgspec.json.Decoder(type=...)``, ``msgspec.msgpack.Decoder(type=...)``) that read payload
bytes straight into dataclasses, NamedTuples, TypedDicts, enums, datetimes, dates, times, UUIDs,
Decimals, bytes, Literals, unions and containers of them (sets, frozensets and tuples included);
a value that another serializer loaded goes through ``msgspec.convert``. pydantic models,
wherever they appear, are built by their own ``model_validate`` from the decoded object, as
before; subclasses of str, int, float, dict and list are called with the decoded value.

What is not rebuilt, and what happens instead:

* annotations with nothing to rebuild (``Any``, ``object``, ``str``, ``int``, ``float``,
  ``bool``, ``None``, lists and str-keyed dicts of those, unions of them): the value is used
  as the serializer decoded it, unchecked (no decoder is built);
* unresolved annotations (a str, a ``ForwardRef``, a ``TypeVar``): used as decoded;
* a class msgspec does not know, as the whole annotation: used as decoded, with a warning
  (once per annotation);
* a union or a Literal msgspec refuses (two dataclasses, two str-like types, enum members in a
  Literal), as the whole annotation or a member of an Optional: tried member by member, in
  order, each member rebuilt on its own;
* anything else msgspec refuses (such a union inside a container or a dataclass, an annotation
  that does not resolve) and a value of an unknown class inside a type msgspec knows: a miss,
  with a warning, because a dict served where the caller expects an object would break it.

A value that does not fit the annotation (a missing field, a wrong type, a failing
``__post_init__``) raises; the codec turns that into a DecodeError, which is a counted miss.
Fields a dataclass does not declare are ignored (msgspec's rule; pydantic's default too), so
an entry written by a release with one more field is still read.
"""

from __future__ import annotations

import collections.abc
import logging
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Annotated, Any, ForwardRef, Literal, TypeVar, Union, get_args, get_origin

import msgspec
import msgspec.inspect as mi

from .registry import JSON_ID, MSGPACK_ID
from .serializers import pydantic_model_class, type_name

__all__ = ["TypedDecoder", "typed_decoder"]

log = logging.getLogger("tta_cache.codec")

_NoneType = type(None)
_BUILTIN_BASES = (str, int, float, dict, list)  # subclasses are called with the decoded value
# Nodes of msgspec's type tree that a decoded JSON value already is, unconverted.
_PLAIN = (
    mi.AnyType,
    mi.NoneType,
    mi.BoolType,
    mi.IntType,
    mi.FloatType,
    mi.StrType,
    mi.ListType,
    mi.UnionType,
    mi.Metadata,
)


@dataclass(frozen=True, slots=True)
class TypedDecoder:
    """How one annotation is rebuilt: from payload bytes, or from a value already loaded."""

    hint: Any
    readers: dict[int, Callable[[bytes], Any]]
    """Payload bytes to value, by serializer id, for the formats msgspec reads itself."""
    convert: Callable[[Any], Any]
    """A value another serializer loaded, to the value the annotation describes."""


_decoders: dict[Any, TypedDecoder | None] = {}


def typed_decoder(hint: Any) -> TypedDecoder | None:
    """The decoder for ``hint``, built once; ``None``: use the value as the serializer read it."""
    try:
        return _decoders[hint]
    except KeyError:
        pass
    except TypeError:  # unhashable, e.g. Annotated with a list in its metadata: built each time
        return _build(hint)
    return _decoders.setdefault(hint, _build(hint))


def _build(hint: Any) -> TypedDecoder | None:
    if hint is None or hint is _NoneType or hint is object:
        return None
    if isinstance(hint, (str, ForwardRef, TypeVar)):  # unresolved: nothing to rebuild into
        return None
    if get_origin(hint) is collections.abc.Iterable:  # msgspec knows Sequence, not Iterable
        (item,) = get_args(hint)
        hint = list[item]  # type: ignore[valid-type]
    try:
        info = mi.type_info(hint)
    except Exception as exc:  # msgspec refuses it (TypeError) or cannot resolve it (NameError)
        return _fallback(hint, exc)
    if isinstance(info, mi.CustomType) and not _hookable(info.cls):
        log.warning("values of %r are used as decoded: msgspec does not know the class", hint)
        return None
    plain, text_keys = _survey(info)
    if plain:
        return None
    try:
        from_json = msgspec.json.Decoder(hint, dec_hook=_dec_hook).decode
        from_msgpack = msgspec.msgpack.Decoder(hint, dec_hook=_dec_hook).decode
    except Exception as exc:
        return _fallback(hint, exc)
    readers: dict[int, Callable[[bytes], Any]] = {MSGPACK_ID: from_msgpack}
    # JSON writes bool and None keys as "true" and "null", which msgspec's JSON decoder does not
    # read back as bool or None; converting the parsed value without strictness does.
    strict = not text_keys
    if strict:
        readers[JSON_ID] = from_json

    def convert(value: Any) -> Any:
        return msgspec.convert(value, hint, strict=strict, dec_hook=_dec_hook)

    return TypedDecoder(hint, readers, convert)


def _dec_hook(cls: Any, obj: Any) -> Any:
    """Build what msgspec leaves to us; msgspec checks that the result is a ``cls``."""
    if cls is object:
        return obj
    model = pydantic_model_class()
    if model is not None and issubclass(cls, model):
        return cls.model_validate(obj)
    if issubclass(cls, _BUILTIN_BASES):
        return cls(obj)  # e.g. class UserId(str)
    # A class nobody can build from data (inside a type msgspec can): the entry is a miss.
    raise TypeError(f"{cls.__qualname__} cannot be rebuilt from decoded data")


def _hookable(cls: type) -> bool:
    model = pydantic_model_class()
    return (model is not None and issubclass(cls, model)) or issubclass(cls, _BUILTIN_BASES)


def _children(node: mi.Type) -> Iterator[mi.Type]:
    for name in ("type", "item_type", "key_type", "value_type"):
        child = getattr(node, name, None)
        if isinstance(child, mi.Type):
            yield child
    for name in ("types", "item_types"):
        yield from getattr(node, name, ())
    for field in getattr(node, "fields", ()):
        yield field.type


def _is_text_key(key: mi.Type) -> bool:
    if isinstance(key, (mi.BoolType, mi.NoneType)):
        return True
    if isinstance(key, mi.LiteralType):
        return any(v is None or isinstance(v, bool) for v in key.values)
    if isinstance(key, mi.UnionType):
        return any(_is_text_key(t) for t in key.types)
    return False


def _survey(info: mi.Type) -> tuple[bool, bool]:
    """What msgspec's tree for an annotation says: whether the decoded value needs nothing
    rebuilt, and whether a dict is keyed by bool or None."""
    plain, text_keys = True, False
    seen: set[int] = set()
    stack = [info]
    while stack:
        node = stack.pop()
        if id(node) in seen:  # a recursive dataclass refers to itself
            continue
        seen.add(id(node))
        if isinstance(node, mi.DictType):
            plain = plain and isinstance(node.key_type, (mi.StrType, mi.AnyType))
            text_keys = text_keys or _is_text_key(node.key_type)
        elif isinstance(node, mi.CustomType):
            plain = plain and node.cls is object  # object is Any
        elif not isinstance(node, _PLAIN):
            plain = False
        stack.extend(_children(node))
    return plain, text_keys


def _refused(hint: Any, reason: str) -> TypedDecoder:
    """A decoder that fails: serving a dict where the caller expects an object would break it."""
    log.warning("values of %r cannot be rebuilt, so they are misses (%s)", hint, reason)

    def convert(value: Any) -> Any:
        raise TypeError(f"{hint!r} cannot be rebuilt: {reason}")

    return TypedDecoder(hint, {}, convert)


def _unwrap(hint: Any) -> Any:
    """Strip Annotated and ``type`` aliases down to the type they stand for."""
    while True:
        if get_origin(hint) is Annotated:
            hint = get_args(hint)[0]
        elif type(hint).__name__ == "TypeAliasType":  # `type X = ...` (3.12)
            hint = hint.__value__
        else:
            return hint


def _fallback(hint: Any, exc: Exception) -> TypedDecoder | None:
    """A union or Literal msgspec refuses, rebuilt member by member; anything else refused."""
    bare = _unwrap(hint)
    origin = get_origin(bare)
    if origin is Union or origin is types.UnionType:
        return _union(hint, get_args(bare))
    if origin is Literal:
        return _literal(hint, get_args(bare))
    return _refused(hint, f"{type(exc).__name__}: {exc}")


def _runtime_class(hint: Any) -> type | tuple[type, ...] | None:
    """The class a union member checks with ``isinstance``; ``None`` accepts anything."""
    hint = _unwrap(hint)
    if hasattr(hint, "__supertype__"):  # typing.NewType
        return _runtime_class(hint.__supertype__)
    cls = get_origin(hint) or hint
    if cls is float:
        return (int, float)
    if isinstance(cls, type) and cls is not object:
        return cls
    return None


def _union(hint: Any, args: tuple[Any, ...]) -> TypedDecoder:
    members = [a for a in args if a is not _NoneType]
    optional = len(members) != len(args)
    tries = [(_runtime_class(m), typed_decoder(m)) for m in members]

    def convert(value: Any) -> Any:
        if value is None and optional:
            return None
        for cls, typed in tries:
            if typed is None:
                if cls is None or isinstance(value, cls):
                    return value
                continue
            try:
                return typed.convert(value)
            except Exception:  # a failed member means: try the next one
                continue
        raise ValueError(f"a {type_name(value)} matches no member of the union")

    return TypedDecoder(hint, {}, convert)


def _literal(hint: Any, args: tuple[Any, ...]) -> TypedDecoder:
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

    return TypedDecoder(hint, {}, convert)
