"""Codecs: turn a value and its metadata into the bytes stored in Redis, and back.

Nothing here knows of Redis, keys or decorators. A :class:`Codec` wraps a :class:`Serializer`
(``name``, ``dumps``, ``loads``) in a small binary envelope::

    offset  size  field
    0       2     magic b"\\xf7\\xcc"        (0xF7 never starts UTF-8 text, JSON, msgpack or pickle)
    2       1     format version (1)
    3       1     serializer id             1 json, 2 msgpack, 3 pickle, 4 cloudpickle, 64+ custom
    4       1     flags                     0x01 zlib, 0x02 zstd, 0x04 signed; other bits reserved
    5       8     created      f64          epoch seconds
    13      8     fresh_until  f64          epoch seconds (soft expiry)
    21      4     compute_time f32          seconds
    25      2     stamp count  u16
    27      8*n   stamp versions, n x i64   (only when the stamp count n > 0, like the next two)
    ...     4     stamp tags length u32
    ...     ...   stamp tags: UTF-8, joined by NUL (so a tag cannot contain NUL)
    ...     ...   payload (serialized value, maybe compressed)
    end-32  32    HMAC-SHA256 of every byte before it (only when signed)

All integers and floats are little-endian. Decoding follows invariant I7:

* the serializer is chosen by the id in the header, so a reader decodes what another
  configuration wrote (rolling deploys), except that the pickle family is decoded only when the
  payload is signed and its HMAC verifies with a configured key;
* with a signing key configured every payload written is signed and an unsigned one is refused;
  a signed payload read by a codec without keys is accepted unverified unless it is pickle;
* the HMAC (SHA-256, fixed by configuration, never read from the payload) is checked in constant
  time before anything is decompressed or deserialized; decompression is bounded by
  ``max_decoded_bytes``;
* :meth:`Codec.decode` raises :class:`~tta_cache.exceptions.DecodeError` and nothing else.

JSON (and msgpack) values are written in a typed form (dataclasses and pydantic models as
objects, enums as their value, datetime/date/time as ISO 8601, UUID and Decimal as strings,
sets and tuples as lists, bytes as base64 in JSON) and rebuilt on decode from ``type_hint``, the
function's return annotation, by a converter compiled once per annotation.

JSON object keys must be ``str``, ``int``, ``float``, ``bool``, ``None``, an enum of those,
``UUID`` or ``datetime``/``date``/``time``; non-str keys are written as their JSON text (``1``
becomes ``"1"``, ``True`` becomes ``"true"``) and converted back when the hint says so
(``dict[int, V]``, ``dict[UUID, V]``); other key types raise
:class:`~tta_cache.exceptions.SerializationError`.
"""

from __future__ import annotations

import base64
import collections.abc
import dataclasses
import hashlib
import hmac
import json
import pickle
import struct
import sys
import types
import zlib
from collections.abc import Callable, Sequence
from datetime import date, datetime, time
from decimal import Decimal
from enum import Enum
from functools import lru_cache, partial
from typing import (
    Annotated,
    Any,
    ForwardRef,
    Literal,
    Protocol,
    TypeVar,
    Union,
    get_args,
    get_origin,
    get_type_hints,
)
from uuid import UUID

from tta_cache.exceptions import ConfigurationError, DecodeError, SerializationError

__all__ = [
    "CloudpickleSerializer",
    "Codec",
    "Entry",
    "JsonSerializer",
    "MsgpackSerializer",
    "OrjsonSerializer",
    "PickleSerializer",
    "Serializer",
    "get_serializer",
    "register_serializer",
]


class Serializer(Protocol):
    """What a serializer is: a stable ``name`` and a pair of functions.

    Custom serializers implement this protocol and are registered with
    :func:`register_serializer` under an id, so that every process can decode what another wrote.
    ``loads`` may raise anything on bad input; the codec turns it into a ``DecodeError``.
    """

    name: str

    def dumps(self, value: Any) -> bytes:
        """Serialize ``value``; raise ``TypeError`` (or ``SerializationError``) if it cannot."""
        ...

    def loads(self, data: bytes) -> Any:
        """Deserialize bytes produced by :meth:`dumps`."""
        ...


@dataclasses.dataclass(slots=True)
class Entry:
    """A decoded envelope: the value and the metadata stored beside it."""

    value: Any
    stamp: tuple[tuple[str, int], ...]
    """(tag, version) pairs, in the order given to :meth:`Codec.encode`."""
    created: float
    """Epoch seconds (wall clock) when the value was computed."""
    fresh_until: float
    """Epoch seconds: the soft expiry."""
    compute_time: float
    """Seconds the computation took (XFetch's delta)."""


# --- typed encoding ---------------------------------------------------------------------------


def _type_name(obj: object) -> str:
    cls = type(obj)
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )


def _pydantic_model_class() -> type | None:
    # A pydantic model can only exist once pydantic is imported, so there is no need to import it.
    module = sys.modules.get("pydantic")
    base = getattr(module, "BaseModel", None)
    return base if isinstance(base, type) else None


def _encode_default(obj: Any) -> Any:
    """Turn a value the serializer does not know into one it does (orjson/msgpack ``default=``)."""
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if isinstance(obj, (datetime, date, time)):
        return obj.isoformat()
    if isinstance(obj, (UUID, Decimal)):
        return str(obj)
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return base64.b64encode(obj).decode("ascii")
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    model = _pydantic_model_class()
    if model is not None and isinstance(obj, model):
        return obj.model_dump(mode="json")  # type: ignore[attr-defined]
    raise TypeError(f"{_type_name(obj)} is not serializable")


def _json_key(key: Any) -> str:
    """A dict key as orjson's ``OPT_NON_STR_KEYS`` writes it."""
    if isinstance(key, Enum):
        key = key.value
    if isinstance(key, str):
        return str(key)
    if key is None or isinstance(key, bool):
        return json.dumps(key)
    if isinstance(key, int):
        return str(int(key))
    if isinstance(key, float):
        return float.__repr__(key)
    if isinstance(key, (datetime, date, time)):
        return key.isoformat()
    if isinstance(key, UUID):
        return str(key)
    raise TypeError(f"a dict key of type {_type_name(key)} is not serializable")


def _plain(obj: Any) -> Any:
    """``obj`` as JSON-native values only (the stdlib json path; orjson does this natively)."""
    cls = type(obj)
    if cls is str or cls is int or cls is float or cls is bool or obj is None:
        return obj
    if isinstance(obj, Enum):
        return _plain(obj.value)
    if isinstance(obj, dict):
        return {k if type(k) is str else _json_key(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(item) for item in obj]
    if isinstance(obj, (str, int, float)):
        return obj
    return _plain(_encode_default(obj))


class JsonSerializer:
    """JSON with the standard library only (the fallback when orjson is not installed).

    Writes the same JSON as :class:`OrjsonSerializer`, so either can read the other.
    """

    name = "json"

    def dumps(self, value: Any) -> bytes:
        """Serialize ``value`` in the typed JSON form (see the module docstring)."""
        return json.dumps(_plain(value), ensure_ascii=False, separators=(",", ":")).encode()

    def loads(self, data: bytes) -> Any:
        """Parse JSON bytes."""
        return json.loads(data)


class OrjsonSerializer:
    """JSON through orjson (the default ``"json"`` serializer when orjson is installed)."""

    name = "json"

    def __init__(self) -> None:
        try:
            import orjson
        except ImportError as exc:
            raise ConfigurationError("OrjsonSerializer needs orjson: pip install orjson") from exc
        self._dumps: Callable[..., bytes] = orjson.dumps
        self._non_str_keys = orjson.OPT_NON_STR_KEYS
        self.loads: Callable[[bytes], Any] = orjson.loads

    def dumps(self, value: Any) -> bytes:
        """Serialize ``value`` in the typed JSON form (see the module docstring)."""
        try:
            return self._dumps(value, default=_encode_default)
        except TypeError:
            # OPT_NON_STR_KEYS slows every dict down, so it is used only when a key needs it.
            return self._dumps(value, default=_encode_default, option=self._non_str_keys)


class MsgpackSerializer:
    """msgpack, with the same typed encoding as JSON (bytes stay binary)."""

    name = "msgpack"

    def __init__(self) -> None:
        try:
            import msgpack
        except ImportError as exc:
            raise ConfigurationError(
                "the msgpack serializer needs msgpack: pip install 'tta-cache[msgpack]'"
            ) from exc
        self._packb: Callable[..., bytes] = msgpack.packb
        self._unpackb: Callable[..., Any] = msgpack.unpackb

    def dumps(self, value: Any) -> bytes:
        """Serialize ``value``."""
        return self._packb(value, default=_encode_default, use_bin_type=True)

    def loads(self, data: bytes) -> Any:
        """Deserialize msgpack bytes (maps may have non-str keys)."""
        return self._unpackb(data, raw=False, strict_map_key=False)


class PickleSerializer:
    """pickle at the highest protocol. Decoding runs code: a Codec requires a signing key."""

    name = "pickle"

    def dumps(self, value: Any) -> bytes:
        """Pickle ``value``."""
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)

    def loads(self, data: bytes) -> Any:
        """Unpickle; only ever called on a payload whose HMAC verified."""
        return pickle.loads(data)


class CloudpickleSerializer(PickleSerializer):
    """cloudpickle (lambdas, local classes); read back with plain pickle."""

    name = "cloudpickle"

    def __init__(self) -> None:
        try:
            import cloudpickle
        except ImportError as exc:
            raise ConfigurationError("the cloudpickle serializer needs cloudpickle") from exc
        self._dumps: Callable[..., bytes] = cloudpickle.dumps

    def dumps(self, value: Any) -> bytes:
        """Pickle ``value`` with cloudpickle."""
        return self._dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


# --- serializer registry ----------------------------------------------------------------------


def _json_serializer() -> Serializer:
    try:
        return OrjsonSerializer()
    except ConfigurationError:
        return JsonSerializer()


_BUILTIN_FACTORIES: dict[str, Callable[[], Serializer]] = {
    "json": _json_serializer,
    "msgpack": MsgpackSerializer,
    "pickle": PickleSerializer,
    "cloudpickle": CloudpickleSerializer,
}
_BUILTIN_IDS = {"json": 1, "msgpack": 2, "pickle": 3, "cloudpickle": 4}
_PICKLE_IDS = frozenset({3, 4})
_CUSTOM_IDS = range(64, 255)

_instances: dict[str, Serializer] = {}  # built-in serializers, made on first use
_custom_by_id: dict[int, Serializer] = {}
_custom_ids: dict[str, int] = {}


def get_serializer(name: str) -> Serializer:
    """The serializer called ``name``: a built-in one or one given to :func:`register_serializer`.

    ``"json"`` uses orjson when it is installed and the standard library otherwise.
    Raises :class:`ConfigurationError` for an unknown name or a missing optional dependency.
    """
    serializer = _instances.get(name)
    if serializer is not None:
        return serializer
    factory = _BUILTIN_FACTORIES.get(name)
    if factory is not None:
        return _instances.setdefault(name, factory())
    if name in _custom_ids:
        return _custom_by_id[_custom_ids[name]]
    known = ", ".join(sorted([*_BUILTIN_FACTORIES, *_custom_ids]))
    raise ConfigurationError(f"unknown serializer {name!r}; known: {known}")


def register_serializer(serializer: Serializer, id: int) -> None:
    """Register a custom serializer under ``id`` (64..254), recorded in every envelope it writes.

    Every process that should read those entries registers the same serializer under the same
    id. Registering again with the same name and id replaces the instance.
    """
    name = getattr(serializer, "name", None)
    if not isinstance(name, str) or not name:
        raise ConfigurationError("a serializer needs a non-empty str `name`")
    if id not in _CUSTOM_IDS:
        raise ConfigurationError(f"custom serializer ids are 64..254, not {id!r}")
    if name in _BUILTIN_IDS:
        raise ConfigurationError(f"{name!r} is a built-in serializer name")
    if _custom_ids.get(name, id) != id:
        raise ConfigurationError(
            f"serializer {name!r} is already registered as {_custom_ids[name]}"
        )
    holder = _custom_by_id.get(id)
    if holder is not None and holder.name != name:
        raise ConfigurationError(f"serializer id {id} is already taken by {holder.name!r}")
    _custom_by_id[id] = serializer
    _custom_ids[name] = id


def _serializer_id(serializer: Serializer) -> int:
    name = getattr(serializer, "name", None)
    if isinstance(name, str):
        if name in _BUILTIN_IDS:
            return _BUILTIN_IDS[name]
        if name in _custom_ids:
            return _custom_ids[name]
    raise ConfigurationError(
        f"serializer {name!r} is not registered: call register_serializer(serializer, id) first"
    )


def _serializer_for_id(serializer_id: int) -> Serializer:
    for name, builtin_id in _BUILTIN_IDS.items():
        if builtin_id == serializer_id:
            return get_serializer(name)
    serializer = _custom_by_id.get(serializer_id)
    if serializer is None:
        raise DecodeError(f"unknown serializer id {serializer_id}")
    return serializer


# --- typed decoding ---------------------------------------------------------------------------

_Converter = Callable[[Any], Any]
_NoneType = type(None)
_converters: dict[Any, _Converter | None] = {}


def _converter(hint: Any) -> _Converter | None:
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
    raise TypeError(f"cannot convert {_type_name(value)} to {target}")


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
    model = _pydantic_model_class()
    if model is not None and issubclass(cls, model):
        return cls.model_validate  # type: ignore[attr-defined,no-any-return]
    if issubclass(cls, tuple) and hasattr(cls, "_fields"):  # NamedTuple
        return _namedtuple_converter(cls)
    if issubclass(cls, (str, int, float)):
        return cls  # e.g. class UserId(str)
    return None


def _field_converters(cls: type) -> list[tuple[str, bool, _Converter | None]]:
    hints = get_type_hints(cls)
    return [(f.name, f.init, _converter(hints.get(f.name, Any))) for f in dataclasses.fields(cls)]


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
            plan = [_converter(hints.get(name, Any)) for name in cls._fields]  # type: ignore[attr-defined]
        if len(items) != len(plan):
            raise ValueError(f"{cls.__qualname__} takes {len(plan)} items, got {len(items)}")
        return cls(*(x if c is None else c(x) for c, x in zip(plan, items, strict=True)))

    return convert


def _generic_converter(origin: Any, args: tuple[Any, ...]) -> _Converter | None:
    abc = collections.abc
    if origin in (list, abc.Sequence, abc.MutableSequence, abc.Collection, abc.Iterable):
        item = _converter(args[0]) if args else None
        if item is None:
            return None
        return partial(_map_list, item)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            item = _converter(args[0])
            if item is None:
                return lambda value: tuple(_as_sequence(value))
            items_of = partial(_map_list, item)
            return lambda value: tuple(items_of(value))
        if args == ((),):  # tuple[()] on Python 3.10
            args = ()
        items = [_converter(a) for a in args]

        def convert_tuple(value: Any) -> tuple[Any, ...]:
            seq = _as_sequence(value)
            if len(seq) != len(items):
                raise ValueError(f"expected {len(items)} items, got {len(seq)}")
            return tuple([x if c is None else c(x) for c, x in zip(items, seq, strict=True)])

        return convert_tuple
    if origin in (set, frozenset, abc.Set, abc.MutableSet):
        make = frozenset if origin in (frozenset, abc.Set) else set
        item = _converter(args[0]) if args else None
        if item is None:
            return lambda value: make(_as_sequence(value))
        items_of = partial(_map_list, item)
        return lambda value: make(items_of(value))
    if origin in (dict, abc.Mapping, abc.MutableMapping):
        key = _key_converter(args[0]) if args else None
        val = _converter(args[1]) if len(args) > 1 else None
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
    return _converter(hint)


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
        inner = _converter(members[0])
        if inner is None:
            return None
        return lambda value: None if value is None else inner(value)
    tries = [(_runtime_class(m), _converter(m)) for m in members]
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
        raise ValueError(f"value of type {_type_name(value)} matches no member of the union")

    return convert


# --- the envelope -----------------------------------------------------------------------------

_MAGIC = 0xCCF7  # b"\xf7\xcc" read as a little-endian u16
_VERSION = 2  # 2: the payload's length is in the header (a truncated payload is a miss)
_ZLIB = 0x01
_ZSTD = 0x02
_SIGNED = 0x04
_KNOWN_FLAGS = _ZLIB | _ZSTD | _SIGNED
_MAC_SIZE = 32

_HEADER = struct.Struct("<HBBBddfHI")


@lru_cache(maxsize=32)
def _stamp_struct(count: int) -> struct.Struct:
    """``count`` versions and the length of the tags block, read or written in one call."""
    return struct.Struct(f"<{count}qI")


_KeyLike = bytes | str


def _signing_keys(signing_key: _KeyLike | Sequence[_KeyLike] | None) -> tuple[bytes, ...]:
    if signing_key is None:
        return ()
    single = isinstance(signing_key, (str, bytes, bytearray, memoryview))
    keys = []
    for given in [signing_key] if single else list(signing_key):
        key = given.encode() if isinstance(given, str) else given
        if not isinstance(key, (bytes, bytearray, memoryview)) or not key:
            raise ConfigurationError(
                "signing_key must be non-empty bytes or str, or a list of them"
            )
        keys.append(bytes(key))
    if not keys:
        raise ConfigurationError("signing_key must be a key or a non-empty list of them")
    return tuple(keys)


def _pack_stamp(stamp: Sequence[tuple[str, int]]) -> bytes:
    tags, versions = zip(*stamp, strict=True)
    block = "\x00".join(tags).encode()
    if block.count(0) != len(tags) - 1:
        raise ValueError("a stamp tag contains NUL")
    return _stamp_struct(len(tags)).pack(*versions, len(block)) + block


# Parsed stamps by their bytes: the entries of one process carry few distinct stamps, and a
# lookup costs a fifth of parsing one.
_STAMPS: dict[bytes, tuple[tuple[str, int], ...]] = {}


def _unpack_stamp(data: bytes, end: int, count: int) -> tuple[tuple[str, int], ...]:
    """The stamp in ``data[_HEADER.size:end]``, which must hold exactly ``count`` tags."""
    counts = _stamp_struct(count)
    if _HEADER.size + counts.size > end:
        raise DecodeError("stamp is truncated")
    *versions, size = counts.unpack_from(data, _HEADER.size)
    if _HEADER.size + counts.size + size != end:
        raise DecodeError("stamp is truncated")
    tags = data[end - size : end].decode().split("\x00")
    if len(tags) != count:
        raise DecodeError("stamp tags do not match their count")
    stamp = tuple(zip(tags, versions, strict=True))
    if len(_STAMPS) >= 4096:
        _STAMPS.clear()
    _STAMPS[data[_HEADER.size : end]] = stamp
    return stamp


class Codec:
    """Encodes values with their metadata into envelopes and decodes them (see the module doc).

    ``serializer`` is a built-in name (``"json"``, ``"msgpack"``, ``"pickle"``, ``"cloudpickle"``),
    a registered custom name, or a :class:`Serializer` whose name is built-in or registered.
    ``compress_min_bytes``: compress payloads of at least this many bytes (``None``: never), and
    keep the compressed form only when it is smaller. ``compression``: ``"zlib"``, ``"zstd"``
    (needs ``zstandard``) or ``"none"``. ``signing_key``: one key, or several where the first signs
    and all verify (rotation); required by the pickle family; use at least 32 random bytes.
    ``max_decoded_bytes`` bounds the serialized payload: ``encode`` refuses a larger value and
    ``decode`` refuses to decompress past it.
    """

    __slots__ = (
        "_compress",
        "_compress_flag",
        "_compress_min",
        "_flags",
        "_macs",
        "_max_decoded",
        "_serializer",
        "_serializer_id",
        "_zstd",
        "serializer_name",
    )

    def __init__(
        self,
        serializer: str | Serializer = "json",
        *,
        compress_min_bytes: int | None = 1024,
        compression: str = "zlib",
        signing_key: _KeyLike | Sequence[_KeyLike] | None = None,
        max_decoded_bytes: int = 64 * 2**20,
    ) -> None:
        self._serializer = get_serializer(serializer) if isinstance(serializer, str) else serializer
        self._serializer_id = _serializer_id(self._serializer)
        self.serializer_name: str = self._serializer.name
        # Keyed HMAC states, copied per use: cheaper than setting the key up on every call.
        self._macs = tuple(
            hmac.new(k, digestmod=hashlib.sha256) for k in _signing_keys(signing_key)
        )
        if self._serializer_id in _PICKLE_IDS and not self._macs:
            raise ConfigurationError(
                f"the {self.serializer_name!r} serializer runs code from the payload when it "
                "decodes, so it needs signing_key=...: only entries signed with that key are read"
            )
        self._flags = _SIGNED if self._macs else 0
        if compress_min_bytes is not None and compress_min_bytes < 0:
            raise ConfigurationError("compress_min_bytes must be >= 0 or None")
        if max_decoded_bytes <= 0:
            raise ConfigurationError("max_decoded_bytes must be > 0")
        self._max_decoded = max_decoded_bytes
        self._zstd: Any = None  # the zstandard module, imported when first needed
        self._compress: Callable[[bytes], bytes] | None
        if compression == "zlib":
            self._compress, self._compress_flag = zlib.compress, _ZLIB
        elif compression == "zstd":
            zstd = self._zstd = _load_zstd(required=True)
            # A ZstdCompressor must not be shared between threads, hence one per call.
            self._compress, self._compress_flag = (
                lambda payload: zstd.ZstdCompressor().compress(payload),
                _ZSTD,
            )
        elif compression == "none":
            self._compress, self._compress_flag = None, 0
        else:
            raise ConfigurationError(
                f"compression must be 'zlib', 'zstd' or 'none', not {compression!r}"
            )
        if compress_min_bytes is None:
            self._compress = None
        self._compress_min = compress_min_bytes or 0

    def __repr__(self) -> str:
        signed = "signed" if self._macs else "unsigned"
        return f"Codec({self.serializer_name!r}, {signed})"

    def encode(
        self,
        value: Any,
        *,
        stamp: Sequence[tuple[str, int]] = (),
        created: float = 0.0,
        fresh_until: float = 0.0,
        compute_time: float = 0.0,
    ) -> bytes:
        """The envelope for ``value`` and its metadata.

        Raises :class:`SerializationError`, naming the value's type, when the serializer cannot
        encode it, when it serializes to more than ``max_decoded_bytes``, or when the stamp does
        not fit the envelope (a tag over 65535 UTF-8 bytes, a version outside int64).
        """
        try:
            payload = self._serializer.dumps(value)
        except SerializationError:
            raise
        except Exception as exc:
            raise SerializationError(
                f"cannot encode a value of type {_type_name(value)} with the "
                f"{self.serializer_name!r} serializer: {exc}"
            ) from exc
        if len(payload) > self._max_decoded:
            raise SerializationError(
                f"a value of type {_type_name(value)} serializes to {len(payload)} bytes, "
                f"more than max_decoded_bytes ({self._max_decoded})"
            )
        flags = self._flags
        compress = self._compress
        if compress is not None and len(payload) >= self._compress_min:
            packed = compress(payload)
            if len(packed) < len(payload):
                payload = packed
                flags |= self._compress_flag
        try:
            header = _HEADER.pack(
                _MAGIC,
                _VERSION,
                self._serializer_id,
                flags,
                created,
                fresh_until,
                compute_time,
                len(stamp),
                len(payload),
            )
            body = b"".join((header, _pack_stamp(stamp), payload)) if stamp else header + payload
        except (struct.error, ValueError, TypeError) as exc:
            raise SerializationError(
                f"the stamp or metadata does not fit the envelope: {exc}"
            ) from exc
        if not self._macs:
            return body
        mac = self._macs[0].copy()
        mac.update(body)
        return body + mac.digest()

    def decode(self, data: bytes, type_hint: Any = None) -> Entry:
        """The :class:`Entry` in an envelope, its value rebuilt as ``type_hint`` when given.

        Raises :class:`DecodeError`, and nothing else, for anything that is not an intact
        envelope this codec may read: corrupt, foreign, truncated, unknown version or serializer,
        unsigned while a key is configured, a bad HMAC, a decompression bomb, a payload that does
        not parse, or a value that does not convert to ``type_hint``.
        """
        try:
            return self._decode(data, type_hint)
        except DecodeError:
            raise
        except Exception as exc:
            # Only the type: messages such as pydantic's quote the (personal) data.
            raise DecodeError(f"cannot decode payload: {type(exc).__name__}") from exc

    def _decode(self, raw: object, type_hint: Any) -> Entry:
        if isinstance(raw, bytes):
            data = raw
        elif isinstance(raw, (bytearray, memoryview)):
            data = bytes(raw)
        else:
            raise DecodeError(f"payload is {_type_name(raw)}, not bytes")
        end = len(data)
        if end < _HEADER.size:
            raise DecodeError("payload is shorter than the envelope header")
        (
            magic,
            version,
            serializer_id,
            flags,
            created,
            fresh_until,
            compute_time,
            count,
            length,
        ) = _HEADER.unpack_from(data)
        if magic != _MAGIC:
            raise DecodeError("payload is not a tta-cache envelope")
        if version != _VERSION:
            raise DecodeError(f"unknown envelope format version {version}")
        if flags & ~_KNOWN_FLAGS or (flags & _ZLIB and flags & _ZSTD):
            raise DecodeError(f"unknown envelope flags {flags:#04x}")
        if flags & _SIGNED:
            end -= _MAC_SIZE
            if end < _HEADER.size:
                raise DecodeError("signed payload is truncated")
            if self._macs:
                self._verify(data, end)
            elif serializer_id in _PICKLE_IDS:
                raise DecodeError("pickle payloads are read only by a codec with a signing key")
        elif self._macs:
            raise DecodeError("payload is not signed but a signing key is configured")
        elif serializer_id in _PICKLE_IDS:
            raise DecodeError("refusing to unpickle an unsigned payload")

        offset = end - length
        if offset < _HEADER.size:
            raise DecodeError("payload is truncated or padded")
        stamp: tuple[tuple[str, int], ...] = ()
        if count:
            stamp = _STAMPS.get(data[_HEADER.size : offset], ())
            if len(stamp) != count:
                stamp = _unpack_stamp(data, offset, count)
        elif offset != _HEADER.size:
            raise DecodeError("payload is truncated or padded")
        payload = data[offset:end]
        if flags & _ZLIB:
            payload = self._inflate(payload)
        elif flags & _ZSTD:
            payload = self._unzstd(payload)
        if serializer_id == self._serializer_id:
            serializer = self._serializer
        else:
            serializer = _serializer_for_id(serializer_id)
        value = serializer.loads(payload)
        if type_hint is not None and serializer_id not in _PICKLE_IDS:
            converter = _converter(type_hint)
            if converter is not None:
                value = converter(value)
        return Entry(value, stamp, created, fresh_until, compute_time)

    def _verify(self, data: bytes, end: int) -> None:
        body = memoryview(data)[:end]
        mac = data[end:]
        for keyed in self._macs:
            computed = keyed.copy()
            computed.update(body)
            if hmac.compare_digest(computed.digest(), mac):
                return
        raise DecodeError("payload signature does not verify")

    def _inflate(self, payload: bytes) -> bytes:
        inflater = zlib.decompressobj()
        out = inflater.decompress(payload, self._max_decoded)
        if inflater.unconsumed_tail:
            raise DecodeError(f"payload inflates to more than {self._max_decoded} bytes")
        if not inflater.eof or inflater.unused_data:
            raise DecodeError("compressed payload is truncated or has trailing bytes")
        return out

    def _unzstd(self, payload: bytes) -> bytes:
        if self._zstd is None:
            self._zstd = _load_zstd(required=False)
            if self._zstd is None:
                raise DecodeError("payload is zstd-compressed but zstandard is not installed")
        # zstandard trusts a frame's declared content size over max_output_size, so check it.
        size = self._zstd.frame_content_size(payload)
        if size > self._max_decoded:
            raise DecodeError(f"payload inflates to more than {self._max_decoded} bytes")
        out: bytes = self._zstd.ZstdDecompressor().decompress(
            payload, max_output_size=self._max_decoded, allow_extra_data=False
        )
        return out


def _load_zstd(*, required: bool) -> Any:
    try:
        import zstandard
    except ImportError as exc:
        if required:
            raise ConfigurationError(
                "compression='zstd' needs zstandard: pip install zstandard"
            ) from exc
        return None
    return zstandard
