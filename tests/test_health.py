"""Health without Redis: connection statistics, the monitor, settings, no import-time threads."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

import tta_cache as tc
from tta_cache.core.policy import BreakerState
from tta_cache.exceptions import BackendTimeout, ConfigurationError
from tta_cache.observability import ConnectionStats, HealthMonitor
from tta_cache.testing import FakeClock

WAIT = 10.0


def test_connection_stats_count_connects_failures_and_reconnections() -> None:
    clock = FakeClock(100.0)
    stats = ConnectionStats(clock)
    assert stats.snapshot()["state"] == "unknown"
    stats.up()
    stats.up()  # already up: nothing new
    clock.now = 101.0
    stats.down(BackendTimeout("redis GET timed out"))
    stats.down(BackendTimeout("redis GET timed out"))
    clock.now = 102.0
    stats.up()
    snap = stats.snapshot()
    assert {k: snap[k] for k in ("state", "connects", "reconnections", "failures")} == {
        "state": "up",
        "connects": 2,
        "reconnections": 1,
        "failures": 2,
    }
    assert snap["consecutive_failures"] == 0
    assert snap["last_error"] == "BackendTimeout: redis GET timed out"
    assert snap["last_error_at"] == 101.0
    assert [(t["at"], t["from"], t["to"]) for t in snap["transitions"]] == [
        (100.0, "unknown", "up"),
        (101.0, "up", "down"),
        (102.0, "down", "up"),
    ]


def test_connection_stats_keep_the_breakers_state_changes() -> None:
    stats = ConnectionStats(FakeClock(100.0))
    assert stats.breaker_history() == []
    stats.breaker_moved(BreakerState.CLOSED, BreakerState.OPEN)
    stats.breaker_moved(BreakerState.OPEN, BreakerState.HALF_OPEN)
    stats.breaker_moved(BreakerState.HALF_OPEN, BreakerState.OPEN)
    assert stats.breaker_history() == ["closed", "open", "half_open", "open"]
    assert stats.snapshot()["state"] == "unknown"  # the link itself did not move


def test_connection_stats_keep_only_recent_transitions() -> None:
    stats = ConnectionStats(FakeClock(100.0), history=4)
    for _ in range(10):
        stats.down("boom")
        stats.up()
    assert len(stats.snapshot()["transitions"]) == 4
    assert stats.snapshot()["reconnections"] == 10


def test_health_monitor_checks_periodically_survives_errors_and_stops() -> None:
    calls: list[int] = []
    twice = threading.Event()

    def check() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a failing check must not end the monitor")
        twice.set()

    monitor = HealthMonitor(check, interval=0.01)
    monitor.start()
    try:
        assert twice.wait(WAIT)
    finally:
        monitor.stop()
    stopped_at = len(calls)
    time.sleep(0.05)
    assert len(calls) == stopped_at  # no check after stop()


def test_local_only_cache_is_healthy_and_starts_no_monitor() -> None:
    cache = tc.Cache(None)
    try:

        @cache.cached()
        def load(x: int) -> int:
            return x

        assert load(1) == 1
        health = cache.health()
        assert health["overall_status"] == "healthy"
        assert health["reasons"] == []
        assert health["redis"] == {"configured": False}
        assert cache.engine.monitor is None
        assert cache.stats()["breaker"]["state"] == "closed"
    finally:
        cache.close()


@pytest.mark.parametrize(
    "options",
    [
        {"soft_timeout": -1.0},
        {"soft_timeout": float("nan")},
        {"hard_timeout": 0.0},
        {"hard_timeout": float("inf")},
        {"lock_timeout": 0.0},
        {"breaker_threshold": 0},
        {"breaker_reset_timeout": 0.0},
    ],
)
def test_settings_that_cannot_work_are_refused(options: dict[str, float]) -> None:
    with pytest.raises(ConfigurationError):
        tc.Cache(None, **options)


def test_timeouts_per_decorator_are_checked_when_decorating() -> None:
    cache = tc.Cache(None)
    with pytest.raises(ConfigurationError, match="hard_timeout"):

        @cache.cached(hard_timeout=-1)
        def load(x: int) -> int:
            return x


def test_importing_and_building_a_cache_start_no_thread() -> None:
    # Threads (channel, health monitor) start on the first use of Redis, never before.
    code = (
        "import threading; n = threading.active_count()\n"
        "import tta_cache\n"
        "cache = tta_cache.Cache('redis://127.0.0.1:1/0', health_check_interval=0.01)\n"
        "@cache.cached()\n"
        "def f(x: int) -> int: return x\n"
        "assert threading.active_count() == n, threading.enumerate()\n"
        "print('ok')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.stdout.strip() == "ok", out.stderr
