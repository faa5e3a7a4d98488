"""Auto-pipelining for one event loop's asyncio client: the hot commands of tasks that run while
another's are on the wire go to Redis together, as one pipeline on one connection.

A caller that finds nothing in flight sends at once, on a connection of the lane (no timer, no
added round trip: a lone call costs what it did). Callers that arrive while commands are in
flight queue; when the wire is free, one flusher task sends everything queued as one pipeline and
hands each caller the slice of replies for its own commands, in order. The flusher, not a caller,
owns that connection: a caller cancelled meanwhile only loses its future, and every reply of the
batch is still read, so no reply is ever handed to another caller (the class of redis-py's
CVE-2023-28858/28859, where a cancelled command left its reply to the next user).

``op_timeout`` bounds a batch as it bounds a lone command: a batch not answered within
``op_timeout`` of being sent gets its flusher cancelled, the lane disconnects that connection and
every caller of the batch gets ``redis.TimeoutError`` (a fail-open ``BackendTimeout`` in the
tier); a caller queued behind it waits for it first (at most ``op_timeout`` more, as a wait for a
pooled connection is not counted in it either). A failed batch fails its callers the same way,
and the next batch starts afresh.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis

from .lane import AsyncLane

__all__ = ["AutoPipe"]

Commands = tuple[tuple[Any, ...], ...]


class _Waiter:
    __slots__ = ("commands", "done", "future", "set_result")

    def __init__(self, commands: Commands, future: asyncio.Future[list[Any]]) -> None:
        self.commands = commands
        self.future = future
        self.done = future.done
        self.set_result = future.set_result


class AutoPipe:
    """The lane of one event loop's client, with concurrent callers coalesced (see the module
    docstring); :meth:`call` and :meth:`pipeline` as :class:`~.lane.AsyncLane`'s."""

    __slots__ = ("busy", "expired", "flusher", "lane", "op_timeout", "sending", "waiting")

    def __init__(self, lane: AsyncLane, op_timeout: float) -> None:
        self.lane = lane
        self.op_timeout = op_timeout
        self.waiting: list[_Waiter] = []
        self.busy = False  # commands are on the wire (a lone caller's, or the flusher's)
        self.flusher: asyncio.Task[None] | None = None
        self.expired = False
        self.sending: list[Any] | None = None  # the commands of the batch on the wire

    @property
    def idle(self) -> list[Any]:
        return self.lane.idle

    @property
    def size(self) -> int:
        return self.lane.size

    @property
    def pool(self) -> Any:
        return self.lane.pool

    async def call(self, *args: Any) -> Any:
        """One command's reply (see :meth:`~.lane.AsyncLane.call`)."""
        (reply,) = await self.pipeline(args)
        if isinstance(reply, redis.ResponseError):
            raise reply
        return reply

    async def pipeline(self, *commands: tuple[Any, ...]) -> list[Any]:
        """The replies of ``commands``, an error reply in its place."""
        if self.busy:
            loop = asyncio.get_running_loop()
            future: asyncio.Future[list[Any]] = loop.create_future()
            self.waiting.append(_Waiter(commands, future))
            return await future
        self.busy = True
        try:
            return await self.lane.pipeline(*commands)
        finally:
            if self.waiting:
                self.flusher = asyncio.get_running_loop().create_task(self._flush())
            else:
                self.busy = False

    async def _flush(self) -> None:
        """Send what is queued, batch after batch, until nothing is; before stopping, yield
        once, so the callers just answered queue their next commands for one batch rather than
        the first of them going alone and the rest behind it."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                if not self.waiting:
                    await asyncio.sleep(0)
                    if not self.waiting:
                        return
                batch, self.waiting = self.waiting, []
                live = [w for w in batch if not w.done()]  # cancelled ones are dropped
                if live:
                    await self._send(loop, live)
        finally:
            self.busy = False
            self.flusher = None

    async def _send(self, loop: asyncio.AbstractEventLoop, batch: list[_Waiter]) -> None:
        sent = [command for waiter in batch for command in waiter.commands]
        task = asyncio.current_task()
        assert task is not None
        self.expired = False
        self.sending = sent
        expiry = loop.call_at(loop.time() + self.op_timeout, self._expire, task, sent)
        try:
            got = await self.lane.pipeline(*sent, bounded=True)
        except asyncio.CancelledError:
            if not self.expired:  # the loop is going away: the callers are told, then we stop
                _fail(batch, redis.ConnectionError("auto-pipeline cancelled"))
                raise
            if hasattr(task, "uncancel"):
                task.uncancel()
            _fail(batch, redis.TimeoutError(f"pipeline not done within {self.op_timeout} s"))
            return
        except Exception as exc:
            _fail(batch, exc)
            return
        finally:
            expiry.cancel()
            self.sending = None
        at = 0
        for waiter in batch:
            end = at + len(waiter.commands)
            if not waiter.done():
                waiter.set_result(got[at:end])
            at = end

    def _expire(self, task: asyncio.Task[None], sent: list[Any]) -> None:
        """The deadline passed. A loop turn that ran long (this process's own work, not Redis)
        may have held back replies that are already in: one more turn lets the flusher, woken
        in this one, read them before the batch is called lost."""
        asyncio.get_running_loop().call_soon(self._expire_now, task, sent)

    def _expire_now(self, task: asyncio.Task[None], sent: list[Any]) -> None:
        if self.sending is sent:  # still this batch
            self.expired = True
            task.cancel()

    async def drain(self) -> None:
        await self.lane.drain()

    async def close(self) -> None:
        await self.lane.close()


def _fail(batch: list[_Waiter], exc: BaseException) -> None:
    for waiter in batch:
        if not waiter.done():
            waiter.future.set_exception(exc)
