"""What the fuzzers check, shared by the hypothesis tests (``tests/test_fuzz.py``) and the atheris
target (``tests/fuzz/fuzz_codec.py``, run by ``nox -s fuzz``).

The envelope decoder must raise :class:`~tta_cache.exceptions.DecodeError` and nothing else for
any input; a codec that signs or encrypts must refuse every byte string but the envelope it
wrote, and must not unpickle, decompress or deserialize anything before the HMAC and the GCM tag
verified (spies count those calls). The key encoder must return a bounded text in the key
alphabet, or raise :class:`~tta_cache.exceptions.KeyEncodingError`.
"""

from __future__ import annotations

import dataclasses
import pickle
import re
from collections.abc import Callable
from typing import Any

from tta_cache.codec import Codec, serializers
from tta_cache.core.keys import MAX_ARGS_LEN, encode_args, escape
from tta_cache.exceptions import DecodeError, KeyEncodingError

__all__ = [
    "CONFIGS",
    "KEY",
    "KIND",
    "PROTECTED",
    "SERIALIZERS_MODULE",
    "Spies",
    "check_decode",
    "check_key_encoding",
    "mutate",
    "pickle_spy",
    "spied_codec",
]

SIGNING = b"fuzz-signing-key-0123456789abcdef"
ENCRYPTION = {"k2": bytes(range(32)), "k1": bytes(range(32, 64))}
KEY = "tta:emotional:fuzz.target:'u1"
KIND = "emotional"

CONFIGS: dict[str, dict[str, Any]] = {
    "plain json": {},
    "plain msgpack zstd": {"serializer": "msgpack", "compression": "zstd", "compress_min_bytes": 0},
    "signed json": {"signing_key": SIGNING, "compress_min_bytes": 0},
    "signed pickle": {"serializer": "pickle", "signing_key": SIGNING, "compress_min_bytes": 0},
    "encrypted json": {"encryption_keys": ENCRYPTION},
    "encrypted compressed": {
        "encryption_keys": ENCRYPTION,
        "compress_min_bytes": 0,
        "compress_encrypted": True,
    },
    "signed+encrypted pickle": {
        "serializer": "pickle",
        "signing_key": SIGNING,
        "encryption_keys": ENCRYPTION,
        "compress_min_bytes": 0,
        "compress_encrypted": True,
    },
}
PROTECTED = frozenset(n for n, o in CONFIGS.items() if "signing_key" in o or "encryption_keys" in o)
"""The configurations that must refuse every change to an envelope."""

# Key text: escaped user text, and the structural characters encode_args adds; never ':' (the
# separator), braces (a Cluster hash tag), '*' or '?' (SCAN globs), whitespace or non-ASCII.
_ARGS_ALPHABET = re.compile(r"[A-Za-z0-9_.\-@+/|~!$^&;%',()\[\]<>=#]*")


@dataclasses.dataclass
class Spies:
    """Calls that must not happen on a payload whose MAC or tag did not verify."""

    loads: int = 0
    decompress: int = 0
    unpickle: int = 0

    @property
    def calls(self) -> int:
        return self.loads + self.decompress + self.unpickle


class _SpySerializer:
    def __init__(self, inner: Any, spies: Spies) -> None:
        self.name = inner.name
        self._inner = inner
        self._spies = spies

    def dumps(self, value: Any) -> bytes:
        out: bytes = self._inner.dumps(value)
        return out

    def loads(self, data: bytes) -> Any:
        self._spies.loads += 1
        return self._inner.loads(data)


class _SpyCompression:
    def __init__(self, inner: Any, spies: Spies) -> None:
        self._inner = inner
        self._spies = spies
        self.threshold = inner.threshold

    def compress(self, payload: bytes) -> tuple[bytes, int]:
        out: tuple[bytes, int] = self._inner.compress(payload)
        return out

    def decompress(self, payload: bytes, flags: int) -> bytes:
        self._spies.decompress += 1
        out: bytes = self._inner.decompress(payload, flags)
        return out


class _SpyPickle:
    """Stands for the ``pickle`` module inside :mod:`tta_cache.codec.serializers`."""

    def __init__(self, spies: Spies) -> None:
        self._spies = spies
        self.dumps = pickle.dumps
        self.HIGHEST_PROTOCOL = pickle.HIGHEST_PROTOCOL

    def loads(self, data: bytes) -> Any:
        self._spies.unpickle += 1
        return pickle.loads(data)


def spied_codec(name: str, spies: Spies) -> Codec:
    """The codec of configuration ``name``, its serializer and decompression counted in
    ``spies`` (unpickling is counted by :func:`pickle_spy`, which the caller puts in place)."""
    codec = Codec(namespace="tta", **CONFIGS[name])
    codec._serializer = _SpySerializer(codec._serializer, spies)  # type: ignore[assignment]
    codec._compression = _SpyCompression(codec._compression, spies)  # type: ignore[assignment]
    return codec


def pickle_spy(spies: Spies) -> Any:
    """A stand-in for the ``pickle`` module of :mod:`tta_cache.codec.serializers` (assign it to
    ``serializers.pickle``, e.g. with ``monkeypatch.setattr``) counting loads in ``spies``."""
    return _SpyPickle(spies)


SERIALIZERS_MODULE = serializers


def mutate(data: bytes, ops: list[tuple[int, int, int]]) -> bytes:
    """``data`` changed by ``ops``: (what, where, byte) with what 0 flip bits, 1 set a byte,
    2 insert a byte, 3 delete a byte, 4 truncate, 5 append."""
    out = bytearray(data)
    for what, where, byte in ops:
        at = where % (len(out) + 1)
        kind = what % 6
        if kind == 0 and at < len(out):
            out[at] ^= byte or 1
        elif kind == 1 and at < len(out):
            out[at] = byte
        elif kind == 2:
            out.insert(at, byte)
        elif kind == 3 and at < len(out):
            del out[at]
        elif kind == 4:
            del out[at:]
        elif kind == 5:
            out.append(byte)
    return bytes(out)


def check_decode(
    codec: Codec, spies: Spies, data: bytes, *, original: bytes | None, protected: bool
) -> None:
    """Decode ``data``: a :class:`DecodeError` is fine, any other exception escapes (a crash);
    a protected codec accepts only ``original`` and calls no spy for anything else."""
    before = spies.calls
    try:
        codec.decode(data, key=KEY, kind=KIND)
    except DecodeError:
        pass
    else:
        if protected:
            assert data == original, "a protected codec accepted a changed envelope"
    if protected and data != original:
        assert spies.calls == before, "deserialized, decompressed or unpickled before verifying"


def check_key_encoding(values: tuple[Any, ...], encode: Callable[..., str] = encode_args) -> None:
    """Encode ``values``: a :class:`KeyEncodingError` is fine; otherwise the text is bounded
    and in the key alphabet, and encoding is deterministic."""
    try:
        text = encode(values)
    except KeyEncodingError:
        return
    assert len(text) <= MAX_ARGS_LEN or re.fullmatch(r"#[0-9a-f]{32}", text), text
    assert _ARGS_ALPHABET.fullmatch(text), text
    assert encode(values) == text
    for value in values:
        if isinstance(value, str):
            escaped = escape(value)
            assert re.fullmatch(r"(?:[A-Za-z0-9_.\-@+/|~!$^&;]|%[0-9A-F]{2})*", escaped)
