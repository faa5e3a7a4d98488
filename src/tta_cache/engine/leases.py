"""Leases (I5 across processes) and fill notices.

A ``lock=True`` miss takes the entry's lease in the same round trip as its read; a caller that does
not get it waits for the holder's *fill notice* (published on the invalidation channel when the
holder fills or gives the lease back) or, failing that, for a paced re-read. This part decides how
long to wait and wakes this process's waiters; the flows take and release the leases.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Callable, Iterable

from ..core.policy import backoff
from ..tiers import Lease
from .call import Call, LeaseWait
from .counters import Counters
from .fork import reinit

__all__ = ["Leases", "lease_key"]


def lease_key(key: str) -> str:
    """The key of ``key``'s lease, beside it (same Cluster slot when ``key`` has a hash tag)."""
    return key + ":lease"


class Leases:
    """Lease tokens, the pacing of lease waits, and the waiters fill notices wake."""

    def __init__(
        self,
        origin: Callable[[], str],
        channel: str,
        lock_timeout: float,
        rng: random.Random,
        counters: Counters,
    ) -> None:
        self._origin = origin
        self.channel = channel
        self.lock_timeout = lock_timeout
        self.rng = rng
        self.counters = counters
        self._seq = itertools.count(1)
        self._lock = threading.Lock()
        self._waiters: dict[str, set[Callable[[], None]]] = {}

    def wait_for(self, call: Call) -> LeaseWait:
        """A new lease (and wait state) for ``call``'s key, with a token unique across processes."""
        token = f"{self._origin()}-{next(self._seq)}"
        ms = max(1, round(self.lock_timeout * 1000))
        return LeaseWait(Lease(lease_key(call.key), token, ms, self.channel))

    def pause(self, wait: LeaseWait, holder: str | None) -> float | None:
        """Seconds to wait for ``holder``'s fill before reading again; None: compute now.

        A caller waits at most ``lock_timeout`` for one holder (the lease lives that long, so a
        dead holder has freed the key by then and one waiter takes over) and for two holders in
        all. When its time is up it reads once more: a read that answered just before the lease
        expired must not send every waiter computing at once. The fill notice wakes a waiter at
        once; these pauses only pace the reads that back it up.
        """
        now = time.monotonic()
        if holder != wait.holder:
            wait.holder = holder
            wait.holders += 1
            wait.last_look = False
            if wait.holders <= 2:
                wait.until = now + self.lock_timeout
        left = wait.until - now
        if left <= 0:
            if not wait.last_look:
                # A grace before the last look: our deadline and Redis's PX expiry are read on
                # different clocks, and a look a moment too early still sees the dead holder,
                # sending this waiter to compute beside the one that takes over.
                wait.last_look = True
                return max(0.01, self.lock_timeout / 20)
            self.counters.add(lease_timeouts=1)
            return None
        wait.polls += 1
        if wait.polls == 1:
            self.counters.add(lease_waits=1)
        rnd = 0.5 + self.rng.random() / 2
        return min(left, backoff(wait.polls, base=0.005, cap=self.lock_timeout / 8, rnd=rnd))

    def forked(self) -> None:
        reinit(self._lock)
        self._waiters.clear()  # their threads and loops are the parent's

    def watch(self, key: str, wake: Callable[[], None]) -> None:
        with self._lock:
            self._waiters.setdefault(key, set()).add(wake)

    def unwatch(self, key: str, wake: Callable[[], None]) -> None:
        with self._lock:
            waiting = self._waiters.get(key)
            if waiting is not None:
                waiting.discard(wake)
                if not waiting:
                    del self._waiters[key]

    def filled(self, keys: Iterable[str]) -> None:
        """Wake this process's callers waiting on a lease of ``keys``: the key was filled or the
        lease released (the channel thread calls it for other processes' fill notices)."""
        with self._lock:
            wakes = [w for k in keys for w in self._waiters.get(k, ())]
        if wakes:
            self.counters.add(lease_wakeups=len(wakes))
        for wake in wakes:
            wake()
