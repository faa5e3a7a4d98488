"""Auto-pipelining for the sync client: the hot commands of threads that call while another
thread's are on the wire go to Redis together, as one pipeline on one connection.

Leader/follower, no flusher thread and no timer: a caller that finds nothing in flight sends at
once on the :class:`~.lane.Lane` (a lone call costs what it did, plus a lock). Callers arriving
meanwhile queue and sleep; when the wire is free, the first of them is woken to send everything
queued as one pipeline, hand each caller the slice of replies for its own commands, in order, and
wake them. A batch that fails fails each of its callers with (a copy of) the same error, which the
tier turns into a fail-open ``BackendError`` as for a lone command; the next batch starts afresh.
A queued caller waits for the batch ahead of it, then for its own, each bounded by the
connection's ``socket_timeout`` per reply, as a pipeline on the lane is.

redis-py has no coalescing client (redis-py #3767), and its pipelines are built by one thread;
hence this module. ``benchmarks/thread_coalescing.py`` measured the design on bare redis-py
before it was built here: 32 threads, 35,466 GETs/s coalesced against 16,057 on a 50-connection
pool.
"""

from __future__ import annotations

import copy
import os
import threading
import weakref
from typing import Any

import redis

from .lane import Lane

__all__ = ["ThreadPipe"]

Commands = tuple[tuple[Any, ...], ...]


class _Waiter:
    __slots__ = ("commands", "error", "event", "lead", "replies")

    def __init__(self, commands: Commands) -> None:
        self.commands = commands
        self.event = threading.Event()
        self.lead = False
        self.replies: list[Any] = []
        self.error: BaseException | None = None


class ThreadPipe:
    """The lane of a sync client, with concurrent threads coalesced (see the module docstring);
    :meth:`call` and :meth:`pipeline` as :class:`~.lane.Lane`'s."""

    __slots__ = ("__weakref__", "batches", "busy", "lane", "lock", "queue")

    def __init__(self, lane: Lane) -> None:
        self.lane = lane
        self.lock = threading.Lock()
        self.queue: list[_Waiter] = []
        self.busy = False  # commands are on the wire (a lone caller's, or a leader's batch)
        self.batches = 0  # pipelines sent for queued callers (tests read it)
        _PIPES.add(self)

    @property
    def idle(self) -> list[Any]:
        return self.lane.idle

    @property
    def size(self) -> int:
        return self.lane.size

    @property
    def pool(self) -> Any:
        return self.lane.pool

    def call(self, *args: Any) -> Any:
        """One command's reply (see :meth:`~.lane.Lane.call`)."""
        (reply,) = self.pipeline(args)
        if isinstance(reply, redis.ResponseError):
            raise reply
        return reply

    def pipeline(self, *commands: tuple[Any, ...]) -> list[Any]:
        """The replies of ``commands``, an error reply in its place."""
        with self.lock:
            lone = not self.busy
            self.busy = True
            if not lone:
                me = _Waiter(commands)
                self.queue.append(me)
        if lone:
            try:
                return self.lane.pipeline(*commands)
            finally:
                self._hand_on()
        me.event.wait()
        if me.lead:
            self._flush(me)
        if me.error is not None:
            raise me.error
        return me.replies

    def _flush(self, leader: _Waiter) -> None:
        """Send every queued caller's commands as one pipeline (``leader`` is one of them)."""
        with self.lock:
            batch, self.queue = self.queue, []
            self.batches += 1
        try:
            got = self.lane.pipeline(*[c for waiter in batch for c in waiter.commands])
        except BaseException as exc:
            for waiter in batch:
                waiter.error = exc if waiter is leader else _copied(exc)
        else:
            at = 0
            for waiter in batch:
                end = at + len(waiter.commands)
                waiter.replies = got[at:end]
                at = end
        finally:
            self._hand_on()
            for waiter in batch:
                if waiter is not leader:
                    waiter.event.set()

    def _hand_on(self) -> None:
        """The wire is free: wake the first queued caller to send the queue, or go idle."""
        with self.lock:
            if not self.queue:
                self.busy = False
                return
            first = self.queue[0]
            first.lead = True
        first.event.set()

    def drain(self) -> None:
        self.lane.drain()

    def close(self) -> None:
        self.lane.close()

    def forget(self) -> None:
        """In a forked child: no thread of the parent's is queued or sending here."""
        self.lock = threading.Lock()
        self.queue = []
        self.busy = False
        self.lane.forget()


def _copied(exc: BaseException) -> BaseException:
    """``exc`` for another thread to raise (one instance raised in two threads would share and
    rewrite one traceback)."""
    try:
        return copy.copy(exc).with_traceback(None)
    except Exception:  # pragma: no cover - an exception type copy cannot rebuild
        return exc


_PIPES: weakref.WeakSet[ThreadPipe] = weakref.WeakSet()
if hasattr(os, "register_at_fork"):

    def _forget_pipes() -> None:
        for pipe in list(_PIPES):
            pipe.forget()

    os.register_at_fork(after_in_child=_forget_pipes)
