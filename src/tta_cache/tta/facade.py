"""The seed's API (``redis_cache_enhanced``), thin over :class:`~tta_cache.Cache`.

::

    conn_manager, session_cache, invalidation_manager = create_cache_system()
    conn_manager.connect()
    session_cache.cache_session_state(SessionState("session_123", "user_456"))
    session_cache.get_session_state("session_123")
    health_check_cache_system(conn_manager)["stats"]["redis_info"]["hit_rate"]

State is stored as raw cache entries (L1 + Redis, the kind's TTL) under
:func:`~tta_cache.maintenance.state_key` keys, tagged so that the invalidation manager can reach
them: ``session:<sid>`` and ``user:<uid>`` on sessions; ``session:``, ``character:<cid>`` (and
``user:`` when known) on character states; ``therapeutic:<uid>`` and *not* ``user:`` on
therapeutic progress, so ``invalidate_user(uid, preserve_therapeutic=True)`` keeps exactly it.
"""

from __future__ import annotations

import copy
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, TypeVar
from urllib.parse import quote

from tta_cache.cache import Cache
from tta_cache.exceptions import BackendError, ConfigurationError
from tta_cache.keys import tag
from tta_cache.maintenance import CacheInvalidationManager, state_key
from tta_cache.observability import probe
from tta_cache.policy import BreakerState, CircuitBreaker
from tta_cache.redis_tier import mask_url

from .models import (
    CharacterState,
    EmotionalState,
    Kind,
    NarrativeContext,
    SessionState,
    TherapeuticProgress,
    UserPreferences,
)

__all__ = [
    "DEFAULT_REDIS_URL",
    "CacheMetrics",
    "RedisConnectionManager",
    "SessionCacheManager",
    "cache_options_from_config",
    "create_cache_system",
    "health_check_cache_system",
]

log = logging.getLogger("tta_cache.tta")

DEFAULT_REDIS_URL = "redis://localhost:6379/0"
"""Used when neither the config nor ``TTA_CACHE_REDIS_URL`` names a Redis."""

M = TypeVar("M")

# The seed's connection keys; the rest of the config dict passes to Cache as is.
_CONNECTION_KEYS = frozenset(
    {"host", "port", "db", "password", "username", "ssl", "redis_url", "url"}
)
_CACHE_KEYS = frozenset(
    {
        "namespace",
        "local_maxsize",
        "ttl",
        "default_ttl",
        "serializer",
        "compress_min_bytes",
        "signing_key",
        "on_error",
        "op_timeout",
        "lock_timeout",
    }
)
# Accepted for compatibility and deliberately not applied: payloads are binary envelopes, and a
# timeout is not retried so that op_timeout bounds every operation (the breaker and fail-open
# cover a slow Redis instead).
_IGNORED_KEYS = frozenset({"decode_responses", "retry_on_timeout"})
_MAPPED_KEYS = frozenset(
    {"socket_timeout", "socket_connect_timeout", "max_connections", "health_check_interval"}
    | {"max_connection_failures"}
)


def cache_options_from_config(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """:class:`~tta_cache.Cache` keyword arguments for the seed's configuration dict.

    ``redis_url`` wins; else ``host``/``port``/``db`` (with ``password``, ``username``, ``ssl``)
    form the URL; else ``$TTA_CACHE_REDIS_URL``; else :data:`DEFAULT_REDIS_URL`.
    ``socket_timeout`` becomes ``op_timeout``, ``max_connection_failures`` the circuit breaker's
    ``failure_threshold``. ``decode_responses`` and ``retry_on_timeout`` are accepted and ignored.
    Unknown keys are a :class:`ConfigurationError` (a typo must not pass silently).
    """
    config = dict(config or {})
    unknown = set(config) - _CONNECTION_KEYS - _CACHE_KEYS - _IGNORED_KEYS - _MAPPED_KEYS
    if unknown:
        raise ConfigurationError(f"unknown cache configuration keys: {sorted(unknown)}")
    url = config.get("redis_url") or config.get("url")
    if not url and {"host", "port", "db"} & set(config):
        scheme = "rediss" if config.get("ssl") else "redis"
        auth = ""
        if config.get("password") is not None:
            user = quote(str(config.get("username") or ""), safe="")
            auth = f"{user}:{quote(str(config['password']), safe='')}@"
        host = config.get("host", "localhost")
        url = f"{scheme}://{auth}{host}:{int(config.get('port', 6379))}/{int(config.get('db', 0))}"
    if not url:
        url = os.environ.get("TTA_CACHE_REDIS_URL") or DEFAULT_REDIS_URL
    options: dict[str, Any] = {k: config[k] for k in _CACHE_KEYS if k in config}
    options["redis_url"] = url
    if "socket_timeout" in config:
        options.setdefault("op_timeout", float(config["socket_timeout"]))
    if "max_connections" in config:
        options["max_connections"] = int(config["max_connections"])
    if "health_check_interval" in config:
        options["health_check_interval"] = float(config["health_check_interval"])
    if "socket_connect_timeout" in config:
        options["redis_options"] = {
            "socket_connect_timeout": float(config["socket_connect_timeout"])
        }
    if "max_connection_failures" in config:
        options["breaker"] = CircuitBreaker(
            failure_threshold=int(config["max_connection_failures"])
        )
    return options


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


_SEED_FIGURES = (
    "hits",
    "misses",
    "hit_rate",
    "average_response_time",
    "operations_per_second",
    "total_operations",
    "errors",
)


class CacheMetrics:
    """The seed's metrics object over ``cache.stats()``: figures since creation or :meth:`reset`.

    Hits, misses and errors are the cache's own counters (every read through it, decorated
    functions included). Response times are those of the operations recorded with
    :meth:`record_operation` (the :class:`SessionCacheManager` records each of its calls) and of
    the cache's timed reads (decorated functions that missed L1). Thread-safe: the cache counts
    under its locks; this object's own figures and a reset's baseline under its lock.
    """

    def __init__(
        self,
        cache: Cache | Callable[[], Cache],
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cache = cache
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._base: dict[str, float] = {}
        self._since = monotonic()
        self._ops = 0
        self._seconds = 0.0
        self.reset()

    def _counters(self) -> dict[str, float]:
        cache = self._cache if isinstance(self._cache, Cache) else self._cache()
        stats = cache.stats()
        engine_stats = cache.engine.stats
        return {
            "hits": stats["hits"],
            "misses": stats["misses"],
            "errors": stats["errors"],
            "slow_ops": engine_stats.slow_ops,
            "slow_seconds": engine_stats.slow_seconds,
        }

    def reset(self) -> None:
        """Start counting from now."""
        with self._lock:
            self._base = self._counters()
            self._since = self._monotonic()
            self._ops = 0
            self._seconds = 0.0

    def record_operation(self, seconds: float) -> None:
        """Record one operation's response time."""
        with self._lock:
            self._ops += 1
            self._seconds += seconds

    def get_metrics(self) -> dict[str, Any]:
        """``hits``, ``misses``, ``hit_rate``, ``average_response_time`` (seconds, over reads
        that missed L1), ``operations_per_second``, ``total_operations``, ``errors``."""
        with self._lock:
            now = self._counters()
            base = self._base
            elapsed = max(self._monotonic() - self._since, 1e-9)
            own_ops, own_seconds = self._ops, self._seconds
        d = {k: now[k] - base.get(k, 0) for k in now}
        total = d["hits"] + d["misses"]
        timed = d["slow_ops"] + own_ops
        return {
            "hits": int(d["hits"]),
            "misses": int(d["misses"]),
            "hit_rate": d["hits"] / total if total else 0.0,
            "average_response_time": (d["slow_seconds"] + own_seconds) / timed if timed else 0.0,
            "operations_per_second": total / elapsed,
            "total_operations": int(total),
            "errors": int(d["errors"]),
        }

    to_dict = get_metrics


class SessionCacheManager:
    """Cache and fetch the TTA state models, one at a time or in batches (one round trip each).

    ``copy=True`` (the default) gives the seed's semantics: what you cache is a snapshot (later
    changes to your object do not leak into the cache) and what you get is yours to change. With
    ``copy=False`` the L1 object itself is returned: faster, and it must be treated as read-only.
    ``cache_*`` return False when Redis refused the write (the state is still in this process's
    L1); ``get_*`` return None (or leave the id out) when the state is not cached.
    """

    def __init__(
        self,
        connection: RedisConnectionManager | Cache,
        *,
        copy: bool = True,
        metrics: CacheMetrics | None = None,
    ) -> None:
        self._connection = connection
        self.copy = copy
        self.metrics = metrics or CacheMetrics(lambda: self.cache)

    @property
    def cache(self) -> Cache:
        """The cache this manager stores into."""
        c = self._connection
        return c if isinstance(c, Cache) else c.cache

    # ------------------------------------------------------------------ generic

    def _in(self, value: M) -> M:
        return copy.deepcopy(value) if self.copy else value

    def _fetch(self, keys: Sequence[str], model: type[M]) -> dict[str, M]:
        started = time.perf_counter()
        found = self.cache.get_many(keys, type_hint=model)
        out = {k: self._in(v) for k, v in found.items() if isinstance(v, model)}
        self.metrics.record_operation(time.perf_counter() - started)
        return out

    def _owners(self, session_ids: Iterable[str]) -> dict[str, str]:
        """The user of each cached session (for tagging its per-session data ``user:<uid>``)."""
        keys = {state_key(Kind.SESSION.value, s): s for s in set(session_ids)}
        found = self.cache.get_many(keys, type_hint=SessionState)
        return {keys[k]: v.user_id for k, v in found.items() if isinstance(v, SessionState)}

    # ------------------------------------------------------------------ sessions

    @staticmethod
    def session_key(session_id: str) -> str:
        """The raw-cache key of a session (``session:<sid>``)."""
        return state_key(Kind.SESSION.value, session_id)

    def cache_session_state(self, session_state: SessionState, ttl: float | None = None) -> bool:
        """Cache a session (TTL of kind ``session`` unless ``ttl``)."""
        return self._store_states(Kind.SESSION, [session_state], ttl) == 1

    def get_session_state(self, session_id: str) -> SessionState | None:
        """The cached session, or None."""
        return self.get_multiple_sessions([session_id]).get(session_id)

    def cache_multiple_sessions(self, sessions: Sequence[SessionState]) -> int:
        """Cache many sessions in one pipeline; returns how many were stored."""
        return self._store_states(Kind.SESSION, sessions)

    def get_multiple_sessions(self, session_ids: Sequence[str]) -> dict[str, SessionState]:
        """The cached sessions among ``session_ids`` (one MGET for those L1 does not hold)."""
        keys = {self.session_key(s): s for s in session_ids}
        return {keys[k]: v for k, v in self._fetch(list(keys), SessionState).items()}

    def delete_session_state(self, session_id: str) -> None:
        """Remove a session entry from every process's L1 and from Redis."""
        self.cache.delete(self.session_key(session_id))

    # ------------------------------------------------------------------ layout of every model

    def _layout(self, kind: Kind, states: Sequence[Any]) -> tuple[list[str], dict[str, list[str]]]:
        """Keys and tags for ``states`` of ``kind`` (see the module docstring)."""
        keys: list[str] = []
        tags: dict[str, list[str]] = {}
        owners: dict[str, str] = {}
        if kind in (Kind.CHARACTER, Kind.NARRATIVE):
            owners = self._owners(s.session_id for s in states if s.session_id)
        for s in states:
            if kind is Kind.SESSION:
                key = state_key(kind.value, s.session_id)
                t = [tag("session", s.session_id), tag("user", s.user_id)]
            elif kind is Kind.CHARACTER:
                if not s.session_id:
                    raise ValueError(f"character {s.character_id!r} needs a session_id to cache")
                key = state_key(kind.value, s.session_id, s.character_id)
                t = [tag("session", s.session_id), tag("character", s.character_id)]
            elif kind is Kind.NARRATIVE:
                key = state_key(kind.value, s.session_id)
                t = [tag("session", s.session_id)]
            elif kind is Kind.EMOTIONAL:
                key = state_key(kind.value, s.user_id)
                t = [tag("user", s.user_id)]
                if s.session_id:
                    t.append(tag("session", s.session_id))
            elif kind is Kind.THERAPEUTIC:
                key = state_key(kind.value, s.user_id)
                t = [tag("therapeutic", s.user_id)]  # not user:, see invalidate_user
            else:
                key = state_key(kind.value, s.user_id)
                t = [tag("user", s.user_id)]
            owner = owners.get(getattr(s, "session_id", None) or "")
            if owner is not None:
                t.append(tag("user", owner))
            keys.append(key)
            tags[key] = t
        return keys, tags

    def _store_states(self, kind: Kind, states: Sequence[Any], ttl: float | None = None) -> int:
        """Store ``states`` in one pipeline; how many were stored (0 if Redis refused)."""
        if not states:
            return 0
        started = time.perf_counter()
        keys, tags = self._layout(kind, states)
        payload = {k: self._in(s) for k, s in zip(keys, states, strict=True)}
        try:
            self.cache.set_many(
                payload, ttl=ttl, kind=kind.value, tags_by_key=tags, on_error="raise"
            )
        except BackendError as exc:
            log.warning("cache: %d %s entries not stored in Redis: %s", len(states), kind, exc)
            return 0
        finally:
            self.metrics.record_operation(time.perf_counter() - started)
        return len(payload)

    # ------------------------------------------------------------------ characters

    def cache_character_state(self, character: CharacterState) -> bool:
        """Cache a character's state in its session (``character.session_id`` is required);
        tagged ``user:<uid>`` too when the session is cached."""
        return self.cache_multiple_characters([character]) == 1

    def cache_multiple_characters(self, characters: Sequence[CharacterState]) -> int:
        """Cache many character states in one pipeline; returns how many were stored."""
        return self._store_states(Kind.CHARACTER, characters)

    def get_character_state(self, session_id: str, character_id: str) -> CharacterState | None:
        """A character's state in a session, or None."""
        return self.get_multiple_characters(session_id, [character_id]).get(character_id)

    def get_multiple_characters(
        self, session_id: str, character_ids: Sequence[str]
    ) -> dict[str, CharacterState]:
        """The cached states among ``character_ids`` in one session."""
        keys = {state_key(Kind.CHARACTER.value, session_id, c): c for c in character_ids}
        return {keys[k]: v for k, v in self._fetch(list(keys), CharacterState).items()}

    # ------------------------------------------------------------------ narrative

    def cache_narrative_context(self, context: NarrativeContext) -> bool:
        """Cache a session's narrative context."""
        return self.cache_multiple_narratives([context]) == 1

    def cache_multiple_narratives(self, contexts: Sequence[NarrativeContext]) -> int:
        return self._store_states(Kind.NARRATIVE, contexts)

    def get_narrative_context(self, session_id: str) -> NarrativeContext | None:
        return self.get_multiple_narratives([session_id]).get(session_id)

    def get_multiple_narratives(self, session_ids: Sequence[str]) -> dict[str, NarrativeContext]:
        keys = {state_key(Kind.NARRATIVE.value, s): s for s in session_ids}
        return {keys[k]: v for k, v in self._fetch(list(keys), NarrativeContext).items()}

    # ------------------------------------------------------------------ per user

    def _get_by_user(self, kind: Kind, model: type[M], user_ids: Sequence[str]) -> dict[str, M]:
        keys = {state_key(kind.value, u): u for u in user_ids}
        return {keys[k]: v for k, v in self._fetch(list(keys), model).items()}

    def cache_emotional_state(self, state: EmotionalState) -> bool:
        """Cache a user's latest emotional state."""
        return self.cache_multiple_emotional_states([state]) == 1

    def cache_multiple_emotional_states(self, states: Sequence[EmotionalState]) -> int:
        return self._store_states(Kind.EMOTIONAL, states)

    def get_emotional_state(self, user_id: str) -> EmotionalState | None:
        return self.get_multiple_emotional_states([user_id]).get(user_id)

    def get_multiple_emotional_states(self, user_ids: Sequence[str]) -> dict[str, EmotionalState]:
        return self._get_by_user(Kind.EMOTIONAL, EmotionalState, user_ids)

    def cache_therapeutic_progress(self, progress: TherapeuticProgress) -> bool:
        """Cache a user's therapeutic progress (kept a week)."""
        return self.cache_multiple_therapeutic_progress([progress]) == 1

    def cache_multiple_therapeutic_progress(self, items: Sequence[TherapeuticProgress]) -> int:
        return self._store_states(Kind.THERAPEUTIC, items)

    def get_therapeutic_progress(self, user_id: str) -> TherapeuticProgress | None:
        return self.get_multiple_therapeutic_progress([user_id]).get(user_id)

    def get_multiple_therapeutic_progress(
        self, user_ids: Sequence[str]
    ) -> dict[str, TherapeuticProgress]:
        return self._get_by_user(Kind.THERAPEUTIC, TherapeuticProgress, user_ids)

    def cache_user_preferences(self, preferences: UserPreferences) -> bool:
        """Cache a user's preferences (kept 30 days)."""
        return self._store_states(Kind.USER_PREFERENCES, [preferences]) == 1

    def get_user_preferences(self, user_id: str) -> UserPreferences | None:
        return self._get_by_user(Kind.USER_PREFERENCES, UserPreferences, [user_id]).get(user_id)


def _server_info(cache: Cache) -> dict[str, Any]:
    """A few INFO figures (summed over the primaries of a cluster); {} if Redis is unreachable."""
    tier = cache.engine.redis
    if tier is None:
        return {}
    try:
        info = tier.execute("INFO", lambda c: c.info())
    except BackendError:
        return {}
    nodes = (
        list(info.values()) if info and all(isinstance(v, dict) for v in info.values()) else [info]
    )
    first = nodes[0] if nodes else {}
    out: dict[str, Any] = {
        "redis_version": first.get("redis_version"),
        "role": first.get("role"),
        "uptime_in_seconds": first.get("uptime_in_seconds"),
    }
    for name in ("used_memory", "connected_clients", "keyspace_hits", "keyspace_misses"):
        out[name] = sum(int(n.get(name, 0)) for n in nodes)
    out["total_keys"] = sum(
        int(v.get("keys", 0)) for n in nodes for k, v in n.items() if k.startswith("db")
    )
    looked_up = out["keyspace_hits"] + out["keyspace_misses"]
    out["server_hit_rate"] = out["keyspace_hits"] / looked_up if looked_up else 0.0
    return out


def health_check_cache_system(
    conn_manager: RedisConnectionManager,
    *,
    min_hit_rate: float | None = None,
    min_operations: int = 100,
    max_ping_latency: float | None = None,
) -> dict[str, Any]:
    """The seed's health report: ``overall_status`` (healthy / degraded / unhealthy), ``reasons``,
    ``connection`` and ``stats`` with ``redis_info`` (``hit_rate``: this process's cache hit rate;
    ``server_hit_rate``: Redis keyspace hits over lookups; memory, clients, keys, PING latency)
    and ``cache`` (the full ``cache.stats()``).

    Alert thresholds: a hit rate under ``min_hit_rate`` (once ``min_operations`` reads were
    made) or a PING slower than ``max_ping_latency`` seconds makes a healthy report degraded.
    """
    cache = conn_manager.cache
    conn_manager.health_check()
    report = cache.health()
    stats = report["stats"]
    status: str = report["overall_status"]
    reasons: list[str] = list(report["reasons"])
    redis_info: dict[str, Any] = {
        **_server_info(cache),
        "connected": report["redis"].get("connected", False),
        "ping_latency": report["redis"].get("ping_latency"),
        "hits": stats["hits"],
        "misses": stats["misses"],
        "hit_rate": stats["hit_rate"],
    }
    if (
        min_hit_rate is not None
        and stats["total_operations"] >= min_operations
        and stats["hit_rate"] < min_hit_rate
    ):
        reasons.append(f"hit rate {stats['hit_rate']:.1%} is under {min_hit_rate:.1%}")
        status = "degraded" if status == "healthy" else status
    latency = redis_info["ping_latency"]
    if max_ping_latency is not None and latency is not None and latency > max_ping_latency:
        reasons.append(f"PING took {latency * 1000:.1f} ms (limit {max_ping_latency * 1000:.1f})")
        status = "degraded" if status == "healthy" else status
    return {
        "overall_status": status,
        "reasons": reasons,
        "timestamp": datetime.now(timezone.utc).isoformat(),
        "connection": conn_manager.get_connection_stats(),
        "redis": report["redis"],
        "stats": {"redis_info": redis_info, "cache": stats},
    }


def create_cache_system(
    config: Mapping[str, Any] | None = None,
) -> tuple[RedisConnectionManager, SessionCacheManager, CacheInvalidationManager]:
    """The seed's entry point: ``(conn_manager, session_cache, invalidation_manager)`` over one
    cache configured by ``config`` (see :func:`cache_options_from_config`)."""
    conn_manager = RedisConnectionManager(config)
    session_cache = SessionCacheManager(conn_manager)
    invalidation_manager = CacheInvalidationManager(lambda: conn_manager.cache)
    return conn_manager, session_cache, invalidation_manager
