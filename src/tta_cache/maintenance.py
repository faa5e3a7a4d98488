"""Maintenance: invalidation by session, user and character; cleanup sweeps; purges; erasure.

:class:`CacheInvalidationManager` is the seed's invalidation manager on top of a
:class:`~tta_cache.Cache`. Three families of operations:

* **Invalidation** (``invalidate_session``, ``invalidate_user``, ``invalidate_character``) bumps
  tag versions: O(1), and every process stops serving the affected entries (DESIGN.md §4). The
  entries stay in Redis, already invalid, until their TTL or :meth:`cleanup_orphaned_data`.
* **Cleanup sweeps** (:meth:`cleanup_expired_sessions`, :meth:`cleanup_orphaned_data`) remove only
  data that is already invalid or past its age, so they need no confirmation. They walk the
  namespace with ``SCAN MATCH <ns>:... COUNT 1000`` (never ``KEYS``; on Redis Cluster redis-py's
  ``scan_iter`` visits every primary), read each batch with one MGET, and delete with a
  compare-and-delete script: an entry rewritten since it was read is kept. A time limit stops a
  sweep cleanly between batches; the statistics say how far it got.
* **Bulk deletes of live data** (:meth:`purge_kind`, :meth:`purge_namespace`,
  :meth:`forget_user`, :meth:`anonymize_user`) list what they would delete and return a
  ``confirm_token`` derived from that list (a SHA-256 of the operation, the namespace and the
  sorted keys). Only a call with that token deletes, and it deletes exactly the keys listed; a
  missing or wrong token, or a keyspace that changed since the dry run, deletes nothing and says
  so in ``refused``.

Every deletion also reaches every process's L1: the deleted keys are published on the
invalidation channel. Every operation returns a statistics dict (``operation``, ``dry_run``,
``duration``, ``keys_scanned``, ``keys_deleted``, ``completed``, ``time_limit_reached``,
``error`` ...); Redis errors are reported there, never raised.

The TTA facade (``tta_cache.tta``) stores state as raw-cache keys laid out by :func:`state_key`
(``session:<sid>``, ``character:<sid>:<cid>``, ``therapeutic:<uid>`` ...); entries of the
session-scoped kinds (``character``, ``narrative``) whose session entry is gone are orphans.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import hmac
import logging
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timezone
from itertools import islice
from typing import TYPE_CHECKING, Any

from .codecs import Entry
from .coherence import Message
from .exceptions import BackendError, ConfigurationError, DecodeError
from .keys import NAMESPACE_TAG, check_name, escape, tag
from .tiers import RedisTier, parse_version

if TYPE_CHECKING:
    from .cache import Cache

__all__ = [
    "SESSION_SCOPED_KINDS",
    "CacheInvalidationManager",
    "key_kind",
    "state_key",
    "user_hash",
]

log = logging.getLogger("tta_cache.maintenance")
audit_log = logging.getLogger("tta_cache.audit")

SCAN_COUNT = 1000
"""Keys per SCAN step, MGET and delete batch."""

SESSION_SCOPED_KINDS: tuple[str, ...] = ("character", "narrative")
"""Facade kinds whose entries belong to a session and are orphans once the session is gone."""

# KEYS: entries; ARGV: the SHA-1 of each entry as read. Deletes the entries still holding what was
# read (an entry rewritten since is live data) and returns the 1-based indexes deleted.
_CAS_DELETE_LUA = """
local out = {}
for i, k in ipairs(KEYS) do
  local v = redis.call('GET', k)
  if v and redis.sha1hex(v) == ARGV[i] then
    redis.call('UNLINK', k)
    out[#out + 1] = i
  end
end
return out
"""


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


def user_hash(user_id: str) -> str:
    """A short SHA-256 of a user id: what audit records and statistics say instead of the id."""
    return hashlib.sha256(f"tta-user:{user_id}".encode()).hexdigest()[:16]


def _sha1(raw: bytes) -> str:
    return hashlib.sha1(raw, usedforsecurity=False).hexdigest()


class _Deadline(Exception):
    """Raised inside a sweep when its time limit has passed (caught by the sweep)."""


@dataclasses.dataclass
class _Scanned:
    """One entry read during a sweep."""

    key: str
    raw: bytes
    entry: Entry | None  # None: not an envelope this codec reads


class CacheInvalidationManager:
    """Invalidation, cleanup, purges and erasure for one :class:`~tta_cache.Cache` (see module).

    ``cache`` is a Cache or a zero-argument callable returning the current one (the facade's
    connection manager passes its own, which may reconnect). ``clock`` gives epoch seconds (for
    ages); ``monotonic`` measures durations and time limits.
    """

    def __init__(
        self,
        cache: Cache | Callable[[], Cache],
        *,
        session_scoped_kinds: Sequence[str] = SESSION_SCOPED_KINDS,
        scan_count: int = SCAN_COUNT,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cache = cache
        self.session_scoped_kinds = tuple(session_scoped_kinds)
        if scan_count < 1:
            raise ConfigurationError("scan_count must be >= 1")
        self.scan_count = scan_count
        self.clock = clock
        self.monotonic = monotonic

    @property
    def cache(self) -> Cache:
        """The cache this manager works on."""
        cache = self._cache
        return cache if not callable(cache) else cache()

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

    # ------------------------------------------------------------------ scanning machinery

    def _tier(self) -> RedisTier:
        tier = self.cache.engine.redis
        if tier is None:
            raise ConfigurationError("maintenance sweeps need Redis; this cache is local only")
        return tier

    def _new_stats(self, operation: str, dry_run: bool) -> dict[str, Any]:
        return {
            "operation": operation,
            "dry_run": dry_run,
            "keys_scanned": 0,
            "keys_deleted": 0,
            "batches": 0,
            "undecodable": 0,
            "completed": False,
            "time_limit_reached": False,
            "error": None,
            "duration": 0.0,
        }

    def _scan(
        self,
        tier: RedisTier,
        patterns: Sequence[str],
        stats: dict[str, Any],
        deadline: float | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> Iterator[list[str]]:
        """Batches of keys matching ``patterns`` (tag version keys excluded); raises _Deadline."""
        skip = f"{self.cache.namespace}:tag:"
        count = self.scan_count
        for pattern in patterns:

            def start(client: Any, pattern: str = pattern) -> Iterator[Any]:
                return client.scan_iter(match=pattern, count=count)  # type: ignore[no-any-return]

            found = tier.execute("SCAN", start)

            def step(client: Any, found: Iterator[Any] = found) -> list[Any]:
                return list(islice(found, count))

            while True:
                if deadline is not None and self.monotonic() >= deadline:
                    raise _Deadline
                batch = tier.execute("SCAN", step)
                if not batch:
                    break
                stats["keys_scanned"] += len(batch)
                stats["batches"] += 1
                keys = [k.decode() if isinstance(k, bytes) else k for k in batch]
                yield [k for k in keys if not k.startswith(skip)]
                if progress is not None:
                    progress(stats["keys_scanned"])

    def _read(self, tier: RedisTier, keys: list[str], stats: dict[str, Any]) -> list[_Scanned]:
        """MGET ``keys`` and decode their envelopes (keys gone since the SCAN are skipped)."""
        codec = self.cache.engine.codec
        out = []
        for key, raw in zip(keys, tier.get_many(keys), strict=True):
            if raw is None:
                continue
            try:
                entry: Entry | None = codec.decode(raw)
            except DecodeError:
                entry = None
                stats["undecodable"] += 1
            out.append(_Scanned(key, raw, entry))
        return out

    def _versions(self, tier: RedisTier, entries: Iterable[_Scanned]) -> dict[str, int | None]:
        """Current tag versions for every tag stamped on ``entries`` (None: absent, or corrupt,
        which the next read replaces by a larger one)."""
        tags = sorted({t for e in entries if e.entry is not None for t, _ in e.entry.stamp})
        if not tags:
            return {}
        tag_key = self.cache.engine.tag_key
        raws = tier.get_many([tag_key(t) for t in tags])
        return {t: parse_version(v) for t, v in zip(tags, raws, strict=True)}

    def _existing(self, tier: RedisTier, keys: Sequence[str]) -> set[str]:
        def run(client: Any) -> list[Any]:
            pipe = client.pipeline(transaction=False)
            for k in keys:
                pipe.exists(k)
            return list(pipe.execute())

        if not keys:
            return set()
        return {k for k, n in zip(keys, tier.execute("EXISTS", run), strict=True) if n}

    def _cas_delete(self, tier: RedisTier, entries: Sequence[_Scanned]) -> int:
        """Delete entries still holding what was read; drop them from every process's L1."""
        if not entries:
            return 0

        def run(client: Any) -> list[int]:
            script = client.register_script(_CAS_DELETE_LUA)
            if tier.cluster:  # one slot per call
                return [
                    i for i, e in enumerate(entries, 1) if script(keys=[e.key], args=[_sha1(e.raw)])
                ]
            return [
                int(i)
                for i in script(keys=[e.key for e in entries], args=[_sha1(e.raw) for e in entries])
            ]

        deleted = [entries[i - 1].key for i in tier.execute("EVALSHA cas-delete", run)]
        self._broadcast_deleted(tier, deleted)
        return len(deleted)

    def _broadcast_deleted(self, tier: RedisTier, keys: Sequence[str]) -> None:
        if not keys:
            return
        engine = self.cache.engine
        engine.local.pop_redis_keys(keys)
        message = Message.for_keys(engine.origin, keys)
        tier.execute("PUBLISH", lambda c: c.publish(engine.channel, message))

    def _finish(self, stats: dict[str, Any], started: float) -> dict[str, Any]:
        stats["duration"] = self.monotonic() - started
        return stats

    def _sweep(
        self,
        operation: str,
        time_limit_s: float | None,
        body: Callable[[float | None], None],
        stats: dict[str, Any],
    ) -> dict[str, Any]:
        """Run ``body(deadline)`` with time limit and error reporting; fill the common stats."""
        started = self.monotonic()
        deadline = None if time_limit_s is None else started + time_limit_s
        try:
            body(deadline)
            stats["completed"] = True
        except _Deadline:
            stats["time_limit_reached"] = True
            log.info("%s stopped at its time limit after %d keys", operation, stats["keys_scanned"])
        except BackendError as exc:
            stats["error"] = str(exc)
            log.warning("%s failed after %d keys: %s", operation, stats["keys_scanned"], exc)
        return self._finish(stats, started)

    # ------------------------------------------------------------------ cleanup sweeps

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
        per-session data becomes orphaned and goes with :meth:`cleanup_orphaned_data`.
        Statistics: ``sessions_found``, ``expired_sessions``, ``sessions_cleaned`` (removed, or
        that would be), ``keys_deleted`` plus the common ones.
        """
        if max_age_hours < 0:
            raise ConfigurationError("max_age_hours must be >= 0")
        stats = self._new_stats("cleanup_expired_sessions", dry_run)
        cutoff = self.clock() - max_age_hours * 3600.0
        stats.update(
            max_age_hours=max_age_hours,
            cutoff=datetime.fromtimestamp(cutoff, timezone.utc).isoformat(),
            sessions_found=0,
            expired_sessions=0,
            sessions_cleaned=0,
        )
        ns = self.cache.namespace

        def body(deadline: float | None) -> None:
            tier = self._tier()
            pattern = f"{ns}:raw:session%3A*"
            for keys in self._scan(tier, [pattern], stats, deadline, progress):
                entries = [e for e in self._read(tier, keys, stats) if e.entry is not None]
                stats["sessions_found"] += len(entries)
                expired = [e for e in entries if e.entry and e.entry.created < cutoff]
                stats["expired_sessions"] += len(expired)
                if dry_run:
                    stats["sessions_cleaned"] += len(expired)
                else:
                    n = self._cas_delete(tier, expired)
                    stats["sessions_cleaned"] += n
                    stats["keys_deleted"] += n

        return self._sweep("cleanup_expired_sessions", time_limit_s, body, stats)

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
        stats = self._new_stats("cleanup_orphaned_data", dry_run)
        stats.update(total_orphaned=0, stale_entries=0, orphaned_session_data=0)
        by_kind: Counter[str] = Counter()
        ns = self.cache.namespace
        scoped = {f"{ns}:raw:{kind}%3A" for kind in self.session_scoped_kinds}
        raw_key = functools.lru_cache(maxsize=65_536)(self.cache.engine.raw_key)

        def body(deadline: float | None) -> None:
            tier = self._tier()
            for keys in self._scan(tier, [f"{ns}:*"], stats, deadline, progress):
                entries = [e for e in self._read(tier, keys, stats) if e.entry is not None]
                current = self._versions(tier, entries)
                stale: list[_Scanned] = []
                children: list[tuple[_Scanned, str]] = []
                for e in entries:
                    assert e.entry is not None
                    if any(_behind(current.get(t), v) for t, v in e.entry.stamp):
                        stale.append(e)
                    elif any(e.key.startswith(p) for p in scoped):
                        session = next(
                            (t for t, _ in e.entry.stamp if t.startswith("session:")), None
                        )
                        if session is not None:
                            children.append((e, raw_key(session)))
                alive = self._existing(tier, sorted({s for _, s in children}))
                gone = [e for e, s in children if s not in alive]
                stats["stale_entries"] += len(stale)
                stats["orphaned_session_data"] += len(gone)
                orphans = stale + gone
                stats["total_orphaned"] += len(orphans)
                by_kind.update(key_kind(e.key, ns) for e in orphans)
                if not dry_run:
                    stats["keys_deleted"] += self._cas_delete(tier, orphans)

        result = self._sweep("cleanup_orphaned_data", time_limit_s, body, stats)
        result["by_kind"] = dict(by_kind)
        return result

    # ------------------------------------------------------------------ confirmed bulk deletes

    def _token(self, operation: str, params: Sequence[str], keys: Sequence[str]) -> str:
        digest = hashlib.sha256()
        for part in (operation, self.cache.namespace, *params, "", *keys):
            digest.update(part.encode())
            digest.update(b"\x00")
        return digest.hexdigest()[:32]

    def _list_keys(self, patterns: Sequence[str], stats: dict[str, Any]) -> list[str]:
        tier = self._tier()
        found: set[str] = set()
        for keys in self._scan(tier, patterns, stats):
            found.update(keys)
        return sorted(found)

    def _confirmed(
        self,
        operation: str,
        params: Sequence[str],
        keys: list[str],
        stats: dict[str, Any],
        *,
        dry_run: bool,
        confirm: str | None,
    ) -> bool:
        """Fill the listing stats; True when the caller may delete ``keys`` now."""
        token = self._token(operation, params, keys)
        ns = self.cache.namespace
        stats.update(
            keys_matched=len(keys),
            by_kind=dict(Counter(key_kind(k, ns) for k in keys)),
            confirm_token=token,
            confirmed=False,
            refused=None,
        )
        if dry_run:
            return False
        if confirm is None:
            reason = "no confirm token: run with dry_run=True and pass its confirm_token"
        elif not hmac.compare_digest(confirm.encode(), token.encode()):
            reason = (
                "confirm token does not match what is there now (a wrong token, or the keyspace "
                "changed since the dry run): run the dry run again"
            )
        else:
            stats["confirmed"] = True
            return True
        stats.update(refused=reason, confirm_token=None)
        log.warning("%s refused: %s", operation, reason)
        return False

    def _delete_listed(self, keys: Sequence[str], stats: dict[str, Any]) -> None:
        cache = self.cache
        for i in range(0, len(keys), self.scan_count):
            batch = list(keys[i : i + self.scan_count])
            cache.delete_keys(batch, on_error="raise")
            stats["keys_deleted"] += len(batch)

    def _delete_plain(self, keys: Sequence[str]) -> None:
        """DEL without a broadcast (for keys no L1 holds)."""
        tier = self._tier()
        if not keys:
            return
        if tier.cluster:  # one slot per call
            tier.execute("DEL", lambda c: [c.delete(k) for k in keys])
        else:
            tier.execute("DEL", lambda c: c.delete(*keys))

    def _run(self, stats: dict[str, Any], body: Callable[[], None]) -> dict[str, Any]:
        started = self.monotonic()
        try:
            body()
            stats["completed"] = True
        except BackendError as exc:
            stats["error"] = str(exc)
            log.warning("%s failed: %s", stats["operation"], exc)
        return self._finish(stats, started)

    def purge_kind(
        self, kind: str, *, dry_run: bool = False, confirm: str | None = None
    ) -> dict[str, Any]:
        """Delete every entry of ``kind`` (facade state and decorated functions), confirmed.

        Without a matching ``confirm`` token this only lists (``keys_matched``, ``by_kind``,
        ``confirm_token``); with the token of a dry run it deletes exactly the keys listed.
        """
        check_name("kind", kind)
        ns = self.cache.namespace
        stats = self._new_stats("purge_kind", dry_run)
        stats["kind"] = kind

        def body() -> None:
            keys = self._list_keys([f"{ns}:raw:{kind}%3A*", f"{ns}:{kind}:*"], stats)
            if self._confirmed("purge_kind", [kind], keys, stats, dry_run=dry_run, confirm=confirm):
                self._delete_listed(keys, stats)

        return self._run(stats, body)

    def purge_namespace(
        self, *, dry_run: bool = False, confirm: str | None = None
    ) -> dict[str, Any]:
        """Delete every entry of this namespace, confirmed (see :meth:`purge_kind`); then bump
        the namespace epoch so no process serves anything older. Tag version keys are kept."""
        ns = self.cache.namespace
        stats = self._new_stats("purge_namespace", dry_run)

        def body() -> None:
            keys = self._list_keys([f"{ns}:*"], stats)
            if self._confirmed(
                "purge_namespace", [], keys, stats, dry_run=dry_run, confirm=confirm
            ):
                self._delete_listed(keys, stats)
                self.cache.invalidate(tags=[NAMESPACE_TAG], on_error="raise")

        return self._run(stats, body)

    # ------------------------------------------------------------------ privacy

    def _user_listing(self, user_id: str, stats: dict[str, Any]) -> tuple[list[str], list[str]]:
        """The keys holding ``user_id``'s data and the tags to invalidate.

        The user's data: entries tagged ``user:<id>`` or ``therapeutic:<id>``, and every entry
        tagged with a session of the user (a session tag found beside the user tag).
        """
        tier = self._tier()
        user_tags = {tag("user", user_id), tag("therapeutic", user_id)}
        direct: set[str] = set()
        sessions: set[str] = set()
        by_session: dict[str, list[str]] = {}
        for keys in self._scan(tier, [f"{self.cache.namespace}:*"], stats):
            for e in self._read(tier, keys, stats):
                if e.entry is None:
                    continue
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

    def _audit(self, operation: str, user_id: str, stats: dict[str, Any]) -> None:
        outcome = (
            "refused" if stats.get("refused") else "failed" if stats.get("error") else "erased"
        )
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
                "namespace": self.cache.namespace,
            },
        )

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
        return self._erase("forget_user", user_id, dry_run, confirm, None)

    def anonymize_user(
        self,
        user_id: str,
        *,
        pseudonym: str | None = None,
        dry_run: bool = False,
        confirm: str | None = None,
    ) -> dict[str, Any]:
        """Keep ``user_id``'s therapeutic progress under a pseudonym, erase everything else.

        The facade's :class:`~tta_cache.tta.TherapeuticProgress` of the user is re-stored under
        ``pseudonym`` (default: a random ``anon-<hex>``, returned in ``pseudonym``; nothing
        links it to the user unless the caller keeps the pair) with its free text dropped (goal
        descriptions, ``next_focus``) and its dates cut to the day; then the user is forgotten
        as by :meth:`forget_user` (same dry-run / ``confirm`` protocol and audit record).
        """
        pseudonym = pseudonym or f"anon-{secrets.token_hex(8)}"
        return self._erase("anonymize_user", user_id, dry_run, confirm, pseudonym)

    def _erase(
        self,
        operation: str,
        user_id: str,
        dry_run: bool,
        confirm: str | None,
        pseudonym: str | None,
    ) -> dict[str, Any]:
        stats = self._new_stats(operation, dry_run)
        stats.update(user=user_hash(user_id), tags_invalidated=0)
        if pseudonym is not None:
            stats.update(pseudonym=pseudonym, anonymized={})

        def body() -> None:
            keys, tags = self._user_listing(user_id, stats)
            if not self._confirmed(
                operation, [user_id], keys, stats, dry_run=dry_run, confirm=confirm
            ):
                return
            cache = self.cache
            if pseudonym is not None:
                stats["anonymized"] = self._anonymize(user_id, pseudonym)
            # Tags first: once bumped, no process serves any of it, even entries not listed.
            cache.invalidate(tags=tags, on_error="raise")
            stats["tags_invalidated"] = len(tags)
            self._delete_listed(keys, stats)
            # The version keys name the user. Dropping them is safe once the entries are gone:
            # a version is recreated from the server clock, above every stamp taken before.
            self._delete_plain([cache.engine.tag_key(t) for t in tags])

        result = self._run(stats, body)
        if not dry_run:
            self._audit(operation, user_id, result)
        return result

    def _anonymize(self, user_id: str, pseudonym: str) -> dict[str, int]:
        from .tta.models import TherapeuticGoal, TherapeuticProgress

        cache = self.cache
        progress = cache.get(state_key("therapeutic", user_id), type_hint=TherapeuticProgress)
        if not isinstance(progress, TherapeuticProgress):
            return {}

        def day(value: datetime) -> datetime:
            return value.replace(hour=0, minute=0, second=0, microsecond=0)

        anonymous = dataclasses.replace(
            progress,
            user_id=pseudonym,
            goals=[
                TherapeuticGoal(
                    goal_id=g.goal_id,
                    progress=g.progress,
                    completed=g.completed,
                    target_date=None if g.target_date is None else day(g.target_date),
                )
                for g in progress.goals
            ],
            next_focus=None,
            last_updated=day(progress.last_updated),
        )
        cache.set(
            state_key("therapeutic", pseudonym),
            anonymous,
            kind="therapeutic",
            tags=[tag("therapeutic", pseudonym)],
        )
        return {"therapeutic": 1}


def _behind(current: int | None, stamped: int) -> bool:
    # An absent version means it was lost (TTL, flush); it is recreated larger than any before.
    return current is None or current > stamped
