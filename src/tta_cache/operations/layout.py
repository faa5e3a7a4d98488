"""Where entries live in Redis: the facade's state keys, and the kind of a key read back.

The TTA facade (``tta_cache.tta``) stores state as raw-cache keys laid out by :func:`state_key`
(``session:<sid>``, ``character:<sid>:<cid>``, ``therapeutic:<uid>`` ...), which the cache keeps
in Redis under ``<ns>:raw:<state key, escaped>``; a decorated function's entries live under
``<ns>:<kind>:...``. Entries of the session-scoped kinds (``character``, ``narrative``) whose
session entry is gone are orphans.
"""

from __future__ import annotations

from ..core.keys import escape

__all__ = ["SESSION_SCOPED_KINDS", "key_kind", "state_key"]

SESSION_SCOPED_KINDS: tuple[str, ...] = ("character", "narrative")
"""Facade kinds whose entries belong to a session and are orphans once the session is gone."""


def state_key(kind: str, *ids: object) -> str:
    """The raw-cache key (``Cache.get``/``set``) under which the TTA facade keeps ``kind``.

    ``state_key("session", "s1") == "session:s1" == tag("session", "s1")``; ids are escaped, so
    no id can forge a separator.
    """
    return ":".join([kind, *(escape(str(i)) for i in ids)])


def key_kind(redis_key: str, namespace: str) -> str:
    """The kind of an entry from its Redis key: ``<ns>:raw:<kind>%3A...`` (facade state) or
    ``<ns>:<kind>:...`` (a decorated function); ``"raw"`` for other raw keys."""
    rest = redis_key[len(namespace) + 1 :]
    if rest.startswith("raw:"):
        kind, sep, _ = rest[4:].partition("%3A")
        return kind if sep else "raw"
    return rest.partition(":")[0]
