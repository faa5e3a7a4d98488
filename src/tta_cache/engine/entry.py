"""Choosing what is cached, from outside (``cache_if=``, ``none_ttl=``) and from inside a
computation (:func:`current_entry`), decided here once for sync and async.

- :class:`FillPolicy` is what a decorator's ``cache_if``/``none_ttl`` became (built once, at
  decoration time); a :class:`~.call.Call` carries it, or None.
- :class:`CurrentEntry` is the computation's handle on the entry it is about to fill: a context
  variable set by :func:`compute_step` around the ``compute`` step only, so a nested cached call
  gets its own entry and the outer one is back when it returns (the outer does not inherit the
  inner's tags or TTL).
- :func:`plan_fill` turns both into what a fill stores: the freshness and the stamp, or nothing.

An added tag's version is read when it is added (the tag map's, when it is current; else one
Redis round trip), so I3 holds for what the function reads after adding it: an invalidation of
that tag landing later makes the entry's stamp fall behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..core.keys import check_entry
from ..core.policy import Freshness
from ..exceptions import BackendError, ConfigurationError
from .call import Call, Flight, Flow, Stamp

if TYPE_CHECKING:
    from .engine import Engine

__all__ = [
    "CurrentEntry",
    "FillPolicy",
    "added_current",
    "compute_step",
    "current_entry",
    "entry_stats",
    "plan_fill",
    "read_versions",
]

log = logging.getLogger("tta_cache")

_CURRENT: ContextVar[CurrentEntry | None] = ContextVar("tta_cache_current_entry", default=None)


def current_entry() -> CurrentEntry | None:
    """The entry the running computation of a cached function will fill; None outside one."""
    return _CURRENT.get()


@dataclass(frozen=True, slots=True)
class FillPolicy:
    """A decorator's ``cache_if`` and ``none_ttl``, checked once at decoration time."""

    cache_if: Callable[[Any], object] | None = None
    none_ttl: float | None = None  # None: a None result is kept like any other value
    none_freshness: Freshness | None = None  # the freshness of a kept None (none_ttl > 0)

    @classmethod
    def of(
        cls,
        cache_if: Callable[[Any], object] | None,
        none_ttl: float | None,
        freshness: Freshness,
        where: str,
    ) -> FillPolicy | None:
        """The policy for these options, or None when there is nothing to decide."""
        if cache_if is not None and not callable(cache_if):
            raise ConfigurationError(f"{where}: cache_if must be callable, not {cache_if!r}")
        if none_ttl is not None:
            check_seconds(none_ttl, f"{where}: none_ttl", zero=True)
        if cache_if is None and none_ttl is None:
            return None
        kept = (
            dataclasses.replace(freshness, ttl=float(none_ttl))
            if none_ttl is not None and none_ttl > 0
            else None
        )
        return cls(cache_if, none_ttl, kept)


def check_seconds(value: object, what: str, *, zero: bool = False) -> float:
    """``value`` as seconds (> 0, or >= 0 with ``zero``), else :class:`ConfigurationError`."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
        or (value == 0 and not zero)
    ):
        bound = ">= 0" if zero else "> 0"
        raise ConfigurationError(f"{what} must be a number of seconds {bound}, not {value!r}")
    return float(value)


class CurrentEntry:
    """The entry a computation is about to fill (:func:`current_entry`).

    ``ttl`` (seconds, this entry only; the kind's jitter and ``stale_ttl`` still apply),
    ``skip()`` (return the result, store it nowhere) and ``add_tags(*tags)`` (tags known only
    once the data is loaded; ``await aadd_tags(...)`` in ``async def`` functions). What is set
    is applied when the computation returns; a computation that raises stores nothing anyway.
    """

    __slots__ = ("_call", "_engine", "_flight", "_ttl", "added", "skipped", "touched")

    def __init__(self, engine: Engine, call: Call, flight: Flight | None) -> None:
        self._engine = engine
        self._call = call
        self._flight = flight
        self._ttl: float | None = None
        self.skipped = False
        self.touched = False  # anything set: the fill must plan (else it takes the fast way)
        self.added: list[tuple[str, int | None]] = []  # version None: unknowable, not stored

    def __repr__(self) -> str:
        return f"<tta_cache.CurrentEntry kind={self.kind!r} tags={self.tags!r}>"

    @property
    def kind(self) -> str:
        return self._call.kind

    @property
    def key(self) -> str:
        """The Redis key this entry is stored under."""
        return self._call.key

    @property
    def tags(self) -> tuple[str, ...]:
        """The entry's tags: the decorator's, then those added."""
        return (*self._call.tags[1:], *(t for t, _ in self.added))

    @property
    def ttl(self) -> float | None:
        """Seconds this entry is fresh (None: the decorator's or kind's TTL)."""
        return self._ttl

    @ttl.setter
    def ttl(self, seconds: float | None) -> None:
        self._ttl = None if seconds is None else check_seconds(seconds, "CurrentEntry.ttl")
        self.touched = True

    def skip(self) -> None:
        """Do not store this result (it is still returned)."""
        self.skipped = self.touched = True

    def add_tags(self, *tags: str) -> None:
        """Tag this entry with ``tags`` as well; their versions are read now (I3), from the tag
        map when it is current, else in one Redis round trip (in ``async def``, prefer
        :meth:`aadd_tags`, which does not block the event loop)."""
        new = self._new(tags)
        if new:
            self._took(new, self._engine.run(read_versions(self._engine, new, self._on_error)))

    async def aadd_tags(self, *tags: str) -> None:
        """:meth:`add_tags` for ``async def`` functions: the versions are read without blocking."""
        new = self._new(tags)
        if new:
            flow = read_versions(self._engine, new, self._on_error)
            self._took(new, await self._engine.arun(flow))

    @property
    def _on_error(self) -> str:
        return self._call.on_error

    def _new(self, tags: Sequence[str]) -> list[str]:
        for t in tags:
            if not isinstance(t, str) or not t or "\0" in t:
                raise ConfigurationError(f"add_tags takes non-empty tag strings, not {t!r}")
        added = [t for t, _ in self.added]
        known = {*self._call.tags, *added}
        new = list(dict.fromkeys(t for t in tags if t not in known))
        check_entry(self._call.key, (*self._call.tags, *added, *new), self._call.function)
        self.touched = True
        return new

    def _took(self, tags: list[str], versions: Sequence[int | None]) -> None:
        self.added += zip(tags, versions, strict=True)
        flight = self._flight
        if flight is not None and flight.stamp is not None:
            # joiners check the flight's stamp: one whose added tag is invalidated is not joined
            known = tuple((t, v) for t, v in zip(tags, versions, strict=True) if v is not None)
            flight.stamp = (*flight.stamp, *known)


def read_versions(e: Engine, tags: Sequence[str], on_error: str) -> Flow[tuple[int | None, ...]]:
    """The current versions of ``tags``: from the tag map when it is current and knows them
    all, else one round trip. None for each when they cannot be known (Redis down)."""
    versions = e.versions
    if e.redis is None:
        return tuple(v for _, v in versions.init_local(tags))
    snap = versions.snapshot(tags)
    if snap is not None:
        return tuple(v for _, v in snap)
    unknown: tuple[int | None, ...] = (None,) * len(tags)
    if not e.redis_usable():
        return unknown
    e.link.ensure()
    epoch = versions.epoch
    try:
        got = yield ("versions", (tuple(map(e.tag_key, tags)),))
        e.redis_ok()
    except BackendError as exc:
        e.fail(exc, on_error, "versions")
        return unknown
    versions.merge(zip(tags, got, strict=True), epoch)
    return tuple(got)


def added_current(e: Engine, found: Stamp, stamp: Stamp | None, on_error: str) -> Flow[bool]:
    """Whether an entry stamped ``found`` (the call's ``stamp``, then tags its computation
    added) is current: the added tags' versions come from the tag map when it is current,
    else from one round trip."""
    n = len(stamp) if stamp is not None else 0
    if stamp is None or len(found) <= n or found[:n] != stamp or e.versions.behind(found):
        return False
    added = found[n:]
    current = yield from read_versions(e, [t for t, _ in added], on_error)
    return all(v == now for (_, v), now in zip(added, current, strict=True))


def compute_step(
    e: Engine, call: Call, flight: Flight | None
) -> Flow[tuple[Any, CurrentEntry, float]]:
    """The ``compute`` step with a fresh :class:`CurrentEntry` current around it only:
    ``(value, entry, seconds)``."""
    entry = CurrentEntry(e, call, flight)
    token = _CURRENT.set(entry)
    started = time.perf_counter()
    try:
        value = yield ("compute", (), call)
    finally:
        # ValueError: a flow abandoned mid-computation is closed by the GC outside its context
        with contextlib.suppress(ValueError):
            _CURRENT.reset(token)
    return value, entry, time.perf_counter() - started


def plan_fill(
    e: Engine,
    call: Call,
    stamp: Stamp,
    value: Any,
    entry: CurrentEntry | None,
    *,
    predicate: bool = True,
) -> tuple[Freshness, Stamp] | None:
    """What a fill of ``value`` stores, ``(freshness, stamp)``, or None: store nothing.

    In order: ``entry.skip()``; ``cache_if`` (with ``predicate``; one that raises counts as a
    refusal, and is counted); a None result with ``none_ttl`` (0: not kept); ``entry.ttl``,
    which wins over ``none_ttl``; the added tags join the stamp.
    """
    freshness = call.freshness
    if entry is not None and entry.skipped:
        e.counters.add(entries_skipped=1)
        return None
    policy = call.policy
    if policy is not None:
        if predicate and policy.cache_if is not None and not _accepted(e, call, policy, value):
            return None
        if value is None and policy.none_ttl is not None and (entry is None or entry.ttl is None):
            if policy.none_freshness is None:
                e.counters.add(nones_not_kept=1)
                return None
            freshness = policy.none_freshness
    if entry is not None:
        if entry.ttl is not None:
            freshness = dataclasses.replace(freshness, ttl=entry.ttl)
            e.note_ttl(freshness)  # tag versions must outlive it
        if entry.added:
            added = tuple((t, v) for t, v in entry.added if v is not None)
            if len(added) < len(entry.added):
                return None  # an added tag's version is unknowable: never cache blind
            stamp = (*stamp, *added)
    return freshness, stamp


def _accepted(e: Engine, call: Call, policy: FillPolicy, value: Any) -> bool:
    assert policy.cache_if is not None
    try:
        if policy.cache_if(value):
            return True
    except Exception as exc:
        e.counters.add(cache_if_errors=1)
        log.warning(
            "tta-cache: cache_if of %s raised %s: %s; the result is returned, not cached",
            call.function or "an entry",
            type(exc).__name__,
            exc,
        )
        return False
    e.counters.add(cache_if_refused=1)
    return False


def entry_stats(c: dict[str, int]) -> dict[str, int]:
    """Results not cached by choice, for ``stats()["not_cached"]``."""
    return {
        "skipped": c["entries_skipped"],
        "refused": c["cache_if_refused"],
        "cache_if_errors": c["cache_if_errors"],
        "nones": c["nones_not_kept"],
    }
