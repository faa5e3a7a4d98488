"""The :class:`Codec`: a value and its metadata to envelope bytes and back, composing the parts.

Nothing here knows of Redis, keys or decorators. Writing runs serialize, compress, frame, sign;
reading runs the same steps backwards, each refusing what it cannot vouch for, and follows
invariant I7:

* the serializer is chosen by the id in the header, so a reader decodes what another
  configuration wrote (rolling deploys), except that the pickle family is decoded only when the
  payload is signed and its HMAC verifies with a configured key;
* with a signing key configured every payload written is signed and an unsigned one is refused;
  a signed payload read by a codec without keys is accepted unverified unless it is pickle;
* the HMAC (SHA-256, fixed by configuration, never read from the payload) is checked in constant
  time before anything is decompressed or deserialized; decompression is bounded by
  ``max_decoded_bytes``;
* :meth:`Codec.decode` raises :class:`~tta_cache.exceptions.DecodeError` and nothing else.

Encryption at rest, when it comes, is one more step beside signing: it seals the compressed
payload and sets the envelope's ``ENCRYPTED`` flag (reserved, see :mod:`.envelope`) in
:meth:`Codec.encode`, and opens it after the MAC is verified in :meth:`Codec._decode`. Until then
an encrypted payload is refused like any flag this codec cannot honour.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tta_cache.exceptions import ConfigurationError, DecodeError, SerializationError

from .compression import Compression
from .envelope import COMPRESSION_FLAGS, ENCRYPTED, SIGNED, Entry, pack, unpack
from .registry import PICKLE_IDS, get_serializer, serializer_for_id, serializer_id
from .serializers import Serializer, type_name
from .signing import MAC_SIZE, KeyLike, signer_for
from .typed import typed_decoder

__all__ = ["Codec"]


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
        "_compress_at",
        "_compression",
        "_flags",
        "_max_decoded",
        "_serializer",
        "_serializer_id",
        "_signer",
        "serializer_name",
    )

    def __init__(
        self,
        serializer: str | Serializer = "json",
        *,
        compress_min_bytes: int | None = 1024,
        compression: str = "zlib",
        signing_key: KeyLike | Sequence[KeyLike] | None = None,
        max_decoded_bytes: int = 64 * 2**20,
    ) -> None:
        self._serializer = get_serializer(serializer) if isinstance(serializer, str) else serializer
        self._serializer_id = serializer_id(self._serializer)
        self.serializer_name: str = self._serializer.name
        self._signer = signer_for(signing_key)
        if self._serializer_id in PICKLE_IDS and self._signer is None:
            raise ConfigurationError(
                f"the {self.serializer_name!r} serializer runs code from the payload when it "
                "decodes, so it needs signing_key=...: only entries signed with that key are read"
            )
        self._flags = 0 if self._signer is None else SIGNED
        if max_decoded_bytes <= 0:
            raise ConfigurationError("max_decoded_bytes must be > 0")
        self._max_decoded = max_decoded_bytes
        self._compression = Compression(compression, compress_min_bytes, max_decoded_bytes)
        self._compress_at = self._compression.threshold

    def __repr__(self) -> str:
        signed = "unsigned" if self._signer is None else "signed"
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
        not fit the envelope (over 65535 tags, a tag with NUL, a version outside int64).
        """
        try:
            payload = self._serializer.dumps(value)
        except SerializationError:
            raise
        except Exception as exc:
            raise SerializationError(
                f"cannot encode a value of type {type_name(value)} with the "
                f"{self.serializer_name!r} serializer: {exc}"
            ) from exc
        if len(payload) > self._max_decoded:
            raise SerializationError(
                f"a value of type {type_name(value)} serializes to {len(payload)} bytes, "
                f"more than max_decoded_bytes ({self._max_decoded})"
            )
        flags = self._flags
        if self._compress_at is not None and len(payload) >= self._compress_at:
            payload, compressed = self._compression.compress(payload)
            flags |= compressed
        # Encryption goes here: it seals the compressed payload (ciphertext does not compress).
        body = pack(self._serializer_id, flags, created, fresh_until, compute_time, stamp, payload)
        signer = self._signer
        return body if signer is None else body + signer.sign(body)

    def decode(self, data: bytes, type_hint: Any = None) -> Entry:
        """The :class:`Entry` in an envelope, its value rebuilt as ``type_hint`` when given.

        Raises :class:`DecodeError`, and nothing else, for anything that is not an intact
        envelope this codec may read: corrupt, foreign, truncated, unknown version or serializer,
        unsigned while a key is configured, a bad HMAC, a decompression bomb, a payload that does
        not parse, or a value that does not convert to ``type_hint`` (see :mod:`.typed`).
        """
        try:
            return self._decode(data, type_hint)
        except DecodeError:
            raise
        except Exception as exc:
            # Only the type: messages such as pydantic's or msgspec's quote the (personal) data.
            raise DecodeError(f"cannot decode payload: {type(exc).__name__}") from exc

    def _decode(self, raw: object, type_hint: Any) -> Entry:
        if isinstance(raw, bytes):
            data = raw
        elif isinstance(raw, (bytearray, memoryview)):
            data = bytes(raw)
        else:
            raise DecodeError(f"payload is {type_name(raw)}, not bytes")
        recorded, flags, created, fresh_until, compute_time, stamp, start, end = unpack(
            data, MAC_SIZE
        )
        signer = self._signer
        if flags & SIGNED:
            if signer is not None:
                signer.verify(data, end)
            elif recorded in PICKLE_IDS:
                raise DecodeError("pickle payloads are read only by a codec with a signing key")
        elif signer is not None:
            raise DecodeError("payload is not signed but a signing key is configured")
        elif recorded in PICKLE_IDS:
            raise DecodeError("refusing to unpickle an unsigned payload")
        if flags & ENCRYPTED:  # opened here once encryption exists: after the MAC, before all else
            raise DecodeError("payload is encrypted and this codec has no encryption keys")

        payload = data[start:end]
        if flags & COMPRESSION_FLAGS:
            payload = self._compression.decompress(payload, flags)
        if recorded == self._serializer_id:
            serializer = self._serializer
        else:
            serializer = serializer_for_id(recorded)
        typed = None if type_hint is None or recorded in PICKLE_IDS else typed_decoder(type_hint)
        if typed is None:
            value = serializer.loads(payload)
        else:
            read = typed.readers.get(recorded)
            value = read(payload) if read is not None else typed.convert(serializer.loads(payload))
        return Entry(value, stamp, created, fresh_until, compute_time)
