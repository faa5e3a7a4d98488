"""What the Redis tier sends: each operation's commands and script arguments, built once for the
sync and asyncio tiers, which only send them (:mod:`.sync`, :mod:`.asyncio`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .scripts import BUMP_SHA, FILL_SHA, LEASE_READ_SHA, VERSIONS_SHA

__all__ = [
    "Command",
    "Lease",
    "bump_commands",
    "delete_commands",
    "fill_command",
    "fill_plan",
    "lease_read_commands",
    "read_commands",
    "script_runs",
    "set_commands",
]

Command = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Lease:
    """A caller's claim on computing one entry across processes (``lock=True``)."""

    key: str  # the lease key: the entry key + ":lease"
    token: str  # who holds it; only its holder's token releases it
    ms: int  # how long it lives unless released (``lock_timeout``): a dead holder frees it so
    channel: str  # where the fill notice that wakes the waiters is published

    def script_args(self, key: str, force: bool) -> tuple[list[str], list[Any]]:
        """KEYS and ARGV of :data:`~.scripts.LEASE_READ_LUA` for the entry ``key``."""
        return [key, self.key], [self.token, self.ms, "1" if force else "0"]


def _versions(tag_keys: Sequence[str], ttl: int) -> Command:
    return ("EVALSHA", VERSIONS_SHA, len(tag_keys), *tag_keys, ttl)


def read_commands(key: str, tag_keys: Sequence[str], ttl: int) -> list[Command]:
    """The entry and the versions of its tags (that outlive ``ttl``), in one round trip."""
    return [("GET", key), _versions(tag_keys, ttl)]


def lease_read_commands(
    key: str, tag_keys: Sequence[str], ttl: int, lease: Lease, force: bool
) -> list[Command]:
    """The entry, taking its lease if it is absent (or ``force``), then the versions if asked."""
    keys, args = lease.script_args(key, force)
    commands: list[Command] = [("EVALSHA", LEASE_READ_SHA, len(keys), *keys, *args)]
    if tag_keys:
        commands.append(_versions(tag_keys, ttl))
    return commands


def bump_commands(
    keys: Sequence[str], args: Sequence[Any], replicas: int, timeout_ms: int
) -> list[Command]:
    """The bump script, then ``WAIT`` for ``replicas`` to acknowledge it, on one connection (WAIT
    counts the writes of the connection it is sent on)."""
    return [("EVALSHA", BUMP_SHA, len(keys), *keys, *args), ("WAIT", replicas, timeout_ms)]


def set_commands(items: Sequence[tuple[str, bytes, int]]) -> list[Command]:
    return [("SET", key, payload, "PX", px) for key, payload, px in items]


def delete_commands(keys: Sequence[str], channel: str | None, message: bytes) -> list[Command]:
    """DEL of ``keys`` (its reply first), and the message that tells the other processes."""
    commands: list[Command] = [("DEL", *keys)]
    if channel:
        commands.append(("PUBLISH", channel, message))
    return commands


def script_runs(
    keys: Sequence[str], names: Sequence[str] = (), *, cluster: bool
) -> list[tuple[list[str], list[str]]]:
    """How a script over ``keys`` (and the ``names`` they stand for) runs: once over them all,
    or in a Cluster once per key, since one script run touches one slot."""
    if not cluster:
        return [(list(keys), list(names))]
    return [([k], list(names[i : i + 1])) for i, k in enumerate(keys)]


def fill_plan(
    key: str, payload: bytes | None, px: int, lease: Lease, notice: bytes, *, apart: bool
) -> tuple[Command | None, list[str], list[Any]]:
    """The SET to send first (an entry in another Cluster slot than its lease, which one script
    cannot write), then :data:`~.scripts.FILL_LUA`'s KEYS and ARGV: write the entry unless
    ``payload`` is None, release the lease if still ours, publish ``notice``."""
    release: list[Any] = [lease.token, lease.channel, notice]
    if payload is None:
        return None, [lease.key], release
    if apart:
        return ("SET", key, payload, "PX", px), [lease.key], release
    return None, [lease.key, key], [*release, payload, px]


def fill_command(keys: Sequence[str], args: Sequence[Any]) -> Command:
    """:data:`~.scripts.FILL_LUA` by EVALSHA, to send in a pipeline (see :func:`fill_plan`)."""
    return ("EVALSHA", FILL_SHA, len(keys), *keys, *args)
