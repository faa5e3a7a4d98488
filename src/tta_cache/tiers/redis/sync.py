"""The synchronous Redis tier: the engine's Redis operations on one redis-py client."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator, Sequence
from typing import Any, TypeVar

import redis

from .base import TierBase
from .clients import make_sync_client
from .config import RedisConfig
from .errors import translated
from .lane import Lane
from .pools import pool_usage
from .replies import (
    Lease,
    Read,
    entry_reply,
    lease_apart,
    lease_reply,
    raise_first,
    same_slot,
)
from .scripts import BUMP_LUA, FILL_LUA, LEASE_READ_LUA, VERSIONS_LUA

__all__ = ["RedisTier"]

T = TypeVar("T")


class RedisTier(TierBase[Any]):
    """Synchronous Redis operations of the engine (one round trip each unless said)."""

    def __init__(self, cfg: RedisConfig, tag_ttl: Callable[[], int]) -> None:
        super().__init__(cfg, tag_ttl)
        self.client = make_sync_client(cfg, figures=self.figures)
        lane = min(8, cfg.max_connections // 4)  # never enough to starve the pool's other users
        self.lane = None if self.cluster or not lane else Lane(self.client.connection_pool, lane)
        self._versions = self.client.register_script(VERSIONS_LUA)
        self._bump = self.client.register_script(BUMP_LUA)
        self._lease = self.client.register_script(LEASE_READ_LUA)
        self._fill = self.client.register_script(FILL_LUA)

    def get(self, key: str) -> bytes | None:
        """One GET (the engine's fast path for an L2 hit)."""
        with translated("GET"):
            try:
                if self.lane is not None:
                    return self.lane.call("GET", key)  # type: ignore[no-any-return]
                return self.client.get(key)  # type: ignore[no-any-return]
            except redis.ResponseError as exc:
                return entry_reply(exc)

    def read(self, key: str, tag_keys: Sequence[str]) -> Read:
        if not tag_keys:
            return Read(self.get(key), None)
        with translated("GET"):
            if self.cluster:
                raw = self.get(key)
                return Read(raw, self.versions(tag_keys))
            ttl = self._tag_ttl()
            if self.lane is not None:
                return self._lane_read(key, tag_keys, ttl)

            def build(pipe: Any) -> None:
                pipe.get(key)
                pipe.evalsha(self._versions.sha, len(tag_keys), *tag_keys, ttl)

            raw, versions = self._pipeline(build)
            return Read(entry_reply(raw), self._versions_of(versions, len(tag_keys)))

    def _lane_read(self, key: str, tag_keys: Sequence[str], ttl: int) -> Read:
        assert self.lane is not None
        versions = ("EVALSHA", self._versions.sha, len(tag_keys), *tag_keys, ttl)
        raw, found = self.lane.pipeline(("GET", key), versions)
        if isinstance(found, redis.exceptions.NoScriptError):  # Redis lost it: load, ask again
            self.client.script_load(self._versions.script)
            found = self.lane.call(*versions)
        return Read(entry_reply(raw), self._versions_of(found, len(tag_keys)))

    def lease_read(self, key: str, tag_keys: Sequence[str], lease: Lease, force: bool) -> Read:
        """:meth:`read`, taking the key's lease if the key is absent (or ``force``), in one round
        trip. In Cluster with the key and its lease in different slots it is not atomic: a fill
        landing between the GET and the SET NX costs one extra computation, never a wrong value."""
        keys, args = [key, lease.key], [lease.token, lease.ms, "1" if force else "0"]
        with translated("EVALSHA lease"):
            if self.cluster:
                if same_slot(key, lease.key):
                    reply = lease_reply(self._lease(keys=keys, args=args))
                else:
                    reply = self._run(lease_apart(key, lease, force))
                raw, granted, holder, _ = self._lease_of(reply)
                return Read(raw, self.versions(tag_keys) if tag_keys else None, granted, holder)
            if not tag_keys:
                raw, granted, holder, _ = self._lease_of(
                    lease_reply(self._lease(keys=keys, args=args))
                )
                return Read(raw, None, granted, holder)
            ttl = self._tag_ttl()

            def build(pipe: Any) -> None:
                pipe.evalsha(self._lease.sha, len(keys), *keys, *args)
                pipe.evalsha(self._versions.sha, len(tag_keys), *tag_keys, ttl)

            reply, versions = self._pipeline(build)
            raw, granted, holder, _ = self._lease_of(lease_reply(reply))
            return Read(raw, self._versions_of(versions, len(tag_keys)), granted, holder)

    def _pipeline(self, build: Callable[[Any], None]) -> list[Any]:
        """Run a pipeline that calls scripts by EVALSHA; error replies come back in place.
        redis-py's own script objects would send SCRIPT EXISTS first, a round trip more on every
        call; a script Redis lost (restart, SCRIPT FLUSH) is loaded and the pipeline run again."""
        for attempt in (1, 2):
            pipe = self.client.pipeline(transaction=False)
            build(pipe)
            replies = list(pipe.execute(raise_on_error=False))
            if attempt == 2 or not any(
                isinstance(r, redis.exceptions.NoScriptError) for r in replies
            ):
                return replies
            for script in (self._versions, self._lease):
                self.client.script_load(script.script)
        raise AssertionError("unreachable")  # pragma: no cover

    def _run(self, steps: Generator[tuple[Any, ...], Any, T]) -> T:
        """Run a sans-IO step generator (such as :func:`lease_apart`) command by command."""
        reply: Any = None
        while True:
            try:
                command = steps.send(reply)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            try:
                reply = self.client.execute_command(*command)
            except redis.ResponseError as exc:
                reply = exc

    def fill(self, key: str, payload: bytes | None, px: int, lease: Lease, notice: bytes) -> None:
        """Write the entry (unless ``payload`` is None), release the lease if it is still ours, and
        publish the fill ``notice`` that wakes the waiters of every process: one round trip."""
        release = [lease.token, lease.channel, notice]
        with translated("EVALSHA fill"):
            if payload is None:
                self._fill(keys=[lease.key], args=release)
            elif self.cluster and not same_slot(key, lease.key):
                self.client.set(key, payload, px=px)
                self._fill(keys=[lease.key], args=release)
            else:
                self._fill(keys=[lease.key, key], args=[*release, payload, px])

    def versions(self, tag_keys: Sequence[str]) -> tuple[int, ...]:
        with translated("EVALSHA versions"):
            ttl = self._tag_ttl()
            if self.cluster:
                return tuple(
                    self._versions_of(self._versions(keys=[k], args=[ttl]), 1)[0] for k in tag_keys
                )
            return self._versions_of(self._versions(keys=list(tag_keys), args=[ttl]), len(tag_keys))

    def write(self, key: str, payload: bytes, px: int) -> None:
        with translated("SET"):
            if self.lane is not None:
                self.lane.call("SET", key, payload, "PX", px)
            else:
                self.client.set(key, payload, px=px)

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        with translated("MGET"):
            if self.cluster:
                return list(self.client.mget_nonatomic(keys))
            if self.lane is not None:
                return self.lane.call("MGET", *keys)  # type: ignore[no-any-return]
            return list(self.client.mget(keys))

    def set_many(self, items: Sequence[tuple[str, bytes, int]]) -> None:
        with translated("SET"):
            if self.lane is not None:
                raise_first(self.lane.pipeline(*(("SET", k, p, "PX", px) for k, p, px in items)))
                return
            pipe = self.client.pipeline(transaction=False)
            for key, payload, px in items:
                pipe.set(key, payload, px=px)
            pipe.execute()

    def delete(self, keys: Sequence[str], channel: str | None = None, message: bytes = b"") -> int:
        with translated("DEL"):
            if self.cluster:
                n = sum(int(self.client.delete(k)) for k in keys)
                if channel:
                    self.client.publish(channel, message)
                return n
            pipe = self.client.pipeline(transaction=False)
            pipe.delete(*keys)
            if channel:
                pipe.publish(channel, message)
            return int(pipe.execute()[0])

    def bump(
        self, tag_keys: Sequence[str], tags: Sequence[str], channel: str, head: str
    ) -> tuple[int, ...]:
        """INCR the versions of ``tags`` (kept at ``tag_keys``) and publish them on ``channel``."""
        with translated("EVALSHA bump"):
            ttl = self._tag_ttl()
            if self.cluster:  # one slot per script: each run publishes its own tag
                return tuple(
                    self._versions_of(self._bump(keys=[k], args=[ttl, channel, head, t]), 1)[0]
                    for k, t in zip(tag_keys, tags, strict=True)
                )
            reply = self._bump(keys=list(tag_keys), args=[ttl, channel, head, *tags])
            return self._versions_of(reply, len(tag_keys))

    def ping(self) -> bool:
        with translated("PING"):
            return bool(self.client.ping())

    def pool_usage(self) -> dict[str, int]:
        """This client's connections: ``in_use``, ``idle``, ``available`` (to open), ``max``."""
        if self.cluster:
            nodes = self.client.get_nodes()
            pools = [n.redis_connection.connection_pool for n in nodes if n.redis_connection]
        else:
            pools = [self.client.connection_pool]
        return pool_usage(pools, [self.lane])

    def failed_over(self) -> None:
        """The master moved: drop the kept and idle connections, so that the next commands
        connect to the new one (in-flight ones finish where they are)."""
        if self.lane is not None:
            self.lane.drain()
        with contextlib.suppress(Exception):
            self.client.connection_pool.disconnect(inuse_connections=False)

    def execute(self, op: str, fn: Callable[[Any], T]) -> T:
        """Run ``fn(client)`` with errors translated (maintenance and tooling)."""
        with translated(op):
            return fn(self.client)

    def close(self) -> None:
        if self.lane is not None:
            self.lane.close()
        with contextlib.suppress(Exception):
            self.client.close()
            pool = getattr(self.client, "connection_pool", None)
            if pool is not None:  # made here and handed over: the client leaves it open
                pool.disconnect()
