"""``tta-cache keygen``: a new key in the form ``$TTA_CACHE_ENCRYPTION_KEYS`` takes."""

from __future__ import annotations

import base64
import io
import json

from tta_cache.cli import EXIT_OK, EXIT_USAGE, main
from tta_cache.codec import Codec, encryption_keys


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


def test_keygen_prints_an_id_and_a_usable_key() -> None:
    code, out = run("keygen", "--id", "k7")
    assert code == EXIT_OK
    keys = encryption_keys(out.strip())
    assert list(keys) == ["k7"]
    assert len(keys["k7"]) == 32
    Codec(encryption_keys=out.strip())  # what the environment variable takes


def test_keygen_draws_a_new_key_each_time_and_names_it_by_date() -> None:
    (_, a), (_, b) = run("keygen"), run("keygen")
    assert a != b
    assert a.startswith("k20")


def test_keygen_json() -> None:
    code, out = run("keygen", "--id", "k1", "--json")
    doc = json.loads(out)
    assert code == EXIT_OK
    assert doc["key_id"] == "k1"
    assert doc["env"] == "TTA_CACHE_ENCRYPTION_KEYS"
    assert len(base64.b64decode(doc["key"])) == 32


def test_keygen_refuses_an_id_the_envelope_cannot_hold() -> None:
    assert run("keygen", "--id", "has space")[0] == EXIT_USAGE
