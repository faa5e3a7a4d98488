"""The codec layer: a value and its metadata to the bytes stored in Redis, and back.

Modules, one concern each:

* :mod:`.envelope` the byte layout (header, stamp, flags) and :class:`Entry`;
* :mod:`.serializers` the :class:`Serializer` protocol, the built-in serializers and the typed
  form JSON and msgpack values are written in; :mod:`.registry` the ids they are recorded under;
* :mod:`.typed` rebuilding a return annotation from a payload (msgspec; pydantic for its models);
* :mod:`.compression` zlib/zstd with bounded decompression; :mod:`.signing` HMAC-SHA256 with
  key rotation; :mod:`.encryption` AES-256-GCM per kind, with key ids and rotation;
* :mod:`.codec` the :class:`Codec` that composes them.

Nothing here knows of Redis or decorators (a Redis key is only bound into encrypted entries).
"""

from .codec import Codec, Sealing
from .encryption import (
    DEFAULT_ENCRYPT_KINDS,
    ENCRYPTION_KEYS_ENV,
    EncryptionKeys,
    Encryptor,
    encryption_keys,
    generate_key,
    keys_from_env,
)
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
from .signing import SIGNING_KEYS_ENV, signing_keys_from_env

__all__ = [
    "DEFAULT_ENCRYPT_KINDS",
    "ENCRYPTION_KEYS_ENV",
    "SIGNING_KEYS_ENV",
    "CloudpickleSerializer",
    "Codec",
    "EncryptionKeys",
    "Encryptor",
    "Entry",
    "JsonSerializer",
    "MsgpackSerializer",
    "OrjsonSerializer",
    "PickleSerializer",
    "Sealing",
    "Serializer",
    "encryption_keys",
    "generate_key",
    "get_serializer",
    "keys_from_env",
    "register_serializer",
    "signing_keys_from_env",
]
