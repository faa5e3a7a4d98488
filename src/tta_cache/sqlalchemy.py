"""Invalidation bound to the database transaction, for SQLAlchemy 2.x (extra ``[sqlalchemy]``).

An invalidation sent before the writing transaction commits lets another process recompute from
the old rows and cache them under the new versions, stale until the TTL. :func:`bind` ties a
cache to a session factory so that this cannot happen::

    from tta_cache.sqlalchemy import bind

    Session = sessionmaker(engine)          # or async_sessionmaker(async_engine)
    bind(cache, Session)

    with Session.begin() as session:
        session.add(choice)
        record_choice(...)                  # an @cache.invalidates function: held, not sent
    # committed: the invalidation reaches Redis and every process now

While a session of the factory has a transaction open, every ``cache.invalidate()``,
``@cache.invalidates`` call, ``f.invalidate(...)`` and ``cache.delete(...)`` issued in the same
context (the thread, or the asyncio task, that began the transaction, and what it starts with a
copy of its context) applies to this process at once (nothing it covers is served here from
then on) and is sent to Redis and the other processes after the database has committed; a
rollback drops it. In a savepoint (``begin_nested``): released, its invalidations ride with the
outer transaction; rolled back, they are dropped. A send that Redis does not take after the
commit is queued and retried like any other (I8), never raised: the data is committed.

And a cached function called in that context once the transaction has written (flushed ORM
changes, changes waiting for autoflush, or any non-SELECT statement through
``session.execute``) is computed for that caller alone and not stored: it may have read rows
that are not committed, or never will be. Reads that hit the cache are served as usual.

How the transaction is seen: the session events ``after_transaction_create`` (a root or a
savepoint opens in the current context), ``before_commit``/``after_commit`` (the outcome),
``after_transaction_end`` (send, hand to the outer transaction, or drop), ``after_flush`` and
``do_orm_execute`` (it has written). A statement run on ``session.connection()`` directly is not
seen as a write: call :meth:`Binding.written` after it. A commit that raises sends the held
invalidations anyway when it was the root's (its outcome may be unknown: an extra invalidation
is harmless, a lost one is not).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

try:
    from sqlalchemy import event
    from sqlalchemy.orm import Session, SessionTransaction, sessionmaker
    from sqlalchemy.util import concurrency
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "tta_cache.sqlalchemy needs SQLAlchemy 2.x: pip install 'tta-cache[sqlalchemy]'"
    ) from exc
try:  # asyncio sessions need greenlet; sync ones do not
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
except ImportError:  # pragma: no cover - exercised only without greenlet
    AsyncSession = async_sessionmaker = None  # type: ignore[assignment,misc]

from .engine.deferral import Transaction, commit_flow, salvage

if TYPE_CHECKING:
    from sqlalchemy.orm import ORMExecuteState, UOWTransaction

    from .api import Cache
    from .engine import Engine

__all__ = ["Binding", "bind"]

log = logging.getLogger("tta_cache.sqlalchemy")

# SQLAlchemy 2.1 names it await_, 2.0 await_only
_await: Callable[[Any], Any] = getattr(concurrency, "await_", None) or concurrency.await_only

_EVENTS = (
    "after_transaction_create",
    "before_commit",
    "after_commit",
    "after_transaction_end",
    "after_flush",
    "do_orm_execute",
)


class _Open:
    """One open session transaction (root or savepoint) and what is known of its outcome."""

    __slots__ = ("committed", "committing", "tx")

    def __init__(self, tx: Transaction) -> None:
        self.tx = tx
        self.committing = False  # the root's COMMIT was attempted
        self.committed = False  # the database committed it (or released the savepoint)


class Binding:
    """The event listeners that bind a cache to a session factory; :meth:`unbind` removes them."""

    def __init__(self, cache: Cache, target: Any) -> None:
        self.engine: Engine = cache.engine
        self.target = target
        self._key = f"tta_cache.sqlalchemy.{id(self):x}"
        self._listeners: list[tuple[str, Callable[..., Any]]] = []
        for name in _EVENTS:
            fn = getattr(self, f"_{name}")
            event.listen(target, name, fn, propagate=isinstance(target, type))
            self._listeners.append((name, fn))

    def unbind(self) -> None:
        """Stop binding: transactions that open from now on are not seen."""
        for name, fn in self._listeners:
            event.remove(self.target, name, fn)
        self._listeners.clear()

    def written(self, session: Session | AsyncSession) -> None:
        """Tell the binding that ``session``'s transaction has written (a statement it cannot
        see, such as one run on ``session.connection()`` directly)."""
        sync = cast("Session", getattr(session, "sync_session", session))  # AsyncSession
        self._mark_written(sync)

    # ------------------------------------------------------------------ session state

    def _open(self, session: Session) -> dict[SessionTransaction, _Open]:
        opened: dict[SessionTransaction, _Open] | None = session.info.get(self._key)
        if opened is None:
            opened = session.info[self._key] = {}
        return opened

    def _innermost(self, session: Session) -> _Open | None:
        stx = session.get_nested_transaction() or session.get_transaction()
        return None if stx is None else self._open(session).get(stx)

    def _mark_written(self, session: Session) -> None:
        root = session.get_transaction()
        found = None if root is None else self._open(session).get(root)
        if found is not None:
            found.tx.wrote = True
        else:  # autobegin happens after do_orm_execute: the root that opens next has written
            session.info[self._key + ".wrote"] = True

    # ------------------------------------------------------------------ the events

    def _after_transaction_create(self, session: Session, stx: SessionTransaction) -> None:
        opened = self._open(session)
        parent: Transaction | None = None
        if stx.parent is not None:
            outer: SessionTransaction | None = stx.parent
            while outer is not None and outer not in opened:
                outer = outer.parent
            if outer is None:
                return  # inside a transaction begun before bind(): not bound
            if not stx.nested:
                return  # an internal subtransaction (a flush): part of its enclosing one
            parent = opened[outer].tx
        dirty = None if parent is not None else functools.partial(_has_changes, session)
        tx = self.engine.deferral.begin(parent, dirty)
        if parent is None and session.info.pop(self._key + ".wrote", False):
            tx.wrote = True
        opened[stx] = _Open(tx)

    def _before_commit(self, session: Session) -> None:
        if session.get_nested_transaction() is None:  # certainly the root's commit
            root = session.get_transaction()
            found = None if root is None else self._open(session).get(root)
            if found is not None:
                found.committing = True

    def _after_commit(self, session: Session) -> None:
        found = self._innermost(session)  # the one committing: its inner ones have closed
        if found is not None:
            found.committed = True

    def _after_transaction_end(self, session: Session, stx: SessionTransaction) -> None:
        found = self._open(session).pop(stx, None)
        if found is None:
            return
        if not (found.committed or (found.committing and found.tx.parent is None)):
            self.engine.deferral.end(found.tx, committed=False)
            return
        try:
            if _in_greenlet():  # an AsyncSession's: await on its event loop
                _await(self.engine.arun(commit_flow(self.engine, found.tx)))
            else:
                self.engine.run(commit_flow(self.engine, found.tx))
        except Exception:
            # Never out of a commit that succeeded: queued for retry (I8), holds released.
            log.exception("tta-cache: sending the invalidations of a committed transaction")
            salvage(self.engine, found.tx)

    def _after_flush(self, session: Session, flush_context: UOWTransaction) -> None:
        self._mark_written(session)

    def _do_orm_execute(self, state: ORMExecuteState) -> None:
        if not state.is_select:
            self._mark_written(state.session)


def _in_greenlet() -> bool:
    try:
        return bool(concurrency.in_greenlet())
    except ImportError:  # no greenlet installed: no AsyncSession either
        return False


def _is(value: Any, cls: type | None) -> bool:
    return cls is not None and isinstance(value, cls)


def _has_changes(session: Session) -> bool:
    """Whether ``session`` holds changes not flushed yet (conservatively True on a race)."""
    try:
        return bool(session.new or session.deleted or session.dirty)
    except RuntimeError:  # read from another thread while the session changes
        return True


def bind(cache: Cache, session_factory: Any) -> Binding:
    """Bind ``cache``'s invalidations to the transactions of ``session_factory``'s sessions.

    ``session_factory`` is a ``sessionmaker`` or ``async_sessionmaker`` (only its sessions are
    bound: an ``async_sessionmaker`` is given a ``sync_session_class`` of its own), a ``Session``
    or ``AsyncSession`` subclass (every session of that class), or one session. Returns the
    :class:`Binding`; see the module docstring for what it changes.
    """
    target: Any
    if _is(session_factory, async_sessionmaker):
        base = session_factory.kw.get("sync_session_class")
        base = base or session_factory.class_.sync_session_class
        target = type(f"Bound{base.__name__}", (base,), {})
        session_factory.configure(sync_session_class=target)
    elif _is(session_factory, AsyncSession):
        target = session_factory.sync_session
    elif (
        AsyncSession is not None
        and isinstance(session_factory, type)
        and issubclass(session_factory, AsyncSession)
    ):
        target = session_factory.sync_session_class
    elif isinstance(session_factory, (sessionmaker, Session)) or (
        isinstance(session_factory, type) and issubclass(session_factory, Session)
    ):
        target = session_factory
    else:
        raise TypeError(
            "bind() takes a sessionmaker, an async_sessionmaker, a Session or AsyncSession "
            f"(class or instance), not {session_factory!r}"
        )
    return Binding(cache, target)
