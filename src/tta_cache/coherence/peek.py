"""What waits unread on the channel's socket, seen from any thread without reading it.

The channel thread alone reads its socket (through redis-py); other threads only ask whether
anything is there: ``poll`` with a timeout (the thread's own wait) or of 0 (another thread's
check), and a ``MSG_PEEK`` through a ``dup`` of the socket to tell PONG replies, which are no
invalidation, from anything else. redis-py keeps the socket in ``_sock``, a private attribute.
"""

from __future__ import annotations

import os
import select
import socket
from typing import Any

__all__ = ["only_pongs", "peeker_for", "readable", "socket_of"]

_HAS_POLL = hasattr(select, "poll")


def socket_of(pubsub: Any) -> Any:
    """The socket of a redis-py pub/sub's connection (a private attribute), or None."""
    conn = pubsub.connection
    return getattr(conn, "_sock", None) if conn is not None else None


def readable(sock: Any, timeout: float) -> bool:
    """Whether ``sock`` has data, EOF or an error to read within ``timeout`` seconds; reads
    nothing. ``poll`` where there is one (no descriptor limit, nothing allocated)."""
    if _HAS_POLL:
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(timeout * 1000))
    ready, _, _ = select.select([sock], [], [], timeout)
    return bool(ready)


# What a subscribed connection gets back for PING and for redis-py's health check, in RESP2 and
# RESP3: no invalidation.
_PONGS = (
    b"*2\r\n$4\r\npong\r\n$0\r\n\r\n",
    b"*2\r\n$4\r\npong\r\n$21\r\nredis-py-health-check\r\n",
    b"+PONG\r\n",
    b"$21\r\nredis-py-health-check\r\n",
)
_PEEK = 512
_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0)


def peeker_for(sock: Any) -> socket.socket | None:
    """A second handle (``dup``) on ``sock``'s connection that other threads can peek with and
    never wait on: redis-py's socket has a timeout, so its ``recv`` would first wait for data
    that the channel thread may have just read. None for TLS (the bytes are ciphertext) or
    where ``MSG_DONTWAIT`` is missing."""
    if hasattr(sock, "pending") or not _DONTWAIT:
        return None
    try:
        fd = os.dup(sock.fileno())
    except (OSError, ValueError):
        return None
    try:
        peeker = socket.socket(fileno=fd)
    except OSError:
        os.close(fd)
        return None
    if peeker.gettimeout():  # a default timeout is set: never wait in recv
        peeker.settimeout(0.0)
    return peeker


def only_pongs(peeker: socket.socket | None) -> bool:
    """Whether what the connection holds unread is whole PONG replies and nothing else (peeked
    at through ``peeker``, not read)."""
    if peeker is None:
        return False
    try:
        data = peeker.recv(_PEEK, socket.MSG_PEEK | _DONTWAIT)
    except (BlockingIOError, InterruptedError):
        return False
    if not data or len(data) == _PEEK:  # EOF, or more than we looked at
        return False
    while data:
        for pong in _PONGS:
            if data.startswith(pong):
                data = data[len(pong) :]
                break
        else:
            return False
    return True
