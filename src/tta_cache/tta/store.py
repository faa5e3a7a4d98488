"""One kind of TTA state in the cache: :class:`StateStore`, batch writes and reads by id.

What every kind has in common is written here once: the snapshot copies, the one pipeline (or one
MGET) per batch, the response time recorded in the metrics, the owner tag of session-scoped
state, and a write Redis refused reported as nothing stored. Each kind differs only in its
:data:`~tta_cache.tta.layout.LAYOUTS` entry.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Iterable, Sequence
from typing import Generic, Protocol, TypeVar

from tta_cache.api import Cache
from tta_cache.core.keys import tag
from tta_cache.exceptions import BackendError
from tta_cache.operations import state_key

from .layout import LAYOUTS
from .metrics import CacheMetrics
from .models import Kind, SessionState

__all__ = ["StateStore", "StoreHost"]

log = logging.getLogger("tta_cache.tta")

M = TypeVar("M")


class StoreHost(Protocol):
    """What a store reads from its manager on every call (so later changes take effect)."""

    @property
    def cache(self) -> Cache: ...

    @property
    def copy(self) -> bool: ...

    @property
    def metrics(self) -> CacheMetrics: ...


class StateStore(Generic[M]):
    """The states of one ``kind`` (instances of ``model``), keyed as its layout says."""

    def __init__(self, host: StoreHost, kind: Kind, model: type[M]) -> None:
        self._host = host
        self.kind = kind
        self.model = model
        self._layout = LAYOUTS[kind]

    def key(self, *ids: str) -> str:
        """The raw-cache key of the state with these ids."""
        return state_key(self.kind.value, *ids)

    def _in(self, value: M) -> M:
        return copy.deepcopy(value) if self._host.copy else value

    def put(self, states: Sequence[M], ttl: float | None = None) -> int:
        """Store ``states`` in one pipeline (the kind's TTL unless ``ttl``); how many were
        stored (0 if Redis refused: they are still in this process's L1)."""
        if not states:
            return 0
        host = self._host
        started = time.perf_counter()
        payload, tags = self._entries(states)
        try:
            host.cache.set_many(
                payload, ttl=ttl, kind=self.kind.value, tags_by_key=tags, on_error="raise"
            )
        except BackendError as exc:
            log.warning("cache: %d %s entries not stored in Redis: %s", len(states), self.kind, exc)
            return 0
        finally:
            host.metrics.record_operation(time.perf_counter() - started)
        return len(payload)

    def _entries(self, states: Sequence[M]) -> tuple[dict[str, M], dict[str, list[str]]]:
        """The entries to store (copies, when the host copies) and their tags, by key."""
        layout = self._layout
        owners = self._owners(states) if layout.tag_owner else {}
        payload: dict[str, M] = {}
        tags: dict[str, list[str]] = {}
        for s in states:
            key = self.key(*layout.ids(s))
            payload[key] = self._in(s)
            tags[key] = layout.tags(s)
            owner = owners.get(getattr(s, "session_id", None) or "")
            if owner is not None:
                tags[key].append(tag("user", owner))
        return payload, tags

    def get_many(self, ids: Iterable[str], *scope: str) -> dict[str, M]:
        """The cached states among ``ids`` (under ``scope``, e.g. a session id), by id; one MGET
        for those L1 does not hold."""
        keys = {self.key(*scope, i): i for i in ids}
        started = time.perf_counter()
        found = self._host.cache.get_many(list(keys), type_hint=self.model, kind=self.kind.value)
        out = {keys[k]: self._in(v) for k, v in found.items() if isinstance(v, self.model)}
        self._host.metrics.record_operation(time.perf_counter() - started)
        return out

    def get(self, *ids: str) -> M | None:
        """The cached state with these ids, or None."""
        *scope, last = ids
        return self.get_many([last], *scope).get(last)

    def delete(self, *ids: str) -> None:
        """Remove the state from every process's L1 and from Redis."""
        self._host.cache.delete(self.key(*ids))

    def _owners(self, states: Sequence[M]) -> dict[str, str]:
        """The user of each cached session among the states' sessions."""
        sessions = {sid for s in states if (sid := getattr(s, "session_id", None))}
        keys = {state_key(Kind.SESSION.value, sid): sid for sid in sessions}
        found = self._host.cache.get_many(keys, type_hint=SessionState, kind=Kind.SESSION.value)
        return {keys[k]: v.user_id for k, v in found.items() if isinstance(v, SessionState)}
