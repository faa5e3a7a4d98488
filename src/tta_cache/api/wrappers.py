"""The wrappers the decorators return: specialised once, at decoration time (sync or async, with
or without L1, method or function), so the L1 hit path has no configuration branches: bind the
arguments, look up one LRU map under its lock, compare a generation number and an expiry
instant, return. Nothing of Redis.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from ..core.keys import Template, check_name, escape, function_id
from ..engine import MISSING, Call
from ..exceptions import TemplateError
from .control import controls
from .spec import Spec, TagSpec

if TYPE_CHECKING:
    from .cache import Cache

if typing.TYPE_CHECKING or hasattr(typing, "ParamSpec"):
    from typing import ParamSpec
else:  # pragma: no cover
    from typing_extensions import ParamSpec

__all__ = [
    "AsyncCachedFunction",
    "CachedFunction",
    "cached_wrapper",
    "invalidating_wrapper",
    "invalidation_templates",
    "lazy",
]

P = ParamSpec("P")
R_co = TypeVar("R_co", covariant=True)


class CachedFunction(Protocol[P, R_co]):
    """A function decorated with ``@cache.cached`` (sync)."""

    __wrapped__: Callable[..., Any]

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R_co: ...
    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> None: ...
    def cache_key(self, *args: P.args, **kwargs: P.kwargs) -> str: ...
    def refresh(self, *args: P.args, **kwargs: P.kwargs) -> R_co: ...
    def set(self, value: Any, /, *args: P.args, **kwargs: P.kwargs) -> None: ...


class AsyncCachedFunction(Protocol[P, R_co]):
    """A coroutine function decorated with ``@cache.cached``; ``invalidate`` is awaitable."""

    __wrapped__: Callable[..., Any]

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R_co]: ...
    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> Awaitable[None]: ...
    def cache_key(self, *args: P.args, **kwargs: P.kwargs) -> str: ...
    def refresh(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R_co]: ...
    def set(self, value: Any, /, *args: P.args, **kwargs: P.kwargs) -> Awaitable[None]: ...


def cached_wrapper(cache: Cache, spec: Spec[Any]) -> Callable[..., Any]:
    """Build the specialised wrapper for ``spec`` bound to ``cache``'s engine."""
    engine = cache.engine
    func = spec.func
    local = engine.local
    data = local.data
    lock = local.lock
    versions = engine.versions
    valid = versions.valid
    clock = engine.clock
    token = object()  # this function's identity in the shared L1
    arity = spec.arity
    fast = spec.simple and not spec.skip_first
    values = spec.values
    tag_key = engine.tag_key
    lookup = engine.local_lookup
    engine.note_ttl(spec.freshness)
    if spec.policy is not None and spec.policy.none_freshness is not None:
        engine.note_ttl(spec.policy.none_freshness)

    l1 = local.maxsize > 0
    # The Call of a recent argument tuple is kept (building one renders templates and encodes the
    # key): only for arguments that own their L1 slot (so equal values of other types cannot
    # pick it up) and string templates (a callable template may not be a pure function).
    calls: dict[Any, Call] = {}
    reuse = spec.pure_templates

    def slow(vals: tuple[Any, ...]) -> tuple[Any, Call]:
        memo = (vals, tuple(map(type, vals)))  # typed: an equal value of another type misses
        try:
            call = calls[memo]
        except (KeyError, TypeError):
            call = spec.call(vals, token, tag_key)
            if reuse and call.local_key is not call.key:
                if len(calls) >= 4096:
                    calls.clear()
                calls[memo] = call
        if not l1:
            return MISSING, call
        return lookup(call.local_key, call.local_types), call

    # The hit path: probe (token, vals); an entry is served while it has not expired, the
    # channel has kept the tag map current (fresh_until; past it, revive() polls the channel's
    # socket once), (for non-text arguments) the argument types match, and its stamp is current:
    # one integer compare unless some tag version moved since the entry was last looked at.
    # It is written out twice, once in each wrapper, on purpose: a shared helper would add a
    # Python call (~60-150 ns here) to every hit.
    if spec.is_async:

        async def awrapper(*args: Any, **kwargs: Any) -> Any:
            vals = args if (fast and not kwargs and len(args) == arity) else values(args, kwargs)
            if l1:
                with lock:
                    try:
                        e = data[(token, vals)]
                    except (KeyError, TypeError):  # absent, or unhashable arguments
                        pass
                    else:
                        if (
                            e.expires > (now := clock())
                            and (now < versions.fresh_until or versions.revive(now))
                            and (e.types is None or e.types == tuple(map(type, vals)))
                        ):
                            gen = versions.gen
                            if e.gen == gen or valid(e.stamp):  # re-check once after any change
                                e.gen = gen
                                local.hits += 1
                                return e.value
            value, call = slow(vals)
            if value is not MISSING:
                return value
            return await engine.aload(call, lambda: func(*args, **kwargs))

        wrapper: Callable[..., Any] = awrapper
    else:

        def swrapper(*args: Any, **kwargs: Any) -> Any:
            vals = args if (fast and not kwargs and len(args) == arity) else values(args, kwargs)
            if l1:
                with lock:
                    try:
                        e = data[(token, vals)]
                    except (KeyError, TypeError):  # absent, or unhashable arguments
                        pass
                    else:
                        if (
                            e.expires > (now := clock())
                            and (now < versions.fresh_until or versions.revive(now))
                            and (e.types is None or e.types == tuple(map(type, vals)))
                        ):
                            gen = versions.gen
                            if e.gen == gen or valid(e.stamp):  # re-check once after any change
                                e.gen = gen
                                local.hits += 1
                                return e.value
            value, call = slow(vals)
            if value is not MISSING:
                return value
            return engine.load(call, lambda: func(*args, **kwargs))

        wrapper = swrapper

    def cache_key(*args: Any, **kwargs: Any) -> str:
        vals = spec.key_values(args, kwargs)
        return spec.redis_key(vals, dict(zip(spec.names, vals, strict=True)))

    if spec.is_async:

        async def ainvalidate(*args: Any, **kwargs: Any) -> None:
            await cache.adelete_keys([cache_key(*args, **kwargs)], on_error=spec.on_error)

        invalidate: Callable[..., Any] = ainvalidate
    else:

        def sinvalidate(*args: Any, **kwargs: Any) -> None:
            cache.delete_keys([cache_key(*args, **kwargs)], on_error=spec.on_error)

        invalidate = sinvalidate

    functools.update_wrapper(wrapper, func)
    wrapper.invalidate = invalidate  # type: ignore[attr-defined]
    wrapper.cache_key = cache_key  # type: ignore[attr-defined]
    wrapper.refresh, wrapper.set = controls(engine, spec, token)  # type: ignore[attr-defined]
    wrapper.cache = cache  # type: ignore[attr-defined]
    wrapper.uncached = func  # type: ignore[attr-defined]
    return wrapper


def lazy(
    resolve: Callable[[], Cache],
    build: Callable[[Cache], Callable[..., Any]],
    func: Callable[..., Any],
) -> Callable[..., Any]:
    """A wrapper usable at import time that binds to ``resolve()``'s cache on first use."""
    impl: Callable[..., Any] | None = None

    def bound() -> Callable[..., Any]:
        nonlocal impl
        if impl is None:
            impl = build(resolve())
        return impl

    if inspect.iscoroutinefunction(func):

        async def awrapper(*args: Any, **kwargs: Any) -> Any:
            return await (impl or bound())(*args, **kwargs)

        wrapper: Callable[..., Any] = awrapper
    else:

        def swrapper(*args: Any, **kwargs: Any) -> Any:
            return (impl or bound())(*args, **kwargs)

        wrapper = swrapper
    functools.update_wrapper(wrapper, func)
    wrapper.invalidate = lambda *a, **k: bound().invalidate(*a, **k)  # type: ignore[attr-defined]
    wrapper.cache_key = lambda *a, **k: bound().cache_key(*a, **k)  # type: ignore[attr-defined]
    wrapper.refresh = lambda *a, **k: bound().refresh(*a, **k)  # type: ignore[attr-defined]
    wrapper.set = lambda *a, **k: bound().set(*a, **k)  # type: ignore[attr-defined]
    wrapper.uncached = func  # type: ignore[attr-defined]
    return wrapper


def invalidation_templates(
    func: Callable[..., Any], tag_templates: dict[str, TagSpec], tags: Sequence[TagSpec]
) -> Callable[[tuple[Any, ...], dict[str, Any]], list[str]]:
    """Check ``@invalidates`` templates against ``func`` now; return the renderer for a call."""
    sig = inspect.signature(func)
    params = list(sig.parameters)
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    where = function_id(func)
    named = []
    for name, spec in tag_templates.items():
        check_name("tag name", name)
        named.append(
            (
                name,
                Template(
                    spec,
                    params,
                    where=f"invalidates({name}=...)",
                    func_name=where,
                    accepts_any=accepts_any,
                ),
            )
        )
    whole = [
        Template(t, params, where="invalidates(tags=...)", func_name=where, accepts_any=accepts_any)
        for t in tags
    ]
    if not named and not whole:
        raise TemplateError(f"invalidates() of {where} names no tag to invalidate")

    def render(args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[str]:
        bound = sig.bind(*args, **kwargs)
        bound.apply_defaults()
        arguments = bound.arguments
        out = []
        for name, tpl in named:
            if callable(tpl.source):
                out.append(f"{name}:{escape(tpl.render(arguments))}")
            else:
                out.append(f"{name}:{tpl.render(arguments)}")
        out.extend(t.render(arguments) for t in whole)
        return out

    return render


def invalidating_wrapper(
    resolve: Callable[[], Cache],
    func: Callable[..., Any],
    render: Callable[[tuple[Any, ...], dict[str, Any]], list[str]],
    on_error: str | None,
) -> Callable[..., Any]:
    """After ``func`` returns (not when it raises), invalidate the rendered tags."""
    if inspect.iscoroutinefunction(func):

        async def awrapper(*args: Any, **kwargs: Any) -> Any:
            result = await func(*args, **kwargs)
            await resolve().ainvalidate(tags=render(args, kwargs), on_error=on_error)
            return result

        wrapper: Callable[..., Any] = awrapper
    else:

        def swrapper(*args: Any, **kwargs: Any) -> Any:
            result = func(*args, **kwargs)
            resolve().invalidate(tags=render(args, kwargs), on_error=on_error)
            return result

        wrapper = swrapper
    return functools.update_wrapper(wrapper, func)
