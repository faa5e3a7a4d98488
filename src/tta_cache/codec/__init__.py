"""The codec layer: a value and its metadata to the bytes stored in Redis, and back.

Modules, one concern each:

* :mod:`.envelope` the byte layout (header, stamp, flags) and :class:`Entry`;
* :mod:`.serializers` the :class:`Serializer` protocol, the built-in serializers and the typed
  form JSON and msgpack values are written in; :mod:`.registry` the ids they are recorded under;
* :mod:`.typed` rebuilding a return annotation from a payload (msgspec; pydantic for its models);
* :mod:`.compression` zlib/zstd with bounded decompression; :mod:`.signing` HMAC-SHA256 with
  key rotation;
* :mod:`.codec` the :class:`Codec` that composes them.

Nothing here knows of Redis, keys or decorators.
"""

from .codec import Codec
from .envelope import Entry
from .registry import get_serializer, register_serializer
from .serializers import (
    CloudpickleSerializer,
    JsonSerializer,
    MsgpackSerializer,
    OrjsonSerializer,
    PickleSerializer,
    Serializer,
)

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
