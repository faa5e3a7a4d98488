"""Privacy: erase a user's data everywhere, or keep some of it under a pseudonym; the audit record.

A user's data is every entry tagged ``user:<id>`` or ``therapeutic:<id>``, and every entry tagged
with a session of the user (a session tag found beside the user tag). Erasure follows the dry-run
protocol of :mod:`.confirm`; the confirmed call invalidates the user's tags (so no process serves
any of it, even entries not listed), deletes exactly the listed keys, then drops the tag version
keys (they name the user). Each call that is not a dry run writes one record to the
``tta_cache.audit`` logger, naming the user only by :func:`user_hash`.

What anonymization keeps is not this layer's to know: a :class:`Pseudonymizer` per kept kind says
how to read it and what its pseudonymous copy is (the TTA layer supplies the one for therapeutic
progress).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ..core.keys import tag
from .confirm import confirmed
from .keyspace import Keyspace
from .layout import state_key
from .runs import new_stats, run

if TYPE_CHECKING:
    from ..api import Cache

__all__ = ["Pseudonymizer", "erase_user", "user_hash"]

audit_log = logging.getLogger("tta_cache.audit")

M = TypeVar("M")


def user_hash(user_id: str) -> str:
    """A short SHA-256 of a user id: what audit records and statistics say instead of the id."""
    return hashlib.sha256(f"tta-user:{user_id}".encode()).hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class Pseudonymizer(Generic[M]):
    """One kind of a user's facade state that anonymization keeps under a pseudonym.

    The state is read from ``state_key(kind, user_id)`` as ``model``; ``scrub(value, pseudonym)``
    returns the copy (free text dropped, the user replaced by ``pseudonym``), which is stored at
    ``state_key(kind, pseudonym)`` tagged ``<kind>:<pseudonym>``.
    """

    kind: str
    model: type[M]
    scrub: Callable[[M, str], M]

    def keep(self, cache: Cache, user_id: str, pseudonym: str) -> bool:
        """Store the pseudonymous copy of ``user_id``'s state, if there is one."""
        value = cache.get(state_key(self.kind, user_id), type_hint=self.model, kind=self.kind)
        if not isinstance(value, self.model):
            return False
        cache.set(
            state_key(self.kind, pseudonym),
            self.scrub(value, pseudonym),
            kind=self.kind,
            tags=[tag(self.kind, pseudonym)],
        )
        return True


def erase_user(
    space: Keyspace,
    operation: str,
    user_id: str,
    *,
    dry_run: bool,
    confirm: str | None,
    pseudonym: str | None = None,
    keep: Sequence[Pseudonymizer[Any]] = (),
) -> dict[str, Any]:
    """Erase ``user_id``'s data; with a ``pseudonym``, first store what ``keep`` keeps under it
    (see :meth:`~tta_cache.operations.CacheInvalidationManager.forget_user` and
    :meth:`~tta_cache.operations.CacheInvalidationManager.anonymize_user`)."""
    stats = new_stats(operation, dry_run, user=user_hash(user_id), tags_invalidated=0)
    if pseudonym is not None:
        stats.update(pseudonym=pseudonym, anonymized={})

    def body(deadline: float | None) -> None:
        keys, tags = _user_listing(space, user_id, stats)
        if not confirmed(space.namespace, [user_id], keys, stats, dry_run=dry_run, confirm=confirm):
            return
        cache = space.cache
        if pseudonym is not None:
            stats["anonymized"] = {p.kind: 1 for p in keep if p.keep(cache, user_id, pseudonym)}
        # Tags first: once bumped, no process serves any of it, even entries not listed.
        cache.invalidate(tags=tags, on_error="raise")
        stats["tags_invalidated"] = len(tags)
        space.delete_listed(keys, stats)
        # The version keys name the user. Dropping them is safe once the entries are gone:
        # a version is recreated from the server clock, above every stamp taken before.
        space.delete_plain([cache.engine.tag_key(t) for t in tags])

    result = run(stats, body, space.monotonic)
    if not dry_run:
        _audit(space.namespace, operation, user_id, result)
    return result


def _user_listing(
    space: Keyspace, user_id: str, stats: dict[str, Any]
) -> tuple[list[str], list[str]]:
    """The keys holding ``user_id``'s data and the tags to invalidate (see the module)."""
    tier = space.tier()
    user_tags = {tag("user", user_id), tag("therapeutic", user_id)}
    direct: set[str] = set()
    sessions: set[str] = set()
    by_session: dict[str, list[str]] = {}
    for keys in space.scan(tier, [f"{space.namespace}:*"], stats):
        for e in space.read(tier, keys, stats):
            tags = [t for t, _ in e.entry.stamp]
            session_tags = [t for t in tags if t.startswith("session:")]
            if user_tags.intersection(tags):
                direct.add(e.key)
                sessions.update(session_tags)
            else:
                for t in session_tags:
                    by_session.setdefault(t, []).append(e.key)
    listed = set(direct)
    for s in sessions:
        listed.update(by_session.get(s, ()))
    stats["sessions"] = len(sessions)
    return sorted(listed), sorted(user_tags | sessions)


def _audit(namespace: str, operation: str, user_id: str, stats: dict[str, Any]) -> None:
    outcome = "refused" if stats.get("refused") else "failed" if stats.get("error") else "erased"
    audit_log.info(
        "%s user=%s outcome=%s keys_deleted=%d by_kind=%s",
        operation,
        user_hash(user_id),
        outcome,
        stats["keys_deleted"],
        stats.get("by_kind", {}),
        extra={
            "operation": operation,
            "user_hash": user_hash(user_id),
            "outcome": outcome,
            "keys_deleted": stats["keys_deleted"],
            "namespace": namespace,
        },
    )
