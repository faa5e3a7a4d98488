"""The synchronous Redis tier: the engine's Redis operations on one redis-py client.

What to send and how to read the replies is decided in :mod:`.commands`, :mod:`.replies` and
:mod:`.base`, shared with :mod:`.asyncio`; this module only sends (through the connection lane
when it has one, else redis-py's pool).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator, Sequence
from typing import Any, TypeVar

import redis

from . import batch, commands, replies
from .base import TierBase, announce_order
from .clients import make_sync_client
from .commands import Command, Lease
from .config import RedisConfig
from .errors import translated
from .lane import Lane
from .pools import pool_usage
from .replies import Read
from .scripts import PIPELINED, Scripts

__all__ = ["RedisTier"]

T = TypeVar("T")


class RedisTier(TierBase):
    """Synchronous Redis operations of the engine (one round trip each unless said)."""

    def __init__(self, cfg: RedisConfig, tag_ttl: Callable[[], int]) -> None:
        super().__init__(cfg, tag_ttl)
        self.client = make_sync_client(cfg, figures=self.figures)
        self.lane = Lane(self.client.connection_pool, self.lane_size) if self.lane_size else None
        self.scripts = Scripts.register(self.client)

    def get(self, key: str) -> bytes | None:
        """One GET (the engine's fast path for an L2 hit)."""
        with translated("GET"):
            try:
                if self.lane is not None:
                    return self.lane.call("GET", key)  # type: ignore[no-any-return]
                return self.client.get(key)  # type: ignore[no-any-return]
            except redis.ResponseError as exc:
                return replies.entry_reply(exc)

    def read(self, key: str, tag_keys: Sequence[str]) -> Read:
        """The entry and the current versions of ``tag_keys``: one round trip."""
        if not tag_keys:
            return Read(self.get(key), None)
        with translated("GET"):
            if self.cluster:
                return Read(self.get(key), self.versions(tag_keys))
            got = self._send(commands.read_commands(key, tag_keys, self._tag_ttl()))
            return self._read_of(got, len(tag_keys))

    def lease_read(self, key: str, tag_keys: Sequence[str], lease: Lease, force: bool) -> Read:
        """:meth:`read`, taking the key's lease if the key is absent (or ``force``), in one round
        trip (in Cluster, with the key and its lease in different slots, several; not atomic)."""
        with translated("EVALSHA lease"):
            if not self.cluster:
                sent = commands.lease_read_commands(key, tag_keys, self._tag_ttl(), lease, force)
                return self._lease_read_of(self._send(sent), len(tag_keys))
            if self._apart(key, lease):
                reply = self._run(replies.lease_apart(key, lease, force))
            else:
                keys, args = lease.script_args(key, force)
                reply = replies.lease_reply(self.scripts.lease_read(keys=keys, args=args))
            return self._leased(reply, self.versions(tag_keys) if tag_keys else None)

    def _send(self, sent: Sequence[Command], *, pooled: bool = False) -> list[Any]:
        """Send commands in one round trip (on the lane, else, or when ``pooled``, a pipeline on a
        pooled connection); error replies come back in place. Scripts go by EVALSHA (redis-py's
        script objects would send SCRIPT EXISTS first, a round trip more); one Redis lost is
        loaded and the commands are sent again."""
        for attempt in (1, 2):
            if self.lane is not None and not pooled:
                got = self.lane.pipeline(*sent)
            else:
                pipe = self.client.pipeline(transaction=False)
                for command in sent:
                    pipe.execute_command(*command)
                got = list(pipe.execute(raise_on_error=False))
            if attempt == 2 or not replies.lost_script(got):
                return got
            for script in PIPELINED:
                self.client.script_load(script)
        raise AssertionError("unreachable")  # pragma: no cover

    def _run(self, steps: Generator[Command, Any, T]) -> T:
        """Run a sans-IO generator of :mod:`.replies`, command by command."""
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
        first, keys, args = self._fill_plan(key, payload, px, lease, notice)
        with translated("EVALSHA fill"):
            if first is not None:
                self.client.execute_command(*first)
            self.scripts.fill(keys=keys, args=args)

    def versions(self, tag_keys: Sequence[str]) -> tuple[int, ...]:
        """The current versions of ``tag_keys`` (a version lost or corrupt is made afresh)."""
        with translated("EVALSHA versions"):
            ttl = self._tag_ttl()
            out: list[int] = []
            for keys, _ in self._runs(tag_keys):
                out += self._versions_of(self.scripts.versions(keys=keys, args=[ttl]), len(keys))
            return tuple(out)

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
            replies.raise_first(self._send(commands.set_commands(items)))

    def read_many(
        self, keys: Sequence[str], tag_keys: Sequence[str], lease: batch.BatchLease | None
    ) -> batch.ManyRead:
        """A batch's entries, the versions of ``tag_keys`` and (``lease``) the leases of the
        entries absent: one round trip (Cluster: one pipeline per node; leases one more)."""
        cluster = self.cluster
        with translated("MGET batch"):
            sent = batch.read_commands(keys, tag_keys, self._tag_ttl(), lease, cluster=cluster)
            got = self._send(sent)
            read = batch.read_of(
                got, len(keys), len(tag_keys), lease, self._versions_of, cluster=cluster
            )
            if cluster and lease is not None and (which := batch.to_lease(read, lease)):
                sent = batch.cluster_lease_commands(lease, which)
                read = batch.leased(read, which, self._send(sent))
            if read.replaced:
                self.figures.replaced(read.replaced)
            return read

    def fill_many(
        self,
        writes: Sequence[tuple[str, bytes, int]],
        release: Sequence[str],
        token: str | None,
        channel: str,
        notice: bytes,
    ) -> None:
        """A batch's fill: the SETs, the release of its leases and the fill notice, one pipeline."""
        with translated("SET batch"):
            sent = batch.fill_commands(
                writes, release, token, channel, notice, cluster=self.cluster
            )
            replies.raise_first(self._send(sent))

    def delete(self, keys: Sequence[str], channel: str | None = None, message: bytes = b"") -> int:
        with translated("DEL"):
            if self.cluster:
                return self._run(replies.delete_apart(keys, channel, message))
            return replies.deleted(self._send(commands.delete_commands(keys, channel, message)))

    def bump(
        self, tag_keys: Sequence[str], tags: Sequence[str], channel: str, head: str
    ) -> tuple[int, ...]:
        """INCR the versions of ``tags`` (kept at ``tag_keys``) and publish them on ``channel``
        (in Cluster one run per tag, each publishing its own)."""
        with translated("EVALSHA bump"):
            ttl = self._tag_ttl()
            waited = self._bump_waited(tag_keys, [ttl, channel, head, *tags])
            if waited is not None:  # WAIT blocks its connection: a pooled one, not the lane's
                return self._bumped(self._send(waited, pooled=True), len(tag_keys))
            out: list[int] = []
            for keys, names in self._runs(tag_keys, tags):
                reply = self.scripts.bump(keys=keys, args=[ttl, channel, head, *names])
                out += self._versions_of(reply, len(keys))
            return tuple(out)

    def announce(self, channel: str, message: bytes) -> bool:
        """PUBLISH ``message``; on a Cluster through the first node that takes it (any node's
        PUBLISH reaches every node's subscribers), trying at most :data:`ANNOUNCE_NODES`.
        Whether one did; never raises."""
        if not self.cluster:
            try:
                self.client.execute_command("PUBLISH", channel, message)
                return True
            except Exception:
                return False
        for node in announce_order(self.client.get_nodes()):
            try:
                self.client.execute_command("PUBLISH", channel, message, target_nodes=node)
                return True
            except Exception:
                continue
        return False

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
