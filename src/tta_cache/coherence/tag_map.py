"""The process-local tag-version map: this process's view of the current version of each tag.

Every entry is stamped with the versions of its tags read *before* it was computed (DESIGN.md §4).
:class:`TagVersions` is this process's view of the current versions; an entry is valid while every
stamped version equals the current one. ``gen`` moves whenever any version or the trust state moves,
so an L1 hit only compares one integer unless something changed since the entry was last checked.

The map is *trusted* while the invalidation channel (:mod:`.channel`) is up and keeps it current,
and only for a window (40 ms) after the channel thread last found nothing unread; past it,
:meth:`TagVersions.revive` asks the channel whether a message can be waiting before trusting on.

When trust changes the map is emptied (refetched on use), but what it knew is kept as *floors*:
a version this process has seen is a lower bound of the tag's version, so :meth:`behind` still
knows that an entry or a computation stamped older is stale (I1 across a dropped channel). The
first fetch of a tag after the change settles its floor: at or above it, the floor is done with;
below it, Redis lost a bump (a failover, a restart that kept old data) and ``on_regress`` hears
the tag, so that the engine issues its invalidation again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from ..core.keys import NAMESPACE_TAG

if TYPE_CHECKING:
    from .channel import Subscriber

__all__ = ["Stamp", "TagVersions"]

Stamp = tuple[tuple[str, int], ...]


class TagVersions:
    """This process's map tag -> current version, bounded, with a trust flag and pending tags.

    Reads are lock-free (dict lookups under the GIL); every change happens under ``lock`` and then
    bumps ``gen``. Versions only grow (they start at the Redis server's clock), so a fetched and a
    pushed version are merged by taking the larger.
    """

    def __init__(
        self,
        maxsize: int = 100_000,
        *,
        trusted: bool = False,
        clock: Callable[[], float] = time.time,
        window: float = 0.04,
    ) -> None:
        # A plain dict: lock-free reads; when full, the oldest tags are dropped (refetched on use).
        self._map: dict[str, int] = {}
        # Trust lapses unless renewed: by the channel thread when it finds nothing unread, or by
        # revive() when ``probe`` (the subscriber's quiet()) says no message can be waiting. A
        # process whose busy main thread starves that thread of the GIL and has a message
        # waiting stops trusting a map it cannot keep current, and its reads go to Redis (whose
        # I/O hands the GIL over) until the thread has caught up. This keeps I2's bound under
        # CPU contention. Local-only maps never lapse.
        self.clock = clock
        self.window = window
        self.fresh_until = float("inf") if trusted else 0.0
        self.probe: Callable[[], bool] | None = None
        self.maxsize = maxsize
        self.lock = threading.Lock()
        self.gen = 0
        # Moves on every invalidation this process issues or sees move a version it knows: a
        # computation whose stamp is unknown (Redis unreadable) is joined only while it stays.
        self.invalidations = 0
        self.epoch = 0  # moves on every trust change: a fetch begun before it must not be merged
        self.trusted = trusted
        self.pending: frozenset[str] = frozenset()  # tags whose invalidation has not reached Redis
        self.pending_all = False  # the pending queue overflowed: nothing is valid until drained
        self._floor: dict[str, int] = {}  # versions seen before the last trust change
        self.on_regress: Callable[[list[str]], None] | None = None

    def get(self, tag: str) -> int | None:
        return self._map.get(tag)

    def current(self) -> bool:
        """Whether the map is trusted now: channel up, and drained within the window or nothing
        waiting on it (:meth:`revive`)."""
        if not self.trusted:
            return False
        now = self.clock()
        return now < self.fresh_until or self.revive(now)

    def renew(self, since: float | None = None) -> None:
        """The channel thread has applied everything readable: trust the map for a window.

        ``since`` is a reading of :attr:`clock` taken before the thread last looked for unread
        messages: the window runs from then, not from when a starved thread got round to this
        call (a message may have arrived in between)."""
        if self.trusted:
            self.fresh_until = (self.clock() if since is None else since) + self.window

    def follow(self, subscriber: Subscriber) -> None:
        """Let ``subscriber`` keep this map current: :meth:`revive` asks it whether a message can
        be waiting, and it reads this map's clock for :meth:`renew`'s ``since``."""
        self.probe = subscriber.quiet
        subscriber.clock = self.clock

    def revive(self, now: float | None = None) -> bool:
        """The window lapsed (``now >= fresh_until``): renew it and return True if the channel is
        up and no message can be waiting on it (``probe``); False sends the caller to Redis.

        Called only past the window (never per hit), by any thread. ``now`` is the caller's
        clock reading, taken before the probe, so the new window starts no later than the
        probe did: every message that reached the socket before the probe has been applied, and
        one arriving after it is at most ``window`` old when the window ends; the next lapse
        probes again, finds it unread and goes to Redis. So a served L1 value is never older
        than ``window`` (40 ms) behind an invalidation that reached this process, as with the
        thread's own renew(): I2's 50 ms holds. A message arriving between this probe and the
        hit it lets through is the same case. If the channel drops meanwhile, ``distrust()``
        clears ``trusted`` and moves ``gen``, which tagged hits check before serving.
        """
        probe = self.probe
        if not self.trusted or probe is None:
            return False
        if now is None:
            now = self.clock()
        if not probe():
            return False
        self.fresh_until = now + self.window
        return True

    def snapshot(self, tags: Sequence[str]) -> Stamp | None:
        """The current versions of ``tags`` if all are known and trusted, else None."""
        if not self.current():
            return None
        m = self._map
        try:
            return tuple([(t, m[t]) for t in tags])
        except KeyError:
            return None

    def valid(self, stamp: Stamp) -> bool:
        """Whether an entry with this stamp may be served without asking Redis."""
        if self.pending_all:
            return False
        if not self.current():
            # Untrusted: only untagged entries (stamped with the namespace epoch alone) are served,
            # as DESIGN.md's I2 allows; tagged entries need the channel.
            return len(stamp) == 1 and stamp[0][0] == NAMESPACE_TAG and not self.pending
        m = self._map
        pending = self.pending
        for t, v in stamp:
            if m.get(t) != v or t in pending:
                return False
        return True

    def blocked(self, stamp: Stamp) -> bool:
        """Whether an invalidation of a stamped tag is still waiting for Redis (I8)."""
        if self.pending_all:
            return True
        pending = self.pending
        return bool(pending) and any(t in pending for t, _ in stamp)

    def behind(self, stamp: Stamp) -> bool:
        """Whether a newer version of any stamped tag is known (the entry is certainly stale)."""
        if self.pending_all:
            return True
        m = self._map
        pending = self.pending
        floor = self._floor
        for t, v in stamp:
            cur = m.get(t)
            if (cur is not None and cur > v) or t in pending:
                return True
            if floor and floor.get(t, v) > v:
                return True
        return False

    def merge(self, versions: Iterable[tuple[str, int]], epoch: int | None = None) -> bool:
        """Take the larger of each known and given version; returns whether ``gen`` moved.

        A fetch passes the ``epoch`` it began in: if the channel came or went since, the fetched
        versions may predate pushes this process never saw, so they are not kept.
        """
        moved = False
        regressed: list[str] = []
        with self.lock:
            if epoch is not None and (epoch != self.epoch or not self.trusted):
                return False
            m = self._map
            floor = self._floor
            for t, v in versions:
                if floor and t in floor and v < floor.pop(t):
                    regressed.append(t)  # Redis lost a bump this process had seen
                cur = m.get(t)
                if cur is None or v > cur:
                    m[t] = v
                    moved = moved or cur is not None
            if len(m) > self.maxsize:
                for t in list(m)[: len(m) - self.maxsize + self.maxsize // 10]:
                    del m[t]
                # An L1 entry checked at this gen may carry a dropped tag: a later push of it
                # would land as "unknown" and not move gen, so move it now.
                moved = True
            if moved:
                self.gen += 1
                self.invalidations += 1
        if regressed and self.on_regress is not None:
            self.on_regress(regressed)
        return moved

    def _keep_floors(self) -> None:
        """Under ``lock``: what the map knows becomes floors before it is emptied."""
        floor = self._floor
        for t, v in self._map.items():
            if floor.get(t, -1) < v:
                floor[t] = v
        if len(floor) > self.maxsize:
            for t in list(floor)[: len(floor) - self.maxsize]:
                del floor[t]

    def distrust(self) -> None:
        with self.lock:
            self._keep_floors()
            self.trusted = False
            self.fresh_until = 0.0
            self._map.clear()
            self.epoch += 1
            self.gen += 1

    def trust(self) -> None:
        with self.lock:
            self._keep_floors()
            self._map.clear()  # refetched on first use: nothing pushed while away is missed
            self.trusted = True
            self.epoch += 1
            self.gen += 1

    def set_pending(self, tags: frozenset[str], *, overflow: bool = False) -> None:
        with self.lock:
            self.pending = tags
            self.pending_all = overflow
            self.gen += 1
            self.invalidations += 1

    def invalidating(self) -> None:
        """This process issues an invalidation (before it is sent)."""
        with self.lock:
            self.invalidations += 1

    def bump_local(self, tags: Sequence[str]) -> tuple[int, ...]:
        """Local-only mode: the map is the source of truth; versions start at the clock."""
        with self.lock:
            out = []
            for t in tags:
                v = self._map.get(t)
                v = (v + 1) if v is not None else time.time_ns() // 1000
                self._map[t] = v
                out.append(v)
            self.gen += 1
            return tuple(out)

    def init_local(self, tags: Sequence[str]) -> Stamp:
        """Local-only mode: versions of ``tags``, created at the clock on first use."""
        with self.lock:
            m = self._map
            now = time.time_ns() // 1000
            return tuple([(t, m.setdefault(t, now)) for t in tags])

    def __len__(self) -> int:
        return len(self._map)
