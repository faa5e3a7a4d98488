"""The public :class:`Cache`: configuration, decorators, raw access, invalidation, stats, health."""

from __future__ import annotations

import contextlib
import math
import os
import random
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, overload

from .codecs import Codec, Serializer
from .coherence import channel_figures
from .decorators import (
    AsyncCachedFunction,
    CachedFunction,
    P,
    Spec,
    TagSpec,
    cached_wrapper,
    invalidating_wrapper,
    invalidation_templates,
    lazy,
)
from .engine import _MISSING, Call, Engine
from .exceptions import ConfigurationError, TemplateError
from .keys import NAMESPACE_TAG, check_name, tag
from .observability import ConnectionStats, Middleware
from .policy import CircuitBreaker, Freshness
from .redis_tier import RedisConfig, mask_url

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

__all__ = ["DEFAULT_TTL", "Cache", "configure", "default_cache"]

R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_TTL: dict[str, float] = {
    "session": 86_400,  # 24 hours
    "character": 7_200,  # 2 hours
    "narrative": 1_800,  # 30 minutes
    "emotional": 3_600,  # 1 hour
    "therapeutic": 604_800,  # 1 week
    "user_preferences": 2_592_000,  # 30 days
}
"""The seed's TTL per kind of TTA state, in seconds."""

_ON_ERROR = ("ignore", "raise")


class Cache:
    """A two-tier cache (L1 in-process, L2 Redis) for sync and async functions alike.

    ``redis_url=None`` keeps everything in-process (the embedded default); otherwise
    ``redis://``, ``rediss://``, ``unix://``, ``redis+sentinel://`` or ``redis+cluster://``.

    ``middleware`` runs around every Redis operation and computation (see
    :mod:`tta_cache.observability.middleware`); ``telemetry=True`` puts OpenTelemetry spans and
    metrics first in that chain (:mod:`tta_cache.observability.telemetry`), reporting to
    ``tracer_provider`` / ``meter_provider`` or the global ones. The default (``None``) turns it
    on when providers are passed or an OpenTelemetry SDK is already configured globally, so a
    service without one pays nothing: configure OpenTelemetry before creating the cache.

    Freshness and failure: an entry is fresh for its kind's TTL, then kept ``stale_ttl`` more
    seconds: a read in that window gets the stale value and one background refresh starts (the
    reader that started it waits up to ``soft_timeout`` for it first); a refresh that fails leaves
    the stale value served and the function alone for ``error_throttle`` seconds
    (stale-if-error). ``hard_timeout`` bounds every computation (``ComputeTimeout``).
    ``lock=True`` functions take a Redis lease on a miss; ``lock_timeout`` bounds it and each wait
    for it. ``breaker_threshold`` Redis failures within ``breaker_window`` seconds open the
    circuit breaker: Redis is skipped for ``breaker_reset_timeout`` seconds, then probed. Redis is
    PINGed every ``health_check_interval`` seconds (0: never) by a thread started on first use.
    ``clock`` (seconds) drives expiry, the breaker and throttles; tests pass a fake one.
    """

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        namespace: str = "tta",
        local_maxsize: int = 10_000,
        ttl: Mapping[str, float] | None = None,
        default_ttl: float = 3_600,
        stale_ttl: float = 0.0,
        jitter: float = 0.1,
        beta: float = 1.0,
        serializer: str | Serializer = "json",
        compress_min_bytes: int | None = 1024,
        signing_key: bytes | str | Sequence[bytes | str] | None = None,
        on_error: str = "ignore",
        op_timeout: float = 0.25,
        lock_timeout: float = 5.0,
        soft_timeout: float = 0.0,
        hard_timeout: float | None = None,
        error_throttle: float = 5.0,
        max_connections: int = 50,
        health_check_interval: float = 30.0,
        breaker: CircuitBreaker | None = None,
        breaker_threshold: int = 5,
        breaker_window: float = 10.0,
        breaker_reset_timeout: float = 5.0,
        clock: Callable[[], float] | None = None,
        rng: random.Random | None = None,
        redis_options: Mapping[str, Any] | None = None,
        middleware: Sequence[Middleware] = (),
        telemetry: bool | None = None,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        check_name("namespace", namespace)
        if on_error not in _ON_ERROR:
            raise ConfigurationError(f"on_error must be one of {_ON_ERROR}, not {on_error!r}")
        if local_maxsize < 0:
            raise ConfigurationError("local_maxsize must be >= 0 (0 turns L1 off)")
        if not lock_timeout > 0:
            raise ConfigurationError(f"lock_timeout must be > 0 seconds, not {lock_timeout!r}")
        self.soft_timeout, self.hard_timeout = _timeouts(soft_timeout, hard_timeout)
        self.namespace = namespace
        self.redis_url = redis_url
        self.ttl = {**DEFAULT_TTL, **(ttl or {})}
        self.default_ttl = default_ttl
        self._fresh_defaults = {"stale_ttl": stale_ttl, "jitter": jitter, "beta": beta}
        self._freshness: dict[float, Freshness] = {}
        self._get_calls: dict[tuple[str, Any], Call] = {}  # raw get() calls by (key, type_hint)
        self.on_error = on_error
        cfg = None
        if redis_url is not None:
            cfg = RedisConfig.from_url(
                redis_url,
                op_timeout=op_timeout,
                max_connections=max_connections,
                health_check_interval=health_check_interval,
                extra=dict(redis_options or {}),
            )
        connection = ConnectionStats(clock or time.time)
        if breaker is None:
            breaker = CircuitBreaker(
                failure_threshold=breaker_threshold,
                window=breaker_window,
                reset_timeout=breaker_reset_timeout,
                clock=clock or time.monotonic,
                on_change=connection.breaker_moved,
            )
        self.engine = Engine(
            namespace=namespace,
            redis=cfg,
            local_maxsize=local_maxsize,
            codec=Codec(serializer, compress_min_bytes=compress_min_bytes, signing_key=signing_key),
            on_error=on_error,
            lock_timeout=lock_timeout,
            clock=clock or time.time,
            rng=rng,
            breaker=breaker,
            connection=connection,
            error_throttle=error_throttle,
        )
        for freshness in map(self.freshness, self.ttl):
            self.engine.note_ttl(freshness)
        chain = list(middleware)
        if telemetry is None:
            from .observability import sdk_configured

            telemetry = (
                tracer_provider is not None or meter_provider is not None or sdk_configured()
            )
        if telemetry:  # outermost, so a span covers what the other middleware add (retries...)
            from .observability import Telemetry

            chain.insert(
                0,
                Telemetry(
                    self.engine, tracer_provider=tracer_provider, meter_provider=meter_provider
                ),
            )
        self.engine.use(chain)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Cache:
        """A cache for ``url`` (``redis://``, ``redis+sentinel://``, ``redis+cluster://``)."""
        return cls(url, **options)

    def __repr__(self) -> str:
        where = mask_url(self.redis_url) if self.redis_url else "local only"
        return f"<tta_cache.Cache namespace={self.namespace!r} {where}>"

    # ------------------------------------------------------------------ configuration helpers

    def freshness(self, kind: str, ttl: float | None = None, **overrides: float) -> Freshness:
        """The :class:`Freshness` for ``kind`` (its TTL from the table unless ``ttl`` is given)."""
        seconds = ttl if ttl is not None else self.ttl.get(kind, self.default_ttl)
        if overrides:
            return Freshness(ttl=seconds, **{**self._fresh_defaults, **overrides})
        fresh = self._freshness.get(seconds)
        if fresh is None:
            fresh = self._freshness[seconds] = Freshness(ttl=seconds, **self._fresh_defaults)
        return fresh

    def _on_error(self, on_error: str | None) -> str:
        if on_error is None:
            return self.on_error
        if on_error not in _ON_ERROR:
            raise ConfigurationError(f"on_error must be one of {_ON_ERROR}, not {on_error!r}")
        return on_error

    # ------------------------------------------------------------------ decorators

    @overload
    def cached(self, func: Callable[P, Awaitable[R]], /) -> AsyncCachedFunction[P, R]: ...  # type: ignore[overload-overlap]
    @overload
    def cached(self, func: Callable[P, R], /) -> CachedFunction[P, R]: ...
    @overload
    def cached(
        self,
        func: None = None,
        /,
        *,
        kind: str = "default",
        ttl: float | None = None,
        stale_ttl: float | None = None,
        tags: Sequence[TagSpec] = (),
        key: TagSpec | None = None,
        lock: bool = False,
        on_error: str | None = None,
        include_self: bool = False,
        soft_timeout: float | None = None,
        hard_timeout: float | None = None,
    ) -> _Decorator: ...
    def cached(
        self,
        func: Callable[..., Any] | None = None,
        /,
        *,
        kind: str = "default",
        ttl: float | None = None,
        stale_ttl: float | None = None,
        tags: Sequence[TagSpec] = (),
        key: TagSpec | None = None,
        lock: bool = False,
        on_error: str | None = None,
        include_self: bool = False,
        soft_timeout: float | None = None,
        hard_timeout: float | None = None,
    ) -> Any:
        """Cache a function's results: L1, then Redis, then the function (sync or async).

        ``tags`` are templates (``"user:{user_id}"``) or callables; ``key`` replaces the argument
        part of the key; ``lock=True`` adds a Redis lease so a cold key computes once across
        processes. Templates are checked against the signature now, not at the first call.
        ``stale_ttl``, ``soft_timeout`` and ``hard_timeout`` override the cache's for this function.
        """
        fresh_overrides = {} if stale_ttl is None else {"stale_ttl": stale_ttl}
        soft, hard = _timeouts(
            self.soft_timeout if soft_timeout is None else soft_timeout,
            self.hard_timeout if hard_timeout is None else hard_timeout,
        )

        def decorate(f: Callable[..., Any]) -> Any:
            spec: Spec[Any] = Spec(
                f,
                namespace=self.namespace,
                kind=kind,
                freshness=self.freshness(kind, ttl, **fresh_overrides),
                tags=tags,
                key=key,
                lock=lock,
                on_error=self._on_error(on_error),
                include_self=include_self,
                soft_timeout=soft,
                hard_timeout=hard,
            )
            return cached_wrapper(self, spec)

        return decorate(func) if func is not None else decorate

    @overload
    def cached_session(  # type: ignore[overload-overlap]
        self, func: Callable[P, Awaitable[R]], /
    ) -> AsyncCachedFunction[P, R]: ...
    @overload
    def cached_session(self, func: Callable[P, R], /) -> CachedFunction[P, R]: ...
    @overload
    def cached_session(self, func: None = None, /, **options: Any) -> _Decorator: ...
    def cached_session(self, func: Callable[..., Any] | None = None, /, **options: Any) -> Any:
        """``cached(kind="session")`` tagged ``session:{session_id}`` (+ ``user:{user_id}``)."""

        def decorate(f: Callable[..., Any]) -> Any:
            return self.cached(**session_options(f, options))(f)

        return decorate(func) if func is not None else decorate

    def invalidates(
        self, *, tags: Sequence[TagSpec] = (), on_error: str | None = None, **tag_templates: TagSpec
    ) -> Callable[[F], F]:
        """After the decorated call succeeds, invalidate the named tags in every process.

        ``@cache.invalidates(user="{user_id}")`` invalidates ``user:<user_id>``; ``tags=`` takes
        whole-tag templates (``"session:{sid}"``).
        """

        def decorate(f: F) -> F:
            render = invalidation_templates(f, dict(tag_templates), tags)
            return invalidating_wrapper(lambda: self, f, render, on_error)  # type: ignore[return-value]

        return decorate

    # ------------------------------------------------------------------ invalidation

    @staticmethod
    def _tags(tags: Iterable[str], named: Mapping[str, object]) -> list[str]:
        out = [tag(name, value) for name, value in named.items()]
        out.extend(tags)
        return out

    def invalidate(
        self, *, tags: Iterable[str] = (), on_error: str | None = None, **named: object
    ) -> None:
        """Invalidate tags in every process: ``invalidate(user="u1", session="s9")`` or
        ``invalidate(tags=["custom:x"])``. When this returns, this process serves nothing older
        (I1); other processes stop within milliseconds (I2)."""
        all_tags = self._tags(tags, named)
        self.engine.run(self.engine.invalidate_flow(all_tags, (), self._on_error(on_error)))

    async def ainvalidate(
        self, *, tags: Iterable[str] = (), on_error: str | None = None, **named: object
    ) -> None:
        """Async :meth:`invalidate`."""
        all_tags = self._tags(tags, named)
        await self.engine.arun(self.engine.invalidate_flow(all_tags, (), self._on_error(on_error)))

    def invalidate_all(self, *, on_error: str | None = None) -> None:
        """Invalidate every entry of this namespace (bumps the namespace epoch)."""
        self.invalidate(tags=[NAMESPACE_TAG], on_error=on_error)

    def delete_keys(self, keys: Sequence[str], *, on_error: str | None = None) -> None:
        """Delete exact Redis keys everywhere (per-call invalidation)."""
        self.engine.run(self.engine.invalidate_flow((), keys, self._on_error(on_error)))

    async def adelete_keys(self, keys: Sequence[str], *, on_error: str | None = None) -> None:
        await self.engine.arun(self.engine.invalidate_flow((), keys, self._on_error(on_error)))

    # ------------------------------------------------------------------ raw access

    def _raw_call(
        self,
        key: str,
        kind: str | None = None,
        tags: Iterable[str] = (),
        ttl: float | None = None,
        type_hint: Any = None,
    ) -> Call:
        if not tags and ttl is None and kind is None:
            memo = (key, type_hint)
            try:
                return self._get_calls[memo]
            except (KeyError, TypeError):
                pass
        redis_key = self.engine.raw_key(key)
        all_tags = tuple(dict.fromkeys((NAMESPACE_TAG, *tags)))
        call = Call(
            key=redis_key,
            local_key=("raw", redis_key),
            local_types=None,
            tags=all_tags,
            tag_keys=tuple(map(self.engine.tag_key, all_tags)),
            freshness=self.freshness(kind or "default", ttl),
            type_hint=type_hint,
            on_error=self.on_error,
            kind=kind or "default",
        )
        if not tags and ttl is None and kind is None:
            if len(self._get_calls) >= 4096:
                self._get_calls.clear()
            with contextlib.suppress(TypeError):  # an unhashable type hint is not kept
                self._get_calls[(key, type_hint)] = call
        return call

    def get(self, key: str, default: Any = None, *, type_hint: Any = None) -> Any:
        """The value stored under ``key`` (L1, then Redis), or ``default``.

        ``type_hint`` (e.g. a dataclass) rebuilds a JSON/msgpack value read from Redis as that
        type; L1 holds the value as it was set or first decoded.
        """
        call = self._raw_call(key, type_hint=type_hint)
        value = self.engine.run(self.engine.get_flow([call], self.on_error))[0]
        return default if value is _MISSING else value

    async def aget(self, key: str, default: Any = None, *, type_hint: Any = None) -> Any:
        flow = self.engine.get_flow([self._raw_call(key, type_hint=type_hint)], self.on_error)
        value = (await self.engine.arun(flow))[0]
        return default if value is _MISSING else value

    def get_many(self, keys: Iterable[str], *, type_hint: Any = None) -> dict[str, Any]:
        """The keys found, in one Redis round trip for those L1 does not hold."""
        keys = list(keys)
        calls = [self._raw_call(k, type_hint=type_hint) for k in keys]
        values = self.engine.run(self.engine.get_flow(calls, self.on_error))
        return {k: v for k, v in zip(keys, values, strict=True) if v is not _MISSING}

    async def aget_many(self, keys: Iterable[str], *, type_hint: Any = None) -> dict[str, Any]:
        keys = list(keys)
        calls = [self._raw_call(k, type_hint=type_hint) for k in keys]
        flow = self.engine.get_flow(calls, self.on_error)
        values = await self.engine.arun(flow)
        return {k: v for k, v in zip(keys, values, strict=True) if v is not _MISSING}

    def set(
        self,
        key: str,
        value: Any,
        ttl: float | None = None,
        kind: str | None = None,
        tags: Iterable[str] = (),
        *,
        on_error: str | None = None,
    ) -> None:
        """Store ``value`` under ``key`` in both tiers, stamped with its tags' current versions."""
        call = self._raw_call(key, kind, tags, ttl)
        self.engine.run(self.engine.set_flow([(call, value)], self._on_error(on_error)))

    async def aset(
        self,
        key: str,
        value: Any,
        ttl: float | None = None,
        kind: str | None = None,
        tags: Iterable[str] = (),
        *,
        on_error: str | None = None,
    ) -> None:
        call = self._raw_call(key, kind, tags, ttl)
        await self.engine.arun(self.engine.set_flow([(call, value)], self._on_error(on_error)))

    def set_many(
        self,
        items: Mapping[str, Any],
        ttl: float | None = None,
        kind: str | None = None,
        tags: Iterable[str] = (),
        *,
        tags_by_key: Mapping[str, Iterable[str]] | None = None,
        on_error: str | None = None,
    ) -> None:
        """Store many values in one pipeline; ``tags_by_key`` adds tags to single keys."""
        pairs = self._raw_pairs(items, ttl, kind, tags, tags_by_key)
        self.engine.run(self.engine.set_flow(pairs, self._on_error(on_error)))

    def _raw_pairs(
        self,
        items: Mapping[str, Any],
        ttl: float | None,
        kind: str | None,
        tags: Iterable[str],
        tags_by_key: Mapping[str, Iterable[str]] | None,
    ) -> list[tuple[Call, Any]]:
        tags = tuple(tags)
        extra = tags_by_key or {}
        return [
            (self._raw_call(k, kind, (*tags, *extra.get(k, ())), ttl), v) for k, v in items.items()
        ]

    async def aset_many(
        self,
        items: Mapping[str, Any],
        ttl: float | None = None,
        kind: str | None = None,
        tags: Iterable[str] = (),
        *,
        tags_by_key: Mapping[str, Iterable[str]] | None = None,
        on_error: str | None = None,
    ) -> None:
        pairs = self._raw_pairs(items, ttl, kind, tags, tags_by_key)
        await self.engine.arun(self.engine.set_flow(pairs, self._on_error(on_error)))

    def delete(self, key: str) -> None:
        """Remove ``key`` from every process's L1 and from Redis."""
        self.delete_keys([self.engine.raw_key(key)])

    async def adelete(self, key: str) -> None:
        await self.adelete_keys([self.engine.raw_key(key)])

    # ------------------------------------------------------------------ observability

    def stats(self) -> dict[str, Any]:
        """Hits, misses, hit_rate, average_response_time, operations_per_second,
        total_operations, errors (the seed's dict), plus decode_errors and per-tier figures."""
        local = self.engine.local
        with local.lock:
            hits, misses, size = local.hits, local.misses, len(local)
        out = self.engine.stats.snapshot(hits, misses, size)
        out["channel"] = {
            **self.engine.health_state(),
            **channel_figures(self.engine.subscriber),
        }
        out.update(self.engine.resilience_stats())
        return out

    def health(self) -> dict[str, Any]:
        """``overall_status`` healthy / degraded / unhealthy with reasons, PING latency, stats.

        A new cache opens its invalidation channel here when Redis answers, and waits briefly for
        it: ``healthy`` means the channel is up and tagged entries are served from L1, so it fits
        a readiness probe at start-up (see :func:`tta_cache.observability.check`).
        """
        from .observability import check

        return check(self)

    def wait_ready(self, timeout: float = 5.0) -> bool:
        """Block until the invalidation channel is up; True if it is."""
        return self.engine.wait_ready(timeout)

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Stop the channel thread and close connections."""
        self.engine.close()

    async def aclose(self) -> None:
        await self.engine.aclose()

    def __enter__(self) -> Cache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Cache:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class _Decorator:
    """What ``cache.cached(...)`` returns: apply it to a function."""

    @overload
    def __call__(self, func: Callable[P, Awaitable[R]], /) -> AsyncCachedFunction[P, R]: ...  # type: ignore[overload-overlap]
    @overload
    def __call__(self, func: Callable[P, R], /) -> CachedFunction[P, R]: ...
    def __call__(self, func: Callable[..., Any], /) -> Any: ...


def _timeouts(soft: float, hard: float | None) -> tuple[float, float | None]:
    if not (math.isfinite(soft) and soft >= 0):
        raise ConfigurationError(f"soft_timeout must be >= 0 seconds, not {soft!r}")
    if hard is not None and not (math.isfinite(hard) and hard > 0):
        raise ConfigurationError(f"hard_timeout must be > 0 seconds or None, not {hard!r}")
    return soft, hard


def session_options(func: Callable[..., Any], options: Mapping[str, Any]) -> dict[str, Any]:
    """``cached_session``'s options for ``func``: kind and the session (and user) tags."""
    import inspect

    params = inspect.signature(func).parameters
    if "session_id" not in params:
        raise TemplateError(
            f"cached_session needs a 'session_id' parameter; {func.__qualname__} has "
            f"{tuple(params)}"
        )
    tags = ["session:{session_id}"] + (["user:{user_id}"] if "user_id" in params else [])
    return {"kind": "session", **options, "tags": (*tags, *options.get("tags", ()))}


# ---------------------------------------------------------------------- the default cache

_default: Cache | None = None
_default_lock = threading.Lock()
_default_options: dict[str, Any] = {}


def configure(redis_url: str | None = None, **options: Any) -> Cache:
    """Configure the default cache behind ``tta_cache.cached`` & co; returns it.

    Decorators applied before this call bind to the configured cache at their first call.
    """
    global _default
    with _default_lock:
        old, _default = _default, None
        _default_options.clear()
        _default_options.update(options, redis_url=redis_url)
    if old is not None:
        old.close()
    return default_cache()


def default_cache() -> Cache:
    """The default cache: as configured, else ``TTA_CACHE_REDIS_URL`` or local only."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                options = dict(_default_options)
                if "redis_url" not in options:
                    options["redis_url"] = os.environ.get("TTA_CACHE_REDIS_URL") or None
                _default = Cache(**options)
    return _default


def module_cached(func: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """``tta_cache.cached``: like :meth:`Cache.cached` on the default cache, bound lazily."""

    def decorate(f: Callable[..., Any]) -> Any:
        Spec(
            f,
            namespace="tta",
            kind=options.get("kind", "default"),
            freshness=Freshness(1.0),
            tags=options.get("tags", ()),
            key=options.get("key"),
            lock=False,
            on_error="ignore",
        )
        return lazy(default_cache, lambda c: c.cached(**options)(f), f)

    return decorate(func) if func is not None else decorate


def module_cached_session(func: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """``tta_cache.cached_session`` on the default cache, bound lazily."""

    def decorate(f: Callable[..., Any]) -> Any:
        return module_cached(**session_options(f, options))(f)

    return decorate(func) if func is not None else decorate


def module_invalidates(
    *, tags: Sequence[TagSpec] = (), on_error: str | None = None, **tag_templates: TagSpec
) -> Callable[[F], F]:
    """``tta_cache.invalidates`` on the default cache."""

    def decorate(f: F) -> F:
        render = invalidation_templates(f, dict(tag_templates), tags)
        return invalidating_wrapper(default_cache, f, render, on_error)  # type: ignore[return-value]

    return decorate
