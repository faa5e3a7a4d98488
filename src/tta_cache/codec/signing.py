"""Signing: an HMAC-SHA256 over the whole envelope, with key rotation (invariant I7).

The algorithm is fixed here, never read from the payload. The first key signs, every key
verifies, so keys rotate by prepending the new one, then dropping the old one once no entry
signed with it can still be read. The MAC is compared in constant time, and a caller checks it
before anything in the payload is decompressed or deserialized.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Sequence

from tta_cache.exceptions import ConfigurationError, DecodeError

__all__ = [
    "MAC_SIZE",
    "SIGNING_KEYS_ENV",
    "KeyLike",
    "Signer",
    "signer_for",
    "signing_keys_from_env",
]

MAC_SIZE = 32
KeyLike = bytes | str
SIGNING_KEYS_ENV = "TTA_CACHE_SIGNING_KEYS"
"""Read by the default cache, the TTA facade and the CLI: keys separated by commas (the first
signs), each used as its UTF-8 bytes, as a str ``signing_key`` is."""


def signing_keys_from_env(name: str = SIGNING_KEYS_ENV) -> list[str] | None:
    """The signing keys in the environment variable ``name``, or None if it is unset or empty."""
    keys = [k.strip() for k in os.environ.get(name, "").split(",") if k.strip()]
    return keys or None


def _signing_keys(signing_key: KeyLike | Sequence[KeyLike] | None) -> tuple[bytes, ...]:
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


def signer_for(signing_key: KeyLike | Sequence[KeyLike] | None) -> Signer | None:
    """The :class:`Signer` for ``signing_key`` (one key, or a list), ``None`` for no key.

    str keys are taken as UTF-8; raises :class:`ConfigurationError` for an empty key or list.
    """
    keys = _signing_keys(signing_key)
    return Signer(keys) if keys else None


class Signer:
    """Signs with the first of ``keys`` and verifies with any of them."""

    __slots__ = ("_macs",)

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ConfigurationError("a Signer needs at least one key")
        # Keyed HMAC states, copied per use: cheaper than setting the key up on every call.
        self._macs = tuple(hmac.new(k, digestmod=hashlib.sha256) for k in keys)

    def sign(self, body: bytes) -> bytes:
        """The MAC_SIZE-byte MAC of ``body`` under the first key."""
        mac = self._macs[0].copy()
        mac.update(body)
        return mac.digest()

    @property
    def key_count(self) -> int:
        """How many keys verify (the first of them signs)."""
        return len(self._macs)

    def verify(self, data: bytes, end: int) -> int:
        """Check that ``data[end:]`` is the MAC of ``data[:end]`` under one of the keys, and
        return that key's index (0: the signing key)."""
        body = memoryview(data)[:end]
        mac = data[end:]
        for index, keyed in enumerate(self._macs):
            computed = keyed.copy()
            computed.update(body)
            if hmac.compare_digest(computed.digest(), mac):
                return index
        raise DecodeError("payload signature does not verify")
