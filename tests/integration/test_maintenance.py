"""Maintenance against real Redis: invalidation, the cleanup sweeps on 100,000 keys, confirmed
purges, ``preserve_therapeutic``, and SCAN (never KEYS), standalone and Cluster."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis

import tta_cache as tc
from tta_cache.core.keys import NAMESPACE_TAG, tag
from tta_cache.operations import CacheInvalidationManager, state_key
from tta_cache.tta import (
    CharacterState,
    EmotionalState,
    NarrativeContext,
    SessionCacheManager,
    SessionState,
    TherapeuticProgress,
    UserPreferences,
)

V = 1_700_000_000_000_000  # the current version of every tag in the seeded keyspace
HOUR = 3600.0


@dataclass
class Keyspace:
    """What was seeded, by category (Redis keys)."""

    live_sessions: set[str] = field(default_factory=set)
    old_sessions: set[str] = field(default_factory=set)
    live_characters: set[str] = field(default_factory=set)
    characters_of_old_sessions: set[str] = field(default_factory=set)
    ghost_characters: set[str] = field(default_factory=set)
    stale: set[str] = field(default_factory=set)
    therapeutic: set[str] = field(default_factory=set)

    @property
    def entries(self) -> set[str]:
        return set().union(*(getattr(self, f) for f in self.__dataclass_fields__))


def seed_100k(cache: tc.Cache, client: redis.Redis) -> Keyspace:
    """100,000 entries: live, expired by age, orphaned (stale stamp or session gone).

    Live sessions 20k, sessions last written 48 h ago 10k, live characters 25k, characters of the
    old sessions 5k, characters of sessions that never existed 10k, entries stamped with a
    version behind the current one 20k (decorated-function keys), therapeutic progress 10k.
    """
    codec = cache.engine.codec
    raw = cache.engine.raw_key
    now = time.time()
    ks = Keyspace()
    tags: set[str] = {NAMESPACE_TAG}
    writes: list[tuple[str, bytes]] = []

    def put(key: str, stamp_tags: list[str], created: float = now, version: int = V) -> str:
        stamp = [(NAMESPACE_TAG, V), *((t, version) for t in stamp_tags)]
        tags.update(stamp_tags)
        value = {"k": key, "n": len(writes)}
        writes.append(
            (key, codec.encode(value, stamp=stamp, created=created, fresh_until=now + 86_400))
        )
        return key

    for i in range(20_000):
        sid = f"live-{i}"
        ks.live_sessions.add(
            put(raw(state_key("session", sid)), [tag("session", sid), tag("user", f"u{i % 5000}")])
        )
    for i in range(10_000):
        sid = f"old-{i}"
        ks.old_sessions.add(
            put(raw(state_key("session", sid)), [tag("session", sid)], created=now - 48 * HOUR)
        )
    for i in range(25_000):
        sid = f"live-{i % 20_000}"
        ks.live_characters.add(
            put(
                raw(state_key("character", sid, f"c{i}")),
                [tag("session", sid), tag("character", f"c{i % 50}")],
            )
        )
    for i in range(5_000):
        sid = f"old-{i}"
        ks.characters_of_old_sessions.add(
            put(raw(state_key("character", sid, "guide")), [tag("session", sid)])
        )
    for i in range(10_000):
        sid = f"ghost-{i}"
        ks.ghost_characters.add(
            put(raw(state_key("character", sid, "guide")), [tag("session", sid)])
        )
    for i in range(20_000):
        ks.stale.add(
            put(f"tta:emotional:game.load_mood:'u{i}", [tag("user", f"s{i}")], version=V - 1)
        )
    for i in range(10_000):
        ks.therapeutic.add(
            put(raw(state_key("therapeutic", f"u{i}")), [tag("therapeutic", f"u{i}")])
        )
    assert len(writes) == 100_000
    pipe = client.pipeline(transaction=False)
    for n, (key, payload) in enumerate(writes, 1):
        pipe.set(key, payload, ex=86_400)
        if n % 5000 == 0:
            pipe.execute()
    for t in tags:
        pipe.set(cache.engine.tag_key(t), V, ex=200_000)
    pipe.execute()
    return ks


def entry_keys(client: redis.Redis) -> set[str]:
    return {k.decode() for k in client.scan_iter(match="tta:*", count=5000)} - {
        k.decode() for k in client.scan_iter(match="tta:tag:*", count=5000)
    }


@pytest.fixture
def cache(redis_url: str) -> Iterator[tc.Cache]:
    # A batch job's timeout, as the CLI's --timeout gives one: a 1,000-key compare-and-delete
    # script can take longer than a request's 250 ms on a loaded machine (the sweep then stops
    # and reports it, which the time-limit tests cover; these tests check what it deletes).
    with tc.Cache(redis_url, namespace="tta", op_timeout=5.0) as c:
        assert c.wait_ready(10)
        yield c


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url) as c:
        yield c


def ticking(step: float = 1.0) -> Any:
    """A monotonic clock that moves ``step`` seconds each time it is read."""
    counter = itertools.count()
    return lambda: next(counter) * step


def test_cleanup_of_100k_keys_deletes_exactly_what_its_dry_run_reported(
    cache: tc.Cache, client: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    timings: dict[str, float] = {}
    started = time.perf_counter()
    ks = seed_100k(cache, client)
    timings["seed"] = time.perf_counter() - started
    before = entry_keys(client)
    assert before == ks.entries
    manager = CacheInvalidationManager(cache)

    dry = manager.cleanup_expired_sessions(max_age_hours=24, dry_run=True, time_limit_s=None)
    timings["expired dry run"] = dry["duration"]
    assert dry["completed"]
    assert dry["dry_run"]
    assert (dry["sessions_found"], dry["expired_sessions"]) == (30_000, 10_000)
    assert dry["sessions_cleaned"] == 10_000
    assert dry["keys_deleted"] == 0
    assert entry_keys(client) == before

    real = manager.cleanup_expired_sessions(max_age_hours=24, dry_run=False, time_limit_s=None)
    timings["expired"] = real["duration"]
    assert real["completed"]
    assert not real["time_limit_reached"]
    assert real["sessions_cleaned"] == real["keys_deleted"] == 10_000
    after_expired = entry_keys(client)
    assert before - after_expired == ks.old_sessions

    dry = manager.cleanup_orphaned_data(dry_run=True, time_limit_s=None)
    timings["orphans dry run"] = dry["duration"]
    assert dry["completed"]
    assert dry["stale_entries"] == 20_000
    assert dry["orphaned_session_data"] == 15_000  # characters of old and of ghost sessions
    assert dry["total_orphaned"] == 35_000
    assert dry["by_kind"] == {"emotional": 20_000, "character": 15_000}
    assert dry["keys_deleted"] == 0
    assert entry_keys(client) == after_expired

    real = manager.cleanup_orphaned_data(dry_run=False, time_limit_s=None)
    timings["orphans"] = real["duration"]
    assert real["total_orphaned"] == real["keys_deleted"] == 35_000
    assert real["keys_scanned"] >= 90_000  # entries and tag version keys
    after = entry_keys(client)
    assert after_expired - after == ks.stale | ks.characters_of_old_sessions | ks.ghost_characters
    assert after == ks.live_sessions | ks.live_characters | ks.therapeutic

    again = manager.cleanup_orphaned_data(dry_run=False)
    assert again["total_orphaned"] == 0
    with capsys.disabled():
        print(
            "\n100k keyspace timings (s): " + ", ".join(f"{k} {v:.2f}" for k, v in timings.items())
        )


def test_time_limit_stops_a_sweep_cleanly_and_a_later_run_finishes_it(
    cache: tc.Cache, client: redis.Redis
) -> None:
    ks = seed_100k(cache, client)
    orphans = ks.stale | ks.ghost_characters  # the old sessions still exist here
    limited = CacheInvalidationManager(cache, monotonic=ticking())
    first = limited.cleanup_orphaned_data(dry_run=False, time_limit_s=10)
    assert first["time_limit_reached"] is True
    assert first["completed"] is False
    assert first["error"] is None
    assert 0 < first["keys_scanned"] < 100_000
    assert first["batches"] <= 10
    assert 0 < first["keys_deleted"] < len(orphans)
    assert first["total_orphaned"] == first["keys_deleted"]
    assert first["duration"] > 0
    deleted_so_far = ks.entries - entry_keys(client)
    assert deleted_so_far <= orphans
    assert len(deleted_so_far) == first["keys_deleted"]

    rest = CacheInvalidationManager(cache).cleanup_orphaned_data(dry_run=False, time_limit_s=None)
    assert rest["completed"]
    assert first["keys_deleted"] + rest["keys_deleted"] == len(orphans)
    assert entry_keys(client) == ks.entries - orphans

    expired = limited.cleanup_expired_sessions(max_age_hours=24, time_limit_s=0)
    assert expired["time_limit_reached"]
    assert expired["keys_scanned"] == 0
    assert entry_keys(client) == ks.entries - orphans


def test_bulk_purge_needs_the_token_of_its_own_dry_run(
    cache: tc.Cache, client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    ks = seed_100k(cache, client)
    characters = ks.live_characters | ks.characters_of_old_sessions | ks.ghost_characters
    manager = CacheInvalidationManager(cache)
    dry = manager.purge_kind("character", dry_run=True)
    assert dry["keys_matched"] == len(characters) == 40_000
    assert dry["by_kind"] == {"character": 40_000}
    token = dry["confirm_token"]
    assert isinstance(token, str)
    assert len(token) >= 16

    missing = manager.purge_kind("character")
    assert missing["keys_deleted"] == 0
    assert missing["confirmed"] is False
    assert "no confirm token" in missing["refused"]
    wrong = manager.purge_kind("character", confirm="0" * len(token))
    assert wrong["keys_deleted"] == 0
    assert "does not match" in wrong["refused"]
    assert wrong["confirm_token"] is None  # a refusal does not hand out the right token
    other_kind = manager.purge_kind("session", confirm=token)
    assert other_kind["keys_deleted"] == 0
    assert other_kind["refused"]
    assert entry_keys(client) == ks.entries
    assert "purge_kind refused" in caplog.text

    done = manager.purge_kind("character", confirm=token)
    assert done["confirmed"] is True
    assert done["keys_deleted"] == 40_000
    assert ks.entries - entry_keys(client) == characters


def test_purge_is_refused_when_the_keyspace_changed_since_its_dry_run(
    cache: tc.Cache, client: redis.Redis
) -> None:
    sessions = SessionCacheManager(cache)
    sessions.cache_multiple_sessions([SessionState(f"s{i}", "u1") for i in range(5)])
    manager = CacheInvalidationManager(cache)
    token = manager.purge_kind("session", dry_run=True)["confirm_token"]
    sessions.cache_session_state(SessionState("s-new", "u2"))
    refused = manager.purge_kind("session", confirm=token)
    assert refused["keys_deleted"] == 0
    assert "changed since the dry run" in refused["refused"]
    assert len(entry_keys(client)) == 6
    token = manager.purge_kind("session", dry_run=True)["confirm_token"]
    assert manager.purge_kind("session", confirm=token)["keys_deleted"] == 6
    assert sessions.get_session_state("s1") is None  # L1 dropped too
    assert entry_keys(client) == set()


def test_purge_namespace_deletes_every_entry_and_invalidates_every_l1(
    cache: tc.Cache, client: redis.Redis
) -> None:
    calls = []

    @cache.cached(kind="narrative", tags=("session:{session_id}",))
    def scene(session_id: str) -> str:
        calls.append(session_id)
        return f"scene of {session_id}"

    scene("s1")
    SessionCacheManager(cache).cache_session_state(SessionState("s1", "u1"))
    manager = CacheInvalidationManager(cache)
    dry = manager.purge_namespace(dry_run=True)
    assert dry["keys_matched"] == 2
    assert dry["by_kind"] == {"narrative": 1, "session": 1}
    done = manager.purge_namespace(confirm=dry["confirm_token"])
    assert done["keys_deleted"] == 2
    assert entry_keys(client) == set()
    assert client.exists("tta:tag:*")  # tag versions stay, the epoch moved on
    scene("s1")
    assert calls == ["s1", "s1"]


def user_world(sessions: SessionCacheManager, user: str, sid: str) -> None:
    sessions.cache_session_state(SessionState(sid, user))
    sessions.cache_multiple_characters(
        [CharacterState("guide", session_id=sid), CharacterState("rival", session_id=sid)]
    )
    sessions.cache_narrative_context(NarrativeContext(sid, "gate"))
    sessions.cache_emotional_state(EmotionalState(user, session_id=sid))
    sessions.cache_user_preferences(UserPreferences(user, {"speed": "slow"}))
    sessions.cache_therapeutic_progress(TherapeuticProgress(user, achievements=["first step"]))


def reads(sessions: SessionCacheManager, user: str, sid: str) -> dict[str, Any]:
    return {
        "session": sessions.get_session_state(sid),
        "characters": sessions.get_multiple_characters(sid, ["guide", "rival"]),
        "narrative": sessions.get_narrative_context(sid),
        "emotional": sessions.get_emotional_state(user),
        "preferences": sessions.get_user_preferences(user),
        "therapeutic": sessions.get_therapeutic_progress(user),
    }


@pytest.mark.parametrize("preserve", [True, False])
def test_invalidate_user_preserves_exactly_the_therapeutic_progress(
    cache: tc.Cache, client: redis.Redis, redis_url: str, preserve: bool
) -> None:
    sessions = SessionCacheManager(cache)
    user_world(sessions, "u1", "s1")
    user_world(sessions, "u2", "s2")
    other_keys = {k for k in entry_keys(client) if "u2" in k or "s2" in k}
    manager = CacheInvalidationManager(cache)
    result = manager.invalidate_user("u1", preserve_therapeutic=preserve)
    assert result["completed"]
    assert result["preserve_therapeutic"] is preserve
    assert "u1" not in str(result)  # the user is named by a hash only
    # another process (empty L1) and this one agree
    with tc.Cache(redis_url, namespace="tta") as other_cache:
        for view in (sessions, SessionCacheManager(other_cache)):
            got = reads(view, "u1", "s1")
            assert got["session"] is None
            assert got["characters"] == {}
            assert got["narrative"] is None
            assert got["emotional"] is None
            assert got["preferences"] is None
            if preserve:
                assert got["therapeutic"] == TherapeuticProgress(
                    "u1", achievements=["first step"], last_updated=got["therapeutic"].last_updated
                )
            else:
                assert got["therapeutic"] is None
            untouched = reads(view, "u2", "s2")
            assert all(untouched.values())
    stats = manager.cleanup_orphaned_data()
    remaining_u1 = {k for k in entry_keys(client) if "u1" in k or "s1" in k}
    therapeutic_key = cache.engine.raw_key(state_key("therapeutic", "u1"))
    assert remaining_u1 == ({therapeutic_key} if preserve else set())
    assert stats["total_orphaned"] == (6 if preserve else 7)
    assert {k for k in entry_keys(client) if "u2" in k or "s2" in k} == other_keys


def test_invalidate_session_and_character(cache: tc.Cache) -> None:
    sessions = SessionCacheManager(cache)
    user_world(sessions, "u1", "s1")
    user_world(sessions, "u2", "s2")
    manager = CacheInvalidationManager(cache)
    assert manager.invalidate_character("guide")["tags_invalidated"] == 1
    assert sessions.get_character_state("s1", "guide") is None
    assert sessions.get_character_state("s2", "guide") is None  # across sessions
    assert sessions.get_character_state("s1", "rival") is not None
    manager.invalidate_session("s1")
    got = reads(sessions, "u1", "s1")
    assert got["session"] is None
    assert got["characters"] == {}
    assert got["narrative"] is None
    assert got["emotional"] is None  # it was recorded in session s1
    assert got["preferences"] is not None
    assert sessions.get_session_state("s2") is not None


def test_decorated_entries_invalidated_by_the_epoch_are_swept(
    cache: tc.Cache, client: redis.Redis
) -> None:
    @cache.cached(kind="character", tags=("session:{session_id}",))
    def load(session_id: str, character_id: str) -> dict[str, str]:
        return {"id": character_id}

    for i in range(50):
        load(f"s{i}", "guide")
    manager = CacheInvalidationManager(cache)
    assert manager.cleanup_orphaned_data(dry_run=True)["total_orphaned"] == 0
    cache.invalidate_all()
    result = manager.cleanup_orphaned_data()
    assert result["stale_entries"] == result["keys_deleted"] == 50
    assert entry_keys(client) == set()


def test_sweeps_scan_and_never_use_keys(cache: tc.Cache, client: redis.Redis) -> None:
    SessionCacheManager(cache).cache_session_state(SessionState("s1", "u1"))
    client.config_resetstat()
    manager = CacheInvalidationManager(cache)
    manager.cleanup_expired_sessions(24)
    manager.cleanup_orphaned_data()
    manager.purge_kind("session", dry_run=True)
    manager.forget_user("u1", dry_run=True)
    commands = client.info("commandstats")
    assert "cmdstat_scan" in commands
    assert "cmdstat_keys" not in commands


def test_undecodable_entries_are_counted_and_kept(cache: tc.Cache, client: redis.Redis) -> None:
    client.set("tta:raw:foreign", b"not an envelope")
    client.set("tta:raw:session%3Abroken", b"\xf7\xcc\x01garbage")
    manager = CacheInvalidationManager(cache)
    assert manager.cleanup_orphaned_data()["undecodable"] == 2
    assert manager.cleanup_expired_sessions(0)["undecodable"] == 1
    assert client.exists("tta:raw:foreign", "tta:raw:session%3Abroken") == 2


def test_an_entry_rewritten_during_a_sweep_is_kept(cache: tc.Cache, client: redis.Redis) -> None:
    sessions = SessionCacheManager(cache)
    sessions.cache_session_state(SessionState("s1", "u1"))
    manager = CacheInvalidationManager(cache, clock=lambda: time.time() + 48 * HOUR)
    # A writer rewrites the session between the sweep's read and its delete.
    original = manager._cas_delete

    def rewrite_then_delete(tier: Any, entries: Any) -> int:
        sessions.cache_session_state(SessionState("s1", "u1", narrative_position=3))
        return original(tier, entries)

    manager._cas_delete = rewrite_then_delete  # type: ignore[method-assign]
    result = manager.cleanup_expired_sessions(24)
    assert result["expired_sessions"] == 1
    assert result["keys_deleted"] == 0
    got = sessions.get_session_state("s1")
    assert got is not None
    assert got.narrative_position == 3


def test_maintenance_works_on_every_primary_of_a_cluster(redis_cluster_url: str) -> None:
    with tc.Cache(redis_cluster_url, namespace="tta") as cluster_cache:
        assert cluster_cache.wait_ready(15)
        sessions = SessionCacheManager(cluster_cache)
        for i in range(40):
            user_world(sessions, f"u{i}", f"s{i}")
        manager = CacheInvalidationManager(cluster_cache)
        dry = manager.purge_kind("character", dry_run=True)
        assert dry["keys_matched"] == 80
        for i in range(20):
            manager.invalidate_user(f"u{i}", preserve_therapeutic=True)
        result = manager.cleanup_orphaned_data()
        assert result["completed"], result
        assert result["total_orphaned"] == result["keys_deleted"] == 20 * 6
        old = manager.cleanup_expired_sessions(0, dry_run=True)
        assert old["sessions_found"] == 20
        forget = manager.forget_user("u30", dry_run=True)
        assert forget["keys_matched"] == 7
        done = manager.forget_user("u30", confirm=forget["confirm_token"])
        assert done["keys_deleted"] == 7
        assert all(not v for v in reads(sessions, "u30", "s30").values())
