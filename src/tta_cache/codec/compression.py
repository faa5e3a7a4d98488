"""Compression of payloads: zlib or zstd above a size, and decompression bounded against bombs.

A payload is compressed when it is at least ``min_bytes`` long, and the compressed form is kept
only when it is smaller; the envelope's flags say which (if any) was used, so a reader
decompresses what any configuration wrote. Decompression never produces more than
``max_decoded`` bytes: a payload that would is a :class:`~tta_cache.exceptions.DecodeError`.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

from tta_cache.exceptions import ConfigurationError, DecodeError

from .envelope import ZLIB, ZSTD

__all__ = ["Compression"]


def _load_zstd(*, required: bool) -> Any:
    try:
        import zstandard
    except ImportError as exc:
        if required:
            raise ConfigurationError(
                "compression='zstd' needs zstandard: pip install zstandard"
            ) from exc
        return None
    return zstandard


class Compression:
    """How payloads are compressed when written, and decompressed (any flag) when read.

    ``compression``: ``"zlib"``, ``"zstd"`` (needs ``zstandard``) or ``"none"``;
    ``min_bytes``: compress payloads of at least this many bytes (``None``: never);
    ``max_decoded``: the most bytes a decompressed payload may have.
    """

    __slots__ = ("_compress", "_flag", "_max_decoded", "_zstd", "threshold")

    def __init__(self, compression: str, min_bytes: int | None, max_decoded: int) -> None:
        if min_bytes is not None and min_bytes < 0:
            raise ConfigurationError("compress_min_bytes must be >= 0 or None")
        self._max_decoded = max_decoded
        self._zstd: Any = None  # the zstandard module, imported when first needed
        self._compress: Callable[[bytes], bytes] | None
        if compression == "zlib":
            self._compress, self._flag = zlib.compress, ZLIB
        elif compression == "zstd":
            zstd = self._zstd = _load_zstd(required=True)
            # A ZstdCompressor must not be shared between threads, hence one per call.
            self._compress, self._flag = (
                lambda payload: zstd.ZstdCompressor().compress(payload),
                ZSTD,
            )
        elif compression == "none":
            self._compress, self._flag = None, 0
        else:
            raise ConfigurationError(
                f"compression must be 'zlib', 'zstd' or 'none', not {compression!r}"
            )
        if min_bytes is None:
            self._compress = None
        self.threshold: int | None = None if self._compress is None else min_bytes
        """Payloads of at least this many bytes are compressed; ``None``: none is."""

    def compress(self, payload: bytes) -> tuple[bytes, int]:
        """``payload`` compressed, and its flag; or as it was, and 0, if that is not smaller.

        Call it only for payloads of at least :attr:`threshold` bytes.
        """
        compress = self._compress
        if compress is None:
            return payload, 0
        packed = compress(payload)
        if len(packed) < len(payload):
            return packed, self._flag
        return payload, 0

    def decompress(self, payload: bytes, flags: int) -> bytes:
        """``payload`` as it was before :meth:`compress`, by the envelope's ``flags``."""
        if flags & ZLIB:
            return self._inflate(payload)
        if flags & ZSTD:
            return self._unzstd(payload)
        return payload

    def _inflate(self, payload: bytes) -> bytes:
        inflater = zlib.decompressobj()
        out = inflater.decompress(payload, self._max_decoded)
        if inflater.unconsumed_tail:
            raise DecodeError(f"payload inflates to more than {self._max_decoded} bytes")
        if not inflater.eof or inflater.unused_data:
            raise DecodeError("compressed payload is truncated or has trailing bytes")
        return out

    def _unzstd(self, payload: bytes) -> bytes:
        if self._zstd is None:
            self._zstd = _load_zstd(required=False)
            if self._zstd is None:
                raise DecodeError("payload is zstd-compressed but zstandard is not installed")
        # zstandard trusts a frame's declared content size over max_output_size, so check it.
        size = self._zstd.frame_content_size(payload)
        if size > self._max_decoded:
            raise DecodeError(f"payload inflates to more than {self._max_decoded} bytes")
        out: bytes = self._zstd.ZstdDecompressor().decompress(
            payload, max_output_size=self._max_decoded, allow_extra_data=False
        )
        return out
