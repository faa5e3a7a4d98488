"""Coherence: keeping this process's tag versions current with every other process's (DESIGN.md §4).

- :mod:`.tag_map`: :class:`TagVersions`, the process-local map tag -> version, its trust window
  and the pending invalidations (I8) that block entries meanwhile;
- :mod:`.channel`: :class:`Subscriber`, the thread holding the invalidation channel, and
  :class:`Message`, what travels on it; :func:`channel_figures` for ``stats()``;
- :mod:`.peek`: what waits unread on the channel's socket, seen from other threads;
- :mod:`.failover`: :class:`FailoverWatch`, a Sentinel's ``+switch-master`` heard at once.

Coherence knows keys and policy (``NAMESPACE_TAG``, ``backoff``) and redis-py's pub/sub objects,
which its callers hand it; nothing of the engine, the tiers or the codec.
"""

from __future__ import annotations

from .channel import Message, Subscriber, channel_figures
from .failover import FailoverWatch
from .tag_map import Stamp, TagVersions

__all__ = ["FailoverWatch", "Message", "Stamp", "Subscriber", "TagVersions", "channel_figures"]
