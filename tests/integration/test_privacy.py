"""Privacy: ``forget_user`` across real OS processes, its audit record, ``anonymize_user``."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection
from typing import Any

import pytest
import redis

import tta_cache as tc
from helpers.procs import process_group
from tta_cache.operations import user_hash
from tta_cache.tta import (
    CacheInvalidationManager,
    CharacterState,
    EmotionalState,
    NarrativeContext,
    SessionCacheManager,
    SessionState,
    TherapeuticGoal,
    TherapeuticProgress,
    UserPreferences,
)

USER = "alice-7f3a"  # a user id distinctive enough to grep Redis for
SESSION = "sess-alice-1"
OTHER_USER, OTHER_SESSION = "bob-19c2", "sess-bob-1"


def world(sessions: SessionCacheManager, user: str, sid: str) -> None:
    sessions.cache_session_state(SessionState(sid, user, context={"name": user}))
    sessions.cache_multiple_characters(
        [
            CharacterState("guide", session_id=sid, memory=[f"{user} said hello"]),
            CharacterState("rival", session_id=sid),
        ]
    )
    sessions.cache_narrative_context(NarrativeContext(sid, "gate"))
    sessions.cache_emotional_state(EmotionalState(user, session_id=sid))
    sessions.cache_user_preferences(UserPreferences(user, {"speed": "slow"}))
    sessions.cache_therapeutic_progress(
        TherapeuticProgress(
            user,
            goals=[TherapeuticGoal("g1", f"{user} wants to sleep better", 0.5)],
            achievements=["first step"],
            skill_levels={"breathing": 0.4},
            next_focus=f"talk with {user}'s sister",
        )
    )


def reads(sessions: SessionCacheManager, user: str, sid: str) -> dict[str, Any]:
    return {
        "session": sessions.get_session_state(sid),
        "characters": sessions.get_multiple_characters(sid, ["guide", "rival"]) or None,
        "narrative": sessions.get_narrative_context(sid),
        "emotional": sessions.get_emotional_state(user),
        "preferences": sessions.get_user_preferences(user),
        "therapeutic": sessions.get_therapeutic_progress(user),
    }


def present(found: dict[str, Any]) -> list[str]:
    return sorted(k for k, v in found.items() if v is not None)


def holder(url: str, conn: Connection) -> None:
    """A process holding the users' data in its L1; answers "load", "check" and "stop"."""
    with tc.Cache(url, namespace="tta") as cache:
        if not cache.wait_ready(15):
            raise RuntimeError("invalidation channel not up")
        sessions = SessionCacheManager(cache)
        while True:
            command = conn.recv()
            if command == "load":
                reads(sessions, USER, SESSION)  # fills L1 from Redis
                ops = cache.stats()["redis"]["operations"]
                hits = cache.stats()["local"]["hits"]
                found = reads(sessions, USER, SESSION)
                conn.send(
                    {
                        "present": present(found),
                        "local_hits": cache.stats()["local"]["hits"] - hits,
                        "redis_ops": cache.stats()["redis"]["operations"] - ops,
                    }
                )
            elif command == "check":
                deadline = time.monotonic() + 5.0
                while (found := present(reads(sessions, USER, SESSION))) and (
                    time.monotonic() < deadline
                ):
                    time.sleep(0.01)
                conn.send(
                    {"user": found, "other": present(reads(sessions, OTHER_USER, OTHER_SESSION))}
                )
            else:
                return


@pytest.fixture
def cache(redis_url: str) -> Iterator[tc.Cache]:
    with tc.Cache(redis_url, namespace="tta") as c:
        assert c.wait_ready(10)
        yield c


def redis_traces(url: str, *needles: str) -> list[str]:
    """Keys whose name or value mentions any of ``needles``."""
    out = []
    with redis.Redis.from_url(url) as client:
        for key in client.scan_iter(count=1000):
            value = client.get(key) if client.type(key) == b"string" else b""
            text = key + b" " + (value or b"")
            if any(n.encode() in text for n in needles):
                out.append(key.decode())
    return out


ALL = ["characters", "emotional", "narrative", "preferences", "session", "therapeutic"]


@pytest.mark.slow
def test_forget_user_erases_redis_and_the_l1_of_every_process(
    cache: tc.Cache, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    sessions = SessionCacheManager(cache)
    world(sessions, USER, SESSION)
    world(sessions, OTHER_USER, OTHER_SESSION)
    assert redis_traces(redis_url, USER)
    with process_group() as group:
        pipes = []
        for i in range(2):
            parent, child = group.ctx.Pipe()
            group.start(holder, redis_url, child, name=f"holder-{i}")
            pipes.append(parent)
        for pipe in pipes:
            pipe.send("load")
        for pipe in pipes:
            assert pipe.poll(30), "holder did not answer"
            loaded = pipe.recv()
            assert loaded["present"] == ALL
            assert loaded["local_hits"] == 7  # every item (2 characters) from L1 ...
            assert loaded["redis_ops"] == 0  # ... without asking Redis

        manager = CacheInvalidationManager(cache)
        dry = manager.forget_user(USER, dry_run=True)
        assert dry["keys_deleted"] == 0
        assert dry["keys_matched"] == 7
        assert dry["by_kind"] == {
            "session": 1,
            "character": 2,
            "narrative": 1,
            "emotional": 1,
            "user_preferences": 1,
            "therapeutic": 1,
        }
        assert dry["sessions"] == 1
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="tta_cache.audit"):
            done = manager.forget_user(USER, confirm=dry["confirm_token"])
        assert done["completed"]
        assert done["error"] is None
        assert done["keys_deleted"] == 7
        assert done["tags_invalidated"] == 3  # user:, therapeutic: and the session
        audit = [r for r in caplog.records if r.name == "tta_cache.audit"]
        assert len(audit) == 1
        record = audit[0]
        assert USER not in record.getMessage()
        assert USER not in str(record.__dict__)
        assert user_hash(USER) in record.getMessage()
        assert record.outcome == "erased"  # type: ignore[attr-defined]
        assert USER not in str(done)

        for pipe in pipes:
            pipe.send("check")
        for pipe in pipes:
            assert pipe.poll(30), "holder did not answer"
            checked = pipe.recv()
            assert checked["user"] == [], checked
            assert checked["other"] == ALL  # nobody else's data was touched
        for pipe in pipes:
            pipe.send("stop")
        group.join(30)

    assert present(reads(sessions, USER, SESSION)) == []
    fresh_cache = tc.Cache(redis_url, namespace="tta")
    try:
        assert present(reads(SessionCacheManager(fresh_cache), USER, SESSION)) == []
    finally:
        fresh_cache.close()
    assert redis_traces(redis_url, USER, SESSION) == []  # no value and no key name mentions them
    assert redis_traces(redis_url, OTHER_USER)


def test_forget_user_without_the_token_erases_nothing_and_is_audited(
    cache: tc.Cache, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    sessions = SessionCacheManager(cache)
    world(sessions, USER, SESSION)
    manager = CacheInvalidationManager(cache)
    with caplog.at_level(logging.INFO, logger="tta_cache.audit"):
        refused = manager.forget_user(USER)
        wrong = manager.forget_user(USER, confirm="f" * 32)
        manager.forget_user(USER, dry_run=True)
    assert refused["keys_deleted"] == wrong["keys_deleted"] == 0
    assert refused["refused"]
    assert wrong["refused"]
    assert refused["tags_invalidated"] == 0
    audit = [r for r in caplog.records if r.name == "tta_cache.audit"]
    assert [r.outcome for r in audit] == ["refused", "refused"]  # type: ignore[attr-defined]
    assert present(reads(sessions, USER, SESSION)) == ALL


def test_anonymize_user_keeps_progress_under_a_pseudonym_and_erases_the_rest(
    cache: tc.Cache, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    sessions = SessionCacheManager(cache)
    world(sessions, USER, SESSION)
    world(sessions, OTHER_USER, OTHER_SESSION)
    manager = CacheInvalidationManager(cache)
    dry = manager.anonymize_user(USER, dry_run=True)
    assert dry["keys_matched"] == 7
    with caplog.at_level(logging.INFO, logger="tta_cache.audit"):
        done = manager.anonymize_user(USER, confirm=dry["confirm_token"])
    assert done["keys_deleted"] == 7
    assert done["anonymized"] == {"therapeutic": 1}
    pseudonym = done["pseudonym"]
    assert pseudonym.startswith("anon-")
    assert USER not in pseudonym
    assert len([r for r in caplog.records if r.name == "tta_cache.audit"]) == 1

    with tc.Cache(redis_url, namespace="tta") as other_cache:
        kept = SessionCacheManager(other_cache).get_therapeutic_progress(pseudonym)
    assert kept is not None
    assert kept.user_id == pseudonym
    assert kept.achievements == ["first step"]
    assert kept.skill_levels == {"breathing": 0.4}
    assert [(g.goal_id, g.progress, g.description) for g in kept.goals] == [("g1", 0.5, "")]
    assert kept.next_focus is None
    assert (kept.last_updated.hour, kept.last_updated.minute) == (0, 0)
    assert present(reads(sessions, USER, SESSION)) == []
    assert redis_traces(redis_url, USER, SESSION) == []
    assert present(reads(sessions, OTHER_USER, OTHER_SESSION)) == ALL
