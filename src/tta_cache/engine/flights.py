"""Single-flight (I5 within a process): concurrent misses of one key join one computation.

Sync callers share one table guarded by ``lock``; asyncio callers have a table per event loop
(a future belongs to its loop). Background refreshes are flights too, in ``refreshing``, so an
invalidation dooms all three kinds at once. A flight that started before an invalidation of its
key, or whose stamp a newer version has overtaken, is not joined (I1).
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Sequence
from typing import Any

from ..coherence import TagVersions
from .call import Flight
from .fork import reinit

__all__ = ["Flights"]


class Flights:
    """The in-process computations under way, by Redis key."""

    def __init__(self, versions: TagVersions) -> None:
        self.versions = versions
        self.lock = threading.Lock()
        self.sync: dict[str, Flight] = {}
        self.refreshing: dict[str, Flight] = {}
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Flight]] = (
            weakref.WeakKeyDictionary()
        )
        # Batch loads under way (``batch.py``): their keys, and the set doom() adds them to
        self.batches: dict[int, tuple[frozenset[str], set[str]]] = {}

    def forked(self) -> None:
        """In a forked child: no computation of the parent's threads or loops is joined."""
        reinit(self.lock)
        self.sync.clear()
        self.refreshing.clear()
        self._loops = weakref.WeakKeyDictionary()
        self.batches.clear()

    def of_loop(self, loop: asyncio.AbstractEventLoop) -> dict[str, Flight]:
        """The table of ``loop``'s tasks (only they touch it: no lock)."""
        flights = self._loops.get(loop)
        if flights is None:
            flights = self._loops.setdefault(loop, {})
        return flights

    def start(self, future: asyncio.Future[Any] | None = None) -> Flight:
        """A flight to put in a table, knowing which invalidations it started after."""
        return Flight(future, self.versions.invalidations)

    def joinable(self, flight: Flight | None) -> bool:
        # A computation that started before an invalidation must not be joined (I1): one with a
        # stamp while no newer version is known; one without (its read failed) while nothing was
        # invalidated since it started.
        if flight is None or flight.doomed:
            return False
        stamp = flight.stamp
        if stamp is None:
            return flight.seen == self.versions.invalidations
        return not self.versions.behind(stamp)

    def doom(self, keys: Sequence[str]) -> None:
        """``keys`` were invalidated: no flight of them is joined, and none is cached."""
        with self.lock:
            for flights in (self.sync, self.refreshing, *list(self._loops.values())):
                for k in keys:
                    flight = flights.pop(k, None)
                    if flight is not None:
                        flight.doomed = True
            for keyset, doomed in self.batches.values():
                doomed.update(k for k in keys if k in keyset)

    def track(self, keys: frozenset[str]) -> tuple[int, set[str]]:
        """A batch load of ``keys`` starts: the set its invalidated keys are added to."""
        doomed: set[str] = set()
        with self.lock:
            handle = id(doomed)
            self.batches[handle] = (keys, doomed)
        return handle, doomed

    def untrack(self, handle: int) -> None:
        with self.lock:
            self.batches.pop(handle, None)
