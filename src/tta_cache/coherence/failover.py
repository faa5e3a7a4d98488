"""Sentinel failover: hear the Sentinels announce a new master, on a thread of its own."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .channel import Subscriber

__all__ = ["FailoverWatch"]


class FailoverWatch(Subscriber):
    """Hears a Sentinel announce a new master for ``service`` (``+switch-master``), on a daemon
    thread of its own; ``on_switch(host, port)`` runs at once.

    A demoted master goes on taking writes until the Sentinel reconfigures it (about 10 s with
    Redis's default timings), and connections kept open write there meanwhile: those writes, and
    any invalidation among them, are lost when it resyncs. ``make_client`` is called on every
    (re)connect and may rotate over the Sentinels.
    """

    def __init__(
        self,
        make_client: Callable[[], Any],
        service: str,
        on_switch: Callable[[tuple[str, int]], None],
    ) -> None:
        super().__init__(make_client, "+switch-master", lambda _: None, lambda _: None)
        self.service = service
        self._on_switch = on_switch
        self.switches = 0

    def _handle(self, data: bytes | str) -> None:
        text = data.decode() if isinstance(data, bytes) else data
        name, *rest = text.split()  # <name> <old ip> <old port> <new ip> <new port>
        if name != self.service or len(rest) != 4:
            return
        self.switches += 1
        self._on_switch((rest[2], int(rest[3])))
