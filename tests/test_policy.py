from __future__ import annotations

import math
import random
import threading
from collections import deque

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tta_cache.core.policy import (
    BreakerState,
    CircuitBreaker,
    Freshness,
    Verdict,
    backoff,
    expiries,
    judge,
    redis_ttl_ms,
    retry_due,
)
from tta_cache.exceptions import ConfigurationError
from tta_cache.testing import FakeClock

JUST_BELOW_ONE = math.nextafter(1.0, 0.0)


# --- Freshness ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ttl": 0},
        {"ttl": -1},
        {"ttl": math.nan},
        {"ttl": math.inf},
        {"ttl": 60, "stale_ttl": -1},
        {"ttl": 60, "stale_ttl": math.nan},
        {"ttl": 60, "stale_ttl": math.inf},
        {"ttl": 60, "jitter": -0.1},
        {"ttl": 60, "jitter": 1.0},
        {"ttl": 60, "jitter": math.nan},
        {"ttl": 60, "beta": -1},
        {"ttl": 60, "beta": math.nan},
        {"ttl": 60, "beta": math.inf},
    ],
)
def test_freshness_rejects_settings_that_cannot_work(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigurationError):
        Freshness(**kwargs)


def test_freshness_accepts_the_edges_of_its_ranges() -> None:
    f = Freshness(ttl=0.001, stale_ttl=0, jitter=0, beta=0)
    assert (f.ttl, f.stale_ttl, f.jitter, f.beta) == (0.001, 0, 0, 0)


def test_max_hard_ttl_bounds_every_entrys_life() -> None:
    f = Freshness(ttl=60, stale_ttl=30, jitter=0.1)
    assert f.max_hard_ttl == pytest.approx(96.0)
    _, hard_until = expiries(0.0, f, JUST_BELOW_ONE)
    assert hard_until <= f.max_hard_ttl
    assert hard_until == pytest.approx(f.max_hard_ttl)


# --- expiries and redis_ttl_ms -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("rnd", "fresh_for"),
    [(0.0, 90.0), (0.5, 100.0), (JUST_BELOW_ONE, 110.0)],
)
def test_jitter_spreads_the_ttl_by_plus_or_minus_jitter(rnd: float, fresh_for: float) -> None:
    fresh_until, _ = expiries(1000.0, Freshness(ttl=100, jitter=0.1), rnd)
    assert fresh_until - 1000.0 == pytest.approx(fresh_for)
    assert fresh_until - 1000.0 <= 110.0


def test_no_jitter_means_the_exact_ttl() -> None:
    f = Freshness(ttl=100, jitter=0)
    assert {expiries(5.0, f, rnd)[0] for rnd in (0.0, 0.3, JUST_BELOW_ONE)} == {105.0}


def test_hard_expiry_is_fresh_expiry_plus_stale_ttl() -> None:
    fresh_until, hard_until = expiries(0.0, Freshness(ttl=100, stale_ttl=25), 0.25)
    assert fresh_until == pytest.approx(95.0)
    assert hard_until == fresh_until + 25


@given(
    now=st.floats(0, 1e9),
    ttl=st.floats(1e-3, 1e7),
    stale_ttl=st.floats(0, 1e7),
    jitter=st.floats(0, 1, exclude_max=True),
    rnd=st.floats(0, 1, exclude_max=True),
)
def test_expiries_stay_within_the_jitter_bounds(
    now: float, ttl: float, stale_ttl: float, jitter: float, rnd: float
) -> None:
    f = Freshness(ttl=ttl, stale_ttl=stale_ttl, jitter=jitter)
    fresh_until, hard_until = expiries(now, f, rnd)
    assert now + ttl * (1 - jitter) <= fresh_until <= now + ttl * (1 + jitter)
    assert hard_until == fresh_until + stale_ttl
    assert now <= fresh_until <= hard_until


@pytest.mark.parametrize(
    ("now", "hard_until", "px"),
    [
        (100.0, 101.5, 1500),
        (100.0, 100.25, 250),
        (0.0, 1.0001, 1001),  # rounds up, never down
        (0.0, 0.0000001, 1),
        (7.0, 7.0, 1),  # due now: still written with a TTL
        (10.0, 5.0, 1),  # already past
    ],
)
def test_redis_ttl_is_whole_milliseconds_rounded_up_and_at_least_one(
    now: float, hard_until: float, px: int
) -> None:
    assert redis_ttl_ms(now, hard_until) == px


# --- judge ------------------------------------------------------------------------------------

FRESH_UNTIL, HARD_UNTIL = 100.0, 110.0


@pytest.mark.parametrize(
    ("now", "rnd", "verdict"),
    [
        (50.0, 0.5, Verdict.FRESH),
        (math.nextafter(FRESH_UNTIL, 0), 1.0, Verdict.FRESH),  # rnd 1 never refreshes early
        (FRESH_UNTIL, 1.0, Verdict.STALE),
        (math.nextafter(HARD_UNTIL, 0), 1.0, Verdict.STALE),
        (HARD_UNTIL, 1.0, Verdict.EXPIRED),
        (HARD_UNTIL + 1, 0.0, Verdict.EXPIRED),
        # XFetch with compute_time 1, beta 1: refresh when fresh_until - now <= -ln(rnd)
        (99.0, 0.5, Verdict.FRESH),  # 1.0 > ln 2
        (99.5, 0.5, Verdict.REFRESH),  # 0.5 <= ln 2
        (99.0, 0.3, Verdict.REFRESH),  # 1.0 <= -ln 0.3 = 1.2
        (10.0, 0.0, Verdict.REFRESH),  # the limit: ln 0 = -inf
    ],
)
def test_judge_at_each_boundary(now: float, rnd: float, verdict: Verdict) -> None:
    assert judge(now, FRESH_UNTIL, HARD_UNTIL, 1.0, 1.0, rnd) is verdict


def test_without_stale_ttl_an_entry_expires_at_fresh_until() -> None:
    assert judge(FRESH_UNTIL, FRESH_UNTIL, FRESH_UNTIL, 1.0, 1.0, 1.0) is Verdict.EXPIRED


@pytest.mark.parametrize(("compute_time", "beta"), [(1.0, 0.0), (0.0, 1.0), (1e-200, 1e-200)])
def test_no_early_refresh_without_beta_or_compute_time(compute_time: float, beta: float) -> None:
    for now in (0.0, 99.0, math.nextafter(FRESH_UNTIL, 0)):
        for rnd in (0.0, 1e-300, 0.5):
            assert judge(now, FRESH_UNTIL, HARD_UNTIL, compute_time, beta, rnd) is Verdict.FRESH


@pytest.mark.parametrize(("gap", "compute_time", "beta"), [(1.0, 1.0, 1.0), (1.0, 0.5, 4.0)])
def test_early_refresh_probability_is_exp_of_minus_gap_over_compute_time_beta(
    gap: float, compute_time: float, beta: float
) -> None:
    rng = random.Random(7)
    draws = 20_000
    refreshes = sum(
        judge(FRESH_UNTIL - gap, FRESH_UNTIL, HARD_UNTIL, compute_time, beta, rng.random())
        is Verdict.REFRESH
        for _ in range(draws)
    )
    assert refreshes / draws == pytest.approx(math.exp(-gap / (compute_time * beta)), abs=0.015)


# --- XFetch, simulated --------------------------------------------------------------------------


def simulate_xfetch(
    *,
    rate: int,
    windows: int,
    freshness: Freshness,
    compute_time: float,
    seed: int,
    single_flight: bool = False,
) -> list[list[float]]:
    """Callers read one key `rate` times a second; a REFRESH or EXPIRED verdict starts a
    recomputation that takes `compute_time` and then writes a new entry. Returns, per TTL window,
    the recomputation start times relative to the expiry of the entry being replaced.

    Without `single_flight` every caller decides alone (the XFetch paper's setting: many processes,
    no lease); with it, a caller that finds a recomputation in flight starts none.
    """
    rng = random.Random(seed)
    fresh_until, hard_until = expiries(0.0, freshness, rng.random())
    entry = 0
    in_flight: deque[float] = deque()  # finish times, in order
    starts: dict[int, list[float]] = {}  # entry replaced -> start offsets
    tick = 0
    # A window ends when a recomputation for a later entry starts.
    while len(starts) <= windows:
        tick += 1
        now = tick / rate
        while in_flight and in_flight[0] <= now:
            fresh_until, hard_until = expiries(in_flight.popleft(), freshness, rng.random())
            entry += 1
        if single_flight and in_flight:
            continue
        verdict = judge(now, fresh_until, hard_until, compute_time, freshness.beta, rng.random())
        if verdict is Verdict.REFRESH or verdict is Verdict.EXPIRED:
            starts.setdefault(entry, []).append(now - fresh_until)
            in_flight.append(now + compute_time)
    return list(starts.values())[:windows]


XFETCH_WINDOWS = 20
XFETCH_RATE = 1_000
XFETCH_COMPUTE_TIME = 0.1


def test_xfetch_recomputes_a_few_times_per_window_all_before_expiry() -> None:
    per_window = simulate_xfetch(
        rate=XFETCH_RATE,
        windows=XFETCH_WINDOWS,
        freshness=Freshness(ttl=5.0),
        compute_time=XFETCH_COMPUTE_TIME,
        seed=2015,
    )
    counts = [len(w) for w in per_window]
    assert len(counts) == XFETCH_WINDOWS
    # The expected count per window is e**(1/beta) = e (one, then Poisson(H * (e - 1)) more while
    # it computes, H ~ Exp(1) being the hazard the first one accumulated), whatever the request
    # rate: 1000 callers/s * 0.1 s would be 100 without XFetch.
    assert 1 <= sum(counts) / len(counts) <= 4
    assert max(counts) <= 12
    # Every recomputation started before expiry, so no caller ever saw a miss ...
    assert all(offset < 0 for w in per_window for offset in w)
    # ... and none started in the last compute_time before it.
    assert all(offset < -XFETCH_COMPUTE_TIME for w in per_window for offset in w)


def test_xfetch_with_single_flight_recomputes_once_per_window_early() -> None:
    per_window = simulate_xfetch(
        rate=XFETCH_RATE,
        windows=XFETCH_WINDOWS,
        freshness=Freshness(ttl=5.0),
        compute_time=XFETCH_COMPUTE_TIME,
        seed=2015,
        single_flight=True,
    )
    assert [len(w) for w in per_window] == [1] * XFETCH_WINDOWS
    assert all(w[0] < -XFETCH_COMPUTE_TIME for w in per_window)


def test_without_early_refresh_every_window_ends_in_a_stampede() -> None:
    # The control for the tests above: the simulation does see bursts when they happen.
    per_window = simulate_xfetch(
        rate=XFETCH_RATE,
        windows=5,
        freshness=Freshness(ttl=5.0, beta=0),
        compute_time=XFETCH_COMPUTE_TIME,
        seed=2015,
    )
    for w in per_window:
        assert len(w) == pytest.approx(XFETCH_RATE * XFETCH_COMPUTE_TIME, abs=2)
        # All within one compute time (plus a tick) after expiry.
        assert all(0 <= offset < XFETCH_COMPUTE_TIME + 1 / XFETCH_RATE for offset in w)


# --- backoff and retry_due ----------------------------------------------------------------------


def test_backoff_doubles_its_ceiling_per_failure_up_to_the_cap() -> None:
    ceilings = [backoff(n, base=0.05, cap=1.0, rnd=JUST_BELOW_ONE) for n in range(7)]
    assert ceilings == pytest.approx([0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0])


def test_backoff_is_full_jitter() -> None:
    assert backoff(3, base=0.1, cap=10, rnd=0.0) == 0.0
    assert backoff(3, base=0.1, cap=10, rnd=0.25) == pytest.approx(0.2)


def test_backoff_survives_huge_failure_counts() -> None:
    assert backoff(10**6, base=0.05, cap=5.0, rnd=0.5) == 2.5
    assert backoff(10**6, base=1e300, cap=5.0, rnd=0.5) == 2.5


@pytest.mark.parametrize("kwargs", [{"failures": -1}, {"base": -0.1}, {"cap": -1.0}])
def test_backoff_rejects_negative_arguments(kwargs: dict[str, float]) -> None:
    args: dict[str, float] = {"failures": 1, "base": 0.05, "cap": 5.0, "rnd": 0.5} | kwargs
    with pytest.raises(ConfigurationError):
        backoff(int(args["failures"]), base=args["base"], cap=args["cap"], rnd=args["rnd"])


@given(
    failures=st.integers(0, 10_000),
    base=st.floats(0, 1e6),
    cap=st.floats(0, 1e6),
    rnd=st.floats(0, 1, exclude_max=True),
)
def test_backoff_is_always_between_zero_and_cap(
    failures: int, base: float, cap: float, rnd: float
) -> None:
    assert 0 <= backoff(failures, base=base, cap=cap, rnd=rnd) <= cap


def test_retry_is_due_once_the_throttle_has_passed() -> None:
    assert not retry_due(now=104.9, last_failure=100.0, throttle=5.0)
    assert retry_due(now=105.0, last_failure=100.0, throttle=5.0)
    assert retry_due(now=200.0, last_failure=100.0, throttle=5.0)


# --- CircuitBreaker -----------------------------------------------------------------------------


def make_breaker(
    clock: FakeClock, changes: list[tuple[BreakerState, BreakerState]] | None = None
) -> CircuitBreaker:
    on_change = None if changes is None else (lambda old, new: changes.append((old, new)))
    return CircuitBreaker(
        failure_threshold=3, window=10.0, reset_timeout=5.0, clock=clock, on_change=on_change
    )


def open_breaker(breaker: CircuitBreaker, clock: FakeClock) -> None:
    for _ in range(3):
        breaker.record_failure()
        clock.advance(1.0)
    assert breaker.state is BreakerState.OPEN


@pytest.mark.parametrize(
    "kwargs",
    [{"failure_threshold": 0}, {"window": 0}, {"window": math.nan}, {"reset_timeout": 0}],
)
def test_breaker_rejects_settings_that_cannot_work(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigurationError):
        CircuitBreaker(**kwargs)  # type: ignore[arg-type]


def test_breaker_starts_closed_and_allows() -> None:
    breaker = make_breaker(FakeClock(1000.0))
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allow()
    assert (breaker.transitions, breaker.opened_count) == (0, 0)


def test_breaker_opens_after_threshold_failures_within_the_window() -> None:
    clock = FakeClock(1000.0)
    breaker = make_breaker(clock)
    breaker.record_failure()
    clock.advance(4.0)
    breaker.record_failure()
    assert breaker.allow()
    clock.advance(5.9)  # the third failure is 9.9 s after the first
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow()
    assert (breaker.transitions, breaker.opened_count) == (1, 1)


def test_breaker_stays_closed_when_failures_are_spread_beyond_the_window() -> None:
    clock = FakeClock(1000.0)
    breaker = make_breaker(clock)
    for _ in range(10):
        breaker.record_failure()
        clock.advance(5.0)  # any three span 10 s: never three within the window
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allow()


def test_breaker_skips_calls_while_open_then_half_opens_after_reset_timeout() -> None:
    clock = FakeClock(1000.0)
    breaker = make_breaker(clock)
    open_breaker(breaker, clock)  # opened at the third failure; the clock is 1 s past it
    clock.advance(3.5)
    assert not breaker.allow()
    states = [breaker.state]
    clock.advance(0.5)
    states.append(breaker.state)
    assert states == [BreakerState.OPEN, BreakerState.HALF_OPEN]
    assert breaker.allow()


def test_half_open_lets_exactly_one_probe_through() -> None:
    clock = FakeClock(1000.0)
    breaker = make_breaker(clock)
    open_breaker(breaker, clock)
    clock.advance(10.0)
    assert [breaker.allow() for _ in range(5)] == [True, False, False, False, False]


def test_a_probe_that_never_reports_is_replaced_after_reset_timeout() -> None:
    clock = FakeClock(1000.0)
    breaker = make_breaker(clock)
    open_breaker(breaker, clock)
    clock.advance(10.0)
    assert breaker.allow()
    clock.advance(4.5)
    assert not breaker.allow()
    clock.advance(0.5)
    assert breaker.allow()


def test_a_successful_probe_closes_the_breaker() -> None:
    clock = FakeClock(1000.0)
    breaker = make_breaker(clock)
    open_breaker(breaker, clock)
    clock.advance(4.0)  # the reset timeout: the failures that opened it are still in the window
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    assert all(breaker.allow() for _ in range(3))
    # ... but are forgotten: it takes a full threshold to open again.
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED


def test_a_failed_probe_reopens_the_breaker_for_another_reset_timeout() -> None:
    clock = FakeClock(1000.0)
    breaker = make_breaker(clock)
    open_breaker(breaker, clock)
    clock.advance(10.0)
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow()
    clock.advance(4.5)
    assert not breaker.allow()
    clock.advance(0.5)
    assert breaker.allow()
    assert breaker.opened_count == 2


def test_late_reports_while_open_change_nothing() -> None:
    clock = FakeClock(1000.0)
    breaker = make_breaker(clock)
    open_breaker(breaker, clock)
    breaker.record_success()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    clock.advance(4.0)  # the late failure did not push the reset back
    assert breaker.allow()


def test_on_change_sees_every_transition_as_old_new() -> None:
    clock = FakeClock(1000.0)
    changes: list[tuple[BreakerState, BreakerState]] = []
    breaker = make_breaker(clock, changes)
    open_breaker(breaker, clock)
    clock.advance(10.0)
    breaker.allow()
    breaker.record_failure()
    clock.advance(10.0)
    breaker.allow()
    breaker.record_success()
    closed, open_, half_open = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN
    assert changes == [
        (closed, open_),
        (open_, half_open),
        (half_open, open_),
        (open_, half_open),
        (half_open, closed),
    ]
    assert breaker.transitions == len(changes)


def test_breaker_is_thread_safe_under_concurrent_failures() -> None:
    changes: list[tuple[BreakerState, BreakerState]] = []
    breaker = make_breaker(FakeClock(1000.0), changes)
    start = threading.Barrier(16)

    def fail_many() -> None:
        start.wait()
        for _ in range(500):
            breaker.allow()
            breaker.record_failure()

    threads = [threading.Thread(target=fail_many) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert breaker.state is BreakerState.OPEN
    assert (breaker.transitions, breaker.opened_count) == (1, 1)
    assert changes == [(BreakerState.CLOSED, BreakerState.OPEN)]


def test_half_open_admits_one_probe_among_concurrent_callers() -> None:
    clock = FakeClock(1000.0)
    breaker = make_breaker(clock)
    open_breaker(breaker, clock)
    clock.advance(10.0)
    start = threading.Barrier(16)
    admitted: list[bool] = []

    def try_once() -> None:
        start.wait()
        admitted.append(breaker.allow())

    threads = [threading.Thread(target=try_once) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert admitted.count(True) == 1
    assert breaker.state is BreakerState.HALF_OPEN
