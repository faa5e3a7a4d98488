"""Key rotation against a real Redis: ``rotate_keys`` / ``tta-cache rotate-keys`` reseal what old
encryption and signing keys sealed, keep what was rewritten meanwhile, and report what remains."""

from __future__ import annotations

import base64
import io
import itertools
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

import tta_cache as tc
from tta_cache.cli import EXIT_CONFIRM, EXIT_OK, EXIT_USAGE, main
from tta_cache.operations import CacheInvalidationManager, rotation

K0, K1, K2 = (bytes([n]) * 32 for n in (7, 8, 9))
OLD_SIGN, NEW_SIGN = b"old-signing-key-0123456789abcdef", b"new-signing-key-0123456789abcdef"


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


@pytest.fixture
def make(redis_url: str) -> Iterator[Callable[..., tc.Cache]]:
    made: list[tc.Cache] = []

    def factory(**options: Any) -> tc.Cache:
        cache = tc.Cache(redis_url, local_maxsize=0, **options)
        made.append(cache)
        return cache

    yield factory
    for cache in made:
        cache.close()


def fill(cache: tc.Cache, n: int = 5) -> None:
    """``n`` emotional and ``n`` therapeutic entries (encrypted kinds), ``n`` sessions (not)."""
    for kind in ("emotional", "therapeutic", "session"):
        cache.set_many({f"{kind}:{i}": {"i": i, "kind": kind} for i in range(n)}, kind=kind)


def read_all(cache: tc.Cache, n: int = 5) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in ("emotional", "therapeutic", "session"):
        out.update(cache.get_many([f"{kind}:{i}" for i in range(n)], kind=kind))
    return out


def snapshot(client: redis.Redis) -> dict[bytes, bytes | None]:
    return {k: client.get(k) for k in client.scan_iter("tta:raw:*")}


def test_a_dry_run_reports_what_each_key_id_seals_and_rewrites_nothing(
    make: Callable[..., tc.Cache], client: redis.Redis
) -> None:
    fill(make(encryption_keys={"k1": K1}))
    before = snapshot(client)
    report = CacheInvalidationManager(make(encryption_keys={"k2": K2, "k1": K1})).rotate_keys(
        dry_run=True
    )
    assert report["completed"]
    assert report["current_key_id"] == "k2"
    assert report["by_key_id"] == {"k1": 10, "(none)": 5}
    assert report["by_signing_key"] == {"unsigned": 15}
    assert report["resealed"] == 10
    assert report["remaining"] == {"k1": 10}
    assert snapshot(client) == before


def test_rotation_reseals_under_the_current_key_keeping_values_and_ttls(
    make: Callable[..., tc.Cache], client: redis.Redis
) -> None:
    fill(make(encryption_keys={"k1": K1}))
    before = snapshot(client)
    ttls = {k: client.pttl(k) for k in before}
    report = CacheInvalidationManager(make(encryption_keys={"k2": K2, "k1": K1})).rotate_keys()
    assert (report["resealed"], report["changed_since_read"], report["remaining"]) == (10, 0, {})
    after = snapshot(client)
    for key, raw in after.items():
        assert raw is not None
        assert tc.Codec.key_id_of(raw) in ("k2", None)
        assert 0 < client.pttl(key) <= ttls[key]  # KEEPTTL
    assert sum(before[k] != after[k] for k in after) == 10  # the sessions are untouched
    only_new = make(encryption_keys={"k2": K2})
    assert len(read_all(only_new)) == 15
    assert only_new.stats()["decode_errors"] == 0
    again = CacheInvalidationManager(only_new).rotate_keys(dry_run=True)
    assert (again["by_key_id"], again["resealed"], again["remaining"]) == (
        {"k2": 10, "(none)": 5},
        0,
        {},
    )


def test_an_old_key_reads_until_removed_then_is_a_counted_miss(
    make: Callable[..., tc.Cache],
) -> None:
    fill(make(encryption_keys={"k1": K1}))
    assert len(read_all(make(encryption_keys={"k2": K2, "k1": K1}))) == 15
    retired = make(encryption_keys={"k2": K2})
    assert len(read_all(retired)) == 5  # only the unencrypted sessions
    assert retired.stats()["decode_errors"] == 10
    assert retired.stats()["errors"] == 0


def test_an_entry_rewritten_between_the_read_and_the_write_is_kept(
    make: Callable[..., tc.Cache], client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    fill(make(encryption_keys={"k1": K1}), n=2)
    service = make(encryption_keys={"k1": K1})  # a process not yet given the new key
    real = rotation._cas_set

    def rewritten_meanwhile(tier: Any, todo: Any) -> set[int]:
        service.set("emotional:0", {"i": "rewritten"}, kind="emotional")
        return real(tier, todo)

    monkeypatch.setattr(rotation, "_cas_set", rewritten_meanwhile)
    rotator = make(encryption_keys={"k2": K2, "k1": K1})
    report = CacheInvalidationManager(rotator).rotate_keys()
    assert (report["resealed"], report["changed_since_read"]) == (3, 1)
    assert report["remaining"] == {"k1": 1}
    assert rotator.get("emotional:0", kind="emotional") == {"i": "rewritten"}
    raw = client.get("tta:raw:emotional%3A0")
    assert raw is not None
    assert tc.Codec.key_id_of(raw) == "k1"  # as the service wrote it


def test_entries_under_a_key_id_no_longer_configured_are_reported_as_remaining(
    make: Callable[..., tc.Cache],
) -> None:
    fill(make(encryption_keys={"k0": K0}), n=3)
    report = CacheInvalidationManager(make(encryption_keys={"k2": K2, "k1": K1})).rotate_keys()
    assert report["undecodable"] == 6
    assert report["remaining"] == {"k0": 6}
    assert report["by_key_id"] == {"k0": 6, "(none)": 3}
    assert report["resealed"] == 0


def test_signing_keys_rotate_the_same_way(make: Callable[..., tc.Cache]) -> None:
    fill(make(signing_key=OLD_SIGN), n=3)
    both = make(signing_key=[NEW_SIGN, OLD_SIGN])
    dry = CacheInvalidationManager(both).rotate_keys(dry_run=True)
    assert dry["by_signing_key"] == {"#1": 9}
    assert dry["remaining"] == {"signing #1": 9}
    only_new = make(signing_key=NEW_SIGN)
    assert read_all(only_new) == {}
    assert only_new.stats()["decode_errors"] == 9
    report = CacheInvalidationManager(both).rotate_keys()
    assert (report["resealed"], report["remaining"]) == (9, {})
    assert len(read_all(make(signing_key=NEW_SIGN))) == 9
    assert CacheInvalidationManager(both).rotate_keys(dry_run=True)["by_signing_key"] == {
        "#0 (current)": 9
    }


def test_signed_and_encrypted_entries_rotate_both_keys_at_once(
    make: Callable[..., tc.Cache],
) -> None:
    fill(make(signing_key=OLD_SIGN, encryption_keys={"k1": K1}), n=2)
    rotator = make(signing_key=[NEW_SIGN, OLD_SIGN], encryption_keys={"k2": K2, "k1": K1})
    report = CacheInvalidationManager(rotator).rotate_keys()
    assert report["resealed"] == 6
    assert report["remaining"] == {}
    final = make(signing_key=NEW_SIGN, encryption_keys={"k2": K2})
    assert len(read_all(final, n=2)) == 6
    assert final.stats()["decode_errors"] == 0


def test_rotation_stops_at_its_time_limit_and_a_second_run_finishes(
    make: Callable[..., tc.Cache],
) -> None:
    fill(make(encryption_keys={"k1": K1}), n=20)
    rotator = make(encryption_keys={"k2": K2, "k1": K1})
    ticks = itertools.count()
    seen: list[int] = []

    def monotonic() -> float:
        return float(next(ticks))

    limited = CacheInvalidationManager(rotator, scan_count=10, monotonic=monotonic)
    first = limited.rotate_keys(time_limit_s=3.0, progress=seen.append)
    assert first["time_limit_reached"]
    assert not first["completed"]
    assert 0 < first["resealed"] < 40
    assert seen
    second = CacheInvalidationManager(rotator).rotate_keys()
    assert second["completed"]
    assert first["resealed"] + second["resealed"] == 40
    assert second["remaining"] == {}


def test_rotation_without_keys_is_a_configuration_error(make: Callable[..., tc.Cache]) -> None:
    with pytest.raises(tc.ConfigurationError, match="rotate-keys needs the keys"):
        CacheInvalidationManager(make()).rotate_keys(dry_run=True)


# ---------------------------------------------------------------------- the command


def cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


def test_the_command_reports_then_reseals(
    make: Callable[..., tc.Cache],
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fill(make(encryption_keys={"k1": K1}), n=3)
    monkeypatch.setenv("TTA_CACHE_ENCRYPTION_KEYS", f"k2:{b64(K2)},k1:{b64(K1)}")
    assert cli("--redis-url", redis_url, "rotate-keys")[0] == EXIT_CONFIRM
    assert "--dry-run" in capsys.readouterr().err
    code, out = cli("--redis-url", redis_url, "rotate-keys", "--dry-run")
    assert code == EXIT_OK
    assert "6 entries would be resealed" in out
    code, out = cli("--redis-url", redis_url, "rotate-keys", "--confirm", "--json")
    doc = json.loads(out)
    assert code == EXIT_OK
    assert (doc["resealed"], doc["remaining"]) == (6, {})
    code, out = cli("--redis-url", redis_url, "rotate-keys", "--confirm")
    assert "the old keys can be removed" in out
    for text in (out, capsys.readouterr().err):
        assert b64(K1) not in text
        assert b64(K2) not in text


def test_the_command_without_keys_exits_2(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("TTA_CACHE_ENCRYPTION_KEYS", raising=False)
    monkeypatch.delenv("TTA_CACHE_SIGNING_KEYS", raising=False)
    assert cli("--redis-url", redis_url, "rotate-keys", "--dry-run")[0] == EXIT_USAGE
    assert "TTA_CACHE_ENCRYPTION_KEYS" in capsys.readouterr().err
