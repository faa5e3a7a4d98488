"""The Redis ACL a tta-cache user needs: its namespace's keys and channels, and these commands.

:func:`acl_rule` writes the rule (``docs/security.md`` shows it; ``tests/integration/test_acl.py``
runs the library, its maintenance and its CLI as a user holding exactly that rule). Redis checks
the commands a Lua script runs as well, so the list holds what the scripts call (SET, INCR, TTL,
EXPIRE, PTTL, TIME, UNLINK, PUBLISH) besides what the client sends.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..core.keys import check_name

__all__ = ["ACL_COMMANDS", "CLUSTER_COMMANDS", "MAINTENANCE_COMMANDS", "acl_rule"]

ACL_COMMANDS = (
    "get",
    "set",
    "mget",
    "del",
    "unlink",
    "exists",
    "scan",
    "evalsha",
    "script|load",
    "publish",
    "subscribe",
    "unsubscribe",
    "ping",
    "incr",
    "expire",
    "ttl",
    "pttl",
    "time",
)
"""What the library and every CLI command but ``stats`` send, or their scripts run."""

CLUSTER_COMMANDS = ("cluster|slots", "command")
"""What redis-py's Cluster client adds (the slot map, and the key positions of commands)."""

MAINTENANCE_COMMANDS = {"stats": ("info", "pubsub|numsub")}
"""What the CLI commands that report on the server need beyond :data:`ACL_COMMANDS`."""


def acl_rule(
    namespace: str, *, cluster: bool = False, db: int = 0, extra: Iterable[str] = ()
) -> str:
    """The ACL rules of a user for ``namespace``: ``ACL SETUSER <user> reset on >PASSWORD``
    followed by this. ``cluster`` adds :data:`CLUSTER_COMMANDS`, ``db`` other than 0 adds
    ``select``, ``extra`` any more (``MAINTENANCE_COMMANDS["stats"]``)."""
    check_name("namespace", namespace)
    commands = [*ACL_COMMANDS, *(CLUSTER_COMMANDS if cluster else ()), *extra]
    if db:
        commands.append("select")
    grants = " ".join(f"+{c}" for c in dict.fromkeys(commands))
    return f"resetchannels ~{namespace}:* &{namespace}:* -@all {grants}"
