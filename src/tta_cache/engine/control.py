"""A cached function's ``.refresh(*args)`` and ``.set(value, *args)`` as flows, decided once for
sync and async: both read the entry's tag versions first (the tag map's when current, else one
round trip), then compute or take the value, then write; an invalidation landing after the read
leaves the entry's stamp behind (I3). Both keep a computation of the same key already under way
in this process from filling over them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..exceptions import BackendError
from .call import Call, Flight, Flow, Stamp
from .entry import compute_step, read_versions
from .flows import stage_fill, stage_store

if TYPE_CHECKING:
    from .engine import Engine

__all__ = ["refresh_flow", "store_flow"]


def _stamp(e: Engine, call: Call) -> Flow[Stamp | None]:
    got = yield from read_versions(e, call.tags, call.on_error)
    if None in got:
        return None  # versions unknowable (Redis down): nothing is cached blind
    return tuple(zip(call.tags, got, strict=True))  # type: ignore[arg-type]


def _write(e: Engine, call: Call, staged: tuple[bytes, int] | bool) -> Flow[None]:
    if isinstance(staged, tuple):
        try:
            yield ("write", (call.key, *staged), call)
            e.redis_ok()
        except BackendError as exc:
            e.fail(exc, call.on_error, "fill")


def refresh_flow(e: Engine, call: Call) -> Flow[Any]:
    """Compute ``call`` now and store the result as a miss would (``cache_if``, ``none_ttl`` and
    :func:`~.entry.current_entry` apply), whatever is cached; returns the result."""
    e.flights.doom((call.key,))  # an older computation under way must not fill over it
    flight = Flight()
    flight.stamp = stamp = yield from _stamp(e, call)
    value, control, took = yield from compute_step(e, call, flight)
    staged = stage_fill(e, call, stamp, value, took=took, flight=flight, entry=control)
    yield from _write(e, call, staged)
    return value


def store_flow(e: Engine, call: Call, value: Any) -> Flow[bool]:
    """Store ``value`` as ``call``'s result, stamped with the versions current now. ``cache_if``
    is not asked (the caller chose to store it); ``none_ttl`` applies to a None. Whether it
    was cached (in L1 at least)."""
    e.flights.doom((call.key,))
    flight = Flight()
    flight.stamp = stamp = yield from _stamp(e, call)
    staged = stage_store(e, call, stamp, value, flight=flight, predicate=False)
    yield from _write(e, call, staged)
    return staged is not False
