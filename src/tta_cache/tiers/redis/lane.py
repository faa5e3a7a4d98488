"""The connection lane: hot commands on connections kept between uses, outside redis-py's checkout
path (one per sync client, one per event loop's asyncio client)."""

from __future__ import annotations

import contextlib
import math
import os
import weakref
from collections.abc import Callable
from typing import Any

import redis

__all__ = ["AsyncLane", "Lane"]


def _packed_py(conn: Any, commands: tuple[tuple[Any, ...], ...]) -> list[bytes]:
    """``commands`` in RESP, one buffer: redis-py's packer splits and copies per argument, a
    quarter of a pipelined GET's cost; the arguments here are the hot commands' (a single-word
    command name, keys, bytes payloads, numbers). ``str`` is encoded here as the connection's
    encoder would, without its per-argument checks: calling the encoder per key was two thirds of
    a 100-key MGET's packing."""
    encoder = conn.encoder
    encode, encoding, errors = encoder.encode, encoder.encoding, encoder.encoding_errors
    out: list[bytes] = []
    for command in commands:
        out.append(b"*%d\r\n" % len(command))
        for arg in command:
            kind = type(arg)
            if kind is str:
                data = arg.encode(encoding, errors)
            elif kind is bytes:
                data = arg
            else:
                data = encode(arg)
            out.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return [b"".join(out)]


def _packed_hiredis(conn: Any, commands: tuple[tuple[Any, ...], ...]) -> list[bytes]:
    """:func:`_packed_py` in C (hiredis, the ``fast`` extra): 17 us for a 100-key MGET against
    61 us; the same bytes for the same arguments (str, bytes, int, float). hiredis encodes text
    as strict UTF-8, redis-py's default; a connection configured otherwise is packed in Python."""
    encoder = conn.encoder
    if encoder.encoding != "utf-8" or encoder.encoding_errors != "strict":
        return _packed_py(conn, commands)
    if len(commands) == 1:
        return [_pack_command(commands[0])]
    return [b"".join(map(_pack_command, commands))]


try:
    from hiredis import pack_command as _pack_command
except ImportError:  # pragma: no cover - hiredis is in the fast and test extras
    _packed = _packed_py
else:
    _packed = _packed_hiredis


class Lane:
    """Single commands and short pipelines on connections kept between uses, outside redis-py's
    checkout path.

    A pooled redis-py command pays for a blocking queue, the pool's observability counters, a
    readiness poll (a syscall) and the retry wrapper: ~35 us a command on a 2-core VM, a quarter
    of a loopback GET. The engine's hot commands (GET, SET, MGET and the read pipeline) take a
    connection from this short list instead. Its connections are borrowed from the pool, so the
    pool's ``max_connections`` still bounds them; at most ``size`` stay here idle, the rest go back.
    An error reply leaves the connection clean and kept; any other failure disconnects it and
    hands it back, except that a broken one (Redis restarted, CLIENT KILL, a failover) is
    reconnected and the command sent once more, as the client's own retry would. A forked child
    starts with an empty lane (it must not share its parent's sockets).
    """

    __slots__ = ("__weakref__", "idle", "owns", "pool", "size")

    def __init__(self, pool: Any, size: int) -> None:
        self.pool = pool
        self.size = size
        self.idle: list[Any] = []
        # Sentinel: a connection to a master that is no longer the master goes back to the pool
        self.owns: Callable[[Any], bool] = getattr(pool, "owns_connection", bool)
        _LANES.add(self)

    def _take(self) -> Any:
        try:
            return self.idle.pop()
        except IndexError:
            return self.pool.get_connection()

    def _give(self, conn: Any) -> None:
        if len(self.idle) < self.size and self.owns(conn):
            self.idle.append(conn)
        else:
            self.pool.release(conn)

    def call(self, *args: Any) -> Any:
        """One command's reply (redis-py's reply, without its response callbacks)."""
        (reply,) = self.pipeline(args)
        if isinstance(reply, redis.ResponseError):
            raise reply
        return reply

    def pipeline(self, *commands: tuple[Any, ...]) -> list[Any]:
        """Replies of ``commands`` sent together; an error reply is returned in its place (every
        reply is read, so the connection stays clean)."""
        conn = self._take()
        for attempt in (1, 2):
            try:
                if attempt == 2:  # connect() by name: Sentinel asks where the master is now
                    conn.connect()
                conn.send_packed_command(_packed(conn, commands))
                replies: list[Any] = []
                for _ in commands:
                    try:
                        replies.append(conn.read_response())
                    except redis.ResponseError as exc:
                        replies.append(exc)
            except BaseException as exc:
                if self._retry(conn, exc, attempt):
                    continue
                raise
            self._give(conn)
            return replies
        raise AssertionError("unreachable")  # pragma: no cover

    def _retry(self, conn: Any, exc: BaseException, attempt: int) -> bool:
        """After a failed command: whether to send it again on ``conn``, reconnected (a broken
        connection, the first time), as redis-py's own retry does. Else ``conn`` goes back to the
        pool. The kept connections beside it broke too, most likely (a restart, a CLIENT KILL,
        a failover): they are handed back disconnected, so the next calls connect afresh."""
        conn.disconnect()
        if not isinstance(exc, redis.ConnectionError):
            self.pool.release(conn)
            return False
        self.drain()
        if attempt == 1:
            return True
        self.pool.release(conn)
        return False

    def drain(self) -> None:
        """Hand every kept connection back to the pool, disconnected."""
        idle, self.idle = self.idle, []
        for other in idle:
            other.disconnect()
            self.pool.release(other)

    def close(self) -> None:
        idle, self.idle = self.idle, []
        for conn in idle:
            with contextlib.suppress(Exception):
                self.pool.release(conn)

    def forget(self) -> None:
        """In a forked child: drop the parent's connections without touching their sockets."""
        self.idle = []


class AsyncLane:
    """:class:`Lane` for one event loop's ``redis.asyncio`` client (its connections are bound to
    that loop). A task cancelled mid-command leaves its connection disconnected by redis-py and
    handed back to the pool."""

    __slots__ = ("idle", "owns", "pool", "size")

    def __init__(self, pool: Any, size: int) -> None:
        self.pool = pool
        self.size = size
        self.idle: list[Any] = []
        self.owns: Callable[[Any], bool] = bool
        if hasattr(pool, "is_master"):  # Sentinel (its own owns_connection fails in redis.asyncio)

            def owns(conn: Any) -> bool:
                return not pool.is_master or pool.master_address == (conn.host, conn.port)

            self.owns = owns

    async def _take(self) -> Any:
        try:
            return self.idle.pop()
        except IndexError:
            return await self.pool.get_connection()

    async def _give(self, conn: Any) -> None:
        if len(self.idle) < self.size and self.owns(conn):
            self.idle.append(conn)
        else:
            await self.pool.release(conn)

    async def call(self, *args: Any) -> Any:
        """One command's reply (see :meth:`Lane.call`)."""
        (reply,) = await self.pipeline(args)
        if isinstance(reply, redis.ResponseError):
            raise reply
        return reply

    async def pipeline(self, *commands: tuple[Any, ...], bounded: bool = False) -> list[Any]:
        """See :meth:`Lane.pipeline`. ``bounded``: the caller bounds the whole call (the
        auto-pipeline's batch deadline), so the replies are read without a timeout each."""
        conn = await self._take()
        timeout = math.inf if bounded else None  # None: the connection's socket_timeout
        for attempt in (1, 2):
            try:
                if attempt == 2:
                    await conn.connect()
                await conn.send_packed_command(_packed(conn, commands))
                replies: list[Any] = []
                for _ in commands:
                    try:
                        replies.append(await conn.read_response(timeout=timeout))
                    except redis.ResponseError as exc:
                        replies.append(exc)
            except BaseException as exc:
                if await self._retry(conn, exc, attempt):
                    continue
                raise
            await self._give(conn)
            return replies
        raise AssertionError("unreachable")  # pragma: no cover

    async def _retry(self, conn: Any, exc: BaseException, attempt: int) -> bool:
        """See :meth:`Lane._retry`."""
        await conn.disconnect()
        if not isinstance(exc, redis.ConnectionError):
            await self.pool.release(conn)
            return False
        await self.drain()
        if attempt == 1:
            return True
        await self.pool.release(conn)
        return False

    async def drain(self) -> None:
        """See :meth:`Lane.drain`."""
        idle, self.idle = self.idle, []
        for other in idle:
            await other.disconnect()
            await self.pool.release(other)

    async def close(self) -> None:
        idle, self.idle = self.idle, []
        for conn in idle:
            with contextlib.suppress(Exception):
                await self.pool.release(conn)


_LANES: weakref.WeakSet[Lane] = weakref.WeakSet()
if hasattr(os, "register_at_fork"):

    def _forget_lanes() -> None:
        for lane in list(_LANES):
            lane.forget()

    os.register_at_fork(after_in_child=_forget_lanes)
