"""I7: whatever sits in Redis under a key, a read never fails and never unpickles an unsigned,
forged or foreign-signed payload; it is a miss, counted in ``decode_errors``."""

from __future__ import annotations

import pickle
import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

import tta_cache as tc
from tta_cache.codec import Codec

KEY = b"the signing key"
OTHER_KEY = b"another deployment's key"
MAC_SIZE = 32
FLAGS_OFFSET = 4  # magic (2), format version (1), serializer id (1), then the flags byte
SIGNED_FLAG = 0x04

UNPICKLED: list[str] = []


def _side_effect(tag: str) -> str:
    """What a malicious pickle runs when it is loaded: here it only leaves a trace."""
    UNPICKLED.append(tag)
    return "pwned"


class Exploit:
    def __reduce__(self) -> tuple[Any, ...]:
        return (_side_effect, ("unpickled",))


@pytest.fixture(autouse=True)
def _no_trace() -> Iterator[None]:
    UNPICKLED.clear()
    yield
    UNPICKLED.clear()


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


@pytest.fixture
def make(redis_url: str) -> Iterator[Callable[..., tc.Cache]]:
    made: list[tc.Cache] = []

    def factory(**options: Any) -> tc.Cache:
        cache = tc.Cache(redis_url, **options)
        made.append(cache)
        return cache

    yield factory
    for cache in made:
        cache.close()


def counting(cache: tc.Cache) -> tuple[Any, list[int]]:
    calls: list[int] = []

    @cache.cached(tags=("user:{n}",))
    def load(n: int) -> str:
        calls.append(n)
        return f"value {n}"

    return load, calls


def evil(codec: Codec) -> bytes:
    return codec.encode(Exploit(), stamp=(("*", 1),), created=1.0, fresh_until=2e9)


def unsigned(signed: bytes) -> bytes:
    body = bytearray(signed[:-MAC_SIZE])
    body[FLAGS_OFFSET] &= ~SIGNED_FLAG
    return bytes(body)


def bad_payloads(good: bytes) -> dict[str, bytes]:
    """Corrupt, foreign and truncated variants of a payload this deployment wrote."""
    rnd = random.Random(7)
    noise = bytes([0x00]) + rnd.randbytes(63)  # never the 0xF7 magic
    return {
        "corrupt-tail": good[:-3] + b"\xff\xfe\xfd",
        "corrupt-header": b"\x00" + good[1:],
        "json-text": b'{"value": "value 0", "created": 1}',
        "plain-text": b"value 0",
        "random-bytes": noise,
        "empty": b"",
        "truncated-header": good[:10],
        "truncated-half": good[: len(good) // 2],
        "truncated-last-byte": good[:-1],
        "unknown-version": good[:2] + b"\x63" + good[3:],
        "unknown-serializer": good[:3] + b"\x3f" + good[4:],
        "unsigned-pickle": unsigned(evil(Codec("pickle", signing_key=OTHER_KEY))),
        "forged-pickle": unsigned(evil(Codec("pickle", signing_key=KEY))) + b"\x00" * MAC_SIZE,
        "foreign-signed-pickle": evil(Codec("pickle", signing_key=OTHER_KEY)),
        "raw-pickle": pickle.dumps(Exploit()),
    }


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"signing_key": KEY},
        {"serializer": "pickle", "signing_key": KEY},
        {"serializer": "msgpack"},
    ],
    ids=["json", "json-signed", "pickle-signed", "msgpack"],
)
def test_bad_payloads_are_misses_never_errors(
    make: Callable[..., tc.Cache], client: redis.Redis, options: dict[str, Any]
) -> None:
    writer = make(**options)
    load, _calls = counting(writer)
    assert load(0) == "value 0"
    good = client.get(load.cache_key(0))
    assert good is not None

    reader = make(**options)
    read, read_calls = counting(reader)
    payloads = bad_payloads(good)
    if "signing_key" in options:
        payloads["unsigned-envelope"] = unsigned(good)
        payloads["forged-mac"] = good[:-MAC_SIZE] + bytes(MAC_SIZE)
        payloads["signed-with-another-key"] = Codec(
            writer.engine.codec.serializer_name, signing_key=OTHER_KEY
        ).encode("value 0", stamp=(("*", 1),))
    for n, payload in enumerate(payloads.values(), start=1):
        client.set(read.cache_key(n), payload, px=60_000)

    for n, name in enumerate(payloads, start=1):
        assert read(n) == f"value {n}", name
    stats = reader.stats()
    assert stats["decode_errors"] == len(payloads)
    assert stats["errors"] == 0
    assert read_calls == list(range(1, len(payloads) + 1))  # each one was a miss
    assert UNPICKLED == []

    # the recomputed value replaced the bad payload: a third cache reads it from L2
    third = make(**options)
    read3, calls3 = counting(third)
    assert [read3(n) for n in range(1, len(payloads) + 1)] == [
        f"value {n}" for n in range(1, len(payloads) + 1)
    ]
    assert calls3 == []
    assert third.stats()["decode_errors"] == 0


def test_a_signed_pickle_is_unpickled_only_with_the_key(
    make: Callable[..., tc.Cache], client: redis.Redis
) -> None:
    json_reader = make()
    keyless_read, _ = counting(json_reader)
    signed = evil(Codec("pickle", signing_key=KEY))

    client.set(keyless_read.cache_key(1), signed, px=60_000)
    assert keyless_read(1) == "value 1"
    assert UNPICKLED == []  # a reader without the key never unpickles
    assert json_reader.stats()["decode_errors"] == 1

    for reader in (make(serializer="pickle", signing_key=OTHER_KEY), make(signing_key=OTHER_KEY)):
        read, _ = counting(reader)
        client.set(read.cache_key(2), signed, px=60_000)
        assert read(2) == "value 2"
        assert UNPICKLED == []
        assert reader.stats()["decode_errors"] == 1

    # Control: the key holder does unpickle it (so the checks above could see a side effect).
    # Its stamp is not the current one, so it is still a miss.
    holder = make(serializer="pickle", signing_key=KEY)
    read, calls = counting(holder)
    client.set(read.cache_key(3), signed, px=60_000)
    assert read(3) == "value 3"
    assert UNPICKLED == ["unpickled"]
    assert calls == [3]


def test_a_signing_key_rotation_reads_old_entries(
    make: Callable[..., tc.Cache], client: redis.Redis
) -> None:
    old = make(serializer="pickle", signing_key=OTHER_KEY)
    load, _calls = counting(old)
    assert load(1) == "value 1"
    rotated = make(serializer="pickle", signing_key=[KEY, OTHER_KEY])
    read, read_calls = counting(rotated)
    assert read(1) == "value 1"
    assert read_calls == []  # verified with the second key: an L2 hit
    assert rotated.stats()["decode_errors"] == 0


def test_raw_get_of_a_bad_payload_is_the_default(
    make: Callable[..., tc.Cache], client: redis.Redis
) -> None:
    cache = make()
    client.set(cache.engine.raw_key("k"), b"\xf7\xcc garbage", px=60_000)
    client.set(cache.engine.raw_key("p"), unsigned(evil(Codec("pickle", signing_key=KEY))))
    assert cache.get("k", "default") == "default"
    assert cache.get_many(["k", "p"]) == {}
    assert cache.stats()["decode_errors"] == 3
    assert UNPICKLED == []


async def test_async_read_of_a_bad_payload_recomputes(
    make: Callable[..., tc.Cache], client: redis.Redis
) -> None:
    cache = make(serializer="pickle", signing_key=KEY)
    calls: list[int] = []

    @cache.cached
    async def load(n: int) -> str:
        calls.append(n)
        return f"value {n}"

    client.set(load.cache_key(1), evil(Codec("pickle", signing_key=OTHER_KEY)), px=60_000)
    client.set(load.cache_key(2), b"\xf7\xcc\x01", px=60_000)
    assert [await load(1), await load(2)] == ["value 1", "value 2"]
    assert calls == [1, 2]
    assert cache.stats()["decode_errors"] == 2
    assert UNPICKLED == []
    await cache.aclose()


def test_an_unsigned_payload_truncated_at_a_digit_is_a_miss(
    make: Callable[..., tc.Cache], client: redis.Redis
) -> None:
    cache = make()

    @cache.cached
    def load(n: int) -> int:
        return 12345

    assert load(1) == 12345
    good = client.get(load.cache_key(1))
    assert good is not None
    reader = make()

    @reader.cached
    def load_again(n: int) -> int:
        return 12345

    client.set(load_again.cache_key(1), good[:-1], px=60_000)
    assert load_again(1) == 12345
