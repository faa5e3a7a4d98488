"""The invalidation channel: a thread holds ``<namespace>:invalidate`` and applies its messages.

While the :class:`Subscriber` holds the channel the tag map (:mod:`.tag_map`) is *trusted*: L1
and L2 hits are validated against it with no round trip. When the channel drops (restart, CLIENT
KILL, a silent network cut caught by a PING deadline) the map is distrusted at once: L1 serves no
tagged entry and L2 reads fetch versions in the same round trip, until the channel is back.
:class:`Message` is what travels on it.

The channel thread needs the GIL to apply a message. In a process whose other threads run Python
code without releasing it (a CPU-bound loop of L1 hits), every hand-off waits for the switch
interval (``sys.getswitchinterval()``, 5 ms), and on a machine with more runnable threads than
cores, for the scheduler as well: that, not Redis, is where the propagation time goes there.
So the map's trust lapses ``window`` (40 ms) after the thread last found nothing unread, and a
hit past that asks :meth:`Subscriber.quiet` (one ``poll`` of the channel's socket, no I/O with
Redis) whether a message can be waiting: if none can, the trust is renewed and L1 serves on;
only if one can (or the channel is down) do reads go to Redis until the thread has caught up.
"""

from __future__ import annotations

import itertools
import json
import logging
import random
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..core.policy import backoff
from .peek import only_pongs, peeker_for, readable, socket_of

__all__ = ["PING_DEADLINE", "PING_INTERVAL", "Message", "Subscriber", "channel_figures"]

log = logging.getLogger("tta_cache.coherence")

# A half-open channel (the socket open, nothing arriving: a blackholed network path) is caught
# when a PING, sent every PING_INTERVAL, goes unanswered for PING_DEADLINE after the last thing
# that arrived: within their sum (0.5 s; it was 2 s before issue 13). A false alarm (Redis slower
# than that) costs a resubscribe and a refetch of the map, never a stale read.
PING_INTERVAL = 0.25
PING_DEADLINE = 0.25

_DRAIN_LIMIT = 10_000  # messages per drain before the loop's own work (PING, tick) has a turn


class Message:
    """An invalidation on the channel: JSON ``{"o": origin, "t": ns, "tags": [...], "v": [...]}``
    (tag bumps) or ``{"o": origin, "t": ns, "k": [keys]}`` (per-call invalidation); or a lease
    holder's fill notice ``{"o": origin, "f": [keys]}`` that wakes the waiters for those keys (no
    ``"t"``: it is no invalidation, and stays out of the invalidation lag figures); or
    ``{"o": origin, "t": ns, "tags": [...], "k": [keys], "a": 1}``: an invalidation the sender
    could not deliver (a Cluster master holding a tag's version is down), which every receiver
    *adopts*: it queues it as its own (I8), so it serves nothing it affects until Redis takes it."""

    __slots__ = ("adopt", "fills", "keys", "origin", "sent_ns", "tags", "versions")

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.origin = str(data.get("o", ""))
        self.sent_ns = int(data.get("t", 0))
        tags = data.get("tags") or ()
        self.versions: tuple[tuple[str, int], ...] = tuple(
            zip(map(str, tags), map(int, data.get("v") or ()), strict=False)
        )
        self.keys: tuple[str, ...] = tuple(map(str, data.get("k") or ()))
        self.fills: tuple[str, ...] = tuple(map(str, data.get("f") or ()))
        self.adopt = bool(data.get("a"))
        self.tags: tuple[str, ...] = tuple(map(str, tags)) if self.adopt else ()

    @staticmethod
    def head(origin: str) -> str:
        """The JSON prefix the bump script completes with the tags and their new versions."""
        return json.dumps({"o": origin, "t": time.time_ns()})[:-1]

    @staticmethod
    def for_keys(origin: str, keys: Sequence[str]) -> bytes:
        return json.dumps({"o": origin, "t": time.time_ns(), "k": list(keys)}).encode()

    @staticmethod
    def for_adoption(origin: str, tags: Sequence[str], keys: Sequence[str]) -> bytes:
        """An invalidation Redis did not take from ``origin``: receivers queue it themselves."""
        data = {"o": origin, "t": time.time_ns(), "tags": list(tags), "k": list(keys), "a": 1}
        return json.dumps(data).encode()

    @staticmethod
    def for_fills(origin: str, keys: Sequence[str]) -> bytes:
        """A lease holder's notice that ``keys`` were filled (or their leases released)."""
        return json.dumps({"o": origin, "f": list(keys)}).encode()


class Subscriber:
    """A daemon thread holding the invalidation channel; one per ``Cache`` with Redis.

    ``on_message`` applies a message (the engine's handler); ``on_state`` hears ``True`` once
    subscribed and ``False`` when the channel is lost. A PING with a deadline every
    ``ping_interval`` seconds catches a silent cut. ``tick`` runs on every loop turn (the engine
    uses it to retry queued invalidations while connected).
    """

    def __init__(
        self,
        make_client: Callable[[], Any],
        channel: str,
        on_message: Callable[[Message], None],
        on_state: Callable[[bool], None],
        *,
        tick: Callable[[], None] | None = None,
        on_drained: Callable[[float], None] = lambda since: None,
        drain_interval: float = 0.01,
        ping_interval: float = PING_INTERVAL,
        ping_deadline: float = PING_DEADLINE,
    ) -> None:
        self._make_client = make_client
        self.channel = channel
        self._on_message = on_message
        self._on_state = on_state
        self._tick = tick
        # Called whenever nothing more is readable, with a reading of ``clock`` taken before the
        # thread last looked (see TagVersions.renew).
        self._on_drained = on_drained
        self.clock: Callable[[], float] = time.time
        self._checked = 0.0  # that reading
        self.drain_interval = drain_interval
        self.ping_interval = ping_interval
        self.ping_deadline = ping_deadline
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pubsub: Any = None
        self._session_up = False  # the current session got subscribed
        self._subscribed_sock: Any = None  # the socket the current subscription was confirmed on
        self._peeker: socket.socket | None = None  # a second handle on it, for MSG_PEEK
        # (turn, socket, peeker) while this thread has read and applied everything that reached
        # it and waits on the socket without reading it: see quiet(). A fresh tuple per park, so
        # a reader can tell a park it saw from a later one (and a wake in between) by identity.
        self._park: tuple[int, Any, socket.socket | None] | None = None
        self._turns = itertools.count()
        self.connected = threading.Event()
        self.state_changes = 0
        self.reconnects = 0
        self.messages = 0
        self.last_error: str | None = None
        self.lags: deque[float] = deque(maxlen=4096)  # seconds from the sender's call to receipt
        self.transitions: deque[tuple[int, bool]] = deque(maxlen=256)  # (time_ns, up)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="tta-cache-coherence", daemon=True
            )
            self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()  # the loop notices within one get_message timeout and closes itself
        if self._thread is not None:
            self._thread.join(timeout)

    def kick(self) -> None:
        """Drop the connection (tests and health checks use it to force a resubscribe)."""
        self._park = None
        pubsub = self._pubsub
        if pubsub is not None and pubsub.connection is not None:
            pubsub.connection.disconnect()

    def quiet(self) -> bool:
        """Whether no message can be waiting for this thread, from any other thread, cheaply:
        the thread is parked (it applied everything it read and waits on the socket without
        reading) and the socket has nothing to read (one ``poll`` with timeout 0).

        Only this thread reads the socket, and only after clearing ``_park``: so while the same
        park is in place before and after the poll, nothing sat in redis-py's buffers (the
        thread parks only once they are empty) and nothing had reached the socket unread. The
        poll releases the GIL; if the thread wakes meanwhile and reads, the park has changed
        and the answer is False. A message that reaches the socket after the poll is judged by
        the next lapse (see :meth:`TagVersions.revive`). What is unread may be PONGs alone (the
        thread PINGs every ``ping_interval``): those are peeked at, not read, and are no message.
        """
        park = self._park
        if park is None:
            return False
        try:
            if readable(park[1], 0.0) and not only_pongs(park[2]):
                return False
        except (OSError, ValueError):  # closed under us
            return False
        return self._park is park

    def _set_state(self, up: bool) -> None:
        if up == self.connected.is_set():
            return
        self.state_changes += 1
        self.transitions.append((time.time_ns(), up))
        if up:
            # Trusted and renewed before anyone sees ``connected``: a caller that waited for it
            # (``wait_ready``, ``health()``) is served tagged entries from L1 at once.
            self._on_state(up)
            self._on_drained(self._checked)
            self.connected.set()
        else:
            self.connected.clear()
            self._on_state(up)

    def _run(self) -> None:
        failures = 0
        rnd = random.Random()
        while not self._stop.is_set():
            self._session_up = False
            try:
                self._session()
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("channel %s lost: %s", self.channel, self.last_error)
            self._set_state(False)
            if self._stop.is_set():
                break
            # A channel that was up starts a new outage; one that never came up prolongs it.
            failures = 1 if self._session_up else failures + 1
            self.reconnects += 1
            self._stop.wait(backoff(failures, base=0.02, cap=1.0, rnd=rnd.random()))

    def _session(self) -> None:
        client = self._make_client()
        pubsub = client.pubsub(ignore_subscribe_messages=False)
        self._pubsub = pubsub
        try:
            self._listen(pubsub)
        except BaseException:
            # Distrust first: closing sockets and logging below each let other threads take the
            # GIL, which a busy process may not hand back for a while.
            self._set_state(False)
            raise
        finally:
            self._pubsub = None
            try:
                pubsub.close()
                client.close()
            except Exception:
                log.debug("closing pubsub failed", exc_info=True)

    def _listen(self, pubsub: Any) -> None:
        pubsub.subscribe(self.channel)
        wait = min(self.drain_interval, self.ping_interval)
        last_seen = time.monotonic()
        last_ping = last_seen
        ready = True  # the subscription's reply is on its way
        empty = False  # whether the last drain left nothing unread in redis-py's buffers
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if ready:
                    self._checked = self.clock()  # nothing unread before this is missed below
                    self._park = None  # from here until parked again, quiet() says False
                    got, empty = self._drain(pubsub)
                    if got:
                        last_seen = now
                if self.connected.is_set():
                    sock = socket_of(pubsub)
                    if sock is not self._subscribed_sock:
                        # Kicked, or redis-py reconnected by itself (it resubscribes): whatever
                        # was published in between is lost. Refetch as after any outage once
                        # the new subscription is confirmed.
                        self.reconnects += 1
                        self._set_state(False)
                    else:
                        if empty and (not ready or self._park_on(sock)):
                            self._on_drained(self._checked)  # nothing unread: renew the trust
                        if self._tick is not None:
                            self._tick()
                if now - last_ping >= self.ping_interval:
                    park, self._park = self._park, None  # a PING may reconnect (a new socket)
                    pubsub.ping()
                    last_ping = now
                    if park is not None and socket_of(pubsub) is park[1]:
                        self._park = (next(self._turns), *park[1:])  # it wrote, read nothing
                if now - last_seen > self.ping_interval + self.ping_deadline:
                    raise TimeoutError("no answer to PING on the invalidation channel")
                # Drain again at once if the last drain stopped short (redis-py may hold more
                # than the socket shows), else wait on the socket.
                if ready and not empty:
                    continue
                checked = self.clock()
                ready = self._wait(pubsub, wait)
                if not ready:
                    self._checked = checked  # nothing arrived while it waited
        finally:
            self._park = None
            self._set_peeker(None)

    def _drain(self, pubsub: Any) -> tuple[bool, bool]:
        """Read and apply every message readable now: (whether there was any, whether nothing
        is left unread in redis-py's buffers or on the socket)."""
        got = False
        for _ in range(_DRAIN_LIMIT):
            msg = pubsub.get_message(timeout=0.0)
            if msg is None:
                # None also answers a swallowed health-check reply with more behind it: drain
                # on until redis-py's buffers and the socket are empty, so parking is honest.
                conn = pubsub.connection
                if conn is None or not conn.can_read(timeout=0):
                    return got, True
                if not pubsub.subscribed:  # get_message() reads nothing then
                    raise RuntimeError("the invalidation channel is no longer subscribed")
                continue
            got = True
            kind = msg.get("type")
            if kind == "subscribe":
                self._session_up = True
                self._subscribed_sock = socket_of(pubsub)
                self._set_peeker(self._subscribed_sock)
                if self.connected.is_set():
                    # The client reconnected and resubscribed by itself: whatever was
                    # published in between is lost, so refetch as after any outage.
                    self.reconnects += 1
                    self._set_state(False)
                self._set_state(True)
            elif kind == "message":
                self._handle(msg["data"])
            # "pong" only refreshes last_seen
        return got, False  # more keeps coming: let the loop PING and tick, then drain on

    def _park_on(self, sock: Any) -> bool:
        """Everything read is applied and redis-py's buffers are empty: park (see quiet())."""
        pending = getattr(sock, "pending", None)  # TLS: bytes decrypted above the socket
        if pending is not None and pending():
            return False
        self._park = (next(self._turns), sock, self._peeker)
        return True

    def _set_peeker(self, sock: Any) -> None:
        """Replace the peek handle with one on ``sock`` (None: just close it)."""
        old, self._peeker = self._peeker, peeker_for(sock) if sock is not None else None
        if old is not None:
            old.close()  # a reader still holding it gets OSError, and says "not quiet"

    def _wait(self, pubsub: Any, timeout: float) -> bool:
        """Wait up to ``timeout`` for the socket to have something to read, without reading it:
        whether it has (or is gone: the drain then reconnects or fails)."""
        sock = socket_of(pubsub)
        if sock is None:
            return True
        pending = getattr(sock, "pending", None)
        if pending is not None and pending():
            return True
        try:
            return readable(sock, timeout)
        except (OSError, ValueError):
            return True

    def _handle(self, data: bytes | str) -> None:
        try:
            message = Message(json.loads(data))
        except (ValueError, TypeError):
            log.warning("ignored a malformed invalidation message")
            return
        self.messages += 1
        if message.sent_ns:
            self.lags.append(max(0.0, (time.time_ns() - message.sent_ns) / 1e9))
        self._on_message(message)


def channel_figures(sub: Subscriber | None) -> dict[str, Any]:
    """The channel's metrics for ``stats()``: state changes, reconnects, messages received (own
    echoes included) and the lag from the sender's call to receipt, in seconds (None: no data)."""
    lags = sorted(sub.lags.copy()) if sub is not None else []  # copy: the thread appends

    def quantile(q: float) -> float | None:
        return lags[min(len(lags) - 1, int(q * len(lags)))] if lags else None

    return {
        "state_changes": sub.state_changes if sub is not None else 0,
        "reconnects": sub.reconnects if sub is not None else 0,
        "messages": sub.messages if sub is not None else 0,
        "lag_p50": quantile(0.50),
        "lag_p99": quantile(0.99),
        "lag_max": lags[-1] if lags else None,
        "last_error": sub.last_error if sub is not None else None,
    }
