"""Health: connection statistics, a periodic PING, and ``cache.health()``.

:class:`ConnectionStats` records what the data connection to Redis went through: the link coming
up and going down as operations and health checks succeed or fail, the circuit breaker's state
changes, the last error. :class:`HealthMonitor` is a daemon thread, started on the first use of
Redis (never at import), that PINGs every ``health_check_interval`` seconds through :func:`probe`,
so an idle process still notices an outage and a recovery. :func:`check` is ``cache.health()``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..core.policy import BreakerState
from ..exceptions import BackendError
from ..tiers import mask_url

if TYPE_CHECKING:
    from ..api import Cache
    from ..engine import Engine

__all__ = ["ConnectionStats", "HealthMonitor", "check", "probe"]

log = logging.getLogger("tta_cache.health")


class ConnectionStats:
    """What the connection to Redis has been through, for ``stats()`` and ``health()``.

    The link is ``"up"`` after an operation or a PING succeeds and ``"down"`` after one fails;
    ``connects`` counts the times it came up (the first contact and every recovery),
    ``reconnections`` the recoveries alone. Breaker state changes are kept with link changes in
    ``transitions`` (the latest ``history``), each ``{"at", "what", "from", "to"}``.
    """

    def __init__(self, clock: Callable[[], float] = time.time, history: int = 64) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.state = "unknown"
        self.connects = 0
        self.reconnections = 0
        self.failures = 0
        self.consecutive_failures = 0
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.checks = 0
        self.last_check_at: float | None = None
        self.last_ping: float | None = None
        self.transitions: deque[dict[str, Any]] = deque(maxlen=history)

    def up(self) -> None:
        """An operation or a PING succeeded."""
        if self.state == "up":  # the common case takes no lock
            return
        with self._lock:
            if self.state == "up":
                return
            self.connects += 1
            if self.state == "down":
                self.reconnections += 1
            self.consecutive_failures = 0
            self._move("link", "up")

    def down(self, error: BaseException | str) -> None:
        """An operation or a PING failed with ``error``."""
        with self._lock:
            self.failures += 1
            self.consecutive_failures += 1
            self.last_error = (
                error if isinstance(error, str) else f"{type(error).__name__}: {error}"
            )
            self.last_error_at = self._clock()
            if self.state != "down":
                self._move("link", "down")

    def pinged(self, latency: float | None) -> None:
        """A health check ran; ``latency`` is the PING's round trip in seconds (None: it failed)."""
        with self._lock:
            self.checks += 1
            self.last_check_at = self._clock()
            self.last_ping = latency

    def breaker_moved(self, old: BreakerState, new: BreakerState) -> None:
        """The circuit breaker's ``on_change`` hook."""
        with self._lock:
            self.transitions.append(
                {"at": self._clock(), "what": "breaker", "from": old.value, "to": new.value}
            )
        log.warning("tta-cache circuit breaker %s -> %s", old.value, new.value)

    def breaker_history(self) -> list[str]:
        """The breaker states in order, starting from the first one left (``["closed", "open",
        "half_open", "closed"]``)."""
        with self._lock:
            moves = [t for t in self.transitions if t["what"] == "breaker"]
        return [moves[0]["from"], *(t["to"] for t in moves)] if moves else []

    def _move(self, what: str, new: str) -> None:
        # lock held
        self.transitions.append({"at": self._clock(), "what": what, "from": self.state, "to": new})
        self.state = new

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "state": self.state,
                "connects": self.connects,
                "reconnections": self.reconnections,
                "failures": self.failures,
                "consecutive_failures": self.consecutive_failures,
                "last_error": self.last_error,
                "last_error_at": self.last_error_at,
                "health_checks": self.checks,
                "last_check_at": self.last_check_at,
                "last_ping_latency": self.last_ping,
                "transitions": list(self.transitions),
            }


def probe(engine: Engine) -> tuple[float | None, str | None]:
    """PING Redis once (bounded by ``op_timeout``): ``(latency in seconds, None)`` or ``(None,
    error)``. Feeds the connection stats, and the circuit breaker when it lets the PING through
    (closed, or half-open and this is its probe), so a health check can also close it."""
    tier = engine.redis
    if tier is None:
        return None, None
    through = engine.breaker.allow()
    started = time.perf_counter()
    try:
        tier.ping()
    except BackendError as exc:
        engine.connection.down(exc)
        engine.connection.pinged(None)
        if through:
            engine.breaker.record_failure()
        return None, str(exc)
    latency = time.perf_counter() - started
    engine.connection.up()
    engine.connection.pinged(latency)
    if through:
        engine.breaker.record_success()
    return latency, None


class HealthMonitor:
    """A daemon thread that runs ``check`` every ``interval`` seconds until stopped."""

    def __init__(self, check: Callable[[], object], interval: float) -> None:
        self.interval = interval
        self._check = check
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="tta-cache-health", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._check()
            except Exception:  # a health check must never kill its thread
                log.exception("tta-cache health check failed")


def channel_wait(op_timeout: float) -> float:
    """How long a health check waits for a channel that has never been up: its connect and its
    SUBSCRIBE, each bounded like an operation, and at least half a second for the thread."""
    return max(2 * op_timeout, 0.5)


def check(cache: Cache) -> dict[str, Any]:
    """One health report (``cache.health()``); PINGs Redis once, bounded by ``op_timeout``.

    ``unhealthy``: Redis is configured and does not answer. ``degraded``: it answers, but the
    breaker is not closed, the invalidation channel is down, invalidations wait in the queue, the
    pool has no free connection, or the PING took more than half of ``op_timeout``.

    The channel opens on first use; when Redis answers and the channel has never been up, this
    check opens it and waits for it (:func:`channel_wait`, 0.5 s by default), so a readiness
    probe of a new process is ``healthy`` once it can serve tagged entries from L1, and not
    before: ``healthy`` always means the channel is up. A channel that was up and is lost is
    reported at once, without waiting for it.
    """
    engine = cache.engine
    reasons: list[str] = []
    redis_info: dict[str, Any] = {"configured": engine.redis is not None}
    status = "healthy"
    if engine.redis is not None:
        assert cache.redis_url is not None
        cfg = engine.redis.cfg
        redis_info["url"] = mask_url(cache.redis_url)
        redis_info["mode"] = cfg.mode
        latency, error = probe(engine)
        redis_info["connected"] = error is None
        redis_info["ping_latency"] = latency
        degraded: list[str] = []
        if error is not None:
            redis_info["error"] = error
            reasons.append(f"redis unreachable: {error}")
            status = "unhealthy"
        elif latency is not None and latency > cfg.op_timeout / 2:
            degraded.append(f"redis slow: PING took {latency * 1000:.1f} ms")
        if error is None and (engine.subscriber is None or not engine.subscriber.state_changes):
            engine.ensure_channel()  # not needed yet (a new process): open it now
            if engine.subscriber is not None:  # None once closed
                engine.subscriber.connected.wait(channel_wait(cfg.op_timeout))
        state = engine.health_state()
        breaker = engine.breaker
        redis_info.update(state)
        redis_info["breaker"] = breaker.state.value
        redis_info["breaker_transitions"] = breaker.transitions
        redis_info["breaker_opened"] = breaker.opened_count
        pool = engine.redis.pool_usage()
        redis_info["pool"] = pool  # the sync client's
        redis_info["async_pool"] = engine.aredis.pool_usage() if engine.aredis else None
        redis_info["connection"] = engine.connection.snapshot()
        if redis_info["breaker"] != "closed":
            degraded.append(f"circuit breaker {redis_info['breaker']}: Redis is skipped")
        if state["channel"] != "up":
            degraded.append("invalidation channel down: L1 serves no tagged entry")
        if state["queued_invalidations"]:
            degraded.append(f"{state['queued_invalidations']} invalidations waiting for Redis")
        if pool["max"] and pool["in_use"] >= pool["max"]:
            degraded.append(f"connection pool exhausted ({pool['in_use']}/{pool['max']} in use)")
        reasons.extend(degraded)
        if degraded and status == "healthy":
            status = "degraded"
    return {
        "overall_status": status,
        "reasons": reasons,
        "redis": redis_info,
        "stats": cache.stats(),
    }
