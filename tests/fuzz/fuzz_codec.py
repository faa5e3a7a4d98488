"""The atheris target: the envelope decoder and the key encoder under coverage-guided fuzzing.

Run by ``nox -s fuzz`` (``nox -s fuzz -- 10`` for ten minutes), or directly::

    PYTHONPATH=src:tests python tests/fuzz/fuzz_codec.py -max_total_time=60

Each input picks a codec configuration and either decodes its bytes raw or mutates a genuine
envelope with them, and feeds the key encoder values built from them; the checks are in
``tests/helpers/fuzzing.py`` (anything but a DecodeError or KeyEncodingError is a crash, and so
is a protected codec accepting a changed envelope or deserializing before it verified).
libFuzzer prints how many inputs it ran (``Done N runs in S second(s)``); a crash stops the run
with the Python traceback and writes the input that caused it (``crash-<sha1>``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for helpers

with atheris.instrument_imports(include=["tta_cache", "helpers"]):
    from helpers import fuzzing
    from tta_cache.codec import serializers

NAMES = sorted(fuzzing.CONFIGS)
SPIES = fuzzing.Spies()
serializers.pickle = fuzzing.pickle_spy(SPIES)  # this process only exists to fuzz
CODECS = {name: fuzzing.spied_codec(name, SPIES) for name in NAMES}


def _value(fdp: Any, depth: int = 0) -> Any:
    pick = fdp.ConsumeIntInRange(0, 9 if depth < 3 else 5)
    if pick == 0:
        return None
    if pick == 1:
        return fdp.ConsumeBool()
    if pick == 2:
        return fdp.ConsumeInt(9)
    if pick == 3:
        return fdp.ConsumeFloat()
    if pick == 4:
        return fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 40))
    if pick == 5:
        return fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 40))
    if pick in (6, 7):
        items = [_value(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 3))]
        return items if pick == 6 else tuple(items)
    if pick == 8:
        return {
            fdp.ConsumeUnicodeNoSurrogates(6): _value(fdp, depth + 1)
            for _ in range(fdp.ConsumeIntInRange(0, 3))
        }
    return frozenset(fdp.ConsumeInt(4) for _ in range(fdp.ConsumeIntInRange(0, 3)))


def _json(value: Any) -> Any:
    """``value`` made JSON-able (no bytes, tuples or sets, 64-bit ints)."""
    if isinstance(value, (bytes, frozenset, tuple)):
        return [_json(v) for v in value] if not isinstance(value, bytes) else value.hex()
    if isinstance(value, list):
        return [_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    if isinstance(value, int) and not isinstance(value, bool):
        return max(min(value, 2**63 - 1), -(2**63))
    if isinstance(value, float) and value != value:
        return 0.0
    return value


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    name = NAMES[fdp.ConsumeIntInRange(0, len(NAMES) - 1)]
    codec = CODECS[name]
    protected = name in fuzzing.PROTECTED
    mode = fdp.ConsumeIntInRange(0, 2)
    if mode == 0:  # raw bytes
        fuzzing.check_decode(
            codec,
            SPIES,
            fdp.ConsumeBytes(fdp.remaining_bytes()),
            original=None,
            protected=protected,
        )
        return
    if mode == 1:  # a genuine envelope, mutated
        value = _json(_value(fdp))
        original = codec.encode(
            value,
            stamp=[("user:u1", fdp.ConsumeIntInRange(-(2**63), 2**63 - 1))],
            created=fdp.ConsumeFloat(),
            key=fuzzing.KEY,
            kind=fuzzing.KIND,
        )
        ops = [
            (
                fdp.ConsumeIntInRange(0, 5),
                fdp.ConsumeIntInRange(0, 4096),
                fdp.ConsumeIntInRange(0, 255),
            )
            for _ in range(fdp.ConsumeIntInRange(1, 4))
        ]
        forged = fuzzing.mutate(original, ops)
        fuzzing.check_decode(codec, SPIES, forged, original=original, protected=protected)
        return
    args = tuple(_value(fdp) for _ in range(fdp.ConsumeIntInRange(0, 4)))
    fuzzing.check_key_encoding(args)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
