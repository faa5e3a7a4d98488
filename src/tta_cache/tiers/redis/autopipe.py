"""Auto-pipelining for one event loop's asyncio client: the hot commands of tasks that run while
another's are on the wire go to Redis together, as one pipeline on one connection.

A caller that finds nothing in flight sends at once, on a connection of the lane (no timer, no
added round trip: a lone call costs what it did). Callers that arrive while commands are in
flight queue; when the wire is free, one flusher task sends everything queued as one pipeline and
hands each caller the slice of replies for its own commands, in order. The flusher, not a caller,
owns that connection: a caller cancelled meanwhile only loses its future, and every reply of the
batch is still read, so no reply is ever handed to another caller (the class of redis-py's
CVE-2023-28858/28859, where a cancelled command left its reply to the next user).

Each queued caller keeps its ``op_timeout``: a batch must be done by the earliest deadline of its
callers (queued time + ``op_timeout``), else the flusher is cancelled, the lane disconnects that
connection and every caller of the batch gets ``redis.TimeoutError`` (a fail-open
``BackendTimeout`` in the tier). A failed batch fails its callers the same way, and the next
batch starts afresh.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis

from .lane import AsyncLane

__all__ = ["AutoPipe"]

Commands = tuple[tuple[Any, ...], ...]


class _Waiter:
    __slots__ = ("commands", "due", "future")

    def __init__(self, commands: Commands, future: asyncio.Future[list[Any]], due: float) -> None:
        self.commands = commands
        self.future = future
        self.due = due


class AutoPipe:
    """The lane of one event loop's client, with concurrent callers coalesced (see the module
    docstring); :meth:`call` and :meth:`pipeline` as :class:`~.lane.AsyncLane`'s."""

    __slots__ = ("busy", "expired", "flusher", "lane", "op_timeout", "waiting")

    def __init__(self, lane: AsyncLane, op_timeout: float) -> None:
        self.lane = lane
        self.op_timeout = op_timeout
        self.waiting: list[_Waiter] = []
        self.busy = False  # commands are on the wire (a lone caller's, or the flusher's)
        self.flusher: asyncio.Task[None] | None = None
        self.expired = False

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
            self.waiting.append(_Waiter(commands, future, loop.time() + self.op_timeout))
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
        """Send what is queued, batch after batch, until nothing is."""
        loop = asyncio.get_running_loop()
        try:
            while self.waiting:
                batch, self.waiting = self.waiting, []
                live = [w for w in batch if not w.future.done()]  # cancelled ones are dropped
                if live:
                    await self._send(loop, live)
        finally:
            self.busy = False
            self.flusher = None

    async def _send(self, loop: asyncio.AbstractEventLoop, batch: list[_Waiter]) -> None:
        sent = [command for waiter in batch for command in waiter.commands]
        due = min(waiter.due for waiter in batch)
        task = asyncio.current_task()
        assert task is not None
        self.expired = False
        expiry = loop.call_at(due, self._expire, task)
        try:
            got = await self.lane.pipeline(*sent)
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
        at = 0
        for waiter in batch:
            end = at + len(waiter.commands)
            if not waiter.future.done():
                waiter.future.set_result(got[at:end])
            at = end

    def _expire(self, task: asyncio.Task[None]) -> None:
        self.expired = True
        task.cancel()

    async def drain(self) -> None:
        await self.lane.drain()

    async def close(self) -> None:
        await self.lane.close()


def _fail(batch: list[_Waiter], exc: BaseException) -> None:
    for waiter in batch:
        if not waiter.future.done():
            waiter.future.set_exception(exc)
