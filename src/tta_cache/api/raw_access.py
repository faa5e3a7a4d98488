"""Raw access: ``cache.get/set/get_many/set_many/delete`` and their async twins.

Each key is one :class:`~tta_cache.engine.Call` under ``<namespace>:raw:<escaped key>``, stamped
with the namespace epoch and the given tags, so raw entries are validated and invalidated like a
decorated function's. The plain ``get(key)`` calls are kept (bounded): building one costs more
than an L1 hit. :class:`RawAccess` is the part of :class:`~tta_cache.Cache` that serves them."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..core.keys import NAMESPACE_TAG, check_entry
from ..core.policy import Freshness
from ..engine import MISSING, Call, Engine

__all__ = ["RawAccess", "RawCalls"]


class RawCalls:
    """Builds (and for plain gets, keeps) the engine calls of raw keys."""

    def __init__(
        self, engine: Engine, freshness: Callable[[str, float | None], Freshness], on_error: str
    ) -> None:
        self.engine = engine
        self.freshness = freshness
        self.on_error = on_error
        # calls without tags or ttl (plain gets) by (key, type_hint, kind)
        self._gets: dict[tuple[str, Any, str | None], Call] = {}

    def call(
        self,
        key: str,
        kind: str | None = None,
        tags: Iterable[str] = (),
        ttl: float | None = None,
        type_hint: Any = None,
    ) -> Call:
        plain = not tags and ttl is None
        if plain:  # try/except, not contextlib.suppress: this runs once per key of a get_many
            try:
                return self._gets[(key, type_hint, kind)]
            except (KeyError, TypeError):
                pass
        engine = self.engine
        redis_key = engine.raw_key(key)
        all_tags = tuple(dict.fromkeys((NAMESPACE_TAG, *tags)))
        check_entry(redis_key, all_tags, "raw key")
        call = Call(
            key=redis_key,
            local_key=("raw", redis_key),
            local_types=None,
            tags=all_tags,
            tag_keys=tuple(map(engine.tag_key, all_tags)),
            freshness=self.freshness(kind or "default", ttl),
            type_hint=type_hint,
            on_error=self.on_error,
            kind=kind or "default",
            any_kind=kind is None,
        )
        if plain:
            if len(self._gets) >= 4096:
                self._gets.clear()
            with contextlib.suppress(TypeError):  # an unhashable type hint is not kept
                self._gets[(key, type_hint, kind)] = call
        return call

    def pairs(
        self,
        items: Mapping[str, Any],
        ttl: float | None,
        kind: str | None,
        tags: Iterable[str],
        tags_by_key: Mapping[str, Iterable[str]] | None,
    ) -> list[tuple[Call, Any]]:
        tags = tuple(tags)
        extra = tags_by_key or {}
        return [(self.call(k, kind, (*tags, *extra.get(k, ())), ttl), v) for k, v in items.items()]


class RawAccess:
    """The raw-access methods of :class:`~tta_cache.Cache` (a part of it, not a base to use)."""

    engine: Engine
    on_error: str
    _raw: RawCalls

    _check: Callable[[str | None], str]

    def get(
        self, key: str, default: Any = None, *, type_hint: Any = None, kind: str | None = None
    ) -> Any:
        """The value stored under ``key`` (L1, then Redis), or ``default``.

        ``type_hint`` (e.g. a dataclass) rebuilds a JSON/msgpack value read from Redis as that
        type; L1 holds the value as it was set or first decoded. ``kind``: the kind the value
        was set with; with encryption, naming it refuses an unencrypted entry of an encrypted
        kind (without it only ``encrypt_kinds="*"`` can) and one encrypted as another kind.
        """
        call = self._raw.call(key, kind, type_hint=type_hint)
        value = self.engine.run(self.engine.get_flow([call], self.on_error))[0]
        return default if value is MISSING else value

    async def aget(
        self, key: str, default: Any = None, *, type_hint: Any = None, kind: str | None = None
    ) -> Any:
        flow = self.engine.get_flow([self._raw.call(key, kind, type_hint=type_hint)], self.on_error)
        value = (await self.engine.arun(flow))[0]
        return default if value is MISSING else value

    def get_many(
        self, keys: Iterable[str], *, type_hint: Any = None, kind: str | None = None
    ) -> dict[str, Any]:
        """The keys found, in one Redis round trip for those L1 does not hold (``type_hint`` and
        ``kind`` as for :meth:`get`)."""
        keys = list(keys)
        calls = [self._raw.call(k, kind, type_hint=type_hint) for k in keys]
        values = self.engine.run(self.engine.get_flow(calls, self.on_error))
        return {k: v for k, v in zip(keys, values, strict=True) if v is not MISSING}

    async def aget_many(
        self, keys: Iterable[str], *, type_hint: Any = None, kind: str | None = None
    ) -> dict[str, Any]:
        keys = list(keys)
        calls = [self._raw.call(k, kind, type_hint=type_hint) for k in keys]
        flow = self.engine.get_flow(calls, self.on_error)
        values = await self.engine.arun(flow)
        return {k: v for k, v in zip(keys, values, strict=True) if v is not MISSING}

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
        call = self._raw.call(key, kind, tags, ttl)
        self.engine.run(self.engine.set_flow([(call, value)], self._check(on_error)))

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
        call = self._raw.call(key, kind, tags, ttl)
        await self.engine.arun(self.engine.set_flow([(call, value)], self._check(on_error)))

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
        pairs = self._raw.pairs(items, ttl, kind, tags, tags_by_key)
        self.engine.run(self.engine.set_flow(pairs, self._check(on_error)))

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
        pairs = self._raw.pairs(items, ttl, kind, tags, tags_by_key)
        await self.engine.arun(self.engine.set_flow(pairs, self._check(on_error)))

    def delete(self, key: str) -> None:
        """Remove ``key`` from every process's L1 and from Redis."""
        self.engine.run(self.engine.invalidate_flow((), [self.engine.raw_key(key)], self.on_error))

    async def adelete(self, key: str) -> None:
        keys = [self.engine.raw_key(key)]
        await self.engine.arun(self.engine.invalidate_flow((), keys, self.on_error))
