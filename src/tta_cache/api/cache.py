"""The public :class:`Cache`: configuration, decorators, raw access, invalidation, stats, health."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, overload

from ..codec import Codec, EncryptionKeys, Serializer
from ..coherence import channel_figures
from ..core.keys import NAMESPACE_TAG, check_name, tag
from ..core.policy import CircuitBreaker, Freshness
from ..exceptions import ConfigurationError
from ..observability import Middleware
from ..tiers import mask_url
from .build import build_engine, middleware_chain
from .options import DEFAULT_TTL, check_on_error, session_options, timeouts
from .raw_access import RawAccess, RawCalls
from .spec import Spec, TagSpec
from .wrappers import (
    AsyncCachedFunction,
    CachedFunction,
    P,
    cached_wrapper,
    invalidating_wrapper,
    invalidation_templates,
)

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

__all__ = ["Cache"]

R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])


class Cache(RawAccess):
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
    circuit breaker: Redis is skipped for ``breaker_reset_timeout`` seconds, then probed. A caller
    waits up to ``pool_timeout`` seconds (default 10, or the URL's ``?pool_timeout=``) for one of
    ``max_connections`` pooled connections: a wait is counted in ``stats()["pool"]``, and one that
    runs out is a fail-open ``PoolTimeout`` the breaker does not count. Redis is
    PINGed every ``health_check_interval`` seconds (0: never) by a thread started on first use.
    ``pipelining=True`` (asyncio): the Redis reads and fills of tasks of one event loop that run
    while others' are on the wire go out together as one pipeline; a lone call is sent at once.
    ``bump_replicas=n`` (standalone and Sentinel, or the URL's ``?bump_replicas=``): an
    invalidation lands only once ``n`` replicas acknowledge its tag bump (``WAIT``, bounded by
    ``op_timeout``); until then it is queued, this process serves nothing it covers, and it is
    retried, so a failover that loses the bump cannot bring back what it invalidated.
    ``clock`` (seconds) drives expiry, the breaker and throttles; tests pass a fake one.
    A value whose envelope is over ``max_value_bytes`` (default 1 MiB; ``None``: no limit) is
    returned but cached in neither tier, and counted in ``stats()["oversized_values"]``.

    Data at rest (docs/security.md): ``signing_key`` (one, or a list: the first signs, all
    verify) signs every entry; ``encryption_keys={"k2": key, "k1": old_key}`` (32-byte keys or
    their base64 text; the first encrypts, all decrypt; needs ``tta-cache[crypto]``) encrypts
    the kinds in ``encrypt_kinds`` (default ``("emotional", "therapeutic")``, ``"*"`` for every
    kind) with AES-256-GCM, bound to the namespace, the Redis key and the kind; they are not
    compressed unless ``compress_encrypted=True`` (compression leaks through lengths).
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
        max_value_bytes: int | None = 1_048_576,
        signing_key: bytes | str | Sequence[bytes | str] | None = None,
        encryption_keys: EncryptionKeys | None = None,
        encrypt_kinds: str | Iterable[str] | None = None,
        compress_encrypted: bool = False,
        on_error: str = "ignore",
        op_timeout: float = 0.25,
        lock_timeout: float = 5.0,
        soft_timeout: float = 0.0,
        hard_timeout: float | None = None,
        error_throttle: float = 5.0,
        max_connections: int = 50,
        pool_timeout: float | None = None,
        health_check_interval: float = 30.0,
        pipelining: bool = True,
        bump_replicas: int = 0,
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
        check_on_error(on_error)
        if local_maxsize < 0:
            raise ConfigurationError("local_maxsize must be >= 0 (0 turns L1 off)")
        if max_value_bytes is not None and max_value_bytes < 1:
            raise ConfigurationError("max_value_bytes must be >= 1, or None for no limit")
        if not lock_timeout > 0:
            raise ConfigurationError(f"lock_timeout must be > 0 seconds, not {lock_timeout!r}")
        self.soft_timeout, self.hard_timeout = timeouts(soft_timeout, hard_timeout)
        self.namespace = namespace
        self.redis_url = redis_url
        self.ttl = {**DEFAULT_TTL, **(ttl or {})}
        self.default_ttl = default_ttl
        self._fresh_defaults = {"stale_ttl": stale_ttl, "jitter": jitter, "beta": beta}
        self._freshness: dict[float, Freshness] = {}
        self.on_error = on_error
        self.engine = build_engine(
            redis_url,
            namespace=namespace,
            local_maxsize=local_maxsize,
            codec=Codec(
                serializer,
                compress_min_bytes=compress_min_bytes,
                signing_key=signing_key,
                encryption_keys=encryption_keys,
                encrypt_kinds=encrypt_kinds,
                compress_encrypted=compress_encrypted,
                namespace=namespace,
            ),
            on_error=on_error,
            lock_timeout=lock_timeout,
            error_throttle=error_throttle,
            clock=clock,
            rng=rng,
            breaker=breaker,
            breaker_options=(breaker_threshold, breaker_window, breaker_reset_timeout),
            max_value_bytes=max_value_bytes,
            redis_options={
                "op_timeout": op_timeout,
                "max_connections": max_connections,
                **({} if pool_timeout is None else {"pool_timeout": pool_timeout}),
                "health_check_interval": health_check_interval,
                "pipelining": pipelining,
                "bump_replicas": bump_replicas,
                "extra": dict(redis_options or {}),
            },
        )
        for freshness in map(self.freshness, self.ttl):
            self.engine.note_ttl(freshness)
        self.engine.use(
            middleware_chain(self.engine, middleware, telemetry, tracer_provider, meter_provider)
        )
        self._raw = RawCalls(self.engine, self.freshness, on_error)

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

    def _check(self, on_error: str | None) -> str:
        return self.on_error if on_error is None else check_on_error(on_error)

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
        cache_if: Callable[[Any], object] | None = None,
        none_ttl: float | None = None,
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
        cache_if: Callable[[Any], object] | None = None,
        none_ttl: float | None = None,
    ) -> Any:
        """Cache a function's results: L1, then Redis, then the function (sync or async).

        ``tags`` are templates (``"user:{user_id}"``) or callables; ``key`` replaces the argument
        part of the key; ``lock=True`` adds a Redis lease so a cold key computes once across
        processes. Templates are checked against the signature now, not at the first call.
        ``stale_ttl``, ``soft_timeout`` and ``hard_timeout`` override the cache's for this function.
        ``cache_if=pred`` stores a result only when ``pred(result)`` is true (a predicate that
        raises stores nothing, counted); ``none_ttl=s`` keeps a None result ``s`` seconds (0:
        never; default: like any other value). Inside the computation,
        :func:`tta_cache.current_entry` sets this entry's TTL, skips it or adds tags.
        """
        fresh_overrides = {} if stale_ttl is None else {"stale_ttl": stale_ttl}
        soft, hard = timeouts(
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
                on_error=self._check(on_error),
                include_self=include_self,
                soft_timeout=soft,
                hard_timeout=hard,
                cache_if=cache_if,
                none_ttl=none_ttl,
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

    def cached_many(
        self,
        *,
        kind: str = "default",
        over: str | None = None,
        tags: Sequence[TagSpec] = (),
        ttl: float | None = None,
        lock: bool = False,
        on_error: str | None = None,
        include_self: bool = False,
        cache_if: Callable[[Any], object] | None = None,
        none_ttl: float | None = None,
    ) -> _Decorator:
        """A batch loader, ``f(user_id, ids) -> {id: value}`` with each id its own entry under
        the key a one-id call would use: ``over`` names the ids' parameter (default: the first),
        ``{item}`` in a template is one id, ``cache_if``/``none_ttl`` judge each id's value, the
        rest as :meth:`cached` (docs/usage.md "Batch loaders")."""
        from .batch import batch_decorator

        return batch_decorator(  # type: ignore[return-value]
            self,
            kind=kind,
            over=over,
            tags=tags,
            ttl=ttl,
            lock=lock,
            on_error=on_error,
            include_self=include_self,
            cache_if=cache_if,
            none_ttl=none_ttl,
        )

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
        self.engine.run(self.engine.invalidate_flow(all_tags, (), self._check(on_error)))

    async def ainvalidate(
        self, *, tags: Iterable[str] = (), on_error: str | None = None, **named: object
    ) -> None:
        """Async :meth:`invalidate`."""
        all_tags = self._tags(tags, named)
        await self.engine.arun(self.engine.invalidate_flow(all_tags, (), self._check(on_error)))

    def invalidate_all(self, *, on_error: str | None = None) -> None:
        """Invalidate every entry of this namespace (bumps the namespace epoch)."""
        self.invalidate(tags=[NAMESPACE_TAG], on_error=on_error)

    def delete_keys(self, keys: Sequence[str], *, on_error: str | None = None) -> None:
        """Delete exact Redis keys everywhere (per-call invalidation)."""
        self.engine.run(self.engine.invalidate_flow((), keys, self._check(on_error)))

    async def adelete_keys(self, keys: Sequence[str], *, on_error: str | None = None) -> None:
        """Async :meth:`delete_keys`."""
        await self.engine.arun(self.engine.invalidate_flow((), keys, self._check(on_error)))

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
        from ..observability import check

        return check(self)

    def wait_ready(self, timeout: float = 5.0) -> bool:
        """Block until the invalidation channel is up; True if it is."""
        return self.engine.wait_ready(timeout)

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Stop the channel thread and close connections."""
        self.engine.close()

    async def aclose(self) -> None:
        """Async :meth:`close`: also closes this event loop's asyncio connections."""
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
