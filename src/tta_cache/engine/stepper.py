"""What both drivers share: stepping a flow, and the steps only a driver can perform.

A driver takes each step from a :class:`Stepper`, performs it (a tier method, the computation
through the middleware chain, or a *control* step) and hands back its result or its exception.
Control steps never go through the middleware: ``watch`` (register for the fill notice of a
lease, or of a batch's leases), ``sleep`` (wait for it, at most the given seconds) and
``refresh`` (recompute a served entry in the background, waiting up to ``soft_timeout`` for it
when the entry was stale).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from .call import Flow, Step
from .leases import Leases

__all__ = ["CONTROL", "Stepper"]

T = TypeVar("T")

CONTROL = frozenset({"watch", "sleep", "refresh"})


class Stepper(Generic[T]):
    """Drives one flow: hands out its steps, takes back their results or errors."""

    __slots__ = ("error", "flow", "result", "send", "waker")

    def __init__(self, flow: Flow[T]) -> None:
        self.flow = flow
        self.send: Any = None
        self.error: BaseException | None = None
        self.result: Any = None
        # (keys, wake, event) while the flow watches the fill notices of leases
        self.waker: tuple[tuple[str, ...], Callable[[], None], Any] | None = None

    def next(self) -> Step | None:
        """The flow's next step, or None once it has returned (its value in ``result``)."""
        try:
            step = self.flow.send(self.send) if self.error is None else self.flow.throw(self.error)
        except StopIteration as stop:
            self.result = stop.value
            return None
        self.send = self.error = None
        return step

    def watching(
        self, leases: Leases, key: str | tuple[str, ...], wake: Callable[[], None], event: Any
    ) -> None:
        """Watch the fill notices of ``key`` (a batch: of every key in the tuple)."""
        keys = (key,) if isinstance(key, str) else key
        self.waker = (keys, wake, event)
        for k in keys:
            leases.watch(k, wake)

    def unwatch(self, leases: Leases) -> None:
        if self.waker is not None:
            for k in self.waker[0]:
                leases.unwatch(k, self.waker[1])
            self.waker = None
