"""Serializers: the :class:`Serializer` protocol, the built-in ones, and the typed form they write.

JSON (and msgpack) values are written in a typed form that :mod:`.typed` rebuilds from the
function's return annotation: dataclasses and pydantic models as objects, enums as their value,
datetime/date/time as ISO 8601, UUID and Decimal as strings, sets and tuples as lists, bytes as
base64 in JSON (msgpack keeps them binary).

JSON object keys must be ``str``, ``int``, ``float``, ``bool``, ``None``, an enum of those,
``UUID`` or ``datetime``/``date``/``time``; non-str keys are written as their JSON text (``1``
becomes ``"1"``, ``True`` becomes ``"true"``) and converted back when the hint says so
(``dict[int, V]``, ``dict[UUID, V]``); other key types raise
:class:`~tta_cache.exceptions.SerializationError`. The standard-library and orjson serializers
write the same bytes, so either reads the other.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import pickle
import sys
from collections.abc import Callable
from datetime import date, datetime, time
from decimal import Decimal
from enum import Enum
from typing import Any, Protocol
from uuid import UUID

from tta_cache.exceptions import ConfigurationError

__all__ = [
    "CloudpickleSerializer",
    "JsonSerializer",
    "MsgpackSerializer",
    "OrjsonSerializer",
    "PickleSerializer",
    "Serializer",
    "pydantic_model_class",
    "type_name",
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


def type_name(obj: object) -> str:
    """The qualified name of ``obj``'s type, for error messages (never the value itself)."""
    cls = type(obj)
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )


def pydantic_model_class() -> type | None:
    """pydantic's ``BaseModel``, or ``None`` while pydantic has not been imported."""
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
    model = pydantic_model_class()
    if model is not None and isinstance(obj, model):
        return obj.model_dump(mode="json")  # type: ignore[attr-defined]
    raise TypeError(f"{type_name(obj)} is not serializable")


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
    raise TypeError(f"a dict key of type {type_name(key)} is not serializable")


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
