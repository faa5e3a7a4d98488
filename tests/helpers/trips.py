"""Counting what a block of code sends to a real Redis: round trips on the client, commands on the
server.

A round trip is one batch of commands this thread writes to a connection (a pipeline is one, a
single command is one): redis-py's ``send_packed_command``, sync and asyncio, counted on the
calling thread only (the invalidation channel's PINGs run on its own thread). Commands are read
from the server's ``INFO commandstats`` (reset first).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import redis
import redis.asyncio.connection
import redis.connection


@dataclass
class Trips:
    sent: int = 0  # round trips from this thread
    commands: dict[str, int] = field(default_factory=dict)  # server-side calls, by command


def _commands(admins: list[redis.Redis]) -> dict[str, int]:
    out: dict[str, int] = {}
    for admin in admins:
        for name, figures in admin.info("commandstats").items():
            command = name.removeprefix("cmdstat_")
            out[command] = out.get(command, 0) + int(figures["calls"])
    return out


@contextlib.contextmanager
def counted(*admins: redis.Redis) -> Iterator[Trips]:
    """Count the block's round trips (this thread) and the servers' commands (``admins``)."""
    trips = Trips()
    me = threading.get_ident()
    sync_cls = redis.connection.AbstractConnection
    async_cls = redis.asyncio.connection.AbstractConnection
    sync_send = sync_cls.send_packed_command
    async_send = async_cls.send_packed_command

    def send(self: Any, *args: Any, **kwargs: Any) -> None:
        if threading.get_ident() == me:
            trips.sent += 1
        sync_send(self, *args, **kwargs)  # type: ignore[no-untyped-call]

    async def asend(self: Any, *args: Any, **kwargs: Any) -> None:
        if threading.get_ident() == me:
            trips.sent += 1
        await async_send(self, *args, **kwargs)

    for admin in admins:
        admin.config_resetstat()
    sync_cls.send_packed_command = send  # type: ignore[method-assign]
    async_cls.send_packed_command = asend  # type: ignore[method-assign]
    try:
        yield trips
    finally:
        sync_cls.send_packed_command = sync_send  # type: ignore[method-assign]
        async_cls.send_packed_command = async_send  # type: ignore[method-assign]
        trips.commands = _commands(list(admins))
        trips.commands.pop("info", None)
        trips.commands.pop("config|resetstat", None)
        trips.commands.pop("config", None)  # Redis 6.2 counts CONFIG RESETSTAT as "config"
        trips.commands.pop("ping", None)  # the channels' keep-alives
