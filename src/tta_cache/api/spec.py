"""What a decorator knows of its function, found once at decoration time: parameters, templates
(checked against the signature now, not at the first call), kind, freshness, and how one call's
arguments become its Redis key, its L1 key and its tags."""

from __future__ import annotations

import datetime as dt
import enum
import inspect
import typing
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from ..core.keys import (
    MAX_ARGS_LEN,
    MAX_KEY_LENGTH,
    MAX_TAGS,
    NAMESPACE_TAG,
    Template,
    check_entry,
    check_name,
    encode_args,
    function_id,
    hash_tag,
)
from ..core.policy import Freshness
from ..engine import Call, FillPolicy
from ..exceptions import ConfigurationError

__all__ = ["Spec", "TagSpec", "local_identity"]

R = TypeVar("R")

TagSpec = str | Callable[[typing.Mapping[str, Any]], object]


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
        cache_if: Callable[[Any], object] | None = None,
        none_ttl: float | None = None,
        extra_names: Sequence[str] = (),
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
        all_names = [p.name for p in params] + list(extra_names)  # a batch's ``item``
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
        self.policy = FillPolicy.of(cache_if, none_ttl, freshness, where)
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
        self._check_bounds(where)

    def _check_bounds(self, where: str) -> None:
        """Refuse now what no call could cache: too many tags, or a key whose fixed part leaves
        no room for the arguments. Calls whose key or tags carry unbounded text (a session id,
        a ``key=`` template, a tag value) are checked when they are made."""
        if len(self.tag_templates) > MAX_TAGS:
            raise ConfigurationError(
                f"{where}: {len(self.tag_templates)} tags, over {MAX_TAGS} per entry"
            )
        fixed = len(self.prefix) + len(self.function) + 1 + (3 if self.session_hash else 0)
        if fixed + MAX_ARGS_LEN > MAX_KEY_LENGTH:
            raise ConfigurationError(
                f"{where}: the namespace, kind and function name take {fixed} of the "
                f"{MAX_KEY_LENGTH} characters a key may have, leaving too little for arguments"
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
        return self.entry_call(key, tags, token, vals, tag_key=tag_key, type_hint=self.type_hint)

    def entry_call(
        self,
        key: str,
        tags: Sequence[str],
        token: object,
        vals: tuple[Any, ...],
        *,
        tag_key: Callable[[str], str],
        type_hint: Any,
    ) -> Call:
        """The :class:`Call` of one entry under ``key`` with ``tags`` (checked here, duplicates
        dropped), for a one-entry call and for each id of a batch alike."""
        tags = tuple(dict.fromkeys(tags))
        check_entry(key, tags, self.function)
        local_key, local_types = local_identity(token, vals, key)
        return Call(
            key=key,
            local_key=local_key,
            local_types=local_types,
            tags=tags,
            tag_keys=tuple(map(tag_key, tags)),
            freshness=self.freshness,
            type_hint=type_hint,
            on_error=self.on_error,
            kind=self.kind,
            function=self.function,
            lock=self.lock,
            soft_timeout=self.soft_timeout,
            hard_timeout=self.hard_timeout,
            policy=self.policy,
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
