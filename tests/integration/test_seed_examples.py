"""The seed's three usage examples, verbatim but for the import path, against a real Redis.

The seed (``README_redis_cache.md``) imports from ``database.redis_cache_enhanced``; here every
name comes from ``tta_cache.tta``. ``create_cache_system()`` without a config reads
``TTA_CACHE_REDIS_URL``, which each test points at its own redis-server.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from tta_cache.tta import (
    CharacterState,
    EmotionalState,
    NarrativeContext,
    SessionState,
    TherapeuticProgress,
    UserPreferences,
    create_cache_system,
    health_check_cache_system,
)

SEED_CONFIG = {
    "host": "localhost",
    "port": 6379,
    "db": 0,
    "socket_timeout": 5.0,
    "socket_connect_timeout": 5.0,
    "max_connections": 50,
    "decode_responses": True,
    "retry_on_timeout": True,
    "health_check_interval": 30,
    "max_connection_failures": 3,
}


@pytest.fixture
def system(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Any, Any]]:
    monkeypatch.setenv("TTA_CACHE_REDIS_URL", redis_url)
    made = create_cache_system()
    yield made
    made[0].disconnect()


def test_basic_session_management(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TTA_CACHE_REDIS_URL", redis_url)
    # --- the seed's example, verbatim (import path changed) ---------------------------------
    from tta_cache.tta import create_cache_system

    # Create cache system
    conn_manager, session_cache, invalidation_manager = create_cache_system()  # noqa: RUF059
    conn_manager.connect()

    # Cache session
    session_state = SessionState("session_123", "user_456")
    session_cache.cache_session_state(session_state)

    # Retrieve session
    retrieved_session = session_cache.get_session_state("session_123")

    # Batch operations
    sessions = [SessionState(f"session_{i}", f"user_{i}") for i in range(10)]
    cached_count = session_cache.cache_multiple_sessions(sessions)
    # --- end of the seed's example -----------------------------------------------------------
    try:
        assert conn_manager.is_connected
        assert retrieved_session == session_state
        assert cached_count == 10
        # In Redis, not only in this process: a second system (empty L1) reads them all back.
        other_conn, other_cache, _ = create_cache_system({"redis_url": redis_url})
        try:
            found = other_cache.get_multiple_sessions([f"session_{i}" for i in range(10)])
            assert found == {s.session_id: s for s in sessions}
            assert other_cache.get_session_state("session_123") == session_state
            assert other_cache.get_session_state("session_999") is None
        finally:
            other_conn.disconnect()
        with redis.Redis.from_url(redis_url) as admin:
            ttl = admin.ttl("tta:raw:session%3Asession_123")
        assert 0.9 * 86_400 <= ttl <= 1.1 * 86_400 + 1  # the seed's session TTL (with jitter)
    finally:
        conn_manager.disconnect()


def test_health_monitoring(
    system: tuple[Any, Any, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    conn_manager, session_cache, _ = system
    conn_manager.connect()
    session_cache.cache_session_state(SessionState("s1", "u1"))
    for _ in range(3):
        session_cache.get_session_state("s1")  # hits
    session_cache.get_session_state("absent")  # a miss
    # --- the seed's example, verbatim --------------------------------------------------------
    # Perform health check
    health_status = health_check_cache_system(conn_manager)
    print(f"Overall Status: {health_status['overall_status']}")
    print(f"Hit Rate: {health_status['stats']['redis_info']['hit_rate']:.2%}")
    # --- end of the seed's example -----------------------------------------------------------
    out = capsys.readouterr().out
    assert "Overall Status: healthy" in out
    assert "Hit Rate: 75.00%" in out
    info = health_status["stats"]["redis_info"]
    assert info["connected"] is True
    assert info["ping_latency"] > 0
    assert info["total_keys"] >= 1
    assert info["redis_version"]
    assert health_status["connection"]["connected"] is True
    assert health_status["connection"]["url"].startswith("redis://")


def test_health_check_reports_unhealthy_when_redis_is_gone(own_redis: Any) -> None:
    conn_manager, _, _ = create_cache_system({"redis_url": own_redis.url, "socket_timeout": 0.2})
    try:
        assert conn_manager.connect()
        own_redis.stop()
        report = health_check_cache_system(conn_manager)
        assert report["overall_status"] == "unhealthy"
        assert report["stats"]["redis_info"]["connected"] is False
        assert not conn_manager.is_connected
        assert conn_manager.get_connection_stats()["health_check_failures"] >= 1
    finally:
        conn_manager.disconnect()


def test_cache_cleanup(system: tuple[Any, Any, Any], capsys: pytest.CaptureFixture[str]) -> None:
    conn_manager, session_cache, invalidation_manager = system
    conn_manager.connect()
    # Two sessions last written 30 hours ago (rewritten with an old `created`), one fresh one,
    # and a character whose session is gone.
    old = [SessionState("old_1", "u1"), SessionState("old_2", "u2")]
    session_cache.cache_multiple_sessions([*old, SessionState("fresh", "u3")])
    backdate(conn_manager.cache, ["session:old_1", "session:old_2"], hours=30)
    session_cache.cache_character_state(CharacterState("guide", session_id="gone_session"))
    # --- the seed's example, verbatim --------------------------------------------------------
    # Clean up expired sessions
    cleanup_stats = invalidation_manager.cleanup_expired_sessions(max_age_hours=24, dry_run=False)
    print(f"Cleaned up {cleanup_stats['sessions_cleaned']} expired sessions")

    # Remove orphaned data
    orphaned_stats = invalidation_manager.cleanup_orphaned_data(dry_run=False)
    print(f"Removed {orphaned_stats['total_orphaned']} orphaned entries")
    # --- end of the seed's example -----------------------------------------------------------
    out = capsys.readouterr().out
    assert "Cleaned up 2 expired sessions" in out
    assert "Removed 1 orphaned entries" in out
    assert cleanup_stats["completed"]
    assert not cleanup_stats["dry_run"]
    assert session_cache.get_session_state("old_1") is None
    assert session_cache.get_session_state("fresh") is not None
    assert session_cache.get_character_state("gone_session", "guide") is None


def backdate(cache: Any, keys: list[str], hours: float) -> None:
    """Rewrite raw entries as if written ``hours`` ago (same value, stamp and TTL)."""
    client = cache.engine.redis.client
    codec = cache.engine.codec
    for key in keys:
        redis_key = cache.engine.raw_key(key)
        entry = codec.decode(client.get(redis_key))
        then = time.time() - hours * 3600
        client.set(
            redis_key,
            codec.encode(entry.value, stamp=entry.stamp, created=then, fresh_until=then + 86_400),
            keepttl=True,
        )


def test_seed_configuration_dict_is_accepted(redis_url: str) -> None:
    port = int(redis_url.rsplit(":", 1)[1].split("/", maxsplit=1)[0])
    config = {**SEED_CONFIG, "host": "127.0.0.1", "port": port}
    conn_manager, session_cache, _ = create_cache_system(config)
    try:
        assert conn_manager.connect()
        cache = conn_manager.cache
        assert cache.engine.redis_cfg is not None
        assert cache.engine.redis_cfg.op_timeout == 5.0
        assert cache.engine.redis_cfg.max_connections == 50
        assert cache.engine.redis_cfg.extra["socket_connect_timeout"] == 5.0
        assert cache.engine.breaker._threshold == 3
        # decode_responses=True must not turn binary envelopes into text
        big = SessionState("s1", "u1", context={"notes": "x" * 5000})  # compressed payload
        assert session_cache.cache_session_state(big)
        _, fresh_cache, _ = create_cache_system(config)
        assert fresh_cache.get_session_state("s1") == big
        fresh_cache.cache.close()
    finally:
        conn_manager.disconnect()


def test_unknown_configuration_keys_are_refused() -> None:
    from tta_cache.exceptions import ConfigurationError

    with pytest.raises(ConfigurationError, match="hots"):
        create_cache_system({"hots": "localhost"})


def test_every_model_is_cached_and_fetched_in_batches(system: tuple[Any, Any, Any]) -> None:
    conn_manager, session_cache, _ = system
    session_cache.cache_multiple_sessions([SessionState(f"s{i}", f"u{i}") for i in range(3)])
    characters = [CharacterState(f"c{j}", session_id=f"s{i}") for i in range(3) for j in range(2)]
    assert session_cache.cache_multiple_characters(characters) == 6
    narrative = NarrativeContext("s0", "gate")
    assert session_cache.cache_multiple_narratives([narrative]) == 1
    assert session_cache.cache_multiple_emotional_states([EmotionalState("u0")]) == 1
    assert session_cache.cache_multiple_therapeutic_progress([TherapeuticProgress("u0")]) == 1
    assert session_cache.cache_user_preferences(UserPreferences("u0", {"font": "large"}))
    # read back through a second system: from Redis, typed
    other_conn, other, _ = create_cache_system({"redis_url": conn_manager.cache.redis_url})
    try:
        got = other.get_multiple_characters("s1", ["c0", "c1", "c9"])
        assert got == {"c0": characters[2], "c1": characters[3]}
        assert other.get_narrative_context("s0") == narrative
        emotional = other.get_emotional_state("u0")
        assert isinstance(emotional, EmotionalState)
        assert other.get_therapeutic_progress("u0") == session_cache.get_therapeutic_progress("u0")
        preferences = other.get_user_preferences("u0")
        assert preferences is not None
        assert preferences.preferences == {"font": "large"}
    finally:
        other_conn.disconnect()
    # per-session data is tagged with the session's user, so invalidating the user reaches it
    session_cache.cache_character_state(CharacterState("late", session_id="s2"))
    entry = conn_manager.cache.engine.codec.decode(
        conn_manager.get_client().get(conn_manager.cache.engine.raw_key("character:s2:late"))
    )
    assert {t for t, _ in entry.stamp} >= {"session:s2", "character:late", "user:u2"}


def test_cached_and_returned_states_are_private_copies(system: tuple[Any, Any, Any]) -> None:
    _, session_cache, _ = system
    state = SessionState("s1", "u1")
    session_cache.cache_session_state(state)
    state.narrative_position = 5  # not cached yet
    got = session_cache.get_session_state("s1")
    assert got is not None
    assert got.narrative_position == 0
    got.narrative_position = 9
    again = session_cache.get_session_state("s1")
    assert again is not None
    assert again.narrative_position == 0


def test_metrics_object_counts_since_reset(system: tuple[Any, Any, Any]) -> None:
    _, session_cache, _ = system
    metrics = session_cache.metrics
    session_cache.cache_session_state(SessionState("s1", "u1"))
    session_cache.get_session_state("s1")
    metrics.reset()
    session_cache.get_session_state("s1")
    session_cache.get_session_state("s1")
    session_cache.get_session_state("nope")
    figures = metrics.to_dict()
    assert set(figures) == {
        "hits",
        "misses",
        "hit_rate",
        "average_response_time",
        "operations_per_second",
        "total_operations",
        "errors",
    }
    assert (figures["hits"], figures["misses"], figures["total_operations"]) == (2, 1, 3)
    assert figures["hit_rate"] == pytest.approx(2 / 3)
    assert figures["errors"] == 0
    assert figures["average_response_time"] > 0  # the miss went to Redis
    assert metrics.get_metrics()["total_operations"] == 3


def test_connection_manager_disconnects_and_reconnects(system: tuple[Any, Any, Any]) -> None:
    conn_manager, session_cache, invalidation_manager = system
    assert conn_manager.connect()
    first = conn_manager.cache
    session_cache.cache_session_state(SessionState("s1", "u1"))
    conn_manager.disconnect()
    assert not conn_manager.is_connected
    assert first.engine.subscriber is None or not first.engine.subscriber.connected.is_set()
    # every manager follows the new cache made on reconnect
    assert conn_manager.connect()
    assert conn_manager.cache is not first
    assert conn_manager.is_connected
    got = session_cache.get_session_state("s1")  # from Redis: this cache's L1 is new
    assert got is not None
    assert (got.session_id, got.user_id) == ("s1", "u1")
    assert invalidation_manager.invalidate_session("s1")["completed"]
    assert session_cache.get_session_state("s1") is None
    stats = conn_manager.get_connection_stats()
    assert stats["connection_attempts"] == 2
    assert stats["connection_failures"] == 0
    assert stats["link"]["state"] == "up"


def test_health_alert_thresholds_degrade_a_healthy_report(system: tuple[Any, Any, Any]) -> None:
    conn_manager, session_cache, _ = system
    session_cache.cache_session_state(SessionState("s1", "u1"))
    session_cache.get_session_state("s1")
    for i in range(3):
        session_cache.get_session_state(f"absent-{i}")
    report = health_check_cache_system(conn_manager, min_hit_rate=0.8, min_operations=4)
    assert report["overall_status"] == "degraded"
    assert any("hit rate 25.0%" in r for r in report["reasons"])
    relaxed = health_check_cache_system(conn_manager, min_hit_rate=0.8, min_operations=100)
    assert relaxed["overall_status"] == "healthy"
    slow = health_check_cache_system(conn_manager, max_ping_latency=0.0)
    assert slow["overall_status"] == "degraded"
    assert any("PING took" in r for r in slow["reasons"])


def test_metrics_are_exact_under_concurrent_use(system: tuple[Any, Any, Any]) -> None:
    import threading

    _, session_cache, _ = system
    session_cache.cache_multiple_sessions([SessionState(f"s{i}", "u1") for i in range(8)])
    metrics = session_cache.metrics
    metrics.reset()

    def work(i: int) -> None:
        for _ in range(200):
            session_cache.get_session_state(f"s{i}")
            session_cache.get_session_state(f"absent-{i}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    figures = metrics.get_metrics()
    assert (figures["hits"], figures["misses"]) == (1600, 1600)
    assert figures["hit_rate"] == 0.5
    assert figures["total_operations"] == 3200


@pytest.mark.parametrize(
    ("serializer", "options"),
    [
        ("json", {}),
        ("msgpack", {}),
        ("pickle", {"signing_key": b"k" * 32}),
        ("cloudpickle", {"signing_key": b"k" * 32}),
    ],
)
def test_states_round_trip_through_redis_with_every_serializer(
    redis_url: str, serializer: str, options: dict[str, Any]
) -> None:
    from test_tta_models import full_session

    config = {"redis_url": redis_url, "serializer": serializer, **options}
    writer_conn, writer, _ = create_cache_system(config)
    reader_conn, reader, _ = create_cache_system(config)
    try:
        session = full_session()
        assert writer.cache_session_state(session)
        assert writer.cache_therapeutic_progress(session.therapeutic_progress)
        got = reader.get_session_state(session.session_id)  # empty L1: decoded from Redis
        assert got == session
        assert type(got.character_states["guide"]) is CharacterState
        assert reader.get_therapeutic_progress("user_456") == session.therapeutic_progress
    finally:
        writer_conn.disconnect()
        reader_conn.disconnect()
