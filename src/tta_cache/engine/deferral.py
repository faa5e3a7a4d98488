"""Invalidations bound to a database transaction: held while it is open, sent once it commits.

An invalidation sent before the writing transaction commits lets another process recompute from
the rows not committed yet and cache them under the new versions, stale until the TTL. So an
integration (:mod:`tta_cache.sqlalchemy`) opens a :class:`Transaction` here when a bound database
transaction begins in the current context (a context variable: one thread, or one asyncio task
and the tasks it starts), and ends it when that transaction commits or rolls back. Meanwhile:

- an invalidation issued in that context is *held* by the innermost open transaction: its keys
  leave L1 at once and every held tag and key is pending in this process (:class:`Holds`, as for
  I8's queue): nothing stamped with it is served or stored here, so this process reads through
  to the database (I1) while Redis and the other processes hear of it only after commit;
- a call computed in that context once the transaction has written is computed for the caller
  alone: not stored, and no other caller joins it (it may have read uncommitted rows).

On commit the root's invalidations are sent (:func:`commit_flow`; what Redis does not take goes
to the I8 queue, which holds it from then on); on rollback they are dropped. A released
savepoint's ride with its outer transaction; a rolled-back savepoint's are dropped. A rollback
undoes nothing else: the L1 keys it dropped are recomputed on their next read (harmless, the
data did not change), and the held tags become servable again as they were.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from ..coherence import TagVersions
from .call import Call, Flow
from .counters import Counters
from .entry import compute_step
from .fork import reinit
from .raw import send_flow

if TYPE_CHECKING:
    from .engine import Engine

__all__ = ["Deferral", "Holds", "Transaction", "commit_flow", "private_flow", "salvage"]


class Holds:
    """What this process must neither serve nor store yet: the tags and keys of invalidations
    that Redis has not taken (the I8 queue's) or whose transaction is still open (held).

    ``keys`` is read without the lock by the flows (a dict lookup); the tags are pushed to the
    tag map as its pending set.
    """

    def __init__(self, versions: TagVersions) -> None:
        self.versions = versions
        self.lock = threading.Lock()
        self.keys: dict[str, None] = {}
        self._queued_tags: frozenset[str] = frozenset()
        self._queued_keys: frozenset[str] = frozenset()
        self._overflow = False
        self._held_tags: Counter[str] = Counter()
        self._held_keys: Counter[str] = Counter()

    def forked(self) -> None:
        reinit(self.lock)

    def queued(self, tags: Iterable[str], keys: Iterable[str], *, overflow: bool) -> None:
        """The I8 queue now holds exactly these."""
        with self.lock:
            self._queued_tags = frozenset(tags)
            self._queued_keys = frozenset(keys)
            self._overflow = overflow
            self._publish()

    def hold(self, tags: Iterable[str], keys: Iterable[str]) -> None:
        with self.lock:
            self._held_tags.update(list(tags))  # a list: a mapping would be taken as counts
            self._held_keys.update(list(keys))
            self._publish()

    def release(self, tags: Iterable[str], keys: Iterable[str]) -> None:
        with self.lock:
            self._held_tags.subtract(list(tags))
            self._held_keys.subtract(list(keys))
            self._held_tags = +self._held_tags  # drop the counts that reached 0
            self._held_keys = +self._held_keys
            self._publish()

    def _publish(self) -> None:
        self.keys = dict.fromkeys((*self._queued_keys, *self._held_keys))
        tags = self._queued_tags.union(self._held_tags)
        self.versions.set_pending(tags, overflow=self._overflow)


class Transaction:
    """One open database transaction's held invalidations (a savepoint has a ``parent``)."""

    __slots__ = ("dirty", "keys", "open", "parent", "root", "tags", "wrote")

    def __init__(self, parent: Transaction | None, dirty: Callable[[], bool] | None) -> None:
        self.tags: dict[str, None] = {}
        self.keys: dict[str, None] = {}
        self.parent = parent
        self.root: Transaction = self if parent is None else parent.root
        self.wrote = False  # set on the root by the integration: the transaction has written
        self.dirty = dirty  # () -> whether it has changes not flushed yet
        self.open = True

    def has_written(self) -> bool:
        root = self.root
        return root.wrote or (root.dirty is not None and root.dirty())


class Deferral:
    """The open transactions of each context, for one engine."""

    def __init__(self, holds: Holds, counters: Counters) -> None:
        self.holds = holds
        self.counters = counters
        self.lock = threading.Lock()  # a transaction's holds may come from other threads
        # innermost last; a context may keep a transaction ended from another one (skipped)
        self._open: ContextVar[tuple[Transaction, ...]] = ContextVar(
            f"tta_cache_transactions_{id(self):x}", default=()
        )

    def forked(self) -> None:
        reinit(self.lock)

    def begin(
        self, parent: Transaction | None = None, dirty: Callable[[], bool] | None = None
    ) -> Transaction:
        """A transaction (or, with ``parent``, a savepoint) opens in the current context."""
        tx = Transaction(parent, dirty)
        self._open.set((*(t for t in self._open.get() if t.open), tx))
        return tx

    def current(self) -> Transaction | None:
        """The innermost open transaction of the current context, or None."""
        for tx in reversed(self._open.get()):
            if tx.open:
                return tx
        return None

    def writing(self) -> bool:
        """Whether an open transaction of the current context has written."""
        stack = self._open.get()
        return bool(stack) and any(tx.open and tx.has_written() for tx in stack)

    def hold(self, tx: Transaction, tags: Iterable[str], keys: Iterable[str]) -> bool:
        """Hold an invalidation until ``tx`` ends, pending in this process from now on; False if
        ``tx`` has ended meanwhile (another thread ended it: send the invalidation now)."""
        with self.lock:
            if not tx.open:
                return False
            new_tags = [t for t in tags if t not in tx.tags]
            new_keys = [k for k in keys if k not in tx.keys]
            tx.tags.update(dict.fromkeys(new_tags))
            tx.keys.update(dict.fromkeys(new_keys))
            self.holds.hold(new_tags, new_keys)
        self.counters.add(invalidations_deferred=1)
        return True

    def end(self, tx: Transaction, *, committed: bool) -> tuple[list[str], list[str]] | None:
        """``tx`` has ended: the ``(tags, keys)`` to send now (a committed transaction), else
        None (dropped by a rollback, or a released savepoint's, handed to its outer one). The
        caller releases the sent ones' holds once they are sent or queued."""
        with self.lock:
            if not tx.open:
                return None
            tx.open = False
            sent = self._ended(tx, committed)
        stack = self._open.get()
        if tx in stack:
            self._open.set(tuple(t for t in stack if t is not tx))
        return sent

    def _ended(self, tx: Transaction, committed: bool) -> tuple[list[str], list[str]] | None:
        if not committed:
            if tx.tags or tx.keys:
                self.counters.add(invalidations_dropped=1)
            self.holds.release(tx.tags, tx.keys)
            return None
        parent = tx.parent
        if parent is not None and parent.open:
            again_tags = [t for t in tx.tags if t in parent.tags]
            again_keys = [k for k in tx.keys if k in parent.keys]
            parent.tags.update(tx.tags)
            parent.keys.update(tx.keys)
            self.holds.release(again_tags, again_keys)  # the outer one holds them already
            return None
        return list(tx.tags), list(tx.keys)


def commit_flow(e: Engine, tx: Transaction) -> Flow[None]:
    """``tx`` has committed: send what it held (a savepoint's go to its outer transaction).

    A failure is queued (I8) and logged, never raised: the data is committed, and an exception
    here would tell the caller that the commit failed."""
    sent = e.deferral.end(tx, committed=True)
    if sent is None:
        return
    tags, keys = sent
    try:
        yield from send_flow(e, tags, keys, "ignore")
    except BaseException:  # cancelled, or a bug: retried until Redis takes it (I8)
        e.queue.add(tags, keys)
        raise
    finally:
        e.holds.release(tags, keys)  # sent, or queued (the queue holds them now)


def salvage(e: Engine, tx: Transaction) -> None:
    """``tx`` committed but its :func:`commit_flow` could not run: queue what it held (I8)."""
    sent = e.deferral.end(tx, committed=True)
    if sent is not None:
        e.queue.add(*sent)
        e.holds.release(*sent)


def private_flow(e: Engine, call: Call) -> Flow[Any]:
    """A miss inside a transaction that has written: computed for this caller only, stored
    nowhere (it may have read rows that are not committed, or never will be)."""
    e.stats.miss()
    value, _, took = yield from compute_step(e, call, None)  # its own current_entry(), unused
    e.stats.computed(took)
    e.counters.add(transaction_fills_skipped=1)
    return value


def transaction_stats(counters: Mapping[str, int]) -> dict[str, int]:
    """The deferral's figures for ``stats()``."""
    return {
        "deferred": counters["invalidations_deferred"],
        "dropped": counters["invalidations_dropped"],
        "fills_skipped": counters["transaction_fills_skipped"],
    }
