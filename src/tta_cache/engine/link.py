"""The engine's end of the invalidation channel, and of a Sentinel's failover notices.

The channel is opened before the first tag version is fetched (DESIGN.md §4), so no update falls
between a fetch and the subscription. Messages from other processes move the tag map, drop
per-call invalidated keys (L1 and the flights that would fill them), wake lease waiters, and
adopt an invalidation another process could not deliver (queue it here too, I8); a process's own
messages are skipped (applied before its ``invalidate()`` returned).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from ..coherence import FailoverWatch, Message, Subscriber, TagVersions
from ..observability import Stats
from ..tiers import RedisConfig, make_sentinel_clients, make_sync_client
from .fork import reinit

__all__ = ["ChannelLink"]

log = logging.getLogger("tta_cache")


class ChannelLink:
    """Starts, feeds and stops the :class:`Subscriber` (and the :class:`FailoverWatch`)."""

    def __init__(
        self,
        cfg: RedisConfig | None,
        channel: str,
        versions: TagVersions,
        stats: Stats,
        *,
        origin: Callable[[], str],
        drop_keys: Callable[[Sequence[str]], None],
        filled: Callable[[Sequence[str]], None],
        tick: Callable[[], None],
        failed_over: Callable[[tuple[str, int]], None],
        adopt: Callable[[Sequence[str], Sequence[str]], None] = lambda tags, keys: None,
        reconnected: Callable[[], None] = lambda: None,
        ping_interval: float = 0.25,
    ) -> None:
        self.cfg = cfg
        self.channel = channel
        self.versions = versions
        self.stats = stats
        self._origin = origin
        self._drop_keys = drop_keys
        self._filled = filled
        self._tick = tick
        self._failed_over = failed_over
        self._adopt = adopt
        self._reconnected = reconnected
        self.ping_interval = ping_interval
        self.subscriber: Subscriber | None = None
        self.failover_watch: FailoverWatch | None = None
        self.closed = False
        self._lock = threading.Lock()

    @property
    def up(self) -> bool:
        sub = self.subscriber
        return sub is not None and sub.connected.is_set()

    def forked(self) -> None:
        """In a forked child: the parent's channel and failover threads do not exist here; the
        child's own start on first use."""
        reinit(self._lock)
        self.subscriber = None
        self.failover_watch = None

    def ensure(self) -> None:
        """Start the channel (once) if Redis is configured."""
        if self.subscriber is not None or self.cfg is None or self.closed:
            return
        with self._lock:
            if self.subscriber is None and not self.closed:
                cfg = self.cfg
                sub = Subscriber(
                    lambda: make_sync_client(cfg, op_timeout=max(5.0, cfg.op_timeout)),
                    self.channel,
                    self._on_message,
                    self._on_state,
                    tick=self._tick,
                    on_drained=self.versions.renew,
                    ping_interval=self.ping_interval,
                )
                self.versions.follow(sub)
                sub.start()
                self.subscriber = sub
                if cfg.mode == "sentinel":
                    watch = FailoverWatch(
                        make_sentinel_clients(cfg), cfg.service_name, self._failed_over
                    )
                    watch.start()
                    self.failover_watch = watch

    def wait_ready(self, timeout: float) -> bool:
        """Block until the channel is up (True) or ``timeout`` passes (False)."""
        if self.cfg is None:
            return True
        self.ensure()
        return self.subscriber is not None and self.subscriber.connected.wait(timeout)

    def kick(self) -> None:
        """Drop the channel's connection: it reconnects (to a new master) and distrusts the map."""
        if self.subscriber is not None:
            self.subscriber.kick()

    def stop(self) -> None:
        with self._lock:
            self.closed = True
        for thread in (self.subscriber, self.failover_watch):
            if thread is not None:
                thread.stop()

    def _on_state(self, up: bool) -> None:
        if up:
            self.versions.trust()
            self._reconnected()
        else:
            self.versions.distrust()
        log.info("invalidation channel %s", "up" if up else "down")

    def _on_message(self, message: Message) -> None:
        if message.origin == self._origin():
            return  # our own invalidation: applied before invalidate() returned
        if message.fills:
            self._filled(message.fills)  # a lease holder elsewhere is done: wake our waiters
            return
        self.stats.add(invalidations_received=1)
        if message.adopt:
            # Another process could not deliver this invalidation: take it over (I8), so this
            # process serves nothing it affects until Redis has taken it from one of us.
            self._adopt(message.tags, message.keys)
        if message.versions:
            self.versions.merge(message.versions)
        if message.keys:
            self._drop_keys(message.keys)
