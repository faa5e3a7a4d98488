"""The serializer registry: the id each serializer is recorded under in an envelope.

Built-in ids: 1 json, 2 msgpack, 3 pickle, 4 cloudpickle; custom serializers take 64..254. A
reader picks the serializer by the id in the header, so every process that should read an
entry registers the same custom serializer under the same id.
"""

from __future__ import annotations

from collections.abc import Callable

from tta_cache.exceptions import ConfigurationError, DecodeError

from .serializers import (
    CloudpickleSerializer,
    JsonSerializer,
    MsgpackSerializer,
    OrjsonSerializer,
    PickleSerializer,
    Serializer,
)

__all__ = [
    "JSON_ID",
    "MSGPACK_ID",
    "PICKLE_IDS",
    "get_serializer",
    "register_serializer",
    "serializer_for_id",
    "serializer_id",
]


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
JSON_ID = 1
MSGPACK_ID = 2
_BUILTIN_IDS = {"json": JSON_ID, "msgpack": MSGPACK_ID, "pickle": 3, "cloudpickle": 4}
PICKLE_IDS = frozenset({3, 4})
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


def serializer_id(serializer: Serializer) -> int:
    """The id ``serializer`` is recorded under; ConfigurationError if it is not registered."""
    name = getattr(serializer, "name", None)
    if isinstance(name, str):
        if name in _BUILTIN_IDS:
            return _BUILTIN_IDS[name]
        if name in _custom_ids:
            return _custom_ids[name]
    raise ConfigurationError(
        f"serializer {name!r} is not registered: call register_serializer(serializer, id) first"
    )


def serializer_for_id(recorded: int) -> Serializer:
    """The serializer whose id an envelope records; DecodeError for an unknown id."""
    for name, builtin_id in _BUILTIN_IDS.items():
        if builtin_id == recorded:
            return get_serializer(name)
    serializer = _custom_by_id.get(recorded)
    if serializer is None:
        raise DecodeError(f"unknown serializer id {recorded}")
    return serializer
