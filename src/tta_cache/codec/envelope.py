"""The envelope: the byte layout of a stored entry, and :class:`Entry`, what it decodes to.

Nothing here serializes, compresses or signs: it packs and parses the frame around a payload::

    offset  size  field
    0       2     magic b"\\xf7\\xcc"        (0xF7 never starts UTF-8 text, JSON, msgpack or pickle)
    2       1     format version (2)
    3       1     serializer id             1 json, 2 msgpack, 3 pickle, 4 cloudpickle, 64+ custom
    4       1     flags                     0x01 zlib, 0x02 zstd, 0x04 signed, 0x08 encrypted
    5       8     created      f64          epoch seconds
    13      8     fresh_until  f64          epoch seconds (soft expiry)
    21      4     compute_time f32          seconds
    25      2     stamp count  u16
    27      4     payload length u32
    31      8*n   stamp versions, n x i64   (only when the stamp count n > 0, like the next two)
    ...     4     stamp tags length u32
    ...     ...   stamp tags: UTF-8, joined by NUL (so a tag cannot contain NUL)
    ...     ...   payload (serialized value, maybe compressed; when encrypted, the sealed
                  block of :mod:`.encryption`: key id, kind, nonce, ciphertext, GCM tag)
    end-32  32    HMAC-SHA256 of every byte before it (only when signed)

All integers and floats are little-endian. Format 1 (without the payload length) is no longer
read. A reader without encryption keys refuses a payload with the ``encrypted`` bit; other flag
bits are refused.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from tta_cache.exceptions import DecodeError, SerializationError

__all__ = [
    "COMPRESSION_FLAGS",
    "DEFINED_FLAGS",
    "ENCRYPTED",
    "HEADER",
    "SIGNED",
    "ZLIB",
    "ZSTD",
    "Entry",
    "Frame",
    "pack",
    "pack_head",
    "unpack",
]

_MAGIC = 0xCCF7  # b"\xf7\xcc" read as a little-endian u16
_VERSION = 2  # 2: the payload's length is in the header (a truncated payload is a miss)

ZLIB = 0x01
ZSTD = 0x02
SIGNED = 0x04
ENCRYPTED = 0x08
COMPRESSION_FLAGS = ZLIB | ZSTD
DEFINED_FLAGS = ZLIB | ZSTD | SIGNED | ENCRYPTED

HEADER = struct.Struct("<HBBBddfHI")
_HEADER_SIZE = HEADER.size
_read_header = HEADER.unpack_from


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


Frame = tuple[int, int, float, float, float, tuple[tuple[str, int], ...], int, int]
"""What :func:`unpack` returns: ``(serializer_id, flags, created, fresh_until, compute_time,
stamp, start, end)``; the payload is ``data[start:end]``, the MAC (when signed) ``data[end:]``.
A plain tuple: this is on every read's path."""


@lru_cache(maxsize=32)
def _stamp_struct(count: int) -> struct.Struct:
    """``count`` versions and the length of the tags block, read or written in one call."""
    return struct.Struct(f"<{count}qI")


# Packed stamps by their value: the fills of one batch, or of one process, share few stamps.
_PACKED: dict[Any, bytes] = {}


def _pack_stamp(stamp: Sequence[tuple[str, int]]) -> bytes:
    try:
        return _PACKED[stamp]
    except KeyError:
        pass
    except TypeError:  # a list: not kept
        return _pack_stamp_fresh(stamp)
    packed = _pack_stamp_fresh(stamp)
    if len(_PACKED) >= 4096:
        _PACKED.clear()
    _PACKED[stamp] = packed
    return packed


def _pack_stamp_fresh(stamp: Sequence[tuple[str, int]]) -> bytes:
    tags, versions = zip(*stamp, strict=True)
    block = "\x00".join(tags).encode()
    if block.count(0) != len(tags) - 1:
        raise ValueError("a stamp tag contains NUL")
    return _stamp_struct(len(tags)).pack(*versions, len(block)) + block


def pack_head(  # noqa: PLR0917 - positional: keyword passing costs on every write
    serializer_id: int,
    flags: int,
    created: float,
    fresh_until: float,
    compute_time: float,
    stamp: Sequence[tuple[str, int]],
    length: int,
) -> bytes:
    """The envelope's bytes before a payload of ``length`` bytes: the header and the stamp.

    Raises :class:`SerializationError` when the stamp or a header field does not fit (a tag
    with NUL or over the u32 block, a version outside int64, a payload over 4 GiB).
    """
    try:
        header = HEADER.pack(
            _MAGIC,
            _VERSION,
            serializer_id,
            flags,
            created,
            fresh_until,
            compute_time,
            len(stamp),
            length,
        )
        return header + _pack_stamp(stamp) if stamp else header
    except (struct.error, ValueError, TypeError) as exc:
        raise SerializationError(f"the stamp or metadata does not fit the envelope: {exc}") from exc


def pack(  # noqa: PLR0917 - positional: keyword passing costs on every write
    serializer_id: int,
    flags: int,
    created: float,
    fresh_until: float,
    compute_time: float,
    stamp: Sequence[tuple[str, int]],
    payload: bytes,
) -> bytes:
    """The envelope without its MAC (the signer appends it to these bytes); raises as
    :func:`pack_head` does."""
    head = pack_head(serializer_id, flags, created, fresh_until, compute_time, stamp, len(payload))
    return head + payload


# Parsed stamps by their bytes: the entries of one process carry few distinct stamps, and a
# lookup costs a fifth of parsing one.
_STAMPS: dict[bytes, tuple[tuple[str, int], ...]] = {}


def _unpack_stamp(data: bytes, end: int, count: int) -> tuple[tuple[str, int], ...]:
    """The stamp in ``data[HEADER.size:end]``, which must hold exactly ``count`` tags."""
    counts = _stamp_struct(count)
    if _HEADER_SIZE + counts.size > end:
        raise DecodeError("stamp is truncated")
    *versions, size = counts.unpack_from(data, _HEADER_SIZE)
    if _HEADER_SIZE + counts.size + size != end:
        raise DecodeError("stamp is truncated")
    tags = data[end - size : end].decode().split("\x00")
    if len(tags) != count:
        raise DecodeError("stamp tags do not match their count")
    stamp = tuple(zip(tags, versions, strict=True))
    if len(_STAMPS) >= 4096:
        _STAMPS.clear()
    _STAMPS[data[_HEADER_SIZE:end]] = stamp
    return stamp


def unpack(data: bytes, mac_size: int) -> Frame:
    """The :data:`Frame` of ``data``; a signed envelope ends with ``mac_size`` bytes of MAC.

    Checks the magic, the format version, the flags (defined bits only, at most one
    compression) and that the stamp and payload fill the envelope exactly; raises
    :class:`DecodeError` otherwise. The MAC is the caller's to verify, before it decompresses
    or deserializes the payload.
    """
    end = len(data)
    if end < _HEADER_SIZE:
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
    ) = _read_header(data)
    if magic != _MAGIC:
        raise DecodeError("payload is not a tta-cache envelope")
    if version != _VERSION:
        raise DecodeError(f"unknown envelope format version {version}")
    if flags & ~DEFINED_FLAGS or (flags & ZLIB and flags & ZSTD):
        raise DecodeError(f"unknown envelope flags {flags:#04x}")
    if flags & SIGNED:
        end -= mac_size
        if end < _HEADER_SIZE:
            raise DecodeError("signed payload is truncated")
    start = end - length
    if start < _HEADER_SIZE:
        raise DecodeError("payload is truncated or padded")
    stamp: tuple[tuple[str, int], ...] = ()
    if count:
        stamp = _STAMPS.get(data[_HEADER_SIZE:start], ())
        if len(stamp) != count:
            stamp = _unpack_stamp(data, start, count)
    elif start != _HEADER_SIZE:
        raise DecodeError("payload is truncated or padded")
    return serializer_id, flags, created, fresh_until, compute_time, stamp, start, end
