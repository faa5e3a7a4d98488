"""The default cache behind the module-level decorators (``tta_cache.cached`` & co): usable at
import time, bound to ``tc.configure(...)``'s cache (else ``TTA_CACHE_REDIS_URL``, else local only)
at their first call. Templates are still checked at decoration time."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from ..core.policy import Freshness
from .cache import Cache
from .options import keys_from_environment, session_options
from .spec import Spec, TagSpec
from .wrappers import invalidating_wrapper, invalidation_templates, lazy

__all__ = [
    "configure",
    "default_cache",
    "module_cached",
    "module_cached_many",
    "module_cached_session",
    "module_invalidates",
]

F = TypeVar("F", bound=Callable[..., Any])

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
    """The default cache: as configured, else ``TTA_CACHE_REDIS_URL`` or local only; keys not
    configured are read from ``TTA_CACHE_ENCRYPTION_KEYS`` and ``TTA_CACHE_SIGNING_KEYS``."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                options = dict(_default_options)
                if "redis_url" not in options:
                    options["redis_url"] = os.environ.get("TTA_CACHE_REDIS_URL") or None
                _default = Cache(**keys_from_environment(options))
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
            cache_if=options.get("cache_if"),
            none_ttl=options.get("none_ttl"),
        )
        return lazy(default_cache, lambda c: c.cached(**options)(f), f)

    return decorate(func) if func is not None else decorate


def module_cached_many(**options: Any) -> Callable[[F], F]:
    """``tta_cache.cached_many`` on the default cache, bound lazily (checked now)."""
    from .batch import BatchSpec

    def decorate(f: F) -> F:
        BatchSpec(
            f,
            namespace="tta",
            kind=options.get("kind", "default"),
            freshness=Freshness(1.0),
            tags=options.get("tags", ()),
            over=options.get("over"),
            lock=False,
            on_error="ignore",
            include_self=options.get("include_self", False),
            cache_if=options.get("cache_if"),
            none_ttl=options.get("none_ttl"),
        )
        return lazy(default_cache, lambda c: c.cached_many(**options)(f), f)  # type: ignore[return-value]

    return decorate


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
