"""The library, its maintenance and its CLI as a Redis ACL user holding only ``acl_rule()``: its
namespace's keys (``~tta:*``) and channels (``&tta:*``) and the commands listed in
``tta_cache.operations.acl``. Every operation runs with ``stats()["errors"] == 0``; what needs
more (``tta-cache stats``: INFO) says which command to grant."""

from __future__ import annotations

import asyncio
import io
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

import tta_cache as tc
from helpers.redis_server import RedisClusterServers, RedisServer
from tta_cache.cli import main
from tta_cache.operations import ACL_COMMANDS, MAINTENANCE_COMMANDS, acl_rule
from tta_cache.tta import CacheInvalidationManager, EmotionalState, SessionCacheManager

PASSWORD = "acl-test-pw"
WAIT = 10.0
KEYS = {"k1": bytes(range(32))}


def user_args(rule: str, user: str = "tta") -> list[str]:
    """redis-server arguments creating ``user`` with ``rule`` (the default user stays, for the
    test's own inspection)."""
    return ["--user", user, "on", f">{PASSWORD}", *rule.split()]


@pytest.fixture(scope="module")
def acl_server() -> Iterator[RedisServer]:
    with RedisServer(*user_args(acl_rule("tta"))) as server:
        yield server


@pytest.fixture
def url(acl_server: RedisServer) -> str:
    with acl_server.client() as admin:
        admin.flushall()
        admin.execute_command("ACL", "LOG", "RESET")
    return f"redis://tta:{PASSWORD}@127.0.0.1:{acl_server.port}/0"


@pytest.fixture
def make() -> Iterator[Callable[..., tc.Cache]]:
    made: list[tc.Cache] = []

    def factory(url: str, **options: Any) -> tc.Cache:
        options.setdefault("encryption_keys", KEYS)
        options.setdefault("op_timeout", 5.0)  # errors == 0 is about the ACL, not latency
        cache = tc.Cache(url, **options)
        made.append(cache)
        return cache

    yield factory
    for cache in made:
        cache.close()


# redis-py's connect handshake: CLIENT SETINFO (naming the connection) and, from redis-py 8.2,
# CLIENT MAINT_NOTIFICATIONS; it ignores a refusal of either. Redis 6.2 logs a refused one as
# "client", 7.2 and later by subcommand, 7.0 not at all (it does not know them). tta-cache itself
# sends no CLIENT command (docs/security.md).
HANDSHAKE = {"client", "client|setinfo", "client|maint_notifications"}


def denied(server: RedisServer) -> list[str]:
    """What the ACL refused since the test began (ACL LOG, read as the default user), but for
    redis-py's handshake probes."""
    with server.client() as admin:
        entries = admin.execute_command("ACL", "LOG")
    return sorted({e[b"object"].decode() for e in entries} - HANDSHAKE)


def eventually(check: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + WAIT
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def test_the_rule_confines_the_user_to_its_namespace(acl_server: RedisServer, url: str) -> None:
    with redis.Redis.from_url(url) as client:
        client.set("tta:x", 1)
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.set("other:x", 1)
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.publish("other:invalidate", "x")
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.flushall()
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.info()


def test_caching_invalidation_leases_and_batches_run_without_an_error(
    acl_server: RedisServer, url: str, make: Callable[..., tc.Cache]
) -> None:
    a, b = make(url), make(url)
    assert a.wait_ready(WAIT)
    assert b.wait_ready(WAIT)
    source = {"mood": "calm"}
    computed: list[str] = []
    entered, release = threading.Event(), threading.Event()

    def loader(cache: tc.Cache, block: bool) -> Any:
        @cache.cached(kind="emotional", tags=("user:{user_id}",), lock=True)
        def mood(user_id: str) -> str:
            computed.append(user_id)
            if block:
                entered.set()
                assert release.wait(WAIT)
            return source["mood"]

        return mood

    load_a, load_b = loader(a, block=True), loader(b, block=False)
    # A lease across two caches: b waits for a's computation instead of running its own.
    results: list[str] = []
    leader = threading.Thread(target=lambda: results.append(load_a("u1")))
    leader.start()
    assert entered.wait(WAIT)
    follower = threading.Thread(target=lambda: results.append(load_b("u1")))
    follower.start()
    assert eventually(lambda: b.stats()["leases"]["waits"] >= 1)
    release.set()
    leader.join()
    follower.join()
    assert results == ["calm", "calm"]
    assert computed == ["u1"]
    # Invalidation through the channel reaches the other cache.
    source["mood"] = "anxious"
    entered.clear()
    release.set()
    received = b.stats()["invalidations"]["received"]
    a.invalidate(user="u1")
    assert eventually(
        lambda: b.stats()["invalidations"]["received"] > received and load_b("u1") == "anxious"
    )
    # Batch calls, raw access, per-key deletes, the TTA facade.
    a.set_many({"x": 1, "y": 2}, kind="therapeutic", tags=["user:u1"])
    assert b.get_many(["x", "y", "z"], kind="therapeutic") == {"x": 1, "y": 2}
    a.delete("x")
    assert eventually(lambda: b.get("x", kind="therapeutic") is None)
    facade = SessionCacheManager(a)
    assert facade.cache_multiple_emotional_states(
        [EmotionalState("u1", intensity=0.4), EmotionalState("u2")]
    )
    assert set(SessionCacheManager(b).get_multiple_emotional_states(["u1", "u2"])) == {"u1", "u2"}
    load_a.invalidate("u1")
    assert a.health()["overall_status"] == "healthy"
    for cache in (a, b):
        stats = cache.stats()
        assert stats["errors"] == 0, stats["errors_by_type"]
        assert stats["decode_errors"] == 0
    assert denied(acl_server) == []


async def test_async_calls_run_without_an_error(
    acl_server: RedisServer, url: str, make: Callable[..., tc.Cache]
) -> None:
    cache = make(url)

    @cache.cached(kind="narrative", tags=("session:{session_id}",), lock=True)
    async def scene(session_id: str) -> str:
        await asyncio.sleep(0)
        return f"scene of {session_id}"

    assert await asyncio.gather(scene("s1"), scene("s1")) == ["scene of s1"] * 2
    await cache.aset_many({"a": 1, "b": 2})
    assert await cache.aget_many(["a", "b"]) == {"a": 1, "b": 2}
    await cache.ainvalidate(session="s1")
    await cache.adelete("a")
    assert cache.stats()["errors"] == 0
    await cache.aclose()
    assert denied(acl_server) == []


def test_maintenance_runs_without_an_error(
    acl_server: RedisServer, url: str, make: Callable[..., tc.Cache]
) -> None:
    cache = make(url)
    for i in range(5):
        cache.set(f"session:s{i}", {"user_id": f"u{i}"}, kind="session", tags=[f"user:u{i}"])
        cache.set(f"emotional:u{i}", {"v": i}, kind="emotional", tags=[f"user:u{i}"])
    cache.invalidate(user="u0")
    manager = CacheInvalidationManager(cache)
    for report in (
        manager.cleanup_orphaned_data(),
        manager.cleanup_expired_sessions(max_age_hours=0),
        manager.rotate_keys(dry_run=True),
    ):
        assert report["error"] is None, report
    listed = manager.forget_user("u1", dry_run=True)
    assert manager.forget_user("u1", confirm=listed["confirm_token"])["error"] is None
    listed = manager.purge_kind("emotional", dry_run=True)
    assert manager.purge_kind("emotional", confirm=listed["confirm_token"])["error"] is None
    assert cache.stats()["errors"] == 0
    assert denied(acl_server) == []


@pytest.mark.parametrize(
    "argv",
    [
        ["health"],
        ["invalidate", "--user", "u1", "--session", "s1"],
        ["cleanup", "orphans"],
        ["cleanup", "expired", "--dry-run"],
        ["forget-user", "u1", "--dry-run"],
        ["purge", "kind", "session", "--dry-run"],
        ["rotate-keys", "--dry-run"],
    ],
)
def test_cli_commands_run_as_the_restricted_user(
    acl_server: RedisServer,
    url: str,
    argv: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("TTA_CACHE_ENCRYPTION_KEYS", "k1:" + "A" * 43 + "=")
    code = main(["--redis-url", url, *argv], out=io.StringIO())
    assert code == 0, capsys.readouterr().err
    assert denied(acl_server) == []


def test_stats_needs_info_and_says_so(
    acl_server: RedisServer, url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--redis-url", url, "stats"], out=io.StringIO()) == 1
    err = capsys.readouterr().err
    assert "refused by the ACL" in err
    assert "grant +info" in err
    assert denied(acl_server) == ["info"]


def test_with_the_maintenance_commands_granted_stats_works(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rule = acl_rule("tta", extra=MAINTENANCE_COMMANDS["stats"])
    with RedisServer(*user_args(rule)) as server:
        url = f"redis://tta:{PASSWORD}@127.0.0.1:{server.port}/0"
        assert main(["--redis-url", url, "stats"], out=io.StringIO()) == 0, capsys.readouterr()
        assert denied(server) == []


# ("time": every bump reads the server clock; "incr", its fallback, is seldom reached)
@pytest.mark.parametrize("missing", ["publish", "time", "mget"])
def test_a_command_missing_from_the_rule_is_named_in_the_error(
    missing: str, make: Callable[..., tc.Cache]
) -> None:
    commands = [c for c in ACL_COMMANDS if c != missing]
    rule = "resetchannels ~tta:* &tta:* -@all " + " ".join(f"+{c}" for c in commands)
    with RedisServer(*user_args(rule)) as server:
        cache = make(f"redis://tta:{PASSWORD}@127.0.0.1:{server.port}/0", on_error="raise")

        def use() -> None:
            cache.set_many({"a": 1}, tags=["user:u1"])
            cache.get_many(["a", "b"])
            cache.invalidate(user="u1")

        with pytest.raises(tc.BackendError, match="refused by the ACL") as caught:
            use()
        assert missing in str(caught.value) or "inside a script" in str(caught.value)
        assert denied(server) == [missing]


def test_the_rule_for_a_db_other_than_0_adds_select() -> None:
    assert "+select" in acl_rule("tta", db=2)
    assert "+select" not in acl_rule("tta")
    with pytest.raises(tc.ConfigurationError):
        acl_rule("bad namespace")


@pytest.mark.slow
def test_cluster_as_the_restricted_user() -> None:
    rule = acl_rule("tta", cluster=True)
    with RedisClusterServers(3, *user_args(rule)) as cluster:
        url = f"redis+cluster://tta:{PASSWORD}@" + ",".join(
            f"127.0.0.1:{n.port}" for n in cluster.nodes
        )
        with tc.Cache(url, op_timeout=5.0) as a, tc.Cache(url, op_timeout=5.0) as b:
            assert a.wait_ready(WAIT)
            assert b.wait_ready(WAIT)
            calls: list[str] = []

            def loader(cache: tc.Cache) -> Any:
                @cache.cached(kind="character", tags=("user:{user_id}",), lock=True)
                def load(user_id: str) -> int:
                    calls.append(user_id)
                    return len(calls)

                return load

            load_a, load_b = loader(a), loader(b)
            assert [load_a(u) for u in ("u1", "u2", "u3")] == [1, 2, 3]
            assert [load_b(u) for u in ("u1", "u2", "u3")] == [1, 2, 3]
            a.set_many({f"k{i}": i for i in range(10)})
            assert len(b.get_many([f"k{i}" for i in range(10)])) == 10
            a.invalidate(user="u1")
            assert eventually(lambda: load_b("u1") == 4)
            assert a.stats()["errors"] == b.stats()["errors"] == 0
        refused: set[str] = set()
        for node in cluster.nodes:
            with node.client() as admin:
                refused |= {e[b"object"].decode() for e in admin.execute_command("ACL", "LOG")}
        assert refused - HANDSHAKE == set()
