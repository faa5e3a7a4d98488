"""The invalidation manager: invalidation by session, user and character; sweeps; purges; erasure.

:class:`CacheInvalidationManager` is the seed's invalidation manager on top of a
:class:`~tta_cache.Cache`, and the one entry point of this package's operations:

* **Invalidation** (``invalidate_session``, ``invalidate_user``, ``invalidate_character``) bumps
  tag versions: O(1), and every process stops serving the affected entries (DESIGN.md §4). The
  entries stay in Redis, already invalid, until their TTL or :meth:`cleanup_orphaned_data`.
* **Cleanup sweeps** (:mod:`.cleanup`) remove only data that is already invalid or past its age.
* **Bulk deletes of live data** (:mod:`.purge`, :mod:`.privacy`) need a dry run's token
  (:mod:`.confirm`).
* **Key rotation** (:mod:`.rotation`) reseals entries under the current keys.

Every deletion also reaches every process's L1. Every operation returns a statistics dict
(:mod:`.runs`); Redis errors are reported there, never raised.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..core.keys import tag
from ..exceptions import BackendError, ConfigurationError
from ..tiers import RedisTier
from . import cleanup, purge, rotation
from .keyspace import SCAN_COUNT, Keyspace, Scanned
from .layout import SESSION_SCOPED_KINDS
from .privacy import Pseudonymizer, erase_user, user_hash

if TYPE_CHECKING:
    from ..api import Cache

__all__ = ["CacheInvalidationManager"]


class CacheInvalidationManager:
    """Invalidation, cleanup, purges and erasure for one :class:`~tta_cache.Cache` (see module).

    ``cache`` is a Cache or a zero-argument callable returning the current one (the facade's
    connection manager passes its own, which may reconnect). ``pseudonymizers`` say what
    :meth:`anonymize_user` keeps (none here: ``tta_cache.tta``'s manager keeps therapeutic
    progress). ``clock`` gives epoch seconds (for ages); ``monotonic`` measures durations and
    time limits.
    """

    def __init__(
        self,
        cache: Cache | Callable[[], Cache],
        *,
        session_scoped_kinds: Sequence[str] = SESSION_SCOPED_KINDS,
        pseudonymizers: Sequence[Pseudonymizer[Any]] = (),
        scan_count: int = SCAN_COUNT,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        current: Callable[[], Cache] = cache if callable(cache) else lambda: cache
        self.keyspace = Keyspace(current, scan_count=scan_count, monotonic=monotonic)
        self.session_scoped_kinds = tuple(session_scoped_kinds)
        self.pseudonymizers = tuple(pseudonymizers)
        self.clock = clock

    @property
    def cache(self) -> Cache:
        """The cache this manager works on."""
        return self.keyspace.cache

    @property
    def scan_count(self) -> int:
        """Keys per SCAN step, MGET and delete batch."""
        return self.keyspace.scan_count

    @property
    def monotonic(self) -> Callable[[], float]:
        """The clock of durations and time limits."""
        return self.keyspace.monotonic

    # ------------------------------------------------------------------ invalidation

    def _invalidate(self, operation: str, tags: list[str], **info: Any) -> dict[str, Any]:
        started = self.monotonic()
        stats: dict[str, Any] = {"operation": operation, **info, "tags_invalidated": len(tags)}
        try:
            self.cache.invalidate(tags=tags, on_error="raise")
            stats["completed"] = True
        except BackendError as exc:
            # queued: retried until Redis takes it, and this process serves none of it meanwhile
            stats.update(completed=False, queued=True, error=str(exc))
        stats["duration"] = self.monotonic() - started
        return stats

    def invalidate_session(self, session_id: str) -> dict[str, Any]:
        """Invalidate everything tagged ``session:<session_id>`` (the session and its data)."""
        return self._invalidate("invalidate_session", [tag("session", session_id)])

    def invalidate_user(self, user_id: str, preserve_therapeutic: bool = False) -> dict[str, Any]:
        """Invalidate everything tagged ``user:<user_id>`` and, unless ``preserve_therapeutic``,
        the user's therapeutic progress (tagged ``therapeutic:<user_id>`` and not ``user:``, so
        that preserving it is exact)."""
        tags = [tag("user", user_id)]
        if not preserve_therapeutic:
            tags.append(tag("therapeutic", user_id))
        return self._invalidate(
            "invalidate_user",
            tags,
            user=user_hash(user_id),
            preserve_therapeutic=preserve_therapeutic,
        )

    def invalidate_character(self, character_id: str) -> dict[str, Any]:
        """Invalidate a character's state in every session (tag ``character:<id>``)."""
        return self._invalidate("invalidate_character", [tag("character", character_id)])

    # ------------------------------------------------------------------ cleanup sweeps

    def _cas_delete(self, tier: RedisTier, entries: Sequence[Scanned]) -> int:
        # The sweeps' delete step; a method of the manager, so that a test can wrap it.
        return self.keyspace.cas_delete(tier, entries)

    def cleanup_expired_sessions(
        self,
        max_age_hours: float = 24.0,
        dry_run: bool = False,
        time_limit_s: float | None = 300.0,
        *,
        progress: Callable[[int], None] | None = None,
    ) -> dict[str, Any]:
        """Remove facade session entries written more than ``max_age_hours`` ago.

        Age is the envelope's ``created`` time (when the session was last cached). In a dry run
        the counts say what a real run would remove and nothing is deleted. The session's
        per-session data becomes orphaned and goes with :meth:`cleanup_orphaned_data`. A time
        limit stops the sweep cleanly between batches; the statistics say how far it got:
        ``sessions_found``, ``expired_sessions``, ``sessions_cleaned`` (removed, or that would
        be), ``keys_deleted`` plus the common ones.
        """
        if max_age_hours < 0:
            raise ConfigurationError("max_age_hours must be >= 0")
        return cleanup.expired_sessions(
            self.keyspace,
            self._cas_delete,
            max_age_hours=max_age_hours,
            now=self.clock(),
            dry_run=dry_run,
            time_limit_s=time_limit_s,
            progress=progress,
        )

    def cleanup_orphaned_data(
        self,
        dry_run: bool = False,
        time_limit_s: float | None = 300.0,
        *,
        progress: Callable[[int], None] | None = None,
    ) -> dict[str, Any]:
        """Remove entries that can never be served again, and per-session data of gone sessions.

        An entry is orphaned when a tag version it is stamped with is behind the current one or
        gone (it was invalidated), or when it is facade data of a session-scoped kind whose
        session entry no longer exists. Entries this codec cannot read are counted as
        ``undecodable`` and kept (another deployment may read them). Statistics:
        ``total_orphaned``, ``stale_entries``, ``orphaned_session_data``, ``by_kind``,
        ``keys_deleted`` plus the common ones.
        """
        return cleanup.orphaned_data(
            self.keyspace,
            self._cas_delete,
            session_scoped_kinds=self.session_scoped_kinds,
            dry_run=dry_run,
            time_limit_s=time_limit_s,
            progress=progress,
        )

    # ------------------------------------------------------------------ key rotation

    def rotate_keys(
        self,
        *,
        dry_run: bool = False,
        time_limit_s: float | None = 300.0,
        progress: Callable[[int], None] | None = None,
    ) -> dict[str, Any]:
        """Reseal the entries an old encryption or signing key sealed under the current ones
        (compare-and-set: an entry rewritten meanwhile is kept); ``remaining`` says what is
        still sealed by each old or unknown key id. See :func:`.rotation.rotate_keys`."""
        return rotation.rotate_keys(
            self.keyspace, dry_run=dry_run, time_limit_s=time_limit_s, progress=progress
        )

    # ------------------------------------------------------------------ confirmed bulk deletes

    def purge_kind(
        self, kind: str, *, dry_run: bool = False, confirm: str | None = None
    ) -> dict[str, Any]:
        """Delete every entry of ``kind`` (facade state and decorated functions), confirmed.

        Without a matching ``confirm`` token this only lists (``keys_matched``, ``by_kind``,
        ``confirm_token``); with the token of a dry run it deletes exactly the keys listed.
        """
        return purge.purge_kind(self.keyspace, kind, dry_run=dry_run, confirm=confirm)

    def purge_namespace(
        self, *, dry_run: bool = False, confirm: str | None = None
    ) -> dict[str, Any]:
        """Delete every entry of this namespace, confirmed (see :meth:`purge_kind`); then bump
        the namespace epoch so no process serves anything older. Tag version keys are kept."""
        return purge.purge_namespace(self.keyspace, dry_run=dry_run, confirm=confirm)

    # ------------------------------------------------------------------ privacy

    def forget_user(
        self, user_id: str, *, dry_run: bool = False, confirm: str | None = None
    ) -> dict[str, Any]:
        """Erase ``user_id``'s data from Redis and from every process's L1, confirmed.

        A dry run lists what would go (``keys_matched``, ``by_kind``: counts, never values) and
        returns the ``confirm_token``; the call with that token invalidates the user's tags
        (``user:``, ``therapeutic:`` and the user's sessions, through the channel) and deletes
        exactly the listed keys. Each call that is not a dry run writes one record to the
        ``tta_cache.audit`` logger, naming the user only by :func:`user_hash`. Entries this
        codec cannot read cannot be attributed and are counted in ``undecodable``.
        """
        return erase_user(self.keyspace, "forget_user", user_id, dry_run=dry_run, confirm=confirm)

    def anonymize_user(
        self,
        user_id: str,
        *,
        pseudonym: str | None = None,
        dry_run: bool = False,
        confirm: str | None = None,
    ) -> dict[str, Any]:
        """Keep what the ``pseudonymizers`` keep of ``user_id`` under a pseudonym, erase the rest.

        Each kept state is re-stored under ``pseudonym`` (default: a random ``anon-<hex>``,
        returned in ``pseudonym``; nothing links it to the user unless the caller keeps the
        pair), scrubbed by its :class:`~.privacy.Pseudonymizer` (``anonymized`` counts them by
        kind); then the user is forgotten as by :meth:`forget_user` (same dry-run / ``confirm``
        protocol and audit record). ``tta_cache.tta``'s manager keeps the facade's
        :class:`~tta_cache.tta.TherapeuticProgress` with its free text dropped and its dates cut
        to the day.
        """
        return erase_user(
            self.keyspace,
            "anonymize_user",
            user_id,
            dry_run=dry_run,
            confirm=confirm,
            pseudonym=pseudonym or f"anon-{secrets.token_hex(8)}",
            keep=self.pseudonymizers,
        )
