"""Encryption at rest: AES-256-GCM per kind, the key id in the envelope, key rotation.

The first configured key encrypts, every configured key decrypts, so keys rotate as signing keys
do: prepend the new one, re-encrypt what the old one sealed (``tta-cache rotate-keys``), drop it.
When the envelope's ``ENCRYPTED`` flag is set its payload region is::

    size  field
    1     key id length n (1-32)
    n     key id (ASCII, [A-Za-z0-9_.-])
    1     kind length m (1-255)
    m     kind (ASCII), as the writer named it
    12    nonce (os.urandom, drawn for every write)
    ...   ciphertext of the payload (after compression)
    16    GCM tag

The associated data is every envelope byte before the ciphertext (header, stamp, key id, kind,
nonce) followed by the namespace and the Redis key, so a ciphertext copied under another key, into
another namespace, relabelled with another kind, or re-stamped with other tag versions or expiry
does not authenticate. A reader that knows the kind (every decorated function) also requires the
recorded kind to be its own. Nothing is decrypted unless its tag verifies (``cryptography``'s
AESGCM returns no plaintext otherwise); an unknown key id or a failed tag is a
:class:`~tta_cache.exceptions.DecodeError`, which the engine counts as a miss.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import struct
from collections.abc import Iterable, Mapping
from typing import Any

from tta_cache.exceptions import ConfigurationError, DecodeError

__all__ = [
    "DEFAULT_ENCRYPT_KINDS",
    "ENCRYPTION_KEYS_ENV",
    "KEY_SIZE",
    "NONCE_SIZE",
    "TAG_SIZE",
    "EncryptionKeys",
    "Encryptor",
    "encryption_keys",
    "generate_key",
    "keys_from_env",
    "sealed_key_id",
]

KEY_SIZE = 32  # AES-256
NONCE_SIZE = 12
TAG_SIZE = 16
DEFAULT_ENCRYPT_KINDS = ("emotional", "therapeutic")
"""The kinds encrypted once keys are configured and ``encrypt_kinds`` is not given."""
ENCRYPTION_KEYS_ENV = "TTA_CACHE_ENCRYPTION_KEYS"
"""Read by the default cache, the TTA facade and the CLI: ``id:base64,...`` (the first encrypts)."""

EncryptionKeys = Mapping[str, bytes | str] | str
"""``{key_id: key}`` (first encrypts; a key is 32 bytes, or their base64 text), or that mapping
written as ``"id:base64,id:base64"``."""

_KEY_ID = re.compile(r"[A-Za-z0-9_.\-]{1,32}")
_KIND = re.compile(r"[A-Za-z0-9_.\-]{1,255}")


def _key_bytes(key_id: str, key: object) -> bytes:
    if isinstance(key, str):
        text = key.strip()
        try:  # standard or URL-safe alphabet, padding optional
            raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
        except (binascii.Error, ValueError):
            raise ConfigurationError(f"encryption key {key_id!r} is not base64 text") from None
    elif isinstance(key, (bytes, bytearray, memoryview)):
        raw = bytes(key)
    else:
        raise ConfigurationError(
            f"encryption key {key_id!r} must be 32 bytes or their base64 text, "
            f"not {type(key).__name__}"
        )
    if len(raw) != KEY_SIZE:
        # The length is not secret; the key is never quoted.
        raise ConfigurationError(
            f"encryption key {key_id!r} is {len(raw)} bytes; AES-256 needs exactly {KEY_SIZE} "
            "(make one with `tta-cache keygen`)"
        )
    return raw


def encryption_keys(keys: EncryptionKeys) -> dict[str, bytes]:
    """``keys`` as an ordered ``{key_id: 32 bytes}`` (the first encrypts); raises
    :class:`ConfigurationError`, never quoting a key, for anything malformed."""
    if isinstance(keys, str):
        pairs: list[tuple[str, Any]] = []
        for item in keys.split(","):
            if not item.strip():
                continue
            key_id, sep, text = item.strip().partition(":")
            if not sep:
                raise ConfigurationError(
                    "encryption keys as text are 'id:base64' pairs separated by commas"
                )
            pairs.append((key_id.strip(), text))
    elif isinstance(keys, Mapping):
        pairs = list(keys.items())
    else:
        raise ConfigurationError(
            "encryption_keys must be a {key_id: key} mapping or 'id:base64,...' text"
        )
    out: dict[str, bytes] = {}
    for key_id, key in pairs:
        if not isinstance(key_id, str) or not _KEY_ID.fullmatch(key_id):
            raise ConfigurationError(
                f"encryption key id {key_id!r} must match [A-Za-z0-9_.-]{{1,32}}"
            )
        if key_id in out:
            raise ConfigurationError(f"encryption key id {key_id!r} is given twice")
        out[key_id] = _key_bytes(key_id, key)
    if not out:
        raise ConfigurationError("encryption_keys is empty")
    return out


def keys_from_env(name: str = ENCRYPTION_KEYS_ENV) -> dict[str, bytes] | None:
    """The keys in the environment variable ``name`` (``id:base64,...``), or None if unset."""
    text = os.environ.get(name, "").strip()
    return encryption_keys(text) if text else None


def generate_key() -> str:
    """A new random AES-256 key as base64 text (what ``tta-cache keygen`` prints)."""
    return base64.b64encode(os.urandom(KEY_SIZE)).decode()


def sealed_key_id(data: bytes, start: int) -> str | None:
    """The key id of the encrypted payload starting at ``data[start]`` (None if malformed);
    read without decrypting, for reports of what each key still seals."""
    try:
        n = data[start]
        key_id = data[start + 1 : start + 1 + n].decode("ascii")
    except (IndexError, UnicodeDecodeError):
        return None
    return key_id if _KEY_ID.fullmatch(key_id) else None


def _aesgcm() -> Any:
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError as exc:
        raise ConfigurationError(
            "encryption_keys needs the cryptography package: pip install 'tta-cache[crypto]'"
        ) from exc
    return AESGCM


class Encryptor:
    """Seals and opens payloads with AES-256-GCM (see the module doc).

    ``keys``: ``{key_id: 32 bytes}``, the first encrypts; ``kinds``: the kinds encrypted (``"*"``:
    every kind); ``namespace``: bound into every ciphertext with the Redis key.
    """

    __slots__ = (
        "_aeads",
        "_all",
        "_context",
        "_current",
        "_kind_bytes",
        "_kinds",
        "_leads",
        "current_key_id",
        "key_ids",
        "kinds",
    )

    def __init__(
        self, keys: Mapping[str, bytes], kinds: str | Iterable[str], namespace: str
    ) -> None:
        if not keys:
            raise ConfigurationError("an Encryptor needs at least one key")
        aesgcm = _aesgcm()
        self._aeads = {k.encode(): aesgcm(v) for k, v in keys.items()}
        current = next(iter(keys))
        self.current_key_id: str = current
        self.key_ids: tuple[str, ...] = tuple(keys)
        self._current = self._aeads[current.encode()]
        if isinstance(kinds, str):
            kinds = (kinds,)
        kinds = tuple(kinds)
        for kind in kinds:
            if kind != "*" and not (isinstance(kind, str) and _KIND.fullmatch(kind)):
                raise ConfigurationError(
                    f"encrypt_kinds: {kind!r} is not a kind (or '*' for every kind)"
                )
        self._all = "*" in kinds
        self._kinds = frozenset(k for k in kinds if k != "*")
        self.kinds: tuple[str, ...] = ("*",) if self._all else tuple(sorted(self._kinds))
        ns = namespace.encode()
        self._context = struct.pack("<H", len(ns)) + ns
        self._leads: dict[str, bytes] = {}  # kind -> key id and kind fields of the current key
        self._kind_bytes: dict[str, bytes] = {}

    def __repr__(self) -> str:
        return f"Encryptor(key_ids={list(self.key_ids)!r}, kinds={list(self.kinds)!r})"

    def covers(self, kind: str | None) -> bool:
        """Whether entries of ``kind`` are encrypted (None, a raw read that did not name its
        kind: only when every kind is)."""
        if self._all:
            return True
        return kind is not None and kind in self._kinds

    def lead(self, kind: str) -> bytes:
        """The fields before the ciphertext: key id, kind, and a fresh nonce."""
        lead = self._leads.get(kind)
        if lead is None:
            kid, k = self.current_key_id.encode(), kind.encode()
            if not _KIND.fullmatch(kind):
                raise ConfigurationError(f"kind {kind!r} cannot be recorded in an envelope")
            lead = self._leads[kind] = bytes((len(kid),)) + kid + bytes((len(k),)) + k
        return lead + os.urandom(NONCE_SIZE)

    def seal(self, prefix: bytes, payload: bytes, key: str) -> bytes:
        """``prefix`` (the envelope up to and including :meth:`lead`'s bytes) and the sealed
        ``payload``: ciphertext and tag."""
        nonce = prefix[-NONCE_SIZE:]
        ad = prefix + self._context + key.encode("utf-8", "surrogatepass")
        sealed: bytes = self._current.encrypt(nonce, payload, ad)
        return prefix + sealed

    def open(self, data: bytes, start: int, end: int, key: str, kind: str | None) -> bytes:
        """The payload sealed in ``data[start:end]`` for ``key``; ``kind`` (None: any) must be
        the recorded one. Raises :class:`DecodeError` unless the tag verifies."""
        return self._unseal(data, start, end, key, kind)[2]

    def unseal(self, data: bytes, start: int, end: int, key: str) -> tuple[str, str, bytes]:
        """:meth:`open` for any kind, also returning the key id and the recorded kind."""
        key_id, recorded, payload = self._unseal(data, start, end, key, None)
        return key_id.decode("ascii", "replace"), recorded.decode("ascii", "replace"), payload

    def _unseal(
        self, data: bytes, start: int, end: int, key: str, kind: str | None
    ) -> tuple[bytes, bytes, bytes]:
        pos = start
        try:
            n = data[pos]
            key_id = data[pos + 1 : pos + 1 + n]
            pos += 1 + n
            m = data[pos]
            recorded = data[pos + 1 : pos + 1 + m]
            pos += 1 + m
        except IndexError:
            raise DecodeError("encrypted payload is truncated") from None
        nonce = data[pos : pos + NONCE_SIZE]
        pos += NONCE_SIZE
        if pos + TAG_SIZE > end or not n or not m:
            raise DecodeError("encrypted payload is truncated")
        aead = self._aeads.get(key_id)
        if aead is None:
            raise DecodeError(f"payload is encrypted under an unknown key id {_shown(key_id)}")
        if kind is not None:
            expected = self._kind_bytes.get(kind)
            if expected is None:
                expected = self._kind_bytes[kind] = kind.encode()
            if recorded != expected:
                raise DecodeError(
                    f"payload was encrypted as kind {_shown(recorded)}, read as {kind!r}"
                )
        ad = data[:pos] + self._context + key.encode("utf-8", "surrogatepass")
        try:
            opened: bytes = aead.decrypt(nonce, data[pos:end], ad)
        except Exception:  # InvalidTag, or anything the backend raises: never the plaintext
            raise DecodeError("encrypted payload does not authenticate") from None
        return key_id, recorded, opened


def _shown(raw: bytes) -> str:
    """An id or kind read from a payload, safe to put in a log line."""
    text = raw.decode("ascii", "replace")
    return repr(text) if _KIND.fullmatch(text) else "(malformed)"
