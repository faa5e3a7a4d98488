"""What the sync and asyncio Redis tiers share: their settings and figures, and every decision
about what to send and how to read the replies that is not I/O (the tiers only send and await)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ...exceptions import NotReplicated
from .commands import Command, Lease, bump_commands, fill_plan, script_runs
from .config import RedisConfig
from .figures import TierFigures
from .replies import LeaseReply, Read, entry_reply, lease_reply, same_slot, versions_reply

__all__ = ["ANNOUNCE_NODES", "TierBase", "announce_order"]

ANNOUNCE_NODES = 3  # Cluster nodes an undelivered invalidation's announcement may try


def announce_order(nodes: Sequence[Any]) -> list[Any]:
    """The nodes to try an announcement on: masters first (redis-py lists a node that failed
    last), then replicas; at most :data:`ANNOUNCE_NODES`."""
    masters = [n for n in nodes if getattr(n, "server_type", None) == "primary"]
    others = [n for n in nodes if n not in masters]
    return [*masters, *others][:ANNOUNCE_NODES]


class TierBase:
    """Settings, figures and reply reading of :class:`~.sync.RedisTier` and
    :class:`~.asyncio.AsyncRedisTier`."""

    def __init__(self, cfg: RedisConfig, tag_ttl: Callable[[], int]) -> None:
        self.cfg = cfg
        self.cluster = cfg.mode == "cluster"
        self._tag_ttl = tag_ttl
        self.figures = TierFigures()
        # Kept connections: never enough to starve the pool's other users; none in Cluster.
        self.lane_size = 0 if self.cluster else min(8, cfg.max_connections // 4)

    def _runs(
        self, keys: Sequence[str], names: Sequence[str] = ()
    ) -> list[tuple[list[str], list[str]]]:
        return script_runs(keys, names, cluster=self.cluster)

    def _apart(self, key: str, lease: Lease) -> bool:
        """Whether ``key`` and its lease lie in different Cluster slots (one script cannot hold
        both: its lease read and fill take several commands)."""
        return self.cluster and not same_slot(key, lease.key)

    def _fill_plan(
        self, key: str, payload: bytes | None, px: int, lease: Lease, notice: bytes
    ) -> tuple[Command | None, list[str], list[Any]]:
        return fill_plan(key, payload, px, lease, notice, apart=self._apart(key, lease))

    def _bump_waited(self, tag_keys: Sequence[str], args: list[Any]) -> list[Command] | None:
        """With ``bump_replicas``, the bump and its ``WAIT`` (half of ``op_timeout``, so that
        the reply comes back before the socket times out); else None (the plain script)."""
        replicas = self.cfg.bump_replicas
        if not replicas:
            return None
        return bump_commands(tag_keys, args, replicas, max(1, int(self.cfg.op_timeout * 500)))

    def _bumped(self, replies: Sequence[Any], count: int) -> tuple[int, ...]:
        """The versions of :meth:`_bump_waited`'s replies; :class:`NotReplicated` (with them)
        when fewer replicas than ``bump_replicas`` acknowledged the bump."""
        reply, acked = replies
        if isinstance(reply, Exception):
            raise reply
        versions = self._versions_of(reply, count)
        wanted = self.cfg.bump_replicas
        if isinstance(acked, Exception) or int(acked) < wanted:
            got = "an error" if isinstance(acked, Exception) else f"{int(acked)} of {wanted}"
            raise NotReplicated(f"redis WAIT: {got} replicas took the tag bump in time", versions)
        return versions

    def _versions_of(self, reply: Any, count: int) -> tuple[int, ...]:
        versions, replaced = versions_reply(reply, count)
        if replaced:
            self.figures.replaced(replaced)
        return versions

    def _read_of(self, replies: Sequence[Any], count: int) -> Read:
        """The :class:`Read` of :func:`~.commands.read_commands`' replies."""
        raw, found = replies
        return Read(entry_reply(raw), self._versions_of(found, count))

    def _leased(self, reply: LeaseReply, versions: tuple[int, ...] | None) -> Read:
        raw, granted, holder, replaced = reply
        if replaced:
            self.figures.replaced(replaced)
        return Read(raw, versions, granted, holder)

    def _lease_read_of(self, replies: Sequence[Any], count: int) -> Read:
        """The :class:`Read` of :func:`~.commands.lease_read_commands`' replies."""
        versions = self._versions_of(replies[1], count) if count else None
        return self._leased(lease_reply(replies[0]), versions)
