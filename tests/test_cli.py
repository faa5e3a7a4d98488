"""The ``tta-cache`` command line: parsing, exit codes, masked URLs, ``--json``, and the
maintenance commands against a real Redis (started by the suite, never the one on 6379)."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest
import redis

import tta_cache as tc
from tta_cache.cli import (
    EXIT_CONFIRM,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    Progress,
    build_parser,
    main,
)
from tta_cache.operations import state_key

SECRET = "s3cret-pw"


def run(*argv: str) -> tuple[int, str]:
    """``main(argv)``; the exit code and what it printed on stdout."""
    out = io.StringIO()
    code = main(list(argv), out=out)
    return code, out.getvalue()


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture(autouse=True)
def no_env_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TTA_CACHE_REDIS_URL", raising=False)


# ---------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    "argv",
    [
        ["--redis-url", "redis://h:1/0", "--namespace", "ns", "--json", "health"],
        ["health", "--redis-url", "redis://h:1/0", "--namespace", "ns", "--json"],
        ["--json", "health", "--redis-url", "redis://h:1/0", "--namespace", "ns"],
    ],
)
def test_common_options_are_accepted_before_or_after_the_command(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert (args.command, args.redis_url, args.namespace, args.json) == (
        "health",
        "redis://h:1/0",
        "ns",
        True,
    )


def test_an_option_before_the_command_is_not_reset_by_the_subcommand() -> None:
    args = build_parser().parse_args(["--timeout", "2.5", "stats"])
    assert args.timeout == 2.5
    assert args.verbose == 0


def test_subcommand_arguments_are_parsed() -> None:
    parser = build_parser()
    args = parser.parse_args(["cleanup", "expired", "--dry-run", "--max-age-hours", "6"])
    assert (args.what, args.dry_run, args.max_age_hours, args.time_limit) == (
        "expired",
        True,
        6.0,
        300.0,
    )
    args = parser.parse_args(["invalidate", "--user", "u1", "--user", "u2", "--session", "s1"])
    assert (args.user, args.session, args.character) == (["u1", "u2"], ["s1"], [])
    args = parser.parse_args(["purge", "kind", "session", "--confirm", "abc"])
    assert (args.what, args.kind, args.confirm, args.dry_run) == ("kind", "session", "abc", False)
    args = parser.parse_args(["forget-user", "user 7", "--dry-run"])
    assert (args.user_id, args.dry_run) == ("user 7", True)
    args = parser.parse_args(["demo", "--workers", "2", "--duration", "1.5", "--local-only"])
    assert (args.workers, args.duration, args.local_only, args.players) == (2, 1.5, True, 200)


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["no-such-command"],
        ["cleanup", "everything"],
        ["cleanup", "expired", "--time-limit", "0"],
        ["demo", "--workers", "0"],
        ["demo", "--choice-rate", "1.5"],
        ["demo", "--local-only", "--redis-url", "redis://127.0.0.1:1/0"],
        ["invalidate"],
        ["invalidate", "--session", "s1", "--preserve-therapeutic"],
        ["purge", "kind"],
        ["purge", "namespace", "session"],
        ["--redis-url", "ftp://127.0.0.1/0", "stats"],
        ["--redis-url", "redis+sentinel://127.0.0.1:26380", "stats"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert run(*argv)[0] == EXIT_USAGE
    assert capsys.readouterr().err  # and say why


def test_help_lists_the_commands_and_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert run("--help")[0] == EXIT_OK
    text = capsys.readouterr().out
    for name in ("demo", "health", "stats", "invalidate", "cleanup", "purge", "forget-user"):
        assert name in text
    for code in (EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_CONFIRM):
        assert f"\n  {code}  " in text


def test_bulk_deletes_without_a_token_exit_4_before_touching_redis(
    closed_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    # No server listens there: the refusal comes first, whatever Redis would say.
    url = f"redis://127.0.0.1:{closed_port}/0"
    for argv in (["forget-user", "u1"], ["purge", "namespace"], ["purge", "kind", "session"]):
        assert run("--redis-url", url, *argv)[0] == EXIT_CONFIRM
        assert "--dry-run" in capsys.readouterr().err


# ---------------------------------------------------------------------- unreachable, masked URL


@pytest.mark.parametrize(
    "argv",
    [
        ["health"],
        ["stats"],
        ["invalidate", "--user", "u1"],
        ["cleanup", "orphans", "--dry-run"],
        ["forget-user", "u1", "--dry-run"],
        ["purge", "namespace", "--dry-run"],
    ],
)
def test_unreachable_redis_exits_3_and_never_prints_the_password(
    argv: list[str], closed_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"redis://user:{SECRET}@127.0.0.1:{closed_port}/0"
    code, out = run("--redis-url", url, "--timeout", "0.5", *argv)
    err = capsys.readouterr().err
    assert code == EXIT_UNREACHABLE
    assert SECRET not in out + err
    assert f"redis://user:***@127.0.0.1:{closed_port}/0" in out + err


def test_the_url_comes_from_the_environment_when_not_given(
    closed_port: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TTA_CACHE_REDIS_URL", f"redis://:{SECRET}@127.0.0.1:{closed_port}/0")
    assert run("stats")[0] == EXIT_UNREACHABLE
    err = capsys.readouterr().err
    assert f"redis://:***@127.0.0.1:{closed_port}/0" in err
    assert SECRET not in err


def test_python_dash_m_runs_the_cli(closed_port: int) -> None:
    url = f"redis://:{SECRET}@127.0.0.1:{closed_port}/0"
    done = subprocess.run(
        [sys.executable, "-m", "tta_cache", "--redis-url", url, "health", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={k: v for k, v in os.environ.items() if k != "TTA_CACHE_REDIS_URL"},
    )
    assert done.returncode == EXIT_UNREACHABLE, done.stderr
    assert SECRET not in done.stdout + done.stderr


# ---------------------------------------------------------------------- progress


def test_progress_draws_a_bar_on_the_stream_and_erases_it() -> None:
    stream = io.StringIO()
    with Progress("scan", enabled=True, total=200, delay=0.0, stream=stream) as bar:
        bar.update(50)
        assert "[######..................]  25%" in bar.line(1.0)
        assert "50/200 keys" in bar.line(1.0)
    text = stream.getvalue()
    assert text.startswith("\rscan")
    assert text.endswith("\r")  # the line is blanked when done


def test_progress_without_a_total_counts_and_spins() -> None:
    bar = Progress("cleanup", enabled=False, stream=io.StringIO())
    bar.update(12_345)
    assert bar.line(0.0) == "cleanup  |  12,345 keys  0.0s"
    assert bar.line(0.1).split()[1] == "/"


def test_progress_draws_nothing_when_disabled_or_quick() -> None:
    for enabled, delay in ((False, 0.0), (True, 60.0)):
        stream = io.StringIO()
        with Progress("scan", enabled=enabled, delay=delay, stream=stream) as bar:
            bar.update(5)
        assert stream.getvalue() == ""


# ---------------------------------------------------------------------- against real Redis


@pytest.fixture
def cache(redis_url: str) -> Iterator[tc.Cache]:
    with tc.Cache(redis_url, namespace="tta") as c:
        assert c.wait_ready(5.0)
        yield c


def seed_users(cache: tc.Cache, users: int = 5, sessions: int = 4) -> None:
    """Facade-style state: per user, sessions with a character each, and therapeutic progress."""
    for u in range(users):
        user = f"u{u}"
        progress_tags = [f"therapeutic:{user}"]
        cache.set(
            state_key("therapeutic", user), {"level": u}, kind="therapeutic", tags=progress_tags
        )
        for s in range(sessions):
            sid = f"s{u}-{s}"
            session_tags = [f"session:{sid}", f"user:{user}"]
            cache.set(state_key("session", sid), {"user": user}, kind="session", tags=session_tags)
            cache.set(
                state_key("character", sid, "guide"),
                {"mood": "calm"},
                kind="character",
                tags=[f"session:{sid}"],
            )


def data_keys(redis_url: str) -> set[bytes]:
    with redis.Redis.from_url(redis_url) as client:
        return {k for k in client.scan_iter(count=1000) if b":tag:" not in k}


def test_health_of_a_live_redis_exits_0_with_the_url_masked(
    redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with_password = redis_url.replace("redis://", f"redis://default:{SECRET}@")
    with redis.Redis.from_url(redis_url) as client:
        client.config_set("requirepass", SECRET)
    try:
        code, out = run("--redis-url", with_password, "health", "--json")
        report = json.loads(out)
        code_text, text = run("--redis-url", with_password, "health")
    finally:
        with redis.Redis.from_url(with_password) as client:
            client.config_set("requirepass", "")
    assert code == EXIT_OK, (report, capsys.readouterr().err)
    assert report["overall_status"] == "healthy"
    assert report["redis"]["connected"] is True
    assert report["redis"]["url"] == with_password.replace(SECRET, "***")
    assert code_text == EXIT_OK
    assert text.splitlines()[0].split() == ["status", "healthy"]
    assert SECRET not in out + text + capsys.readouterr().err


def test_stats_counts_entries_per_kind(redis_url: str, cache: tc.Cache) -> None:
    seed_users(cache, users=3, sessions=2)
    code, out = run("--redis-url", redis_url, "stats", "--json")
    stats = json.loads(out)
    assert code == EXIT_OK
    assert stats["entries_by_kind"] == {"therapeutic": 3, "session": 6, "character": 6}
    assert stats["entries"] == 15
    assert stats["listening_processes"] >= 1  # this test's cache holds the channel


def test_invalidate_reaches_another_cache(redis_url: str, cache: tc.Cache) -> None:
    loads: list[str] = []

    @cache.cached(kind="emotional", tags=("user:{user_id}",))
    def load_emotion(user_id: str) -> str:
        loads.append(user_id)
        return f"calm#{len(loads)}"

    assert load_emotion("u1") == load_emotion("u1") == "calm#1"
    code, out = run("--redis-url", redis_url, "invalidate", "--user", "u1")
    assert code == EXIT_OK, out
    assert "invalidate_user" in out
    cache.invalidate(tags=["barrier:x"])  # a round trip: the CLI's message has arrived by now
    assert load_emotion("u1") == "calm#2"


def test_cleanup_orphans_dry_run_counts_then_the_real_run_deletes_them(
    redis_url: str, cache: tc.Cache
) -> None:
    seed_users(cache, users=4, sessions=3)
    cache.invalidate(user="u1")  # u1's 3 sessions are now stale entries in Redis
    before = data_keys(redis_url)

    code, out = run("--redis-url", redis_url, "cleanup", "orphans", "--dry-run", "--json")
    dry = json.loads(out)
    assert code == EXIT_OK
    assert (dry["dry_run"], dry["stale_entries"], dry["keys_deleted"]) == (True, 3, 0)
    assert data_keys(redis_url) == before

    code, out = run("--redis-url", redis_url, "cleanup", "orphans", "--json")
    real = json.loads(out)
    assert code == EXIT_OK
    assert real["keys_deleted"] == real["total_orphaned"] >= 3  # + the characters left orphaned
    gone = before - data_keys(redis_url)
    assert len(gone) == real["keys_deleted"]
    assert all(b"u1-" in k or b"s1-" in k for k in gone)


def test_cleanup_expired_dry_run_deletes_nothing(redis_url: str, cache: tc.Cache) -> None:
    seed_users(cache, users=2, sessions=2)
    before = data_keys(redis_url)
    code, out = run(
        "--redis-url", redis_url, "cleanup", "expired", "--max-age-hours", "0", "--dry-run"
    )
    assert code == EXIT_OK
    assert "sessions_cleaned    4" in out.splitlines()
    assert data_keys(redis_url) == before
    code, out = run("--redis-url", redis_url, "cleanup", "expired", "--max-age-hours", "0")
    assert code == EXIT_OK
    assert len(before - data_keys(redis_url)) == 4  # the sessions; characters are orphans now


def test_forget_user_without_or_with_a_wrong_token_deletes_nothing(
    redis_url: str, cache: tc.Cache, capsys: pytest.CaptureFixture[str]
) -> None:
    seed_users(cache)
    before = data_keys(redis_url)
    assert run("--redis-url", redis_url, "forget-user", "u2")[0] == EXIT_CONFIRM
    assert run("--redis-url", redis_url, "forget-user", "u2", "--confirm", "0" * 32)[0] == (
        EXIT_CONFIRM
    )
    assert "refused" in capsys.readouterr().err
    assert data_keys(redis_url) == before


def test_forget_user_with_its_dry_run_token_erases_exactly_the_user(
    redis_url: str, cache: tc.Cache
) -> None:
    seed_users(cache)
    before = data_keys(redis_url)
    code, out = run("--redis-url", redis_url, "forget-user", "u2", "--dry-run")
    assert code == EXIT_OK
    token = out.rsplit("--confirm ", 1)[1].split()[0]
    assert data_keys(redis_url) == before

    code, out = run("--redis-url", redis_url, "forget-user", "u2", "--confirm", token, "--json")
    result = json.loads(out)
    assert code == EXIT_OK
    assert result["confirmed"] is True
    gone = before - data_keys(redis_url)
    assert len(gone) == result["keys_deleted"] == 1 + 4 + 4  # progress, sessions, characters
    assert all(b"u2" in k or b"s2-" in k for k in gone)


def test_purge_kind_deletes_exactly_what_its_dry_run_listed(
    redis_url: str, cache: tc.Cache
) -> None:
    seed_users(cache, users=2, sessions=2)
    before = data_keys(redis_url)
    code, out = run("--redis-url", redis_url, "purge", "kind", "character", "--dry-run", "--json")
    dry = json.loads(out)
    assert (code, dry["keys_matched"], dry["keys_deleted"]) == (EXIT_OK, 4, 0)
    assert data_keys(redis_url) == before

    code, out = run(
        "--redis-url", redis_url, "purge", "kind", "character", "--confirm", dry["confirm_token"]
    )
    assert code == EXIT_OK
    gone = before - data_keys(redis_url)
    assert len(gone) == 4
    assert all(b"character" in k for k in gone)
