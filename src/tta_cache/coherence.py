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
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from .keys import NAMESPACE_TAG
from .policy import backoff

__all__ = ["Message", "Subscriber", "TagVersions", "channel_figures"]

log = logging.getLogger("tta_cache.coherence")

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
        # Trust lapses unless the channel thread renews it: a process whose busy main thread
        # starves that thread of the GIL stops trusting a map it cannot keep current, and its
        # reads go to Redis (whose I/O hands the GIL over) until the thread has caught up. This
        # keeps I2's bound under CPU contention. Local-only maps never lapse.
        self.clock = clock
        self.window = window
        self.fresh_until = float("inf") if trusted else 0.0
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
        """Whether the map is trusted now: channel up and drained within the window."""
        return self.trusted and self.clock() < self.fresh_until

    def renew(self) -> None:
        """The channel thread has applied everything readable: trust the map for a window."""
        if self.trusted:
            self.fresh_until = self.clock() + self.window

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
        on_drained: Callable[[], None] = lambda: None,
        drain_interval: float = 0.01,
        ping_interval: float = 1.0,
        ping_deadline: float = 1.0,
    ) -> None:
        self._make_client = make_client
        self.channel = channel
        self._on_message = on_message
        self._on_state = on_state
        self._tick = tick
        self._on_drained = on_drained  # called whenever nothing more is readable (see TagVersions)
        self.drain_interval = drain_interval
        self.ping_interval = ping_interval
        self.ping_deadline = ping_deadline
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pubsub: Any = None
        self._session_up = False  # the current session got subscribed
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
        pubsub = self._pubsub
        if pubsub is not None and pubsub.connection is not None:
            pubsub.connection.disconnect()

    def _set_state(self, up: bool) -> None:
        if up == self.connected.is_set():
            return
        self.state_changes += 1
        self.transitions.append((time.time_ns(), up))
        if up:
            # Trusted and renewed before anyone sees ``connected``: a caller that waited for it
            # (``wait_ready``, ``health()``) is served tagged entries from L1 at once.
            self._on_state(up)
            self._on_drained()
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
        last_seen = time.monotonic()
        last_ping = last_seen
        while not self._stop.is_set():
            msg = pubsub.get_message(timeout=min(self.drain_interval, self.ping_interval))
            now = time.monotonic()
            while msg is not None:  # drain everything readable, then say so
                last_seen = now
                kind = msg.get("type")
                if kind == "subscribe":
                    self._session_up = True
                    if self.connected.is_set():
                        # The client reconnected and resubscribed by itself: whatever was
                        # published in between is lost, so refetch as after any outage.
                        self.reconnects += 1
                        self._set_state(False)
                    self._set_state(True)
                elif kind == "message":
                    self._handle(msg["data"])
                # "pong" only refreshes last_seen
                msg = pubsub.get_message(timeout=0.0)
            if self.connected.is_set():
                self._on_drained()
                if self._tick is not None:
                    self._tick()
            if now - last_ping >= self.ping_interval:
                pubsub.ping()
                last_ping = now
            if now - last_seen > self.ping_interval + self.ping_deadline:
                raise TimeoutError("no answer to PING on the invalidation channel")

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
