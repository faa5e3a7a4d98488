"""Batch reads and fills (``cache.cached_many``): what the Redis tier sends for a batch of entries
and how it reads the replies, built once for the sync and asyncio tiers, which only send them.

A read is one round trip: MGET of the entries (with ``lock=True``, :data:`~.scripts.LEASE_MANY_LUA`
instead, which also takes the leases of the entries absent) and the versions script for the tags
the engine does not know. In a Cluster the same commands go as one pipeline per node (a GET per
entry, a versions run per tag key, routed by redis-py's cluster pipeline, replies in order); the
leases there are taken in a second round trip, only for the entries the first found absent, since
an entry and its lease lie in different slots (not atomic: an entry filled in between costs one
extra computation, never a wrong value). A fill is one pipeline: the SETs, then the release of the
leases still ours and one fill notice (:data:`~.scripts.RELEASE_LUA`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .commands import Command, script_runs
from .replies import entry_reply
from .scripts import LEASE_MANY_SHA, RELEASE_SHA, TAKE_SHA, VERSIONS_SHA

__all__ = [
    "BatchLease",
    "ManyRead",
    "cluster_lease_commands",
    "fill_commands",
    "leased",
    "read_commands",
    "read_of",
    "to_lease",
]


@dataclass(frozen=True, slots=True)
class BatchLease:
    """The leases a ``lock=True`` batch read asks for: one token for the whole batch."""

    keys: tuple[str, ...]  # the lease key of each entry, in the order of the entries
    token: str
    ms: int
    force: tuple[bool, ...]  # per entry: take its lease even though the entry exists


@dataclass(frozen=True, slots=True)
class ManyRead:
    """What one batch read returned, entry by entry in the order asked."""

    raws: list[bytes | None]
    versions: tuple[int, ...] | None  # of the tag keys asked for (None: none asked)
    holders: list[str | None] | None = None  # lease reads: who holds each lease (None: not asked)
    replaced: int = 0  # corrupt lease keys taken over


def _versions(tag_keys: Sequence[str], ttl: int) -> Command:
    return ("EVALSHA", VERSIONS_SHA, len(tag_keys), *tag_keys, ttl)


def read_commands(
    keys: Sequence[str],
    tag_keys: Sequence[str],
    ttl: int,
    lease: BatchLease | None,
    *,
    cluster: bool,
) -> list[Command]:
    """The entries (and, unless Cluster, their leases) and the versions of ``tag_keys``."""
    if cluster:
        sent: list[Command] = [("GET", k) for k in keys]
        sent += [_versions(ks, ttl) for ks, _ in script_runs(tag_keys, cluster=True)]
        return sent
    if lease is None:
        sent = [("MGET", *keys)]
    else:
        force = "".join("1" if f else "0" for f in lease.force)
        n = 2 * len(keys)
        sent = [("EVALSHA", LEASE_MANY_SHA, n, *keys, *lease.keys, lease.token, lease.ms, force)]
    if tag_keys:
        sent.append(_versions(tag_keys, ttl))
    return sent


def _holder(raw: Any) -> str | None:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else None


def read_of(
    got: Sequence[Any],
    count: int,
    tags: int,
    lease: BatchLease | None,
    versions_of: Callable[[Any, int], tuple[int, ...]],
    *,
    cluster: bool,
) -> ManyRead:
    """The :class:`ManyRead` of :func:`read_commands`' replies (an error reply raises)."""
    if cluster:
        raws = [entry_reply(r) for r in got[:count]]
        out: list[int] = []
        for reply in got[count:]:
            out += versions_of(reply, 1)
        return ManyRead(raws, tuple(out) if tags else None)
    first = got[0]
    if isinstance(first, Exception):
        raise first
    found = versions_of(got[1], tags) if tags else None
    if lease is None:
        return ManyRead(list(first), found)
    raws = first[0 : 2 * count : 2]
    holders = [_holder(h) for h in first[1 : 2 * count : 2]]
    return ManyRead(raws, found, holders, int(first[2 * count]))


def to_lease(read: ManyRead, lease: BatchLease) -> list[int]:
    """Cluster: the entries whose leases to take after the read (absent, or forced)."""
    return [i for i, raw in enumerate(read.raws) if raw is None or lease.force[i]]


def cluster_lease_commands(lease: BatchLease, which: Sequence[int]) -> list[Command]:
    """Cluster: :data:`~.scripts.TAKE_LUA` once per lease key (each in its own slot)."""
    return [("EVALSHA", TAKE_SHA, 1, lease.keys[i], lease.token, lease.ms) for i in which]


def leased(read: ManyRead, which: Sequence[int], got: Sequence[Any]) -> ManyRead:
    """Cluster: ``read`` with the holders :func:`cluster_lease_commands` answered."""
    holders: list[str | None] = [None] * len(read.raws)
    replaced = 0
    for i, reply in zip(which, got, strict=True):
        if isinstance(reply, Exception):
            raise reply
        holders[i] = _holder(reply[0])
        replaced += int(reply[1])
    return ManyRead(read.raws, read.versions, holders, replaced)


def fill_commands(
    writes: Sequence[tuple[str, bytes, int]],
    release: Sequence[str],
    token: str | None,
    channel: str,
    notice: bytes,
    *,
    cluster: bool,
) -> list[Command]:
    """The SETs of ``writes``, then the release of the lease keys in ``release`` (if still
    ``token``'s) with the fill notice: one pipeline (in Cluster a release run per lease key,
    each publishing the notice)."""
    sent: list[Command] = [("SET", key, payload, "PX", b"%d" % px) for key, payload, px in writes]
    if release:
        for keys, _ in script_runs(release, cluster=cluster):
            sent.append(("EVALSHA", RELEASE_SHA, len(keys), *keys, token, channel, notice))
    return sent
