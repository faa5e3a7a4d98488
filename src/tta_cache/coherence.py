"""Coherence: the process-local tag-version map and the invalidation channel that keeps it current.

Every entry is stamped with the versions of its tags read *before* it was computed (DESIGN.md §4).
:class:`TagVersions` is this process's view of the current versions; an entry is valid while every
stamped version equals the current one. ``gen`` moves whenever any version or the trust state moves,
so an L1 hit only compares one integer unless something changed since the entry was last checked.

While the :class:`Subscriber` holds the channel ``<namespace>:invalidate`` the map is *trusted*: L1
and L2 hits are validated against it with no round trip. When the channel drops (restart, CLIENT
KILL, a silent network cut caught by a PING deadline) the map is distrusted at once: L1 serves no
tagged entry and L2 reads fetch versions in the same round trip, until the channel is back.

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
import os
import random
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from .keys import NAMESPACE_TAG
from .policy import backoff

__all__ = ["Message", "Subscriber", "TagVersions", "channel_figures"]

log = logging.getLogger("tta_cache.coherence")

_HAS_POLL = hasattr(select, "poll")
_DRAIN_LIMIT = 10_000  # messages per drain before the loop's own work (PING, tick) has a turn

Stamp = tuple[tuple[str, int], ...]


class TagVersions:
    """This process's map tag -> current version, bounded, with a trust flag and pending tags.

    Reads are lock-free (dict lookups under the GIL); every change happens under ``lock`` and then
    bumps ``gen``. Versions only grow (they start at the Redis server's clock), so a fetched and a
    pushed version are merged by taking the larger.
    """

    def __init__(
        self,
        maxsize: int = 100_000,
        *,
        trusted: bool = False,
        clock: Callable[[], float] = time.time,
        window: float = 0.04,
    ) -> None:
        # A plain dict: lock-free reads; when full, the oldest tags are dropped (refetched on use).
        self._map: dict[str, int] = {}
        # Trust lapses unless renewed: by the channel thread when it finds nothing unread, or by
        # revive() when ``probe`` (the subscriber's quiet()) says no message can be waiting. A
        # process whose busy main thread starves that thread of the GIL and has a message
        # waiting stops trusting a map it cannot keep current, and its reads go to Redis (whose
        # I/O hands the GIL over) until the thread has caught up. This keeps I2's bound under
        # CPU contention. Local-only maps never lapse.
        self.clock = clock
        self.window = window
        self.fresh_until = float("inf") if trusted else 0.0
        self.probe: Callable[[], bool] | None = None
        self.maxsize = maxsize
        self.lock = threading.Lock()
        self.gen = 0
        self.epoch = 0  # moves on every trust change: a fetch begun before it must not be merged
        self.trusted = trusted
        self.pending: frozenset[str] = frozenset()  # tags whose invalidation has not reached Redis
        self.pending_all = False  # the pending queue overflowed: nothing is valid until drained

    def get(self, tag: str) -> int | None:
        return self._map.get(tag)

    def current(self) -> bool:
        """Whether the map is trusted now: channel up, and drained within the window or nothing
        waiting on it (:meth:`revive`)."""
        if not self.trusted:
            return False
        now = self.clock()
        return now < self.fresh_until or self.revive(now)

    def renew(self, since: float | None = None) -> None:
        """The channel thread has applied everything readable: trust the map for a window.

        ``since`` is a reading of :attr:`clock` taken before the thread last looked for unread
        messages: the window runs from then, not from when a starved thread got round to this
        call (a message may have arrived in between)."""
        if self.trusted:
            self.fresh_until = (self.clock() if since is None else since) + self.window

    def follow(self, subscriber: Subscriber) -> None:
        """Let ``subscriber`` keep this map current: :meth:`revive` asks it whether a message can
        be waiting, and it reads this map's clock for :meth:`renew`'s ``since``."""
        self.probe = subscriber.quiet
        subscriber.clock = self.clock

    def revive(self, now: float | None = None) -> bool:
        """The window lapsed (``now >= fresh_until``): renew it and return True if the channel is
        up and no message can be waiting on it (``probe``); False sends the caller to Redis.

        Called only past the window (never per hit), by any thread. ``now`` is the caller's
        clock reading, taken before the probe, so the new window starts no later than the
        probe did: every message that reached the socket before the probe has been applied, and
        one arriving after it is at most ``window`` old when the window ends; the next lapse
        probes again, finds it unread and goes to Redis. So a served L1 value is never older
        than ``window`` (40 ms) behind an invalidation that reached this process, as with the
        thread's own renew(): I2's 50 ms holds. A message arriving between this probe and the
        hit it lets through is the same case. If the channel drops meanwhile, ``distrust()``
        clears ``trusted`` and moves ``gen``, which tagged hits check before serving.
        """
        probe = self.probe
        if not self.trusted or probe is None:
            return False
        if now is None:
            now = self.clock()
        if not probe():
            return False
        self.fresh_until = now + self.window
        return True

    def snapshot(self, tags: Sequence[str]) -> Stamp | None:
        """The current versions of ``tags`` if all are known and trusted, else None."""
        if not self.current():
            return None
        m = self._map
        try:
            return tuple([(t, m[t]) for t in tags])
        except KeyError:
            return None

    def valid(self, stamp: Stamp) -> bool:
        """Whether an entry with this stamp may be served without asking Redis."""
        if self.pending_all:
            return False
        if not self.current():
            # Untrusted: only untagged entries (stamped with the namespace epoch alone) are served,
            # as DESIGN.md's I2 allows; tagged entries need the channel.
            return len(stamp) == 1 and stamp[0][0] == NAMESPACE_TAG and not self.pending
        m = self._map
        pending = self.pending
        for t, v in stamp:
            if m.get(t) != v or t in pending:
                return False
        return True

    def blocked(self, stamp: Stamp) -> bool:
        """Whether an invalidation of a stamped tag is still waiting for Redis (I8)."""
        if self.pending_all:
            return True
        pending = self.pending
        return bool(pending) and any(t in pending for t, _ in stamp)

    def behind(self, stamp: Stamp) -> bool:
        """Whether a newer version of any stamped tag is known (the entry is certainly stale)."""
        if self.pending_all:
            return True
        m = self._map
        pending = self.pending
        for t, v in stamp:
            cur = m.get(t)
            if (cur is not None and cur > v) or t in pending:
                return True
        return False

    def merge(self, versions: Iterable[tuple[str, int]], epoch: int | None = None) -> bool:
        """Take the larger of each known and given version; returns whether ``gen`` moved.

        A fetch passes the ``epoch`` it began in: if the channel came or went since, the fetched
        versions may predate pushes this process never saw, so they are not kept.
        """
        moved = False
        with self.lock:
            if epoch is not None and (epoch != self.epoch or not self.trusted):
                return False
            m = self._map
            for t, v in versions:
                cur = m.get(t)
                if cur is None or v > cur:
                    m[t] = v
                    moved = moved or cur is not None
            if len(m) > self.maxsize:
                for t in list(m)[: len(m) - self.maxsize + self.maxsize // 10]:
                    del m[t]
                # An L1 entry checked at this gen may carry a dropped tag: a later push of it
                # would land as "unknown" and not move gen, so move it now.
                moved = True
            if moved:
                self.gen += 1
        return moved

    def distrust(self) -> None:
        with self.lock:
            self.trusted = False
            self.fresh_until = 0.0
            self._map.clear()
            self.epoch += 1
            self.gen += 1

    def trust(self) -> None:
        with self.lock:
            self._map.clear()  # refetched on first use: nothing pushed while away is missed
            self.trusted = True
            self.epoch += 1
            self.gen += 1

    def set_pending(self, tags: frozenset[str], *, overflow: bool = False) -> None:
        with self.lock:
            self.pending = tags
            self.pending_all = overflow
            self.gen += 1

    def bump_local(self, tags: Sequence[str]) -> tuple[int, ...]:
        """Local-only mode: the map is the source of truth; versions start at the clock."""
        with self.lock:
            out = []
            for t in tags:
                v = self._map.get(t)
                v = (v + 1) if v is not None else time.time_ns() // 1000
                self._map[t] = v
                out.append(v)
            self.gen += 1
            return tuple(out)

    def init_local(self, tags: Sequence[str]) -> Stamp:
        """Local-only mode: versions of ``tags``, created at the clock on first use."""
        with self.lock:
            m = self._map
            now = time.time_ns() // 1000
            return tuple([(t, m.setdefault(t, now)) for t in tags])

    def __len__(self) -> int:
        return len(self._map)


class Message:
    """An invalidation on the channel: JSON ``{"o": origin, "t": ns, "tags": [...], "v": [...]}``
    (tag bumps) or ``{"o": origin, "t": ns, "k": [keys]}`` (per-call invalidation); or a lease
    holder's fill notice ``{"o": origin, "f": [keys]}`` that wakes the waiters for those keys (no
    ``"t"``: it is no invalidation, and stays out of the invalidation lag figures)."""

    __slots__ = ("fills", "keys", "origin", "sent_ns", "versions")

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.origin = str(data.get("o", ""))
        self.sent_ns = int(data.get("t", 0))
        tags = data.get("tags") or ()
        self.versions: tuple[tuple[str, int], ...] = tuple(
            zip(map(str, tags), map(int, data.get("v") or ()), strict=False)
        )
        self.keys: tuple[str, ...] = tuple(map(str, data.get("k") or ()))
        self.fills: tuple[str, ...] = tuple(map(str, data.get("f") or ()))

    @staticmethod
    def head(origin: str) -> str:
        """The JSON prefix the bump script completes with the tags and their new versions."""
        return json.dumps({"o": origin, "t": time.time_ns()})[:-1]

    @staticmethod
    def for_keys(origin: str, keys: Sequence[str]) -> bytes:
        return json.dumps({"o": origin, "t": time.time_ns(), "k": list(keys)}).encode()

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
        ping_interval: float = 1.0,
        ping_deadline: float = 1.0,
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
            if _readable(park[1], 0.0) and not _only_pongs(park[2]):
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
                    sock = _socket_of(pubsub)
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
                    if park is not None and _socket_of(pubsub) is park[1]:
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
                self._subscribed_sock = _socket_of(pubsub)
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
        old, self._peeker = self._peeker, _peeker_for(sock) if sock is not None else None
        if old is not None:
            old.close()  # a reader still holding it gets OSError, and says "not quiet"

    def _wait(self, pubsub: Any, timeout: float) -> bool:
        """Wait up to ``timeout`` for the socket to have something to read, without reading it:
        whether it has (or is gone: the drain then reconnects or fails)."""
        sock = _socket_of(pubsub)
        if sock is None:
            return True
        pending = getattr(sock, "pending", None)
        if pending is not None and pending():
            return True
        try:
            return _readable(sock, timeout)
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


def _socket_of(pubsub: Any) -> Any:
    """The socket of a redis-py pub/sub's connection (a private attribute), or None."""
    conn = pubsub.connection
    return getattr(conn, "_sock", None) if conn is not None else None


def _readable(sock: Any, timeout: float) -> bool:
    """Whether ``sock`` has data, EOF or an error to read within ``timeout`` seconds; reads
    nothing. ``poll`` where there is one (no descriptor limit, nothing allocated)."""
    if _HAS_POLL:
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(timeout * 1000))
    readable, _, _ = select.select([sock], [], [], timeout)
    return bool(readable)


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


def _peeker_for(sock: Any) -> socket.socket | None:
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


def _only_pongs(peeker: socket.socket | None) -> bool:
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
