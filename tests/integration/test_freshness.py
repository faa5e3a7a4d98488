"""Freshness: stale-while-revalidate, stale-if-error, soft and hard timeouts, early refresh.

Policy is driven by a fake clock (``Cache(clock=...)``) that the tests move; entries are judged
against it, while Redis keeps them by its own (real) clock for far longer than a test runs. Each
step asserts the exact value served.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

import tta_cache as tc
from helpers.caches import aclose_all
from tta_cache.core.policy import Freshness, Verdict, expiries, judge
from tta_cache.exceptions import ComputeTimeout
from tta_cache.testing import FakeClock

WAIT = 10.0
TTL, STALE = 10.0, 20.0  # fresh for 10 s, then served stale for 20 s more


class Source:
    """The source of truth: returns ``value``; raises while ``failing``; may stall on a gate."""

    def __init__(self, value: str) -> None:
        self.value = value
        self.failing = False
        self.calls = 0
        self.gate: threading.Event | None = None
        self.entered = threading.Event()

    def hold(self) -> threading.Event:
        """Stall the next calls until the returned gate is set; ``entered`` tells when one is in."""
        self.entered.clear()
        self.gate = threading.Event()
        return self.gate

    def __call__(self) -> str:
        self.calls += 1
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(WAIT)
        if self.failing:
            raise RuntimeError("the source is down")
        return self.value


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make(redis_url: str, clock: FakeClock) -> Iterator[Any]:
    made: list[tc.Cache] = []

    def factory(**options: Any) -> tc.Cache:
        options = {
            "clock": clock,
            "stale_ttl": STALE,
            "jitter": 0.0,
            "beta": 0.0,
            "health_check_interval": 0,
            **options,
        }
        cache = tc.Cache(redis_url, namespace="fresh", **options)
        assert cache.wait_ready(WAIT)
        made.append(cache)
        return cache

    yield factory
    for cache in made:
        cache.engine.wait_refreshes(WAIT)
        cache.close()


def freshness(cache: tc.Cache) -> dict[str, Any]:
    s = cache.stats()
    return {"stale_served": s["stale_served"], **s["refreshes"]}


def test_stale_while_revalidate_serves_stale_at_once_and_refreshes_once(
    make: Any, clock: FakeClock
) -> None:
    cache = make()
    source = Source("v1")

    @cache.cached(ttl=TTL)
    def load(k: str) -> str:
        return source()

    assert load("a") == "v1"  # t=0: a miss, computed
    source.value = "v2"
    clock.advance(5)
    assert load("a") == "v1"  # t=5: fresh
    clock.advance(6)
    source.hold()  # stall the refresh, to see what callers get meanwhile
    assert load("a") == "v1"  # t=11: stale, served at once; a refresh starts
    assert source.entered.wait(WAIT)
    assert load("a") == "v1"  # still stale; no second refresh while one runs
    source.gate.set()
    assert cache.engine.wait_refreshes(WAIT)
    assert load("a") == "v2"  # the refreshed value
    assert source.calls == 2
    assert freshness(cache) == {"stale_served": 2, "done": 1, "errors": 0, "running": 0}
    clock.advance(TTL + STALE)  # t=41: past the refreshed entry's hard expiry too
    source.value = "v3"
    assert load("a") == "v3"  # expired: recomputed before returning
    assert freshness(cache)["stale_served"] == 2


def test_stale_if_error_keeps_serving_and_retries_after_the_throttle(
    make: Any, clock: FakeClock
) -> None:
    cache = make(error_throttle=5.0)
    source = Source("v1")

    @cache.cached(ttl=TTL)
    def load(k: str) -> str:
        return source()

    assert load("a") == "v1"
    source.failing = True
    clock.advance(11)  # stale
    assert load("a") == "v1"  # served; its refresh fails in the background
    assert cache.engine.wait_refreshes(WAIT)
    assert source.calls == 2
    assert load("a") == "v1"  # stale-if-error: still served ...
    assert cache.engine.wait_refreshes(WAIT)
    assert source.calls == 2  # ... and the failing source is left alone
    clock.advance(5)  # the throttle has passed
    assert load("a") == "v1"
    assert cache.engine.wait_refreshes(WAIT)
    assert source.calls == 3  # tried again, failed again
    source.failing = False
    source.value = "v2"
    clock.advance(5)
    assert load("a") == "v1"  # the last stale serve: this refresh works
    assert cache.engine.wait_refreshes(WAIT)
    assert load("a") == "v2"
    assert source.calls == 4
    assert freshness(cache) == {"stale_served": 4, "done": 1, "errors": 2, "running": 0}


def test_a_failing_function_without_a_stale_value_raises(make: Any, clock: FakeClock) -> None:
    cache = make()
    source = Source("v1")
    source.failing = True

    @cache.cached(ttl=TTL)
    def load(k: str) -> str:
        return source()

    with pytest.raises(RuntimeError, match="the source is down"):
        load("a")
    source.failing = False
    clock.advance(TTL + STALE + 1)
    assert load("a") == "v1"


def test_soft_timeout_waits_for_a_quick_refresh_and_serves_stale_past_it(
    make: Any, clock: FakeClock
) -> None:
    cache = make()
    source = Source("v1")

    @cache.cached(ttl=TTL, soft_timeout=5.0)
    def patient(k: str) -> str:
        return source()

    @cache.cached(ttl=TTL, soft_timeout=0.05)
    def hasty(k: str) -> str:
        return source()

    assert patient("a") == "v1"
    assert hasty("a") == "v1"
    clock.advance(11)
    source.value = "v2"
    assert patient("a") == "v2"  # the refresh finished within soft_timeout: the fresh value
    source.value = "v3"
    source.hold()
    assert hasty("a") == "v1"  # the refresh overran soft_timeout: the stale value ...
    source.gate.set()
    assert cache.engine.wait_refreshes(WAIT)
    assert hasty("a") == "v3"  # ... and the computation finished in the background and filled
    assert freshness(cache)["stale_served"] == 1


def test_hard_timeout_raises_compute_timeout_or_serves_stale(make: Any, clock: FakeClock) -> None:
    cache = make()
    source = Source("v1")

    @cache.cached(ttl=TTL, hard_timeout=0.05, soft_timeout=5.0)
    def load(k: str) -> str:
        return source()

    source.hold()
    try:
        with pytest.raises(ComputeTimeout):
            load("cold")  # nothing stale to fall back on
        source.gate.set()
        assert load("a") == "v1"
        clock.advance(11)
        source.hold()
        source.value = "v2"
        assert load("a") == "v1"  # the refresh hit hard_timeout: stale-if-error
        assert cache.engine.wait_refreshes(WAIT)
        stats = cache.stats()
        assert stats["compute_timeouts"] == 2
        assert stats["refreshes"]["errors"] == 1
    finally:
        source.gate.set()


async def test_async_stale_while_revalidate_and_stale_if_error(make: Any, clock: FakeClock) -> None:
    cache = make(error_throttle=5.0)
    source = Source("v1")
    try:

        @cache.cached(ttl=TTL)
        async def load(k: str) -> str:
            await asyncio.sleep(0)
            return source()

        assert await load("a") == "v1"
        source.value = "v2"
        clock.advance(11)
        assert await load("a") == "v1"  # stale at once; a task refreshes
        assert await cache.engine.await_refreshes(WAIT)
        assert await load("a") == "v2"
        source.failing = True
        clock.advance(11)
        assert await load("a") == "v2"  # stale; the refresh fails
        assert await cache.engine.await_refreshes(WAIT)
        assert await load("a") == "v2"  # throttled: not retried
        assert await cache.engine.await_refreshes(WAIT)
        assert source.calls == 3
        assert freshness(cache) == {"stale_served": 3, "done": 1, "errors": 1, "running": 0}
    finally:
        await aclose_all([cache])


async def test_async_timeouts(make: Any, clock: FakeClock) -> None:
    cache = make()
    release = asyncio.Event()
    try:

        @cache.cached(ttl=TTL, hard_timeout=0.05)
        async def stuck(k: str) -> str:
            await release.wait()
            return "never"

        @cache.cached(ttl=TTL, soft_timeout=0.05)
        async def slow(k: str) -> str:
            await release.wait()
            return f"slow {k}"

        with pytest.raises(ComputeTimeout):
            await stuck("a")
        release.set()
        assert await slow("a") == "slow a"
        release.clear()
        clock.advance(11)
        assert await slow("a") == "slow a"  # stale after soft_timeout; the task goes on
        assert cache.stats()["refreshes"]["running"] == 1
        release.set()
        assert await cache.engine.await_refreshes(WAIT)
        assert cache.stats()["refreshes"]["done"] == 1
        assert cache.stats()["compute_timeouts"] == 1
    finally:
        release.set()
        await aclose_all([cache])


class Draws(random.Random):
    """A Random whose draws are fixed: ``random()`` returns ``value``."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


def test_early_refresh_serves_the_value_and_recomputes_it_in_the_background(
    make: Any, clock: FakeClock
) -> None:
    # XFetch: near the end of its life an entry that took a while to compute is refreshed early
    # (with the draw fixed, deterministically); L1 off so each read is judged.
    cache = make(beta=1.0, local_maxsize=0, rng=Draws(1.0 - 1e-6))
    source = Source("v1")
    threading.Timer(0.05, source.hold().set).start()  # the first computation takes ~50 ms

    @cache.cached(ttl=TTL)
    def load(k: str) -> str:
        return source()

    assert load("a") == "v1"
    source.gate = None
    source.value = "v2"
    clock.advance(2)
    assert load("a") == "v1"  # 8 s before expiry: fresh, nothing happens
    assert cache.engine.wait_refreshes(WAIT)
    assert source.calls == 1
    clock.advance(7.9)
    assert load("a") == "v1"  # 0.1 s before expiry: served, and refreshed early
    assert cache.engine.wait_refreshes(WAIT)
    assert source.calls == 2
    assert load("a") == "v2"
    assert freshness(cache) == {"stale_served": 0, "done": 1, "errors": 0, "running": 0}


def test_one_refresh_across_processes_with_lock(redis_url: str, clock: FakeClock) -> None:
    options = {"clock": clock, "stale_ttl": STALE, "jitter": 0.0, "beta": 0.0}
    caches = [
        tc.Cache(redis_url, namespace="fresh", health_check_interval=0, **options) for _ in range(2)
    ]
    source = Source("v1")
    try:
        for cache in caches:
            assert cache.wait_ready(WAIT)

        def make(cache: tc.Cache) -> Any:
            @cache.cached(ttl=TTL, lock=True)
            def load(k: str) -> str:
                return source()

            return load

        a, b = map(make, caches)
        assert a("k") == "v1"
        assert b("k") == "v1"  # from Redis
        clock.advance(11)
        source.value = "v2"
        source.hold()
        assert a("k") == "v1"  # stale; A's refresh takes the lease and stalls
        assert source.entered.wait(WAIT)
        assert b("k") == "v1"  # stale; B's refresh finds the lease taken and stands down
        assert caches[1].engine.wait_refreshes(WAIT)
        source.gate.set()
        assert caches[0].engine.wait_refreshes(WAIT)
        assert source.calls == 2
        assert a("k") == "v2"
        assert b("k") == "v2"
    finally:
        if source.gate is not None:
            source.gate.set()
        for cache in caches:
            cache.close()


def test_an_entry_invalidated_while_refreshing_is_not_written(make: Any, clock: FakeClock) -> None:
    cache = make()
    source = Source("v1")

    @cache.cached(ttl=TTL, tags=("doc:{k}",))
    def load(k: str) -> str:
        return source()

    assert load("a") == "v1"
    clock.advance(11)
    source.hold()
    assert load("a") == "v1"  # stale; the refresh reads the source (v1) and stalls
    assert source.entered.wait(WAIT)
    source.value = "v2"
    cache.invalidate(doc="a")
    source.gate.set()
    assert cache.engine.wait_refreshes(WAIT)
    source.gate = None
    assert load("a") == "v2"  # the refresh's v1 was not kept (I3): a miss, computed anew
    assert source.calls == 3


def simulate_windows(beta: float, windows: int, seed: int = 4) -> dict[str, Any]:
    """Callers read one entry (Poisson, 50/s); each read is judged as the engine judges it. The
    first caller whose read says REFRESH (or EXPIRED) recomputes, which takes ``compute`` seconds;
    meanwhile the other callers still see the old entry. Counts, per window: reads that would also
    start a recomputation (REFRESH or EXPIRED while one runs: what a lease or single-flight must
    absorb), and reads that found the entry expired (the expiry-time burst)."""
    rng = random.Random(seed)
    fresh = Freshness(ttl=60.0, jitter=0.0, beta=beta)
    compute, rate = 2.0, 50.0
    now = 0.0
    fresh_until, _ = expiries(now, fresh, 0.5)
    lead: list[float] = []  # seconds before expiry each recomputation started (< 0: after it)
    extra = expired = 0
    for _ in range(windows):
        started: float | None = None
        while started is None or now < started + compute:
            now += rng.expovariate(rate)
            verdict = judge(now, fresh_until, fresh_until, compute, beta, 1 - rng.random())
            if verdict is Verdict.EXPIRED:
                expired += 1
            if verdict is not Verdict.FRESH:
                if started is None:
                    started = now
                    lead.append(fresh_until - now)
                else:
                    extra += 1
        fresh_until, _ = expiries(started + compute, fresh, 0.5)
    return {"lead": lead, "extra": extra / windows, "expired": expired / windows}


def test_xfetch_recomputes_about_once_per_window_before_expiry(
    capsys: pytest.CaptureFixture[str],
) -> None:
    windows = 40
    xfetch = simulate_windows(beta=1.0, windows=windows)
    plain = simulate_windows(beta=0.0, windows=windows)
    histogram = Counter(min(int(s), 15) for s in xfetch["lead"])
    with capsys.disabled():
        print(
            f"\nXFetch (beta 1) vs none (beta 0): {windows} windows of 60 s, 2 s to compute, "
            "50 reads/s"
        )
        print(
            f"  beta 1: other reads that would recompute too, per window: {xfetch['extra']:.2f}; "
            f"reads finding it expired: {xfetch['expired']:.2f}"
        )
        print(
            f"  beta 0: other reads that would recompute too, per window: {plain['extra']:.2f}; "
            f"reads finding it expired: {plain['expired']:.2f}"
        )
        print("  beta 1, when the recomputation started (seconds before expiry):")
        for b in range(16):
            label = f"{b}-{b + 1} s" if b < 15 else ">=15 s"
            print(f"    {label:>7}: {'#' * histogram[b]} {histogram[b]}")
    assert all(s > 0 for s in xfetch["lead"])  # every window was refreshed before expiry ...
    assert xfetch["expired"] == 0  # ... so no read found it expired: no burst
    assert xfetch["extra"] < 3  # about one recomputation per window (a lease absorbs the rest)
    assert all(s <= 0 for s in plain["lead"])  # without XFetch every window expires ...
    assert plain["expired"] > 50  # ... and every read while it recomputes is a miss
