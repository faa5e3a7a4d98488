"""After ``fork()``: what a child process must not inherit from the cache its parent made.

Pre-fork servers (gunicorn ``--preload``, uvicorn workers, multiprocessing's ``fork``) build a
``Cache`` in the parent, use it, then fork. The child inherits memory, not threads: no channel
thread, no health monitor, no refresh or compute threads, and locks possibly held by threads that
are gone. Left as they are, the child would publish with its parent's origin (so the parent takes
the child's invalidations for its own echo and ignores them), report a channel that does not
exist as up, and trust a tag map nobody keeps current.

:func:`track` registers each engine; in the child, :meth:`Engine.forked` gives it its own origin,
an empty L1, a distrusted tag map (trusted again once the child's own channel is subscribed), new
single-flight, lease and refresh state, and no threads (they start again on first use). Locks are
re-initialised in place (``_at_fork_reinit``, what CPython's own ``threading`` and ``logging`` do),
because the decorators' hit path holds references to them. Queued invalidations (I8) stay queued
in the child too: a second delivery only bumps a version once more.

Nothing is checked on the hot path: ``os.register_at_fork`` runs the hook in the child.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .engine import Engine

__all__ = ["reinit", "track"]

_engines: weakref.WeakSet[Engine] = weakref.WeakSet()
_lock = threading.Lock()
_registered = False


def reinit(lock: Any) -> Any:
    """Re-initialise ``lock`` (a Lock, RLock, Condition or Event) in place, unlocked; returns it."""
    again = getattr(lock, "_at_fork_reinit", None)
    if again is not None:
        again()
    return lock


def track(engine: Engine) -> None:
    """Have ``engine`` rebuilt for the child after every fork."""
    global _registered
    with _lock:
        _engines.add(engine)
        if not _registered and hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_after_in_child)
            _registered = True


def _after_in_child() -> None:
    reinit(_lock)
    for engine in list(_engines):
        engine.forked()
