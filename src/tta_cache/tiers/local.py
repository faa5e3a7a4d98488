"""The local tier (L1): a cachetools LRU map per process, bounded by ``local_maxsize`` (I6).

Entries carry their stamp and the coherence ``gen`` they were last checked at; a hit compares that
``gen`` with the current one and an expiry instant, under the lock that cachetools asks for.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Iterable
from typing import Any

import cachetools

__all__ = ["LocalEntry", "LocalTier"]

Stamp = tuple[tuple[str, int], ...]


class LocalEntry:
    """One L1 value. ``expires`` is on the cache's clock; it never passes the L2 soft expiry."""

    __slots__ = ("expires", "gen", "key", "stamp", "types", "value")

    def __init__(  # noqa: PLR0917 - built positionally on every fill
        self,
        value: Any,
        expires: float,
        gen: int,
        stamp: Stamp,
        key: str,
        types: tuple[type, ...] | None = None,
    ) -> None:
        self.value = value
        self.types = types  # argument types a hit must match (None: text arguments only)
        self.expires = expires
        self.gen = gen
        self.stamp = stamp
        self.key = key  # the Redis key, so per-call invalidations can find it


class LocalTier:
    """A bounded, thread-safe L1; the decorators' hit path reads ``data`` under ``lock``."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.data: cachetools.LRUCache[Hashable, LocalEntry] = cachetools.LRUCache(max(maxsize, 1))
        # Redis key -> its L1 keys, for per-call invalidation. Several calls can share one Redis
        # key (a ``key=`` template that leaves out a parameter): invalidating it drops them all.
        self.by_key: dict[str, set[Hashable]] = {}
        self.lock = threading.Lock()
        self.hits = 0  # counted under ``lock``
        self.misses = 0

    def get(self, key: Hashable) -> LocalEntry | None:
        with self.lock:
            return self.data.get(key)

    def put(self, key: Hashable, entry: LocalEntry) -> None:
        if not self.maxsize:
            return
        with self.lock:
            data = self.data
            while len(data) >= data.maxsize and key not in data:
                self._forget(*data.popitem())
            if key in data:  # (``get`` of an absent key raises inside cachetools: costly)
                old = data[key]
                if old.key != entry.key:
                    self._forget(key, old)
            data[key] = entry
            self.by_key.setdefault(entry.key, set()).add(key)

    def _forget(self, key: Hashable, entry: LocalEntry) -> None:
        keys = self.by_key.get(entry.key)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self.by_key[entry.key]

    def pop_redis_keys(self, keys: Iterable[str]) -> int:
        """Drop the entries stored under these Redis keys; returns how many were present."""
        n = 0
        with self.lock:
            for k in keys:
                for lk in self.by_key.pop(k, ()):
                    if self.data.pop(lk, None) is not None:
                        n += 1
        return n

    def clear(self) -> None:
        with self.lock:
            self.data.clear()
            self.by_key.clear()

    def __len__(self) -> int:
        return len(self.data)
