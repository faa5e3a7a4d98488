"""A namespace's keys in Redis as maintenance sees them: scanned, read, and deleted safely.

Sweeps walk the namespace with ``SCAN MATCH <ns>:... COUNT 1000`` (never ``KEYS``; on Redis
Cluster redis-py's ``scan_iter`` visits every primary), read each batch with one MGET, and delete
with a compare-and-delete script: an entry rewritten since it was read is kept. Every deletion also
reaches every process's L1: the deleted keys are published on the invalidation channel.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice
from typing import TYPE_CHECKING, Any

from ..codec import Entry
from ..coherence import Message
from ..exceptions import ConfigurationError, DecodeError
from ..tiers import RedisTier, parse_version
from .runs import Deadline

if TYPE_CHECKING:
    from ..api import Cache

__all__ = ["SCAN_COUNT", "Keyspace", "Scanned"]

SCAN_COUNT = 1000
"""Keys per SCAN step, MGET and delete batch."""

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


def _sha1(raw: bytes) -> str:
    return hashlib.sha1(raw, usedforsecurity=False).hexdigest()


@dataclasses.dataclass
class Scanned:
    """One entry read during a sweep: its key, its bytes as read, and its decoded envelope."""

    key: str
    raw: bytes
    entry: Entry


class Keyspace:
    """Scanning, reading and deleting in the namespace of ``cache()`` (a zero-argument callable:
    the facade's connection manager passes its own, which may reconnect)."""

    def __init__(
        self,
        cache: Callable[[], Cache],
        *,
        scan_count: int = SCAN_COUNT,
        monotonic: Callable[[], float],
    ) -> None:
        if scan_count < 1:
            raise ConfigurationError("scan_count must be >= 1")
        self._cache = cache
        self.scan_count = scan_count
        self.monotonic = monotonic

    @property
    def cache(self) -> Cache:
        """The cache whose namespace this is."""
        return self._cache()

    @property
    def namespace(self) -> str:
        """The namespace every key of this keyspace starts with (and a ``:``)."""
        return self.cache.namespace

    def tier(self) -> RedisTier:
        """The cache's Redis tier; a local-only cache has no keyspace to maintain."""
        tier = self.cache.engine.redis
        if tier is None:
            raise ConfigurationError("maintenance sweeps need Redis; this cache is local only")
        return tier

    def scan(
        self,
        tier: RedisTier,
        patterns: Sequence[str],
        stats: dict[str, Any],
        deadline: float | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> Iterator[list[str]]:
        """Batches of keys matching ``patterns`` (tag version keys excluded); raises
        :class:`~.runs.Deadline` between batches once ``monotonic()`` passes ``deadline``."""
        skip = f"{self.namespace}:tag:"
        count = self.scan_count
        for pattern in patterns:

            def start(client: Any, pattern: str = pattern) -> Iterator[Any]:
                return client.scan_iter(match=pattern, count=count)  # type: ignore[no-any-return]

            found = tier.execute("SCAN", start)

            def step(client: Any, found: Iterator[Any] = found) -> list[Any]:
                return list(islice(found, count))

            while True:
                if deadline is not None and self.monotonic() >= deadline:
                    raise Deadline
                batch = tier.execute("SCAN", step)
                if not batch:
                    break
                stats["keys_scanned"] += len(batch)
                stats["batches"] += 1
                keys = [k.decode() if isinstance(k, bytes) else k for k in batch]
                yield [k for k in keys if not k.startswith(skip)]
                if progress is not None:
                    progress(stats["keys_scanned"])

    def read(self, tier: RedisTier, keys: list[str], stats: dict[str, Any]) -> list[Scanned]:
        """MGET ``keys`` and decode their envelopes. Keys gone since the SCAN are skipped; entries
        this codec cannot read are counted in ``undecodable`` and skipped (another deployment may
        read them, so no sweep touches them)."""
        codec = self.cache.engine.codec
        out = []
        for key, raw in zip(keys, tier.get_many(keys), strict=True):
            if raw is None:
                continue
            try:
                out.append(Scanned(key, raw, codec.decode(raw, key=key)))
            except DecodeError:
                stats["undecodable"] += 1
        return out

    def versions(self, tier: RedisTier, entries: Iterable[Scanned]) -> dict[str, int | None]:
        """Current tag versions for every tag stamped on ``entries`` (None: absent, or corrupt,
        which the next read replaces by a larger one)."""
        tags = sorted({t for e in entries for t, _ in e.entry.stamp})
        if not tags:
            return {}
        tag_key = self.cache.engine.tag_key
        raws = tier.get_many([tag_key(t) for t in tags])
        return {t: parse_version(v) for t, v in zip(tags, raws, strict=True)}

    def existing(self, tier: RedisTier, keys: Sequence[str]) -> set[str]:
        """Which of ``keys`` exist (one pipeline of EXISTS)."""

        def run(client: Any) -> list[Any]:
            pipe = client.pipeline(transaction=False)
            for k in keys:
                pipe.exists(k)
            return list(pipe.execute())

        if not keys:
            return set()
        return {k for k, n in zip(keys, tier.execute("EXISTS", run), strict=True) if n}

    def cas_delete(self, tier: RedisTier, entries: Sequence[Scanned]) -> int:
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

    def list_keys(
        self, patterns: Sequence[str], stats: dict[str, Any], deadline: float | None = None
    ) -> list[str]:
        """Every key matching ``patterns`` (tag version keys excluded), sorted."""
        found: set[str] = set()
        for keys in self.scan(self.tier(), patterns, stats, deadline):
            found.update(keys)
        return sorted(found)

    def delete_listed(self, keys: Sequence[str], stats: dict[str, Any]) -> None:
        """Delete ``keys`` in batches, in Redis and in every process's L1."""
        cache = self.cache
        for i in range(0, len(keys), self.scan_count):
            batch = list(keys[i : i + self.scan_count])
            cache.delete_keys(batch, on_error="raise")
            stats["keys_deleted"] += len(batch)

    def delete_plain(self, keys: Sequence[str]) -> None:
        """DEL without a broadcast (for keys no L1 holds)."""
        tier = self.tier()
        if not keys:
            return
        if tier.cluster:  # one slot per call
            tier.execute("DEL", lambda c: [c.delete(k) for k in keys])
        else:
            tier.execute("DEL", lambda c: c.delete(*keys))
