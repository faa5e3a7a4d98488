"""Cache policy: expiry with jitter, soft/hard TTL, early refresh, retry backoff, circuit breaking.

Everything but :class:`CircuitBreaker` is a pure function: callers pass ``now`` and the random
draws, so the sync and async engines share one policy and tests replay it exactly (the way
redis-py's ``backoff.compute(failures)`` serves both of its clients). The breaker is the one
stateful piece; it reads the clock it is given at construction.

An entry's life, for an entry written at ``t``::

    t ──── fresh ──── fresh_until ──── stale ──── hard_until ──── gone
           FRESH, or REFRESH           STALE                       EXPIRED
           (XFetch, near the end)      (stale-while-revalidate,
                                        stale-if-error)
"""

from __future__ import annotations

import enum
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from tta_cache.exceptions import ConfigurationError

__all__ = [
    "BreakerState",
    "CircuitBreaker",
    "Freshness",
    "Verdict",
    "backoff",
    "expiries",
    "judge",
    "redis_ttl_ms",
    "retry_due",
]


@dataclass(frozen=True, slots=True)
class Freshness:
    """How long entries of one kind are served.

    ``ttl`` seconds fresh (the soft TTL, spread by ``jitter`` so keys written together do not expire
    together), then ``stale_ttl`` more seconds kept for stale-while-revalidate and stale-if-error;
    the hard TTL is their sum. ``beta`` scales early refresh (XFetch); 0 turns it off.
    """

    ttl: float
    stale_ttl: float = 0.0
    jitter: float = 0.1
    beta: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.ttl) and self.ttl > 0):
            raise ConfigurationError(
                f"ttl must be a finite number of seconds > 0, not {self.ttl!r}"
            )
        if not (math.isfinite(self.stale_ttl) and self.stale_ttl >= 0):
            raise ConfigurationError(
                f"stale_ttl must be a finite number of seconds >= 0, not {self.stale_ttl!r}"
            )
        if not 0 <= self.jitter < 1:
            raise ConfigurationError(f"jitter must be in [0, 1), not {self.jitter!r}")
        if not (math.isfinite(self.beta) and self.beta >= 0):
            raise ConfigurationError(f"beta must be a finite number >= 0, not {self.beta!r}")

    @property
    def max_hard_ttl(self) -> float:
        """The longest an entry can live, ``ttl * (1 + jitter) + stale_ttl``: what tag versions must
        outlive (DESIGN.md §4)."""
        return self.ttl * (1.0 + self.jitter) + self.stale_ttl


def expiries(now: float, f: Freshness, rnd: float) -> tuple[float, float]:
    """``(fresh_until, hard_until)`` for an entry written at ``now``.

    ``rnd`` in [0, 1) draws the jitter: the entry is fresh for ``ttl * (1 + jitter * (2*rnd - 1))``
    seconds, then stale for ``stale_ttl`` more.
    """
    fresh_until = now + f.ttl * (1.0 + f.jitter * (2.0 * rnd - 1.0))
    return fresh_until, fresh_until + f.stale_ttl


def redis_ttl_ms(now: float, hard_until: float) -> int:
    """The ``PX`` for the Redis ``SET`` of an entry: milliseconds until ``hard_until``, rounded up.

    Rounding up keeps the Redis copy until the entry is hard-expired; the floor of 1 ms keeps an
    entry that is already due from being written without a TTL (``PX 0`` is an error), so I6 holds.
    """
    return max(1, math.ceil((hard_until - now) * 1000.0))


class Verdict(enum.Enum):
    """What a read may do with an entry it found."""

    FRESH = "fresh"
    """Serve it."""
    REFRESH = "refresh"
    """Serve it, and recompute it now, ahead of its expiry (XFetch)."""
    STALE = "stale"
    """Past ``fresh_until``, before ``hard_until``: serve it only while revalidating or on error."""
    EXPIRED = "expired"
    """Past ``hard_until``: a miss."""


def judge(  # noqa: PLR0917 (the engine's call sites pass these positionally)
    now: float,
    fresh_until: float,
    hard_until: float,
    compute_time: float,
    beta: float,
    rnd: float,
) -> Verdict:
    """Judge an entry read at ``now``.

    ``EXPIRED`` from ``hard_until`` on, ``STALE`` from ``fresh_until`` on, else ``REFRESH`` when
    ``now - compute_time * beta * ln(rnd) >= fresh_until`` (XFetch: Vattani, Chierichetti and
    Lowenstein, "Optimal Probabilistic Cache Stampede Prevention", VLDB 2015), else ``FRESH``.
    ``compute_time`` is how long the value took to compute; ``rnd`` is uniform in [0, 1]
    (``random.random()`` will do; 0 always refreshes, 1 never does). ``beta = 0`` never refreshes.
    """
    if now >= hard_until:
        return Verdict.EXPIRED
    if now >= fresh_until:
        return Verdict.STALE
    scale = compute_time * beta
    # The XFetch test solved for rnd: no log(0), and no exp() at all when early refresh is off.
    if compute_time > 0 and scale > 0 and rnd <= math.exp((now - fresh_until) / scale):
        return Verdict.REFRESH
    return Verdict.FRESH


def backoff(failures: int, *, base: float = 0.05, cap: float = 5.0, rnd: float) -> float:
    """Seconds to wait after ``failures`` failures in a row: ``rnd * min(cap, base * 2**failures)``.

    Exponential backoff with full jitter ("Exponential Backoff And Jitter", AWS Architecture Blog,
    2015), for retry loops (the invalidation retry queue, reconnection); ``rnd`` in [0, 1).
    """
    if failures < 0 or not (base >= 0 and cap >= 0):
        raise ConfigurationError(
            f"backoff needs failures >= 0, base >= 0, cap >= 0; got {failures!r}, {base!r}, {cap!r}"
        )
    # 2.0 ** 1024 overflows; long before that the cap has won.
    return rnd * min(cap, base * 2.0 ** min(failures, 1000))


def retry_due(now: float, last_failure: float, throttle: float) -> bool:
    """Whether a computation that failed at ``last_failure`` may be tried again at ``now``.

    Stale-if-error serves the stale entry meanwhile, so a failing source is called at most once
    per ``throttle`` seconds instead of on every read.
    """
    return now - last_failure >= throttle


class BreakerState(enum.Enum):
    """The state of a :class:`CircuitBreaker`."""

    CLOSED = "closed"
    """Calls go through; failures are counted."""
    OPEN = "open"
    """Calls are skipped until ``reset_timeout`` has passed."""
    HALF_OPEN = "half_open"
    """One probe call at a time goes through; its outcome closes or re-opens the breaker."""


class CircuitBreaker:
    """Stops calling Redis while it keeps failing, so callers do not each pay a timeout.

    Opens after ``failure_threshold`` failures within ``window`` seconds; while open, :meth:`allow`
    is False. After ``reset_timeout`` it half-opens and lets exactly one probe through at a time (a
    probe that never reports is replaced after another ``reset_timeout``); a success closes it, a
    failure re-opens it. ``on_change(old, new)`` is called on every transition, outside the lock.

    Thread-safe. :meth:`allow` and :meth:`record_success` on a closed breaker read one attribute
    and take no lock; so does :meth:`allow` on an open one before its reset timeout.
    """

    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        window: float = 10.0,
        reset_timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[BreakerState, BreakerState], None] | None = None,
    ) -> None:
        if failure_threshold < 1:
            raise ConfigurationError(f"failure_threshold must be >= 1, not {failure_threshold!r}")
        if not window > 0:
            raise ConfigurationError(f"window must be > 0 seconds, not {window!r}")
        if not reset_timeout > 0:
            raise ConfigurationError(f"reset_timeout must be > 0 seconds, not {reset_timeout!r}")
        self._threshold = failure_threshold
        self._window = window
        self._reset_timeout = reset_timeout
        self._clock = clock
        self._on_change = on_change
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        # The last `failure_threshold` failure times are all it takes to tell whether that many
        # fell within the window.
        self._failures: deque[float] = deque(maxlen=failure_threshold)
        self._retry_at = 0.0
        self._probe_since: float | None = None
        self.transitions = 0
        """State changes so far."""
        self.opened_count = 0
        """Times the breaker has opened."""

    @property
    def state(self) -> BreakerState:
        """The current state; an open breaker past its reset timeout half-opens when asked."""
        if self._state is BreakerState.OPEN:
            with self._lock:
                change = self._half_open_if_due(self._clock())
            self._notify(change)
        return self._state

    def allow(self) -> bool:
        """Whether the caller may call Redis now; a True in half-open makes the caller the probe,
        which must report with :meth:`record_success` or :meth:`record_failure`."""
        state = self._state
        if state is BreakerState.CLOSED:
            return True
        now = self._clock()
        if state is BreakerState.OPEN and now < self._retry_at:
            return False
        with self._lock:
            change = self._half_open_if_due(now)
            if self._state is BreakerState.CLOSED:
                allowed = True
            elif self._state is BreakerState.OPEN:
                allowed = False
            elif self._probe_since is None or now - self._probe_since >= self._reset_timeout:
                self._probe_since = now
                allowed = True
            else:
                allowed = False
        self._notify(change)
        return allowed

    def record_success(self) -> None:
        """Report a call that worked: closes a half-open breaker."""
        if self._state is BreakerState.CLOSED:
            return
        with self._lock:
            change = None
            if self._state is BreakerState.HALF_OPEN:
                change = self._move(BreakerState.CLOSED, self._clock())
        self._notify(change)

    def record_failure(self) -> None:
        """Report a call that failed: may open a closed breaker; re-opens a half-open one."""
        with self._lock:
            now = self._clock()
            change = None
            if self._state is BreakerState.CLOSED:
                self._failures.append(now)
                if (
                    len(self._failures) == self._threshold
                    and now - self._failures[0] < self._window
                ):
                    change = self._move(BreakerState.OPEN, now)
            elif self._state is BreakerState.HALF_OPEN:
                change = self._move(BreakerState.OPEN, now)
            # Failures reported while open come from calls allowed before it opened: no news.
        self._notify(change)

    def _half_open_if_due(self, now: float) -> tuple[BreakerState, BreakerState] | None:
        if self._state is BreakerState.OPEN and now >= self._retry_at:
            return self._move(BreakerState.HALF_OPEN, now)
        return None

    def _move(self, new: BreakerState, now: float) -> tuple[BreakerState, BreakerState]:
        # Called with the lock held. `_retry_at` is set before `_state`, which the lock-free
        # readers in `allow` look at first.
        if new is BreakerState.OPEN:
            self._retry_at = now + self._reset_timeout
            self.opened_count += 1
        elif new is BreakerState.CLOSED:
            self._failures.clear()
        self._probe_since = None
        old, self._state = self._state, new
        self.transitions += 1
        return old, new

    def _notify(self, change: tuple[BreakerState, BreakerState] | None) -> None:
        if change is not None and self._on_change is not None:
            self._on_change(*change)
