"""What the engine's parts pass between them: one call, one in-process computation, one decision.

:class:`Call` is built by the decorators (once per argument tuple) and read by every part;
:class:`Flight` is one computation that concurrent callers of a key join; :class:`Loaded` is what a
read-through decided; :class:`LeaseWait` is a ``lock=True`` caller's state between its reads.
A *flow* is a generator of *steps* ``(method, args[, call])`` that a driver performs (``flows.py``).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Generator, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from ..core.policy import Freshness
from ..tiers import Lease, Read

if TYPE_CHECKING:
    from .entry import FillPolicy

__all__ = [
    "MISSING",
    "READ_FAILED",
    "Call",
    "Flight",
    "Flow",
    "LeaseWait",
    "Loaded",
    "Stamp",
    "Step",
]

T = TypeVar("T")
Stamp = tuple[tuple[str, int], ...]
# (method, args), or (method, args, call) for a step made for one call (middleware sees its kind)
Step = tuple[str, tuple[Any, ...]] | tuple[str, tuple[Any, ...], "Call | None"]
Flow = Generator[Step, Any, T]

MISSING: Any = object()  # no value (distinct from a cached None)
READ_FAILED: Any = Read(None, None)  # a caller's own read failed: the flow stays off Redis


@dataclass(slots=True)
class Call:
    """Everything a read-through needs about one call of a cached function (or one raw key).

    Treated as immutable (not ``frozen``: a frozen dataclass costs microseconds to build, and one
    is built on every L1 miss).
    """

    key: str  # the Redis key
    local_key: Hashable  # the L1 key
    local_types: tuple[type, ...] | None  # argument types an L1 hit must match (None: any)
    tags: tuple[str, ...]  # NAMESPACE_TAG first, then the entry's tags
    tag_keys: tuple[str, ...]
    freshness: Freshness
    type_hint: Any = None
    on_error: str = "ignore"
    kind: str = "default"
    function: str = ""
    lock: bool = False
    any_kind: bool = False  # a raw read that named no kind: an encrypted entry's own kind is taken
    soft_timeout: float = 0.0  # with a stale entry: wait this long for its refresh, then serve it
    hard_timeout: float | None = None  # the function's bound: ComputeTimeout past it
    policy: FillPolicy | None = None  # cache_if / none_ttl (``entry.py``); None: store every result


class Flight:
    """One in-process computation of a key that concurrent callers of the same key join (I5)."""

    __slots__ = ("done", "doomed", "error", "future", "result", "seen", "stamp")

    def __init__(self, future: asyncio.Future[Any] | None = None, seen: int = -1) -> None:
        self.stamp: Stamp | None = None  # the versions the computation is stamped with, once known
        # ``TagVersions.invalidations`` when it started (-1: never joined while unstamped)
        self.seen = seen
        self.doomed = False  # a per-call invalidation hit it: its result is not cached
        self.result: Any = MISSING
        self.error: BaseException | None = None
        # Sync joiners wait on ``done``, made by the first of them (most flights have no joiner,
        # and an Event costs microseconds); async ones wait on ``future``.
        self.done: threading.Event | None = None
        self.future = future


@dataclass(slots=True)
class LeaseWait:
    """A ``lock=True`` caller's lease, and how long it has waited for other holders' fills."""

    lease: Lease
    force: bool = False  # the entry found cannot be served: take the lease though the key exists
    holder: str | None = None  # the token of the holder waited for
    holders: int = 0  # distinct holders waited for so far
    until: float = 0.0  # (monotonic) when to stop waiting for ``holder`` and compute
    last_look: bool = False  # ``until`` has passed: one more read, then compute
    polls: int = 0


@dataclass(slots=True)
class Loaded:
    """What one run of the read-through flow decided."""

    value: Any = MISSING
    created: float | None = None  # when the served entry was written
    refresh: bool = False  # serve ``value`` and recompute the entry in the background
    stale: bool = False  # ``value`` is past its soft TTL (stale-while-revalidate)
    retry: bool = False  # nothing to serve yet: run the flow again after ``wait`` or a fill notice
    wait: float = 0.0
