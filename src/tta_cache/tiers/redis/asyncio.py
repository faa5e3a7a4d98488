"""The asyncio Redis tier: the engine's Redis operations on one ``redis.asyncio`` client per
running event loop (those clients are loop-bound)."""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Awaitable, Callable, Generator, Sequence
from typing import Any, TypeVar

import redis

from .base import TierBase
from .clients import make_async_client
from .config import RedisConfig
from .errors import translated
from .lane import AsyncLane
from .pools import pool_usage
from .replies import Lease, Read, entry_reply, lease_apart, lease_reply, same_slot
from .scripts import BUMP_LUA, FILL_LUA, LEASE_READ_LUA, VERSIONS_LUA

__all__ = ["AsyncRedisTier"]

T = TypeVar("T")


class AsyncRedisTier(TierBase[Any]):
    """The asyncio twin, one client per running event loop (redis.asyncio clients are loop-bound).

    Only I/O differs from :class:`RedisTier`; every decision lives in the engine's flow.
    """

    def __init__(self, cfg: RedisConfig, tag_ttl: Callable[[], int]) -> None:
        super().__init__(cfg, tag_ttl)
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )

    @property
    def client(self) -> Any:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = make_async_client(self.cfg, figures=self.figures)
            client._tta_versions = client.register_script(VERSIONS_LUA)
            client._tta_bump = client.register_script(BUMP_LUA)
            client._tta_lease = client.register_script(LEASE_READ_LUA)
            client._tta_fill = client.register_script(FILL_LUA)
            size = min(8, self.cfg.max_connections // 4)
            lane = None if self.cluster or not size else AsyncLane(client.connection_pool, size)
            client._tta_lane = lane
            self._clients[loop] = client
        return client

    async def get(self, key: str) -> bytes | None:
        client = self.client
        with translated("GET"):
            try:
                if client._tta_lane is not None:
                    return await client._tta_lane.call("GET", key)  # type: ignore[no-any-return]
                return await client.get(key)  # type: ignore[no-any-return]
            except redis.ResponseError as exc:
                return entry_reply(exc)

    async def read(self, key: str, tag_keys: Sequence[str]) -> Read:
        if not tag_keys:
            return Read(await self.get(key), None)
        client = self.client
        with translated("GET"):
            if self.cluster:
                raw = await self.get(key)
                return Read(raw, await self.versions(tag_keys))
            ttl = self._tag_ttl()
            script = client._tta_versions
            lane = client._tta_lane
            if lane is not None:
                versions = ("EVALSHA", script.sha, len(tag_keys), *tag_keys, ttl)
                raw, found = await lane.pipeline(("GET", key), versions)
                if isinstance(found, redis.exceptions.NoScriptError):  # lost: load, ask again
                    await client.script_load(script.script)
                    found = await lane.call(*versions)
                return Read(entry_reply(raw), self._versions_of(found, len(tag_keys)))

            def build(pipe: Any) -> None:
                pipe.get(key)
                pipe.evalsha(script.sha, len(tag_keys), *tag_keys, ttl)

            raw, found = await self._pipeline(client, build)
            return Read(entry_reply(raw), self._versions_of(found, len(tag_keys)))

    async def lease_read(
        self, key: str, tag_keys: Sequence[str], lease: Lease, force: bool
    ) -> Read:
        client = self.client
        keys, args = [key, lease.key], [lease.token, lease.ms, "1" if force else "0"]
        with translated("EVALSHA lease"):
            if self.cluster:
                if same_slot(key, lease.key):
                    reply = lease_reply(await client._tta_lease(keys=keys, args=args))
                else:
                    reply = await self._run(client, lease_apart(key, lease, force))
                raw, granted, holder, _ = self._lease_of(reply)
                versions = await self.versions(tag_keys) if tag_keys else None
                return Read(raw, versions, granted, holder)
            if not tag_keys:
                reply = lease_reply(await client._tta_lease(keys=keys, args=args))
                raw, granted, holder, _ = self._lease_of(reply)
                return Read(raw, None, granted, holder)
            ttl = self._tag_ttl()

            def build(pipe: Any) -> None:
                pipe.evalsha(client._tta_lease.sha, len(keys), *keys, *args)
                pipe.evalsha(client._tta_versions.sha, len(tag_keys), *tag_keys, ttl)

            reply, versions = await self._pipeline(client, build)
            raw, granted, holder, _ = self._lease_of(lease_reply(reply))
            return Read(raw, self._versions_of(versions, len(tag_keys)), granted, holder)

    @staticmethod
    async def _run(client: Any, steps: Generator[tuple[Any, ...], Any, T]) -> T:
        """:meth:`RedisTier._run` with the asyncio client."""
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
        release = [lease.token, lease.channel, notice]
        with translated("EVALSHA fill"):
            if payload is None:
                await client._tta_fill(keys=[lease.key], args=release)
            elif self.cluster and not same_slot(key, lease.key):
                await client.set(key, payload, px=px)
                await client._tta_fill(keys=[lease.key], args=release)
            else:
                await client._tta_fill(keys=[lease.key, key], args=[*release, payload, px])

    @staticmethod
    async def _pipeline(client: Any, build: Callable[[Any], None]) -> list[Any]:
        """:meth:`RedisTier._pipeline`; ``async with`` resets a failed pipeline, so its
        connection goes back to the pool."""
        for attempt in (1, 2):
            async with client.pipeline(transaction=False) as pipe:
                build(pipe)
                replies = list(await pipe.execute(raise_on_error=False))
            if attempt == 2 or not any(
                isinstance(r, redis.exceptions.NoScriptError) for r in replies
            ):
                return replies
            for script in (client._tta_versions, client._tta_lease):
                await client.script_load(script.script)
        raise AssertionError("unreachable")  # pragma: no cover

    async def versions(self, tag_keys: Sequence[str]) -> tuple[int, ...]:
        client = self.client
        with translated("EVALSHA versions"):
            ttl = self._tag_ttl()
            if self.cluster:
                out: list[int] = []
                for k in tag_keys:
                    reply = await client._tta_versions(keys=[k], args=[ttl])
                    out.extend(self._versions_of(reply, 1))
                return tuple(out)
            reply = await client._tta_versions(keys=list(tag_keys), args=[ttl])
            return self._versions_of(reply, len(tag_keys))

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
            async with self.client.pipeline(transaction=False) as pipe:
                for key, payload, px in items:
                    pipe.set(key, payload, px=px)
                await pipe.execute()

    async def delete(
        self, keys: Sequence[str], channel: str | None = None, message: bytes = b""
    ) -> int:
        client = self.client
        with translated("DEL"):
            if self.cluster:
                n = 0
                for k in keys:
                    n += int(await client.delete(k))
                if channel:
                    await client.publish(channel, message)
                return n
            async with client.pipeline(transaction=False) as pipe:
                pipe.delete(*keys)
                if channel:
                    pipe.publish(channel, message)
                return int((await pipe.execute())[0])

    async def bump(
        self, tag_keys: Sequence[str], tags: Sequence[str], channel: str, head: str
    ) -> tuple[int, ...]:
        client = self.client
        with translated("EVALSHA bump"):
            ttl = self._tag_ttl()
            if self.cluster:
                out: list[int] = []
                for k, t in zip(tag_keys, tags, strict=True):
                    got = await client._tta_bump(keys=[k], args=[ttl, channel, head, t])
                    out.extend(self._versions_of(got, 1))
                return tuple(out)
            args = [ttl, channel, head, *tags]
            reply = await client._tta_bump(keys=list(tag_keys), args=args)
            return self._versions_of(reply, len(tag_keys))

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
