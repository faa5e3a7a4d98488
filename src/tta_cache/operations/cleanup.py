"""Cleanup sweeps: remove expired sessions and entries that can never be served again.

Both remove only data that is already invalid or past its age, so they need no confirmation.
They walk the namespace batch by batch (:class:`~.keyspace.Keyspace`) and delete with
compare-and-delete, through ``delete`` (the manager passes its own step): an entry rewritten since
it was read is kept.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

from ..tiers import RedisTier
from .keyspace import Keyspace, Scanned
from .layout import key_kind
from .runs import new_stats, run

__all__ = ["Delete", "expired_sessions", "orphaned_data"]

Delete = Callable[[RedisTier, Sequence[Scanned]], int]
"""Compare-and-delete entries as read; returns how many went (:meth:`Keyspace.cas_delete`)."""


def expired_sessions(
    space: Keyspace,
    delete: Delete,
    *,
    max_age_hours: float,
    now: float,
    dry_run: bool,
    time_limit_s: float | None,
    progress: Callable[[int], None] | None,
) -> dict[str, Any]:
    """Facade session entries created before ``now - max_age_hours`` (see
    :meth:`~tta_cache.operations.CacheInvalidationManager.cleanup_expired_sessions`)."""
    cutoff = now - max_age_hours * 3600.0
    stats = new_stats(
        "cleanup_expired_sessions",
        dry_run,
        max_age_hours=max_age_hours,
        cutoff=datetime.fromtimestamp(cutoff, timezone.utc).isoformat(),
        sessions_found=0,
        expired_sessions=0,
        sessions_cleaned=0,
    )
    pattern = f"{space.namespace}:raw:session%3A*"

    def body(deadline: float | None) -> None:
        tier = space.tier()
        for keys in space.scan(tier, [pattern], stats, deadline, progress):
            entries = space.read(tier, keys, stats)
            stats["sessions_found"] += len(entries)
            expired = [e for e in entries if e.entry.created < cutoff]
            stats["expired_sessions"] += len(expired)
            if dry_run:
                stats["sessions_cleaned"] += len(expired)
            else:
                n = delete(tier, expired)
                stats["sessions_cleaned"] += n
                stats["keys_deleted"] += n

    return run(stats, body, space.monotonic, time_limit_s)


def orphaned_data(
    space: Keyspace,
    delete: Delete,
    *,
    session_scoped_kinds: Sequence[str],
    dry_run: bool,
    time_limit_s: float | None,
    progress: Callable[[int], None] | None,
) -> dict[str, Any]:
    """Entries stamped with a version behind the current one, and facade data of session-scoped
    kinds whose session entry is gone (see
    :meth:`~tta_cache.operations.CacheInvalidationManager.cleanup_orphaned_data`)."""
    stats = new_stats(
        "cleanup_orphaned_data",
        dry_run,
        total_orphaned=0,
        stale_entries=0,
        orphaned_session_data=0,
    )
    by_kind: Counter[str] = Counter()
    ns = space.namespace
    scoped = tuple(f"{ns}:raw:{kind}%3A" for kind in session_scoped_kinds)
    raw_key = functools.lru_cache(maxsize=65_536)(space.cache.engine.raw_key)

    def body(deadline: float | None) -> None:
        tier = space.tier()
        for keys in space.scan(tier, [f"{ns}:*"], stats, deadline, progress):
            entries = space.read(tier, keys, stats)
            current = space.versions(tier, entries)
            stale: list[Scanned] = []
            children: list[tuple[Scanned, str]] = []
            for e in entries:
                if any(_behind(current.get(t), v) for t, v in e.entry.stamp):
                    stale.append(e)
                elif e.key.startswith(scoped):
                    session = next((t for t, _ in e.entry.stamp if t.startswith("session:")), None)
                    if session is not None:
                        children.append((e, raw_key(session)))
            alive = space.existing(tier, sorted({s for _, s in children}))
            gone = [e for e, s in children if s not in alive]
            stats["stale_entries"] += len(stale)
            stats["orphaned_session_data"] += len(gone)
            orphans = stale + gone
            stats["total_orphaned"] += len(orphans)
            by_kind.update(key_kind(e.key, ns) for e in orphans)
            if not dry_run:
                stats["keys_deleted"] += delete(tier, orphans)

    result = run(stats, body, space.monotonic, time_limit_s)
    result["by_kind"] = dict(by_kind)
    return result


def _behind(current: int | None, stamped: int) -> bool:
    # An absent version means it was lost (TTL, flush); it is recreated larger than any before.
    return current is None or current > stamped
