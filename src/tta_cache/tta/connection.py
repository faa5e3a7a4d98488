"""The seed's :class:`RedisConnectionManager`: owns the :class:`~tta_cache.Cache`, reports on it."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from tta_cache.api import Cache
from tta_cache.core.policy import BreakerState
from tta_cache.observability import probe
from tta_cache.tiers import mask_url

from .config import cache_options_from_config

__all__ = ["RedisConnectionManager"]

log = logging.getLogger("tta_cache.tta")


def _iso(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, timezone.utc).isoformat()


class RedisConnectionManager:
    """The seed's connection manager: owns the :class:`~tta_cache.Cache` and reports on it.

    The cache connects lazily and fails open, so :meth:`connect` is a check (PING, then waits for
    the invalidation channel), not a precondition. ``max_connection_failures`` failures within the
    breaker's window stop calls to Redis until a probe succeeds (automatic reconnection); the
    cache's health monitor PINGs every ``health_check_interval`` seconds once Redis is in use.
    """

    def __init__(
        self, config: Mapping[str, Any] | None = None, *, cache: Cache | None = None
    ) -> None:
        self.config = dict(config or {})
        self._options = cache_options_from_config(config) if cache is None else {}
        self._lock = threading.Lock()
        self._cache = cache
        self._connected = False
        self.connection_attempts = 0
        self.connection_failures = 0
        self.health_checks = 0
        self.health_check_failures = 0
        self.last_health_check: float | None = None
        self.last_error: str | None = None
        self.connected_since: float | None = None

    @property
    def cache(self) -> Cache:
        """The cache (made on first use, and again after :meth:`disconnect`)."""
        cache = self._cache
        if cache is None:
            with self._lock:
                if self._cache is None:
                    self._cache = Cache(**self._options)
                cache = self._cache
        return cache

    @property
    def redis_url(self) -> str:
        """The Redis URL, password masked."""
        url = self.cache.redis_url
        return mask_url(url) if url else "local only"

    def connect(self, timeout: float = 5.0) -> bool:
        """PING Redis and wait up to ``timeout`` for the invalidation channel; True if both."""
        self.connection_attempts += 1
        ok = self.health_check() and self.cache.wait_ready(timeout)
        if ok:
            if not self._connected:
                self.connected_since = time.time()
            self._connected = True
        else:
            self.connection_failures += 1
            self.last_error = self.last_error or "invalidation channel not up"
            log.warning("cache: could not connect to %s: %s", self.redis_url, self.last_error)
        return ok

    def disconnect(self) -> None:
        """Close the cache (its channel thread and connections); a later use makes a new one."""
        with self._lock:
            cache, self._cache = self._cache, None
            self._connected = False
            self.connected_since = None
        if cache is not None:
            cache.close()

    close = disconnect

    @property
    def is_connected(self) -> bool:
        """Connected, the last health check passed, and the circuit breaker is not open."""
        cache = self._cache
        return (
            self._connected
            and cache is not None
            and cache.engine.connection.state != "down"
            and cache.engine.breaker.state is not BreakerState.OPEN
        )

    def health_check(self) -> bool:
        """PING Redis once (bounded by ``op_timeout``), feeding the cache's connection figures
        and circuit breaker; True if Redis answered (or none is configured)."""
        self.health_checks += 1
        self.last_health_check = time.time()
        _, error = probe(self.cache.engine)
        if error is not None:
            self.health_check_failures += 1
            self.last_error = error
            self._connected = False
            return False
        return True

    def get_client(self) -> Any:
        """The redis-py client behind the cache (binary responses), or None if local only."""
        tier = self.cache.engine.redis
        return None if tier is None else tier.client

    def get_connection_stats(self) -> dict[str, Any]:
        """Connection figures: state, URL (masked), attempts, failures, breaker, channel, and
        the cache's own link history (``link``: connects, reconnections, failures ...)."""
        cache = self.cache
        state = cache.engine.health_state()
        return {
            "link": cache.engine.connection.snapshot(),
            "connected": self.is_connected,
            "url": self.redis_url,
            "mode": cache.engine.redis_cfg.mode if cache.engine.redis_cfg else "local",
            "connection_attempts": self.connection_attempts,
            "connection_failures": self.connection_failures,
            "health_checks": self.health_checks,
            "health_check_failures": self.health_check_failures,
            "last_health_check": _iso(self.last_health_check),
            "last_error": self.last_error,
            "connected_since": _iso(self.connected_since),
            "uptime": time.time() - self.connected_since if self.connected_since else 0.0,
            "breaker": state["breaker"],
            "breaker_opened": cache.engine.breaker.opened_count,
            "channel": state["channel"],
            "max_connections": cache.engine.redis_cfg.max_connections
            if cache.engine.redis_cfg
            else 0,
        }

    def __enter__(self) -> RedisConnectionManager:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.disconnect()
