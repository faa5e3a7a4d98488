"""Decorators: signatures, templates and kinds, turned into calls of the engine. Nothing of Redis.

A wrapper is specialised once, at decoration time (sync or async, with or without L1, method or
function), so the L1 hit path has no configuration branches: bind the arguments, look up one LRU
map under its lock, compare a generation number and an expiry instant, return.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import inspect
import typing
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from .engine import _MISSING, Call
from .exceptions import TemplateError
from .keys import NAMESPACE_TAG, Template, check_name, encode_args, escape, function_id, hash_tag
from .policy import Freshness

if TYPE_CHECKING:
    from .cache import Cache

if typing.TYPE_CHECKING or hasattr(typing, "ParamSpec"):
    from typing import ParamSpec
else:  # pragma: no cover
    from typing_extensions import ParamSpec

__all__ = [
    "AsyncCachedFunction",
    "CachedFunction",
    "Spec",
    "cached_wrapper",
    "invalidating_wrapper",
]

P = ParamSpec("P")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)

TagSpec = str | Callable[[typing.Mapping[str, Any]], object]


class CachedFunction(Protocol[P, R_co]):
    """A function decorated with ``@cache.cached`` (sync)."""

    __wrapped__: Callable[..., Any]

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R_co: ...
    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> None: ...
    def cache_key(self, *args: P.args, **kwargs: P.kwargs) -> str: ...


class AsyncCachedFunction(Protocol[P, R_co]):
    """A coroutine function decorated with ``@cache.cached``; ``invalidate`` is awaitable."""

    __wrapped__: Callable[..., Any]

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R_co]: ...
    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> Awaitable[None]: ...
    def cache_key(self, *args: P.args, **kwargs: P.kwargs) -> str: ...


def _return_hint(func: Callable[..., Any]) -> Any:
    try:
        return typing.get_type_hints(func).get("return")
    except Exception:
        return None


class Spec(Generic[R]):
    """What a decorator knows of its function: parameters, templates, kind, freshness."""

    def __init__(
        self,
        func: Callable[..., Any],
        *,
        namespace: str,
        kind: str,
        freshness: Freshness,
        tags: Sequence[TagSpec],
        key: TagSpec | None,
        lock: bool,
        on_error: str,
        include_self: bool = False,
        soft_timeout: float = 0.0,
        hard_timeout: float | None = None,
    ) -> None:
        check_name("kind", kind)
        self.func = func
        self.sig = inspect.signature(func)
        params = list(self.sig.parameters.values())
        # Methods: ``self``/``cls`` comes through the descriptor protocol; it is not in the key.
        self.skip_first = not include_self and bool(params) and params[0].name in ("self", "cls")
        self.key_sig = self.sig.replace(parameters=params[1:]) if self.skip_first else self.sig
        key_params = list(self.key_sig.parameters.values())
        self.names = tuple(p.name for p in key_params)
        self.simple = all(
            p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in key_params
        )
        self.arity = len(params)
        all_names = [p.name for p in params]
        accepts_any = any(p.kind is p.VAR_KEYWORD for p in params)
        where = f"{function_id(func)}"
        self.tag_templates = tuple(
            Template(t, all_names, where="tags", func_name=where, accepts_any=accepts_any)
            for t in tags
        )
        self.key_template = (
            Template(key, all_names, where="key", func_name=where, accepts_any=accepts_any)
            if key is not None
            else None
        )
        self.kind = kind
        self.freshness = freshness
        self.lock = lock
        self.soft_timeout = soft_timeout
        self.hard_timeout = hard_timeout
        self.on_error = on_error
        self.function = function_id(func)
        self.type_hint = _return_hint(func)
        session = "session_id" in self.names
        self.prefix = f"{namespace}:{kind}:"
        self.session_hash = session
        self.is_async = inspect.iscoroutinefunction(func)
        # Renderers by argument position (the common case: plain parameter names in templates).
        renderers = [t.by_position(self.names) for t in self.tag_templates]
        self._positional = (
            tuple(r for r in renderers if r is not None)
            if all(r is not None for r in renderers)
            else None
        )
        self._session_at = self.names.index("session_id") if self.session_hash else None
        self.pure_templates = not any(
            callable(t.source) for t in (*self.tag_templates, self.key_template) if t is not None
        )

    def values(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        """Bound argument values in parameter order (defaults applied; ``self`` dropped)."""
        if not kwargs and len(args) == self.arity and self.simple:
            return args[1:] if self.skip_first else args
        bound = self.sig.bind(*args, **kwargs)
        bound.apply_defaults()
        vals = tuple(bound.arguments.values())
        return vals[1:] if self.skip_first else vals

    def key_values(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        """Like :meth:`values` for ``.invalidate``/``.cache_key``, which take no ``self``."""
        bound = self.key_sig.bind(*args, **kwargs)
        bound.apply_defaults()
        return tuple(bound.arguments.values())

    def arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        bound = self.sig.bind(*args, **kwargs)
        bound.apply_defaults()
        return dict(bound.arguments)

    def _key_by_position(self, vals: tuple[Any, ...]) -> str:
        argpart = encode_args(vals, self.names)
        if self._session_at is not None:
            return f"{self.prefix}{hash_tag(vals[self._session_at])}:{self.function}:{argpart}"
        return f"{self.prefix}{self.function}:{argpart}"

    def redis_key(self, vals: tuple[Any, ...], arguments: typing.Mapping[str, Any]) -> str:
        if self.key_template is not None:
            argpart = self.key_template.render(arguments)
        else:
            argpart = encode_args(vals, self.names)
        if self.session_hash:
            sid = hash_tag(arguments["session_id"])
            return f"{self.prefix}{sid}:{self.function}:{argpart}"
        return f"{self.prefix}{self.function}:{argpart}"

    def call(self, vals: tuple[Any, ...], token: object, tag_key: Callable[[str], str]) -> Call:
        """The engine's view of one call; ``token`` is this function's identity in L1."""
        if (
            self._positional is not None
            and self.key_template is None
            and len(vals) == len(self.names)
        ):
            tags = (NAMESPACE_TAG, *(render(vals) for render in self._positional))
            key = self._key_by_position(vals)
        else:
            arguments = dict(zip(self.names, vals, strict=True))
            tags = (NAMESPACE_TAG, *(t.render(arguments) for t in self.tag_templates))
            key = self.redis_key(vals, arguments)
        tags = tuple(dict.fromkeys(tags))
        local_key, local_types = local_identity(token, vals, key)
        return Call(
            key=key,
            local_key=local_key,
            local_types=local_types,
            tags=tags,
            tag_keys=tuple(map(tag_key, tags)),
            freshness=self.freshness,
            type_hint=self.type_hint,
            on_error=self.on_error,
            kind=self.kind,
            function=self.function,
            lock=self.lock,
            soft_timeout=self.soft_timeout,
            hard_timeout=self.hard_timeout,
        )


# Equal values of different types hash alike (``1 == True == 1.0 == Decimal(1)``), so they would
# take turns in one ``(token, vals)`` slot. Only one type of each such group may own the slot:
# ``int`` owns the integral numbers, ``float`` the others; the rest use their Redis key.
_EXACT = frozenset({str, type(None), bytes})
_OWNERS = frozenset({int, str, bytes, type(None), uuid.UUID, dt.date})


def _owns_slot(value: Any) -> bool:
    t = type(value)
    if t in _OWNERS:
        return True
    if t is float:
        return not value.is_integer()
    # plain enums compare by identity; IntEnum and friends equal their values
    return isinstance(value, enum.Enum) and getattr(t, "__eq__", None) is object.__eq__


def local_identity(
    token: object, vals: tuple[Any, ...], key: str
) -> tuple[Any, tuple[type, ...] | None]:
    """The L1 key of a call and the argument types an L1 hit must also match.

    ``(token, vals)`` is the key the hit path probes without building anything else. Equal
    values of different types (``1``, ``True``, ``1.0``) would share it, so entries whose
    arguments are not all ``str``/``bytes``/``None`` record their types and a hit compares them,
    and only arguments whose type owns their value's slot (see ``_OWNERS``) use it at all.
    Text is not type-checked on a hit (it would cost a third of the hit): an argument of a
    ``str`` subclass equal to a plain string (a str-mixin Enum member) shares the string's L1
    entry, as ``==`` says it should; their Redis keys still differ.
    Others (``True``, ``1.0``, ``Decimal``, aware datetimes, containers, objects) could share it
    or hide a difference deeper down: they use the Redis key itself (an exact, typed encoding)
    as their L1 key.
    """
    if set(map(type, vals)) <= _EXACT:
        return (token, vals), None
    if all(map(_owns_slot, vals)):
        return (token, vals), tuple(map(type, vals))
    return key, None


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
            return _MISSING, call
        return lookup(call.local_key, call.local_types), call

    # The hit path: probe (token, vals); an entry is served while it has not expired, the
    # channel has kept the tag map current (fresh_until; past it, revive() polls the channel's
    # socket once), (for non-text arguments) the argument types match, and its stamp is current:
    # one integer compare unless some tag version moved since the entry was last looked at.
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
            if value is not _MISSING:
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
            if value is not _MISSING:
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
