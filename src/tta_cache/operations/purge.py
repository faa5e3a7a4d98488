"""Purges: delete every entry of a kind, or the whole namespace, confirmed by a dry run's token
(:mod:`.confirm`)."""

from __future__ import annotations

from typing import Any

from ..core.keys import NAMESPACE_TAG, check_name
from .confirm import confirmed
from .keyspace import Keyspace
from .runs import new_stats, run

__all__ = ["purge_kind", "purge_namespace"]


def purge_kind(space: Keyspace, kind: str, *, dry_run: bool, confirm: str | None) -> dict[str, Any]:
    """Every entry of ``kind``: facade state and decorated functions (see
    :meth:`~tta_cache.operations.CacheInvalidationManager.purge_kind`)."""
    check_name("kind", kind)
    ns = space.namespace
    stats = new_stats("purge_kind", dry_run, kind=kind)

    def body(deadline: float | None) -> None:
        keys = space.list_keys([f"{ns}:raw:{kind}%3A*", f"{ns}:{kind}:*"], stats, deadline)
        if confirmed(ns, [kind], keys, stats, dry_run=dry_run, confirm=confirm):
            space.delete_listed(keys, stats)

    return run(stats, body, space.monotonic)


def purge_namespace(space: Keyspace, *, dry_run: bool, confirm: str | None) -> dict[str, Any]:
    """Every entry of the namespace, then a bump of its epoch (see
    :meth:`~tta_cache.operations.CacheInvalidationManager.purge_namespace`)."""
    ns = space.namespace
    stats = new_stats("purge_namespace", dry_run)

    def body(deadline: float | None) -> None:
        keys = space.list_keys([f"{ns}:*"], stats, deadline)
        if confirmed(ns, [], keys, stats, dry_run=dry_run, confirm=confirm):
            space.delete_listed(keys, stats)
            space.cache.invalidate(tags=[NAMESPACE_TAG], on_error="raise")

    return run(stats, body, space.monotonic)
