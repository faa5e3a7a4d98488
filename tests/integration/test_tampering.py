"""The tampering matrix: whatever a writer without the keys does to an entry in Redis, a read is a
miss counted in ``decode_errors``, the function runs, and nothing is raised or served forged.

Each row of :data:`REGIONS` flips bits in every byte of one region of a real envelope (read back
from Redis) and writes it back under the entry's key; the other tests are the rows that are not
bit flips: truncation, flags cleared (downgrades), ciphertexts moved, unknown or retired keys,
replays.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis

import tta_cache as tc

K1, K2, K9 = (bytes([n]) * 32 for n in (1, 2, 9))
SIGN = b"tampering-signing-key-0123456789"
HEADER = struct.Struct("<2sBBBddfHI")
SIGNED, ENCRYPTED = 0x04, 0x08
SECRET = "hidden-grief"

CONFIGS: dict[str, dict[str, Any]] = {
    "signed": {"signing_key": SIGN},
    "encrypted": {"encryption_keys": {"k2": K2, "k1": K1}},
    "signed+encrypted": {"signing_key": SIGN, "encryption_keys": {"k2": K2, "k1": K1}},
}


@dataclass
class Loader:
    """A decorated emotional-state loader over one cache, counting its computations."""

    cache: tc.Cache
    calls: list[str]
    load: Any

    def fresh(self, user_id: str = "u1") -> dict[str, Any]:
        """Call it; the result must be computed now (not read from Redis)."""
        before = len(self.calls)
        value = self.load(user_id)
        assert len(self.calls) == before + 1, "served from Redis, not recomputed"
        assert value == {"user": user_id, "n": len(self.calls), "note": SECRET}
        return dict(value)

    def key(self, user_id: str = "u1") -> str:
        return str(self.load.cache_key(user_id))


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


@pytest.fixture
def loader(redis_url: str) -> Iterator[Callable[..., Loader]]:
    made: list[tc.Cache] = []

    def make(config: str = "signed+encrypted", **options: Any) -> Loader:
        cache = tc.Cache(redis_url, local_maxsize=0, **{**CONFIGS[config], **options})
        made.append(cache)
        calls: list[str] = []

        @cache.cached(kind="emotional", tags=("user:{user_id}",))
        def load_mood(user_id: str) -> dict[str, Any]:
            calls.append(user_id)
            return {"user": user_id, "n": len(calls), "note": SECRET}

        return Loader(cache, calls, load_mood)

    yield make
    for cache in made:
        cache.close()


def regions(data: bytes, *, signed: bool, encrypted: bool) -> dict[str, range]:
    """The byte ranges of each field of ``data`` (docs/design.md §6, codec/encryption.py)."""
    count, length = HEADER.unpack_from(data)[7:9]
    out = {
        "magic": range(0, 2),
        "format version": range(2, 3),
        "serializer id": range(3, 4),
        "flags": range(4, 5),
        "created": range(5, 13),
        "fresh_until": range(13, 21),
        "compute_time": range(21, 25),
        "stamp count": range(25, 27),
        "payload length": range(27, 31),
    }
    at = 31
    out["stamp versions"] = range(at, at + 8 * count)
    at += 8 * count
    (tags_len,) = struct.unpack_from("<I", data, at)
    out["stamp tags length"] = range(at, at + 4)
    out["stamp tags"] = range(at + 4, at + 4 + tags_len)
    end = len(data) - (32 if signed else 0)
    start = end - length
    assert start == at + 4 + tags_len
    if encrypted:
        n = data[start]
        m = data[start + 1 + n]
        kind_at = start + 2 + n
        nonce_at = kind_at + m
        out["key id length"] = range(start, start + 1)
        out["key id"] = range(start + 1, start + 1 + n)
        out["kind length"] = range(start + 1 + n, start + 2 + n)
        out["kind"] = range(kind_at, nonce_at)
        out["nonce"] = range(nonce_at, nonce_at + 12)
        out["ciphertext"] = range(nonce_at + 12, end - 16)
        out["GCM tag"] = range(end - 16, end)
    else:
        out["payload"] = range(start, end)
    if signed:
        out["HMAC"] = range(end, len(data))
    return out


REGION_ROWS = [
    (config, region)
    for config in CONFIGS
    for region in (
        "magic",
        "format version",
        "serializer id",
        "flags",
        "created",
        "fresh_until",
        "compute_time",
        "stamp count",
        "payload length",
        "stamp versions",
        "stamp tags length",
        "stamp tags",
        *(
            ("key id length", "key id", "kind length", "kind", "nonce", "ciphertext", "GCM tag")
            if "encrypted" in config
            else ("payload",)
        ),
        *(("HMAC",) if "signed" in config else ()),
    )
]


@pytest.mark.parametrize(
    ("config", "region"), REGION_ROWS, ids=[f"{c}-{r}" for c, r in REGION_ROWS]
)
def test_a_bit_flipped_anywhere_in_a_region_is_a_counted_miss(
    loader: Callable[..., Loader], client: redis.Redis, config: str, region: str
) -> None:
    load = loader(config)
    load.fresh()
    original = client.get(load.key())
    assert original is not None
    where = regions(original, signed="signed" in config, encrypted="encrypted" in config)[region]
    assert len(where) > 0
    flips = 0
    for i in where:
        for bit in (0x01, 0x80):
            forged = bytearray(original)
            forged[i] ^= bit
            client.set(load.key(), bytes(forged))
            load.fresh()
            flips += 1
    stats = load.cache.stats()
    assert stats["decode_errors"] == flips
    assert stats["errors"] == 0


@pytest.mark.parametrize("config", list(CONFIGS))
def test_a_truncation_at_every_length_is_a_counted_miss(
    loader: Callable[..., Loader], client: redis.Redis, config: str
) -> None:
    load = loader(config)
    load.fresh()
    original = client.get(load.key())
    assert original is not None
    for size in range(len(original)):
        client.set(load.key(), original[:size])
        load.fresh()
    assert load.cache.stats()["decode_errors"] == len(original)
    assert load.cache.stats()["errors"] == 0


# ---------------------------------------------------------------------- downgrades


def test_the_signed_flag_cleared_is_a_counted_miss(
    loader: Callable[..., Loader], client: redis.Redis
) -> None:
    load = loader("signed")
    load.fresh()
    original = client.get(load.key())
    assert original is not None
    cleared = bytearray(original)
    cleared[4] &= ~SIGNED
    for forged in (bytes(cleared), bytes(cleared[:-32])):  # with and without its MAC
        client.set(load.key(), forged)
        load.fresh()
    assert load.cache.stats()["decode_errors"] == 2


def test_the_encrypted_flag_cleared_is_a_counted_miss(
    loader: Callable[..., Loader], client: redis.Redis
) -> None:
    load = loader("encrypted")
    load.fresh()
    original = client.get(load.key())
    assert original is not None
    cleared = bytearray(original)
    cleared[4] &= ~ENCRYPTED
    client.set(load.key(), bytes(cleared))
    load.fresh()
    assert load.cache.stats()["decode_errors"] == 1


def test_a_plaintext_forged_in_place_of_a_ciphertext_is_refused(
    loader: Callable[..., Loader], client: redis.Redis
) -> None:
    # A well-formed, unencrypted envelope of the encrypted kind, as a writer without keys makes.
    load = loader("encrypted")
    load.fresh()
    original = client.get(load.key())
    assert original is not None
    keyed = tc.Codec(encryption_keys={"k2": K2}, namespace="tta")
    stamp = keyed.decode(original, key=load.key()).stamp  # the current versions: not stale
    forged = tc.Codec().encode(
        {"user": "u1", "n": 99, "note": "forged"}, stamp=stamp, fresh_until=2e9
    )
    client.set(load.key(), forged)
    assert load.fresh()["note"] == SECRET
    assert load.cache.stats()["decode_errors"] == 1


def test_a_raw_read_without_a_kind_refuses_forged_plaintext_when_every_kind_is_encrypted(
    loader: Callable[..., Loader], client: redis.Redis
) -> None:
    load = loader("encrypted", encrypt_kinds="*")
    cache = load.cache
    cache.set("mood:u1", {"note": SECRET}, kind="emotional")
    with tc.Cache(cache.redis_url, local_maxsize=0) as plain:
        plain.set("mood:u1", {"note": "forged"})
    assert cache.get("mood:u1") is None
    assert cache.stats()["decode_errors"] == 1


# ---------------------------------------------------------------------- moved, unknown, retired


def test_a_ciphertext_copied_under_another_key_is_a_counted_miss(
    loader: Callable[..., Loader], client: redis.Redis
) -> None:
    load = loader("encrypted")
    load.fresh("victim")
    load.fresh("attacker")
    client.set(load.key("attacker"), client.get(load.key("victim")) or b"")
    assert load.fresh("attacker")["user"] == "attacker"
    assert load.cache.stats()["decode_errors"] == 1


def test_a_ciphertext_copied_into_another_namespace_is_a_counted_miss(
    loader: Callable[..., Loader], client: redis.Redis
) -> None:
    here, there = loader("encrypted"), loader("encrypted", namespace="other")
    here.fresh()
    there.fresh()
    assert here.key().removeprefix("tta:") == there.key().removeprefix("other:")
    client.set(there.key(), client.get(here.key()) or b"")
    there.fresh()
    assert there.cache.stats()["decode_errors"] == 1


def test_a_value_under_an_unknown_key_id_is_a_counted_miss(
    loader: Callable[..., Loader], client: redis.Redis
) -> None:
    foreign, load = loader("encrypted", encryption_keys={"k9": K9}), loader("encrypted")
    foreign.fresh()
    load.fresh()
    assert load.cache.stats()["decode_errors"] == 1


def test_the_same_key_id_under_another_key_is_a_counted_miss(
    loader: Callable[..., Loader],
) -> None:
    impostor, load = loader("encrypted", encryption_keys={"k2": K9}), loader("encrypted")
    impostor.fresh()
    load.fresh()
    assert load.cache.stats()["decode_errors"] == 1


def test_an_old_key_after_rotation_reads_while_configured_and_is_a_miss_once_removed(
    loader: Callable[..., Loader],
) -> None:
    old = loader("encrypted", encryption_keys={"k1": K1})
    old.fresh()
    rotated = loader("encrypted", encryption_keys={"k2": K2, "k1": K1})
    assert rotated.load("u1")["note"] == SECRET
    assert rotated.calls == []  # a hit
    old.fresh("u2")
    retired = loader("encrypted", encryption_keys={"k2": K2})
    retired.fresh("u2")
    assert retired.cache.stats()["decode_errors"] == 1
    assert rotated.cache.stats()["decode_errors"] == 0


def test_an_old_ciphertext_replayed_after_an_invalidation_is_a_miss(
    loader: Callable[..., Loader], client: redis.Redis
) -> None:
    load = loader("encrypted")
    load.fresh()
    old = client.get(load.key())
    load.cache.invalidate(user="u1")
    load.fresh()
    client.set(load.key(), old or b"")
    load.fresh()  # its stamp is behind: a miss (not a decode error: the bytes are genuine)
    assert load.cache.stats()["decode_errors"] == 0


def test_the_matrix_never_leaves_plaintext_in_redis(
    loader: Callable[..., Loader], client: redis.Redis
) -> None:
    load = loader("signed+encrypted")
    load.fresh()
    raw = client.get(load.key())
    assert raw is not None
    assert SECRET.encode() not in raw
