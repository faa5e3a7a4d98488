"""Rolling deploys: the envelope is byte-compatible with the codec of f6527d3, both ways.

Golden envelopes written by that codec (``tests/golden/``, see ``helpers.codec_cases``) are read
by today's, and today's writes the same bytes. Where git can show the old ``codecs.py``, every
value also goes both ways between a live old codec and today's, in every configuration.
"""

from __future__ import annotations

import base64
import json
import struct
import zlib
from types import ModuleType
from typing import Any

import pytest
import zstandard

from helpers.codec_cases import (
    COMBOS,
    GOLDEN,
    META,
    OLD_COMMIT,
    STAMP,
    TYPED_COMBOS,
    build,
    combo_id,
    old_codecs,
    typed_cases,
    untyped_values,
)
from tta_cache import codec as new
from tta_cache.codec import Entry

HEADER = struct.Struct("<2sBBBddfHI")  # the documented envelope header (v2)
ZLIB, ZSTD, SIGNED = 0x01, 0x02, 0x04
GOLDEN_ENVELOPES: dict[str, dict[str, str]] = json.loads(GOLDEN.read_text())
TYPED = typed_cases()
TYPED_IDS = [name for name, _, _ in TYPED]
PICKLES = ("pickle", "cloudpickle")


def golden(group: str, name: str) -> bytes:
    return base64.b64decode(GOLDEN_ENVELOPES[group][name])


def parts(data: bytes, signed: bool) -> tuple[Any, ...]:
    """An envelope's meaning: header fields but the payload length, stamp bytes, payload
    decompressed (compressors of other versions may pick other bytes for the same input)."""
    body = data[:-32] if signed else data
    *fields, count, length = HEADER.unpack_from(body)
    flags = fields[3]
    payload = body[len(body) - length :]
    if flags & ZLIB:
        payload = zlib.decompress(payload)
    elif flags & ZSTD:
        payload = zstandard.ZstdDecompressor().decompress(payload)
    return (*fields, count, body[HEADER.size : len(body) - length], payload)


@pytest.mark.parametrize("combo", COMBOS, ids=combo_id)
@pytest.mark.parametrize("name", ["plain", "large"])
def test_golden_envelopes_of_every_configuration_decode(
    combo: tuple[str, str, bool], name: str
) -> None:
    data = golden(combo_id(combo), name)
    value = untyped_values()[name]
    assert build(new, combo).decode(data) == Entry(value, STAMP, **META)
    _, compression, signed = combo
    flags = data[4]
    assert bool(flags & SIGNED) is signed
    if name == "large":  # so that both paths are proven
        assert bool(flags & (ZLIB | ZSTD)) is (compression != "none")


@pytest.mark.parametrize("combo", COMBOS, ids=combo_id)
@pytest.mark.parametrize("name", ["plain", "large"])
def test_we_write_what_the_old_codec_wrote(combo: tuple[str, str, bool], name: str) -> None:
    serializer, compression, signed = combo
    if serializer in PICKLES:
        pytest.skip("pickle's bytes depend on the Python version, not on the codec")
    ours = build(new, combo).encode(untyped_values()[name], stamp=STAMP, **META)
    theirs = golden(combo_id(combo), name)
    if compression == "none":
        assert ours == theirs
    assert parts(ours, signed) == parts(theirs, signed)


@pytest.mark.parametrize("combo", TYPED_COMBOS, ids=combo_id)
@pytest.mark.parametrize(("case", "hint", "value"), TYPED, ids=TYPED_IDS)
def test_golden_typed_envelopes_rebuild_their_annotation(
    combo: tuple[str, str, bool], case: str, hint: Any, value: Any
) -> None:
    codec = build(new, combo)
    theirs = golden(f"typed:{combo_id(combo)}", case)
    decoded = codec.decode(theirs, hint).value
    assert decoded == value
    assert type(decoded) is type(value)
    assert codec.encode(value) == theirs


# --- a live codec of f6527d3, where git can show it ---------------------------------------------


@pytest.fixture(scope="module")
def old() -> ModuleType:
    module = old_codecs()
    if module is None:
        pytest.skip(f"git cannot show {OLD_COMMIT}:src/tta_cache/codecs.py here")
    return module


def fields(entry: Any) -> tuple[Any, ...]:
    return (entry.value, entry.stamp, entry.created, entry.fresh_until, entry.compute_time)


@pytest.mark.parametrize("combo", COMBOS, ids=combo_id)
def test_old_and_new_codecs_read_each_other_in_every_configuration(
    old: ModuleType, combo: tuple[str, str, bool]
) -> None:
    ours, theirs = build(new, combo), build(old, combo)
    for value in untyped_values().values():
        expected = (value, STAMP, *META.values())
        assert fields(theirs.decode(ours.encode(value, stamp=STAMP, **META))) == expected
        assert fields(ours.decode(theirs.encode(value, stamp=STAMP, **META))) == expected


@pytest.mark.parametrize(
    "combo",
    [c for c in COMBOS if c[0] not in PICKLES and c[1] != "zstd"],
    ids=combo_id,
)
@pytest.mark.parametrize(("case", "hint", "value"), TYPED, ids=TYPED_IDS)
def test_old_and_new_codecs_read_each_others_typed_values(
    old: ModuleType, combo: tuple[str, str, bool], case: str, hint: Any, value: Any
) -> None:
    ours, theirs = build(new, combo), build(old, combo)
    written_by_us, written_by_them = ours.encode(value), theirs.encode(value)
    assert written_by_us == written_by_them
    decoded = ours.decode(written_by_them, hint).value
    assert decoded == value
    assert type(decoded) is type(value)
    # The old reader does with our bytes what it does with its own (the bytes are the same; this
    # also runs its decoder on every case, so a case it could not read would show here).
    assert theirs.decode(written_by_us, hint).value == theirs.decode(written_by_them, hint).value
