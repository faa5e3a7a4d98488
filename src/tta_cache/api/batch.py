"""Batch loaders: ``@cache.cached_many(kind=, over=, tags=, ...)``.

The function takes a collection of ids in its ``over`` parameter (default: its first key
parameter) and returns ``{id: value}``. Each id is its own entry, under exactly the key
``@cache.cached`` would give this same function called with that one id in place of the
collection: ``load_characters(user_id, ["c1", "c2"])`` reads ``f.cache_key(user_id, "c1")`` and
``f.cache_key(user_id, "c2")``. In templates ``{item}`` is one id (and the ``over`` parameter's
name stands for it too). What a call does is decided in :mod:`tta_cache.engine.batch`.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from ..core.keys import NAMESPACE_TAG, args_around, hash_tag
from ..core.policy import Freshness
from ..engine import MISSING, Call
from ..engine.batch import batch_flow
from ..exceptions import ConfigurationError
from .spec import Spec, TagSpec

if TYPE_CHECKING:
    from .cache import Cache

__all__ = ["BatchSpec", "batch_decorator", "batch_wrapper"]

F = TypeVar("F", bound=Callable[..., Any])


def _value_hint(func: Callable[..., Any]) -> Any:
    """The type of one value of ``-> dict[Id, Value]`` (or ``Mapping``), else None."""
    try:
        hint = typing.get_type_hints(func).get("return")
    except Exception:
        return None
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is not None and isinstance(origin, type) and issubclass(origin, Mapping):
        return args[1] if len(args) == 2 else None
    return None


class BatchSpec:
    """What a batch loader knows of its function, checked at decoration time."""

    def __init__(
        self,
        func: Callable[..., Any],
        *,
        namespace: str,
        kind: str,
        freshness: Freshness,
        tags: Sequence[TagSpec],
        over: str | None,
        lock: bool,
        on_error: str,
        include_self: bool = False,
        cache_if: Callable[[Any], object] | None = None,
        none_ttl: float | None = None,
    ) -> None:
        spec: Spec[Any] = Spec(
            func,
            namespace=namespace,
            kind=kind,
            freshness=freshness,
            tags=tags,
            key=None,
            lock=lock,
            on_error=on_error,
            include_self=include_self,
            cache_if=cache_if,
            none_ttl=none_ttl,
            extra_names=("item",),
        )
        self.spec = spec
        names = spec.names
        where = f"cached_many() of {spec.function}"
        if not names:
            raise ConfigurationError(f"{where}: no parameter to carry the ids")
        self.over = over = names[0] if over is None else over
        if over not in names:
            raise ConfigurationError(f"{where}: over={over!r} is not a parameter of it {names!r}")
        if spec.key_sig.parameters[over].kind in (
            inspect.Parameter.VAR_POSITIONAL,
            inspect.Parameter.VAR_KEYWORD,
        ):
            raise ConfigurationError(f"{where}: over={over!r} must be a plain parameter")
        if "item" in names and over != "item":
            raise ConfigurationError(
                f"{where}: a parameter is named 'item', which {{item}} in templates stands for: "
                "rename it, or make it the ids' parameter (over='item')"
            )
        self.at = names.index(over)
        self.type_hint = _value_hint(func)
        per_id = {"item", over}
        ext = (*names, "item")
        # Each tag template: rendered once per call, or per id (by position when it can be).
        self._tags = [
            (t, callable(t.source) or bool(per_id.intersection(t.fields)), t.by_position(ext))
            for t in spec.tag_templates
        ]
        self.reuse = spec.pure_templates
        self._memo: dict[Any, Call] = {}

    def arguments(self, vals: tuple[Any, ...]) -> dict[str, Any]:
        return dict(zip(self.spec.names, vals, strict=True))

    def keys_for(self, vals: tuple[Any, ...]) -> Callable[[Any], str]:
        """``item ->`` the Redis key of ``item``'s entry: ``cached``'s key for ``vals`` with the
        id in place of the collection (``f.cache_key``); the other arguments encoded once."""
        at, spec = self.at, self.spec
        encode = args_around(vals, at, spec.names)
        if not spec.session_hash:
            head = f"{spec.prefix}{spec.function}:"
            return lambda item: head + encode(item)
        where = spec.names.index("session_id")
        if where == at:  # the ids are session ids: each its own hash tag
            prefix, function = spec.prefix, spec.function
            return lambda item: f"{prefix}{hash_tag(item)}:{function}:{encode(item)}"
        head = f"{spec.prefix}{hash_tag(vals[where])}:{spec.function}:"
        return lambda item: head + encode(item)

    def calls(
        self,
        vals: tuple[Any, ...],
        items: Sequence[Any],
        token: object,
        tag_key: Callable[[str], str],
    ) -> list[Call]:
        """The engine's view of each id's entry. The Call of a recent (arguments, id) is kept,
        as the single-key wrappers keep theirs: only for string templates and arguments that
        own their L1 slot (typed: an equal value of another type misses)."""
        at, memo = self.at, self._memo
        rest = (*vals[:at], *vals[at + 1 :])
        head = (rest, tuple(map(type, rest)))
        fixed: list[str | None] | None = None
        key_of: Callable[[Any], str] | None = None
        out = []
        for item in items:
            slot = (head, item, type(item))
            try:
                call = memo[slot]
            except (KeyError, TypeError):
                if fixed is None or key_of is None:
                    arguments = self.arguments(vals)
                    fixed = [None if per else t.render(arguments) for t, per, _ in self._tags]
                    key_of = self.keys_for(vals)
                call = self._call(vals, item, fixed, key_of(item), token=token, tag_key=tag_key)
                if self.reuse and call.local_key is not call.key:
                    if len(memo) >= 16_384:
                        memo.clear()
                    memo[slot] = call
            out.append(call)
        return out

    def _call(
        self,
        vals: tuple[Any, ...],
        item: Any,
        fixed: list[str | None],
        key: str,
        *,
        token: object,
        tag_key: Callable[[str], str],
    ) -> Call:
        spec, at = self.spec, self.at
        item_vals = (*vals[:at], item, *vals[at + 1 :])
        ext = (*item_vals, item)
        named: dict[str, Any] | None = None
        tags = [NAMESPACE_TAG]
        for (t, _per, positional), text in zip(self._tags, fixed, strict=True):
            if text is not None:
                tags.append(text)
            elif positional is not None:
                tags.append(positional(ext))
            else:
                if named is None:
                    named = {**self.arguments(item_vals), "item": item}
                tags.append(t.render(named))
        # cache_if / none_ttl come with the spec's policy, per entry
        return spec.entry_call(
            key, tags, token, item_vals, tag_key=tag_key, type_hint=self.type_hint
        )


def batch_decorator(
    cache: Cache,
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
) -> Callable[[F], F]:
    """``cache.cached_many(...)``: ``over`` names the ids' parameter (default: the first),
    ``{item}`` in a template is one id, ``cache_if``/``none_ttl`` judge each id's value; the
    rest as :meth:`Cache.cached`. Checked when decorating (``ConfigurationError``)."""

    def decorate(f: F) -> F:
        spec = BatchSpec(
            f,
            namespace=cache.namespace,
            kind=kind,
            freshness=cache.freshness(kind, ttl),
            tags=tags,
            over=over,
            lock=lock,
            on_error=cache._check(on_error),
            include_self=include_self,
            cache_if=cache_if,
            none_ttl=none_ttl,
        )
        return batch_wrapper(cache, spec)  # type: ignore[return-value]

    return decorate


def _ids(value: Any, where: str) -> list[Any]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise TypeError(f"{where} takes a collection of ids, not {type(value).__name__}")
    return list(dict.fromkeys(value))  # the caller's order, duplicates removed


def batch_wrapper(cache: Cache, bspec: BatchSpec) -> Callable[..., Any]:
    """The wrapper of a batch loader, bound to ``cache``'s engine (sync or async)."""
    engine = cache.engine
    spec = bspec.spec
    func, over, at = spec.func, bspec.over, bspec.at
    lock, on_error = spec.lock, spec.on_error
    token = object()  # this function's identity in the shared L1
    tag_key = engine.tag_key
    engine.note_ttl(spec.freshness)
    where = spec.function

    def prepare(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, list[Any], Any]:
        bound = spec.sig.bind(*args, **kwargs)
        bound.apply_defaults()
        vals = tuple(bound.arguments.values())
        if spec.skip_first:
            vals = vals[1:]
        items = _ids(vals[at], where)
        calls = bspec.calls(vals, items, token, tag_key) if items else []
        return bound, items, calls

    def result(items: list[Any], values: list[Any]) -> dict[Any, Any]:
        return {item: v for item, v in zip(items, values, strict=True) if v is not MISSING}

    if spec.is_async:

        async def awrapper(*args: Any, **kwargs: Any) -> Any:
            bound, items, calls = prepare(args, kwargs)
            if not items:
                return {}

            async def compute(missing: list[Any]) -> Any:
                bound.arguments[over] = missing
                return await func(*bound.args, **bound.kwargs)

            flow = batch_flow(engine, calls, items, lock=lock, on_error=on_error)
            return result(items, await engine.arun(flow, compute))

        wrapper: Callable[..., Any] = awrapper
    else:

        def swrapper(*args: Any, **kwargs: Any) -> Any:
            bound, items, calls = prepare(args, kwargs)
            if not items:
                return {}

            def compute(missing: list[Any]) -> Any:
                bound.arguments[over] = missing
                return func(*bound.args, **bound.kwargs)

            flow = batch_flow(engine, calls, items, lock=lock, on_error=on_error)
            return result(items, engine.run(flow, compute))

        wrapper = swrapper

    def keys(args: tuple[Any, ...], kwargs: dict[str, Any], many: bool) -> list[str]:
        vals = spec.key_values(args, kwargs)
        ids = vals[at]
        if not many or isinstance(ids, (str, bytes)) or not isinstance(ids, Iterable):
            ids = [ids]
        key_of = bspec.keys_for(vals)
        return [key_of(item) for item in dict.fromkeys(ids)]

    def cache_key(*args: Any, **kwargs: Any) -> str:
        """The key of one id's entry: ``f.cache_key(user_id, "c1")``."""
        return keys(args, kwargs, False)[0]

    if spec.is_async:

        async def ainvalidate(*args: Any, **kwargs: Any) -> None:
            await cache.adelete_keys(keys(args, kwargs, True), on_error=on_error)

        invalidate: Callable[..., Any] = ainvalidate
    else:

        def sinvalidate(*args: Any, **kwargs: Any) -> None:
            cache.delete_keys(keys(args, kwargs, True), on_error=on_error)

        invalidate = sinvalidate

    functools.update_wrapper(wrapper, func)
    wrapper.invalidate = invalidate  # type: ignore[attr-defined]
    wrapper.cache_key = cache_key  # type: ignore[attr-defined]
    wrapper.cache = cache  # type: ignore[attr-defined]
    wrapper.uncached = func  # type: ignore[attr-defined]
    return wrapper
