"""I8: invalidations Redis has not taken yet, retried until it does.

While an invalidation waits here its tags and keys are held (``deferral.Holds``): its tags are
*pending* in the tag map, so this process serves no entry it affects, and an entry key waiting
here is never read from Redis. The queue is bounded: on
overflow only the namespace epoch is bumped (everything older is invalid), which one retry carries.
The channel thread calls :meth:`InvalidationQueue.retry` on each tick while connected.

Each tag and key remembers the sequence number of the last :meth:`~InvalidationQueue.add` that
queued it: a retry drops only what it sent and nobody queued again meanwhile. An invalidation that
fails while a retry of the same tag is on the wire may have changed the data after the retry's
bump reached Redis; dropping it with the retry would lose it (I8).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from ..core.keys import NAMESPACE_TAG
from ..core.policy import backoff
from ..exceptions import BackendError
from ..observability import Stats
from .fork import reinit

if TYPE_CHECKING:
    from .deferral import Holds

__all__ = ["InvalidationQueue"]

log = logging.getLogger("tta_cache")

Deliver = Callable[[list[str], list[str]], None]  # (tags, keys): raises BackendError if not taken


class InvalidationQueue:
    """Tags to bump and keys to delete that Redis did not take, with their retry schedule."""

    def __init__(self, holds: Holds, stats: Stats, rng: random.Random, limit: int = 10_000) -> None:
        self.holds = holds
        self.stats = stats
        self.rng = rng
        self.limit = limit
        self.lock = threading.Lock()
        self.tags: dict[str, int] = {}  # tag -> sequence number of the add that last queued it
        self.keys: dict[str, int] = {}
        self.overflow = False
        self._overflow_seq = 0
        self._seq = 0
        self._failures = 0
        self._retry_at = 0.0

    def __len__(self) -> int:
        return len(self.tags) + len(self.keys) + int(self.overflow)

    def forked(self) -> None:
        """In a forked child: keep what is queued (this process must not serve it either), retry
        it from this process's channel thread once that runs."""
        reinit(self.lock)
        self._retry_at = 0.0

    def wake(self) -> None:
        """The channel is back, so Redis is: retry at the next tick, whatever the backoff says.
        Until the retry lands, other processes (back too) may be served what it covers."""
        self._failures = 0
        self._retry_at = 0.0

    def add(self, tags: Iterable[str], keys: Iterable[str]) -> None:
        with self.lock:
            self._seq = seq = self._seq + 1
            self.tags.update(dict.fromkeys(tags, seq))
            self.keys.update(dict.fromkeys(keys, seq))
            if len(self.tags) + len(self.keys) > self.limit:
                self.overflow, self._overflow_seq = True, seq
                self.tags.clear()
            self.stats.add(invalidations_queued=1)
            self.holds.queued(self.tags, self.keys, overflow=self.overflow)

    def retry(self, deliver: Deliver) -> None:
        """Push what is queued through ``deliver`` if its backoff has passed."""
        if not (self.tags or self.keys or self.overflow):
            return
        now = time.monotonic()
        if now < self._retry_at:
            return
        with self.lock:
            sent = self._seq
            queued = list(self.tags)
            keys = list(self.keys)
            overflow = self.overflow
        # Too many to keep: the namespace epoch's bump makes everything older invalid.
        tags = [NAMESPACE_TAG] if overflow else queued
        try:
            deliver(tags, keys)
        except BackendError as exc:
            self._failures += 1
            pause = backoff(self._failures, base=0.05, cap=2.0, rnd=self.rng.random())
            self._retry_at = now + pause
            log.warning("queued invalidation not taken yet (%s); retrying", exc)
            return
        self._failures = 0
        self.stats.add(invalidations_sent=int(bool(tags)) + int(bool(keys)))
        with self.lock:
            # Queued again while this retry was on the wire: kept for the next one.
            for t in queued:
                if self.tags.get(t, sent + 1) <= sent:
                    del self.tags[t]
            for k in keys:
                if self.keys.get(k, sent + 1) <= sent:
                    del self.keys[k]
            if overflow and self._overflow_seq <= sent:
                self.overflow = False
            self.holds.queued(self.tags, self.keys, overflow=self.overflow)
        log.info("queued invalidations delivered: %d tags, %d keys", len(tags), len(keys))
