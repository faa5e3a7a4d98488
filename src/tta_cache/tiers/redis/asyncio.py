"""The asyncio Redis tier: the engine's Redis operations on one ``redis.asyncio`` client per
running event loop (those clients are loop-bound).

What to send and how to read the replies is decided in :mod:`.commands`, :mod:`.replies` and
:mod:`.base`, shared with :mod:`.sync`; this module only sends and awaits.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Awaitable, Callable, Generator, Sequence
from typing import Any, TypeVar

import redis

from . import batch, commands, replies
from .autopipe import AutoPipe
from .base import TierBase, announce_order
from .clients import make_async_client
from .commands import Command, Lease
from .config import RedisConfig
from .errors import translated
from .lane import AsyncLane
from .pools import pool_usage
from .replies import Read
from .scripts import PIPELINED, Scripts

__all__ = ["AsyncRedisTier"]

T = TypeVar("T")


class AsyncRedisTier(TierBase):
    """The asyncio twin of :class:`~.sync.RedisTier`, one client per running event loop; a
    client carries its scripts (``_tta_scripts``) and its lane (``_tta_lane``: an
    :class:`~.autopipe.AutoPipe` over it unless ``pipelining=False``)."""

    def __init__(self, cfg: RedisConfig, tag_ttl: Callable[[], int]) -> None:
        super().__init__(cfg, tag_ttl)
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )
        self._last: tuple[Callable[[], Any], Any] = (lambda: None, None)  # (weak loop, client)

    @property
    def client(self) -> Any:
        loop = asyncio.get_running_loop()
        last, client = self._last
        if last() is loop:  # the loop of the last call: no weak dictionary lookup
            return client
        client = self._clients.get(loop)
        if client is None:
            client = make_async_client(self.cfg, figures=self.figures)
            client._tta_scripts = Scripts.register(client)
            size = self.lane_size
            lane = AsyncLane(client.connection_pool, size) if size else None
            if lane is not None and self.cfg.pipelining:
                lane = AutoPipe(lane, self.cfg.op_timeout)  # type: ignore[assignment]
            client._tta_lane = lane
            self._clients[loop] = client
        self._last = (weakref.ref(loop), client)
        return client

    async def get(self, key: str) -> bytes | None:
        client = self.client
        with translated("GET"):
            try:
                if client._tta_lane is not None:
                    return await client._tta_lane.call("GET", key)  # type: ignore[no-any-return]
                return await client.get(key)  # type: ignore[no-any-return]
            except redis.ResponseError as exc:
                return replies.entry_reply(exc)

    async def read(self, key: str, tag_keys: Sequence[str]) -> Read:
        if not tag_keys:
            return Read(await self.get(key), None)
        with translated("GET"):
            if self.cluster:
                return Read(await self.get(key), await self.versions(tag_keys))
            got = await self._send(commands.read_commands(key, tag_keys, self._tag_ttl()))
            return self._read_of(got, len(tag_keys))

    async def lease_read(
        self, key: str, tag_keys: Sequence[str], lease: Lease, force: bool
    ) -> Read:
        with translated("EVALSHA lease"):
            if not self.cluster:
                sent = commands.lease_read_commands(key, tag_keys, self._tag_ttl(), lease, force)
                return self._lease_read_of(await self._send(sent), len(tag_keys))
            if self._apart(key, lease):
                reply = await self._run(replies.lease_apart(key, lease, force))
            else:
                keys, args = lease.script_args(key, force)
                script = self.client._tta_scripts.lease_read
                reply = replies.lease_reply(await script(keys=keys, args=args))
            return self._leased(reply, await self.versions(tag_keys) if tag_keys else None)

    async def _send(self, sent: Sequence[Command], *, pooled: bool = False) -> list[Any]:
        """:meth:`RedisTier._send`; ``async with`` resets a failed pipeline, so its connection
        goes back to the pool."""
        client = self.client
        for attempt in (1, 2):
            if client._tta_lane is not None and not pooled:
                got = await client._tta_lane.pipeline(*sent)
            else:
                async with client.pipeline(transaction=False) as pipe:
                    for command in sent:
                        pipe.execute_command(*command)
                    got = list(await pipe.execute(raise_on_error=False))
            if attempt == 2 or not replies.lost_script(got):
                return got  # type: ignore[no-any-return]
            for script in PIPELINED:
                await client.script_load(script)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _run(self, steps: Generator[Command, Any, T]) -> T:
        """:meth:`RedisTier._run` with the asyncio client."""
        client = self.client
        reply: Any = None
        while True:
            try:
                command = steps.send(reply)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            try:
                reply = await client.execute_command(*command)
            except redis.ResponseError as exc:
                reply = exc

    async def fill(
        self, key: str, payload: bytes | None, px: int, lease: Lease, notice: bytes
    ) -> None:
        client = self.client
        first, keys, args = self._fill_plan(key, payload, px, lease, notice)
        with translated("EVALSHA fill"):
            if first is not None:
                await client.execute_command(*first)
            if client._tta_lane is not None:  # pipelined with the other callers' commands
                replies.raise_first(await self._send([commands.fill_command(keys, args)]))
            else:
                await client._tta_scripts.fill(keys=keys, args=args)

    async def versions(self, tag_keys: Sequence[str]) -> tuple[int, ...]:
        script = self.client._tta_scripts.versions
        with translated("EVALSHA versions"):
            ttl = self._tag_ttl()
            out: list[int] = []
            for keys, _ in self._runs(tag_keys):
                out += self._versions_of(await script(keys=keys, args=[ttl]), len(keys))
            return tuple(out)

    async def write(self, key: str, payload: bytes, px: int) -> None:
        client = self.client
        with translated("SET"):
            if client._tta_lane is not None:
                await client._tta_lane.call("SET", key, payload, "PX", px)
            else:
                await client.set(key, payload, px=px)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        client = self.client
        with translated("MGET"):
            if self.cluster:
                return list(await client.mget_nonatomic(keys))
            if client._tta_lane is not None:
                return await client._tta_lane.call("MGET", *keys)  # type: ignore[no-any-return]
            return list(await client.mget(keys))

    async def set_many(self, items: Sequence[tuple[str, bytes, int]]) -> None:
        with translated("SET"):
            replies.raise_first(await self._send(commands.set_commands(items)))

    async def read_many(
        self, keys: Sequence[str], tag_keys: Sequence[str], lease: batch.BatchLease | None
    ) -> batch.ManyRead:
        """See :meth:`~.sync.RedisTier.read_many`."""
        cluster = self.cluster
        with translated("MGET batch"):
            sent = batch.read_commands(keys, tag_keys, self._tag_ttl(), lease, cluster=cluster)
            got = await self._send(sent)
            read = batch.read_of(
                got, len(keys), len(tag_keys), lease, self._versions_of, cluster=cluster
            )
            if cluster and lease is not None and (which := batch.to_lease(read, lease)):
                sent = batch.cluster_lease_commands(lease, which)
                read = batch.leased(read, which, await self._send(sent))
            if read.replaced:
                self.figures.replaced(read.replaced)
            return read

    async def fill_many(
        self,
        writes: Sequence[tuple[str, bytes, int]],
        release: Sequence[str],
        token: str | None,
        channel: str,
        notice: bytes,
    ) -> None:
        """See :meth:`~.sync.RedisTier.fill_many`."""
        with translated("SET batch"):
            sent = batch.fill_commands(
                writes, release, token, channel, notice, cluster=self.cluster
            )
            replies.raise_first(await self._send(sent))

    async def delete(
        self, keys: Sequence[str], channel: str | None = None, message: bytes = b""
    ) -> int:
        with translated("DEL"):
            if self.cluster:
                return await self._run(replies.delete_apart(keys, channel, message))
            sent = commands.delete_commands(keys, channel, message)
            return replies.deleted(await self._send(sent))

    async def bump(
        self, tag_keys: Sequence[str], tags: Sequence[str], channel: str, head: str
    ) -> tuple[int, ...]:
        script = self.client._tta_scripts.bump
        with translated("EVALSHA bump"):
            ttl = self._tag_ttl()
            waited = self._bump_waited(tag_keys, [ttl, channel, head, *tags])
            if waited is not None:  # WAIT blocks its connection: a pooled one, not the lane's
                return self._bumped(await self._send(waited, pooled=True), len(tag_keys))
            out: list[int] = []
            for keys, names in self._runs(tag_keys, tags):
                reply = await script(keys=keys, args=[ttl, channel, head, *names])
                out += self._versions_of(reply, len(keys))
            return tuple(out)

    async def announce(self, channel: str, message: bytes) -> bool:
        """See :meth:`~.sync.RedisTier.announce`."""
        client = self.client
        if not self.cluster:
            try:
                await client.execute_command("PUBLISH", channel, message)
                return True
            except Exception:
                return False
        for node in announce_order(client.get_nodes()):
            try:
                await client.execute_command("PUBLISH", channel, message, target_nodes=node)
                return True
            except Exception:
                continue
        return False

    async def ping(self) -> bool:
        with translated("PING"):
            return bool(await self.client.ping())

    def pool_usage(self) -> dict[str, int]:
        """Connections of the clients of every live event loop (see :meth:`RedisTier.pool_usage`);
        Cluster clients are not counted."""
        clients = [] if self.cluster else list(self._clients.values())
        return pool_usage((c.connection_pool for c in clients), (c._tta_lane for c in clients))

    def failed_over(self) -> None:
        """:meth:`RedisTier.failed_over` for the client of every live event loop; callable from
        any thread (each loop drops its own connections)."""
        for loop, client in list(self._clients.items()):
            if not loop.is_closed():
                with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                    asyncio.run_coroutine_threadsafe(self._reconnect(client), loop)

    def forked(self) -> None:
        """In a forked child: forget the parent's clients without closing them (their sockets are
        the parent's too; a shutdown here would cut the parent's connections). A loop of the
        child gets a client of its own."""
        self._clients = weakref.WeakKeyDictionary()
        self._last = (lambda: None, None)

    @staticmethod
    async def _reconnect(client: Any) -> None:
        with contextlib.suppress(Exception):
            if client._tta_lane is not None:
                await client._tta_lane.drain()
            await client.connection_pool.disconnect(inuse_connections=False)

    async def execute(self, op: str, fn: Callable[[Any], Awaitable[T]]) -> T:
        with translated(op):
            return await fn(self.client)

    async def aclose(self) -> None:
        """Close the client of the running loop (others are closed with their loops)."""
        with contextlib.suppress(RuntimeError):
            loop = asyncio.get_running_loop()
            client = self._clients.pop(loop, None)
            self._last = (lambda: None, None)
            if client is not None:
                with contextlib.suppress(Exception):
                    if client._tta_lane is not None:
                        await client._tta_lane.close()
                    if self.cluster:  # a cluster client owns its node pools
                        await client.aclose()
                    else:  # the pool was made here and handed over: the client leaves it open
                        await client.aclose(close_connection_pool=True)
                    manager = getattr(client.connection_pool, "sentinel_manager", None)
                    for sentinel in getattr(manager, "sentinels", ()):  # the discovery clients
                        await sentinel.aclose()
