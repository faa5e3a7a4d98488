"""Operations: maintenance of a namespace in Redis, and an embedded ``redis-server``.

=================  ==========================================================================
``manager``        :class:`CacheInvalidationManager`, the entry point: invalidation, sweeps,
                   purges, erasure
``cleanup``        sweeps of expired sessions and orphaned entries
``purge``          bulk deletes of a kind or the namespace
``privacy``        erasure and anonymization of a user, the audit record
``rotation``       resealing entries under the current encryption and signing keys
``confirm``        the dry-run token protocol of every bulk delete
``keyspace``       SCAN / MGET / compare-and-delete over the namespace
``runs``           the statistics dict and time limit every operation shares
``layout``         the facade's state keys, the kind of a Redis key
``inventory``      what a namespace holds (``tta-cache stats``)
``embedded``       :class:`EmbeddedRedis`, a throwaway ``redis-server`` for demos and quick starts
``acl``            :func:`acl_rule`, the Redis ACL a namespace's user needs
=================  ==========================================================================
"""

from __future__ import annotations

from .acl import ACL_COMMANDS, CLUSTER_COMMANDS, MAINTENANCE_COMMANDS, acl_rule
from .embedded import EmbeddedRedis, find_binary, find_redis_server
from .inventory import namespace_inventory
from .layout import SESSION_SCOPED_KINDS, key_kind, state_key
from .manager import CacheInvalidationManager
from .privacy import Pseudonymizer, user_hash

__all__ = [
    "ACL_COMMANDS",
    "CLUSTER_COMMANDS",
    "MAINTENANCE_COMMANDS",
    "SESSION_SCOPED_KINDS",
    "CacheInvalidationManager",
    "EmbeddedRedis",
    "Pseudonymizer",
    "acl_rule",
    "find_binary",
    "find_redis_server",
    "key_kind",
    "namespace_inventory",
    "state_key",
    "user_hash",
]
