"""What Redis answers, read once for the sync and asyncio tiers: :class:`Read`, and the parsers.

They do not trust the data: a tag version that is not one, an entry key of another Redis type, a
lease holder that is not a token never become an exception escaping to a caller. The Cluster
operations that take several commands one after the other (a lease whose key lies in another slot
than its entry, a delete of keys in many slots) are sans-IO generators both tiers run: they yield
commands and are sent the replies (an error reply as the exception).
"""

from __future__ import annotations

import re
from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from ...exceptions import BackendError
from .commands import Command, Lease

__all__ = [
    "MAX_VERSION",
    "NOT_AN_ENTRY",
    "TOKEN",
    "LeaseReply",
    "Read",
    "delete_apart",
    "deleted",
    "entry_reply",
    "lease_apart",
    "lease_reply",
    "lost_script",
    "parse_version",
    "raise_first",
    "same_slot",
    "versions_reply",
]

MAX_VERSION = 2**63 - 1
"""The largest tag version an envelope's stamp carries (an int64)."""

TOKEN = re.compile(rb"[A-Za-z0-9.:_\-]{1,128}")
"""What a lease token is (as ``LEASE_READ_LUA`` checks it): a lease key holding anything else
was not taken by a caller and is taken over."""

NOT_AN_ENTRY = b""
"""What an entry read returns for a key of another Redis type: no envelope is empty, so the engine
counts it undecodable (a miss, ``decode_errors``) and the fill's SET overwrites it."""

_VERSION = re.compile(rb"0|[1-9][0-9]{0,18}")


def parse_version(raw: object) -> int | None:
    """The tag version ``raw`` (a reply, or a version key's value) holds; None when it holds
    none: absent, or corrupt (not a plain decimal integer, negative, beyond :data:`MAX_VERSION`)."""
    if not isinstance(raw, bytes) or _VERSION.fullmatch(raw) is None:
        return None
    value = int(raw)
    return value if value <= MAX_VERSION else None


def versions_reply(reply: Any, count: int) -> tuple[tuple[int, ...], int]:
    """The ``count`` versions of a :data:`VERSIONS_LUA` / :data:`BUMP_LUA` reply, and how many
    corrupt keys the script replaced. A reply that holds anything else (it cannot, from these
    scripts) is a BackendError: a fail-open miss, never a ValueError."""
    if isinstance(reply, Exception):
        raise reply
    if not isinstance(reply, list) or len(reply) != count + 1:
        raise BackendError(f"redis answered the versions script with {type(reply).__name__}")
    versions = tuple(map(parse_version, reply[:count]))
    if None in versions:
        raise BackendError("redis answered the versions script with a value that is not one")
    return versions, int(reply[count])  # type: ignore[return-value]


def entry_reply(reply: Any) -> bytes | None:
    """An entry GET's reply: a key of another type (WRONGTYPE) reads as :data:`NOT_AN_ENTRY`."""
    if isinstance(reply, redis.ResponseError):
        if str(reply).startswith("WRONGTYPE"):
            return NOT_AN_ENTRY
        raise reply
    return reply  # type: ignore[no-any-return]


def same_slot(a: str, b: str) -> bool:
    from redis.crc import key_slot

    return bool(key_slot(a.encode()) == key_slot(b.encode()))


LeaseReply = tuple[bytes | None, bool, str | None, int]  # entry, granted, holder, leases replaced


def lease_reply(reply: Any) -> LeaseReply:
    if isinstance(reply, Exception):
        raise reply
    raw, granted, holder, replaced = reply
    if isinstance(holder, bytes):
        holder = holder.decode("utf-8", "replace")
    return raw, bool(granted), holder, int(replaced)


def lease_apart(key: str, lease: Lease, force: bool) -> Generator[Command, Any, LeaseReply]:
    """:data:`~.scripts.LEASE_READ_LUA` as separate commands, for a Cluster whose entry and lease
    keys lie in different slots (not atomic: a fill landing between the GET and the SET NX costs
    one extra computation, never a wrong value)."""
    raw = entry_reply((yield ("GET", key)))
    if raw is not None and not force:
        return raw, False, None, 0
    if (yield ("SET", lease.key, lease.token, "NX", "PX", lease.ms)):
        return raw, True, lease.token, 0
    holder = yield ("GET", lease.key)
    if isinstance(holder, bytes) and TOKEN.fullmatch(holder) and (yield ("PTTL", lease.key)) > 0:
        return raw, False, holder.decode(), 0
    yield ("SET", lease.key, lease.token, "PX", lease.ms)
    return raw, True, lease.token, 1


def delete_apart(
    keys: Sequence[str], channel: str | None, message: bytes
) -> Generator[Command, Any, int]:
    """:func:`~.commands.delete_commands` for a Cluster: one DEL per key (each in its slot)."""
    count = 0
    for key in keys:
        reply = yield ("DEL", key)
        raise_first((reply,))
        count += int(reply)
    if channel:
        raise_first(((yield ("PUBLISH", channel, message)),))
    return count


def deleted(replies: Sequence[Any]) -> int:
    """How many keys the replies of :func:`~.commands.delete_commands` say were deleted."""
    raise_first(replies)
    return int(replies[0])


def lost_script(replies: Iterable[Any]) -> bool:
    """Whether Redis lost a script the replies called (a restart, SCRIPT FLUSH, a failover)."""
    return any(isinstance(r, redis.exceptions.NoScriptError) for r in replies)


def raise_first(replies: Iterable[Any]) -> None:
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply


@dataclass(frozen=True, slots=True)
class Read:
    """What one L2 read returned: the raw entry and, if asked, the current tag versions."""

    raw: bytes | None
    versions: tuple[int, ...] | None
    granted: bool | None = None  # lease reads: whether this caller got the lease
    holder: str | None = None  # lease reads: the token of whoever holds it
