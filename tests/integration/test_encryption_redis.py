"""Encryption at rest against a real Redis: what Redis holds, and what a reader makes of it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

import tta_cache as tc
from tta_cache.tta import (
    EmotionalState,
    EmotionalStateType,
    SessionCacheManager,
    TherapeuticProgress,
)

K1 = bytes(range(32))
K2 = bytes(range(100, 132))
SECRET = "panic-before-the-exam"


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


@pytest.fixture
def make(redis_url: str) -> Iterator[Callable[..., tc.Cache]]:
    made: list[tc.Cache] = []

    def factory(**options: Any) -> tc.Cache:
        options.setdefault("encryption_keys", {"k2": K2, "k1": K1})
        cache = tc.Cache(redis_url, **options)
        made.append(cache)
        return cache

    yield factory
    for cache in made:
        cache.close()


def emotional(cache: tc.Cache, calls: list[str]) -> Callable[[str], dict[str, Any]]:
    @cache.cached(kind="emotional", tags=("user:{user_id}",))
    def load_mood(user_id: str) -> dict[str, Any]:
        calls.append(user_id)
        return {"user_id": user_id, "trigger": SECRET, "intensity": 0.9}

    return load_mood


def test_redis_holds_no_plaintext_of_an_encrypted_kind(
    make: Callable[..., tc.Cache], client: redis.Redis
) -> None:
    writer, reader = make(), make()
    w_calls: list[str] = []
    r_calls: list[str] = []
    w, r = emotional(writer, w_calls), emotional(reader, r_calls)
    assert w("u1")["trigger"] == SECRET
    raw = client.get(w.cache_key("u1"))
    assert raw is not None
    assert SECRET.encode() not in raw
    assert b"intensity" not in raw
    assert r("u1")["trigger"] == SECRET  # another cache reads it from Redis
    assert (w_calls, r_calls) == (["u1"], [])
    assert reader.stats()["redis"]["hits"] == 1
    assert reader.stats()["decode_errors"] == 0


def test_the_tta_facade_encrypts_emotional_states_and_therapeutic_progress(
    make: Callable[..., tc.Cache], client: redis.Redis
) -> None:
    cache = make(local_maxsize=0)
    manager = SessionCacheManager(cache)
    state = EmotionalState(
        "u1", primary_emotion=EmotionalStateType.ANXIOUS, intensity=0.8, triggers=[SECRET]
    )
    assert manager.cache_emotional_state(state)
    progress = TherapeuticProgress("u1", achievements=[SECRET])
    assert manager.cache_therapeutic_progress(progress)
    blobs = [client.get(k) for k in client.scan_iter("tta:*") if b":tag:" not in k]
    assert len(blobs) == 2
    for raw in blobs:
        assert raw is not None
        assert SECRET.encode() not in raw
        assert b"anxious" not in raw
    assert manager.get_emotional_state("u1") == state
    got = manager.get_therapeutic_progress("u1")
    assert got is not None
    assert got.achievements == [SECRET]
    assert cache.stats()["decode_errors"] == 0


def test_a_ciphertext_copied_under_another_key_is_a_counted_miss(
    make: Callable[..., tc.Cache], client: redis.Redis
) -> None:
    cache = make(local_maxsize=0)
    calls: list[str] = []
    load = emotional(cache, calls)
    load("victim")
    load("attacker")
    client.set(load.cache_key("attacker"), client.get(load.cache_key("victim")) or b"")
    assert load("attacker")["user_id"] == "attacker"
    assert calls == ["victim", "attacker", "attacker"]
    assert cache.stats()["decode_errors"] == 1


def test_a_plaintext_entry_of_an_encrypted_kind_is_refused(
    make: Callable[..., tc.Cache], redis_url: str
) -> None:
    # A process without keys (or an attacker) writes the kind in clear; a keyed reader refuses it.
    with tc.Cache(redis_url, local_maxsize=0) as plain:
        emotional(plain, [])("u1")
        plain.set("mood:u2", {"trigger": "forged"}, kind="emotional")
    keyed = make(local_maxsize=0)
    calls: list[str] = []
    assert emotional(keyed, calls)("u1")["trigger"] == SECRET
    assert calls == ["u1"]
    assert keyed.get("mood:u2", kind="emotional") is None
    assert keyed.stats()["decode_errors"] == 2
    # a raw read that names no kind cannot tell (docs/security.md): it takes the entry
    assert keyed.get("mood:u2") == {"trigger": "forged"}


def test_raw_entries_keep_their_kind_and_a_reader_without_one_takes_it(
    make: Callable[..., tc.Cache], client: redis.Redis
) -> None:
    writer, reader = make(), make(local_maxsize=0)
    writer.set_many({"a": {"trigger": SECRET}, "b": {"trigger": SECRET}}, kind="therapeutic")
    for key in client.scan_iter("tta:raw:*"):
        assert SECRET.encode() not in (client.get(key) or b"")
    assert reader.get_many(["a", "b"]) == {"a": {"trigger": SECRET}, "b": {"trigger": SECRET}}
    assert reader.get("a", kind="therapeutic") == {"trigger": SECRET}
    assert reader.get("a", kind="emotional") is None  # encrypted as another kind
    assert reader.stats()["decode_errors"] == 1


def test_rotation_a_cache_with_the_new_key_first_reads_what_the_old_key_sealed(
    make: Callable[..., tc.Cache], client: redis.Redis
) -> None:
    old = make(encryption_keys={"k1": K1}, local_maxsize=0)
    emotional(old, [])("u1")
    new = make(encryption_keys={"k2": K2, "k1": K1}, local_maxsize=0)
    calls: list[str] = []
    load = emotional(new, calls)
    assert load("u1")["trigger"] == SECRET
    assert calls == []
    retired = make(encryption_keys={"k2": K2}, local_maxsize=0)
    r_calls: list[str] = []
    assert emotional(retired, r_calls)("u1")["trigger"] == SECRET
    assert r_calls == ["u1"]  # k1 retired: a counted miss, recomputed, written under k2
    assert retired.stats()["decode_errors"] == 1
    assert tc.Codec.key_id_of(client.get(load.cache_key("u1")) or b"") == "k2"


def test_an_encrypted_kind_read_concurrently_by_threads_decodes_every_time(
    make: Callable[..., tc.Cache],
) -> None:
    writer, reader = make(), make(local_maxsize=0)
    emotional(writer, [])("u1")
    load = emotional(reader, [])
    barrier = threading.Barrier(4)
    bad: list[Any] = []

    def run() -> None:
        barrier.wait()
        for _ in range(50):
            if load("u1")["trigger"] != SECRET:
                bad.append(1)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert bad == []
    assert reader.stats()["decode_errors"] == 0
