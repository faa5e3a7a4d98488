"""Key rotation: move the entries an old encryption or signing key sealed to the current keys.

Encryption and signing keys rotate alike: the first configured key seals, every configured key
opens, so a new key is deployed first in the list, and an old one can be dropped once nothing it
sealed is still wanted. :func:`rotate_keys` walks the namespace (``SCAN``, batched, within a time
limit) and reseals each entry that verifies only under an old key with the current ones
(:meth:`~tta_cache.codec.Codec.reseal`: the value is not deserialized, its metadata and TTL are
kept). The write is a compare-and-set: an entry rewritten since it was read is live data, and is
kept as it is. The report says how many entries each key id and signing key seals, and what still
remains under old or unknown ones.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from ..codec import Codec, Sealing
from ..exceptions import ConfigurationError, DecodeError
from ..tiers import RedisTier
from .keyspace import Keyspace
from .runs import new_stats, run

__all__ = ["rotate_keys"]

# KEYS: entries; ARGV: per entry, the SHA-1 of its bytes as read, then its resealed bytes. Writes
# the entries still holding what was read, keeping their TTL; returns the 1-based indexes written.
_CAS_SET_LUA = """
local out = {}
for i, k in ipairs(KEYS) do
  local v = redis.call('GET', k)
  if v and redis.sha1hex(v) == ARGV[2 * i - 1] then
    redis.call('SET', k, ARGV[2 * i], 'KEEPTTL')
    out[#out + 1] = i
  end
end
return out
"""

UNENCRYPTED = "(none)"
UNSIGNED = "unsigned"


def _signing_label(index: int | None) -> str:
    return UNSIGNED if index is None else f"#{index}" + (" (current)" if index == 0 else "")


def rotate_keys(
    space: Keyspace,
    *,
    dry_run: bool,
    time_limit_s: float | None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Reseal the namespace's entries under the current keys (see the module).

    Statistics, beside the common ones: ``current_key_id``, ``by_key_id`` (entries found per
    encryption key id, ``(none)`` for unencrypted), ``by_signing_key`` (``#0 (current)``,
    ``#1``..., ``unsigned``), ``resealed`` (or, in a dry run, that would be), ``changed_since_read``
    (rewritten by the service between the read and the write: kept), and ``remaining``: entries
    still sealed by each key id that is not the current one (unknown ids included, from entries
    this codec could not open) and by each old signing key (``signing #1``...): what must be
    empty before a key is dropped.
    """
    codec = space.cache.engine.codec
    encryptor = codec.encryptor
    if encryptor is None and codec.signing_keys == 0:
        raise ConfigurationError(
            "rotate-keys needs the keys: set TTA_CACHE_ENCRYPTION_KEYS and/or "
            "TTA_CACHE_SIGNING_KEYS (the new key first), or pass encryption_keys/signing_key"
        )
    current = encryptor.current_key_id if encryptor is not None else None
    stats = new_stats(
        "rotate_keys",
        dry_run,
        current_key_id=current,
        signing_keys=codec.signing_keys,
        resealed=0,
        changed_since_read=0,
    )
    by_key_id: Counter[str] = Counter()
    by_signing: Counter[str] = Counter()
    remaining: Counter[str] = Counter()
    ns = space.namespace

    def body(deadline: float | None) -> None:
        tier = space.tier()
        for batch in space.scan(tier, [f"{ns}:*"], stats, deadline, progress):
            keys = [k for k in batch if not k.endswith(":lease")]  # lease tokens, not entries
            todo: list[tuple[str, bytes, bytes]] = []
            sealings: list[Sealing] = []
            for key, raw in zip(keys, tier.get_many(keys), strict=True):
                if raw is None:
                    continue
                try:
                    sealing, resealed = codec.reseal(raw, key=key)
                except DecodeError:
                    stats["undecodable"] += 1
                    unknown = Codec.key_id_of(raw)
                    if unknown is not None:  # under a key id this codec lacks
                        by_key_id[unknown] += 1
                        remaining[unknown] += 1
                    continue
                by_key_id[sealing.key_id or UNENCRYPTED] += 1
                by_signing[_signing_label(sealing.signing_key)] += 1
                if resealed is not None:
                    todo.append((key, raw, resealed))
                    sealings.append(sealing)
            written = set() if dry_run else _cas_set(tier, todo)
            stats["resealed"] += len(todo) if dry_run else len(written)
            stats["changed_since_read"] += 0 if dry_run else len(todo) - len(written)
            for i, sealing in enumerate(sealings):
                # Not resealed: a dry run, or rewritten since the read (by a process that may
                # still seal with the old key: counted until a later run sees what it holds).
                if i not in written:
                    if sealing.key_id is not None and sealing.key_id != current:
                        remaining[sealing.key_id] += 1
                    if sealing.signing_key:
                        remaining[f"signing {_signing_label(sealing.signing_key)}"] += 1

    result = run(stats, body, space.monotonic, time_limit_s)
    result["by_key_id"] = dict(by_key_id)
    result["by_signing_key"] = dict(by_signing)
    result["remaining"] = dict(remaining)
    return result


def _sha1(raw: bytes) -> str:
    return hashlib.sha1(raw, usedforsecurity=False).hexdigest()


def _cas_set(tier: RedisTier, todo: Sequence[tuple[str, bytes, bytes]]) -> set[int]:
    """Write each resealed entry whose bytes are still those read; the 0-based indexes written."""
    if not todo:
        return set()

    def cas(client: Any) -> set[int]:
        script = client.register_script(_CAS_SET_LUA)
        if tier.cluster:  # one slot per call
            return {
                i
                for i, (k, raw, new) in enumerate(todo)
                if script(keys=[k], args=[_sha1(raw), new])
            }
        args: list[Any] = []
        for _, raw, new in todo:
            args += [_sha1(raw), new]
        return {int(i) - 1 for i in script(keys=[k for k, _, _ in todo], args=args)}

    written: set[int] = tier.execute("EVALSHA cas-set", cas)
    return written
