"""The :class:`Codec`: a value and its metadata to envelope bytes and back, composing the parts.

Nothing here knows of Redis or decorators; the Redis key and the kind are passed in, for
encryption's associated data. Writing runs serialize, compress, encrypt, frame, sign; reading
runs the same steps backwards, each refusing what it cannot vouch for, and follows invariant I7:

* the serializer is chosen by the id in the header, so a reader decodes what another
  configuration wrote (rolling deploys), except that the pickle family is decoded only when the
  payload is signed and its HMAC verifies with a configured key;
* with a signing key configured every payload written is signed and an unsigned one is refused;
  a signed payload read by a codec without keys is accepted unverified unless it is pickle;
* the HMAC (SHA-256, fixed by configuration, never read from the payload) is checked in constant
  time before anything is decrypted, decompressed or deserialized; decompression is bounded by
  ``max_decoded_bytes``;
* with encryption keys configured, the kinds in ``encrypt_kinds`` are sealed with AES-256-GCM
  (:mod:`.encryption`) after compression, when ``compress_encrypted`` allows it (ciphertext does
  not compress), and before signing (the MAC covers the ciphertext); an unencrypted entry of
  such a kind is refused (a downgrade), and nothing is decompressed or deserialized unless its
  GCM tag verified;
* :meth:`Codec.decode` raises :class:`~tta_cache.exceptions.DecodeError` and nothing else.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from tta_cache.exceptions import ConfigurationError, DecodeError, SerializationError

from .compression import Compression
from .encryption import (
    DEFAULT_ENCRYPT_KINDS,
    TAG_SIZE,
    EncryptionKeys,
    Encryptor,
    encryption_keys,
    sealed_key_id,
)
from .envelope import COMPRESSION_FLAGS, ENCRYPTED, SIGNED, Entry, pack, pack_head, unpack
from .registry import PICKLE_IDS, get_serializer, serializer_for_id, serializer_id
from .serializers import Serializer, type_name
from .signing import MAC_SIZE, KeyLike, signer_for
from .typed import typed_decoder

__all__ = ["Codec", "Sealing"]


@dataclasses.dataclass(frozen=True, slots=True)
class Sealing:
    """Which keys seal an envelope (see :meth:`Codec.reseal`)."""

    key_id: str | None
    """The encryption key id; None: not encrypted."""
    signing_key: int | None
    """The index of the signing key whose MAC verifies (0: the current one); None: unsigned."""


class Codec:
    """Encodes values with their metadata into envelopes and decodes them (see the module doc).

    ``serializer`` is a built-in name (``"json"``, ``"msgpack"``, ``"pickle"``, ``"cloudpickle"``),
    a registered custom name, or a :class:`Serializer` whose name is built-in or registered.
    ``compress_min_bytes``: compress payloads of at least this many bytes (``None``: never), and
    keep the compressed form only when it is smaller. ``compression``: ``"zlib"``, ``"zstd"``
    (needs ``zstandard``) or ``"none"``. ``signing_key``: one key, or several where the first signs
    and all verify (rotation); required by the pickle family; use at least 32 random bytes.
    ``max_decoded_bytes`` bounds the serialized payload: ``encode`` refuses a larger value and
    ``decode`` refuses to decompress past it. ``encryption_keys`` (``{key_id: 32-byte key}``,
    the first encrypts, all decrypt; see :func:`.encryption.encryption_keys` for the forms)
    turns on AES-256-GCM for ``encrypt_kinds`` (default ``("emotional", "therapeutic")``;
    ``"*"``: every kind), bound to ``namespace`` and each entry's Redis key and kind.
    Encrypted entries are not compressed unless ``compress_encrypted=True``: the length of a
    compressed secret stored beside text an attacker chooses leaks the secret to whoever sees
    the lengths (docs/security.md).
    """

    __slots__ = (
        "_compress_at",
        "_compress_sealed",
        "_compression",
        "_encryptor",
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
        encryption_keys: EncryptionKeys | None = None,
        encrypt_kinds: str | Iterable[str] | None = None,
        compress_encrypted: bool = False,
        namespace: str = "",
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
        self._encryptor = _encryptor(encryption_keys, encrypt_kinds, namespace)
        self._compress_sealed = compress_encrypted

    def __repr__(self) -> str:
        # Key ids and kinds only: never a key.
        signed = "unsigned" if self._signer is None else "signed"
        enc = self._encryptor
        if enc is None:
            return f"Codec({self.serializer_name!r}, {signed})"
        kinds = ",".join(enc.kinds)
        encrypted = f"encrypted {kinds} key {enc.current_key_id!r}"
        return f"Codec({self.serializer_name!r}, {signed}, {encrypted})"

    @property
    def encryptor(self) -> Encryptor | None:
        """The encryption in use (key ids, kinds), None without encryption keys."""
        return self._encryptor

    @property
    def signing_keys(self) -> int:
        """How many signing keys verify (the first signs); 0 without signing."""
        return 0 if self._signer is None else self._signer.key_count

    def encode(
        self,
        value: Any,
        *,
        stamp: Sequence[tuple[str, int]] = (),
        created: float = 0.0,
        fresh_until: float = 0.0,
        compute_time: float = 0.0,
        key: str = "",
        kind: str = "default",
    ) -> bytes:
        """The envelope for ``value`` and its metadata, to be stored under the Redis ``key``
        (bound into an encrypted entry with ``kind``).

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
        enc = self._encryptor
        sealed = enc is not None and enc.covers(kind)
        if (
            self._compress_at is not None
            and len(payload) >= self._compress_at
            and (self._compress_sealed or not sealed)
        ):
            payload, compressed = self._compression.compress(payload)
            flags |= compressed
        if sealed:
            assert enc is not None
            flags |= ENCRYPTED
            lead = enc.lead(kind)
            length = len(lead) + len(payload) + TAG_SIZE
            head = pack_head(
                self._serializer_id, flags, created, fresh_until, compute_time, stamp, length
            )
            body = enc.seal(head + lead, payload, key)
        else:
            body = pack(
                self._serializer_id, flags, created, fresh_until, compute_time, stamp, payload
            )
        signer = self._signer
        return body if signer is None else body + signer.sign(body)

    def decode(
        self, data: bytes, type_hint: Any = None, *, key: str = "", kind: str | None = None
    ) -> Entry:
        """The :class:`Entry` in an envelope read from the Redis ``key``, its value rebuilt as
        ``type_hint`` when given. ``kind``: the reader's kind (None: a reader that does not know
        it, which takes an encrypted entry's recorded kind, and refuses an unencrypted entry
        only when every kind is encrypted).

        Raises :class:`DecodeError`, and nothing else, for anything that is not an intact
        envelope this codec may read: corrupt, foreign, truncated, unknown version or serializer,
        unsigned while a key is configured, a bad HMAC, encrypted under an unknown key id or for
        another key, namespace or kind, a failed GCM tag, unencrypted while its kind is encrypted,
        a decompression bomb, a payload that does not parse, or a value that does not convert to
        ``type_hint`` (see :mod:`.typed`).
        """
        try:
            return self._decode(data, type_hint, key, kind)
        except DecodeError:
            raise
        except Exception as exc:
            # Only the type: messages such as pydantic's or msgspec's quote the (personal) data.
            raise DecodeError(f"cannot decode payload: {type(exc).__name__}") from exc

    def decode_many(
        self,
        raws: Sequence[bytes | None],
        type_hint: Any,
        keys: Sequence[str],
        kind: str | None,
        failed: Callable[[DecodeError], None],
    ) -> list[Entry | None]:
        """:meth:`decode` of each of ``raws`` (read from ``keys``, all of one ``type_hint`` and
        ``kind``) for a batch: None stays None, and an envelope that does not decode is None
        too, its :class:`DecodeError` handed to ``failed`` (never raised). The same checks as
        :meth:`decode`; what is common to the batch (the typed decoder, whether an entry may be
        plain) is looked up once, and a plain envelope of this codec's serializer is read
        inline: on a batch of 100 this is a third of the library's own work."""
        typed = None if type_hint is None else typed_decoder(type_hint)
        sid = self._serializer_id
        enc = self._encryptor
        load: Callable[[Any], Any] | None = None
        if self._signer is None and (enc is None or not enc.covers(kind)):  # plain allowed
            load = self._serializer.loads if typed is None else typed.readers.get(sid)
        out: list[Entry | None] = []
        append = out.append
        for raw, key in zip(raws, keys, strict=True):
            if raw is None:
                append(None)
                continue
            try:
                if load is not None and type(raw) is bytes:
                    frame = unpack(raw, MAC_SIZE)
                    if not frame[1] and frame[0] == sid:  # no flags: plain, our serializer
                        _, _, created, fresh_until, compute_time, stamp, start, end = frame
                        value = load(raw[start:end])
                        append(Entry(value, stamp, created, fresh_until, compute_time))
                        continue
                append(self._decode(raw, type_hint, key, kind))
            except DecodeError as exc:
                failed(exc)
                append(None)
            except Exception as exc:  # as decode(): the type only, never the data
                failed(DecodeError(f"cannot decode payload: {type(exc).__name__}"))
                append(None)
        return out

    def _decode(self, raw: object, type_hint: Any, key: str, kind: str | None) -> Entry:
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
        enc = self._encryptor
        if flags & ENCRYPTED:  # after the MAC, before all else
            if enc is None:
                raise DecodeError("payload is encrypted and this codec has no encryption keys")
            payload = enc.open(data, start, end, key, kind)
        elif enc is not None and enc.covers(kind):
            raise DecodeError(f"payload of kind {kind or '(any)'} is not encrypted, as it must be")
        else:
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

    def reseal(self, data: bytes, *, key: str) -> tuple[Sealing, bytes | None]:
        """Which keys seal ``data`` (read from the Redis ``key``) and, when those are not the
        current ones, the same entry sealed with the current encryption and signing keys (None:
        already current). What cannot be verified is never resealed: raises
        :class:`DecodeError` as :meth:`decode` does, and for a signed entry this codec cannot
        sign again. The value is not deserialized: only the sealing changes."""
        try:
            return self._reseal(data, key)
        except DecodeError:
            raise
        except Exception as exc:
            raise DecodeError(f"cannot reseal payload: {type(exc).__name__}") from exc

    def _reseal(self, data: bytes, key: str) -> tuple[Sealing, bytes | None]:
        recorded, flags, created, fresh_until, compute_time, stamp, start, end = unpack(
            data, MAC_SIZE
        )
        signer = self._signer
        index: int | None = None
        if flags & SIGNED:
            if signer is None:
                raise DecodeError("signed payload, and no signing key to sign it again")
            index = signer.verify(data, end)
        elif signer is not None:
            raise DecodeError("payload is not signed but a signing key is configured")
        enc = self._encryptor
        if not flags & ENCRYPTED:
            if index is None or index == 0:
                return Sealing(None, index), None
            body = data[:end]
        else:
            if enc is None:
                raise DecodeError("payload is encrypted and this codec has no encryption keys")
            key_id, kind, payload = enc.unseal(data, start, end, key)
            if key_id == enc.current_key_id and not index:
                return Sealing(key_id, index), None
            lead = enc.lead(kind)
            length = len(lead) + len(payload) + TAG_SIZE
            head = pack_head(recorded, flags, created, fresh_until, compute_time, stamp, length)
            body = enc.seal(head + lead, payload, key)
            sealing = Sealing(key_id, index)
            return sealing, body if signer is None else body + signer.sign(body)
        assert signer is not None
        return Sealing(None, index), body + signer.sign(body)

    @staticmethod
    def key_id_of(data: bytes) -> str | None:
        """The encryption key id recorded in an envelope, read without any key (None: not
        encrypted, or not an envelope): for reports of what a retired key still seals."""
        try:
            _, flags, _, _, _, _, start, _ = unpack(data, MAC_SIZE)
        except DecodeError:
            return None
        return sealed_key_id(data, start) if flags & ENCRYPTED else None


def _encryptor(
    keys: EncryptionKeys | None, kinds: str | Iterable[str] | None, namespace: str
) -> Encryptor | None:
    if keys is None:
        if kinds is not None:
            raise ConfigurationError("encrypt_kinds needs encryption_keys=...")
        return None
    return Encryptor(
        encryption_keys(keys), DEFAULT_ENCRYPT_KINDS if kinds is None else kinds, namespace
    )
