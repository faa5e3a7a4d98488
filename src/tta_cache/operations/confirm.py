"""The dry-run protocol of bulk deletes of live data: list first, delete only what was listed.

A bulk delete lists what it would delete and returns a ``confirm_token`` derived from that list
(a SHA-256 of the operation, the namespace, its parameters and the sorted keys). Only a call with
that token deletes, and it deletes exactly the keys listed; a missing or wrong token, or a
keyspace that changed since the dry run, deletes nothing and says so in ``refused``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any

from .layout import key_kind

__all__ = ["confirm_token", "confirmed"]

log = logging.getLogger("tta_cache.maintenance")


def confirm_token(
    operation: str, namespace: str, params: Sequence[str], keys: Sequence[str]
) -> str:
    """The token a dry run of ``operation`` over exactly ``keys`` returns."""
    digest = hashlib.sha256()
    for part in (operation, namespace, *params, "", *keys):
        digest.update(part.encode())
        digest.update(b"\x00")
    return digest.hexdigest()[:32]


def confirmed(
    namespace: str,
    params: Sequence[str],
    keys: list[str],
    stats: dict[str, Any],
    *,
    dry_run: bool,
    confirm: str | None,
) -> bool:
    """Fill the listing stats of ``stats["operation"]``; True when the caller may delete ``keys``
    now (not a dry run, and ``confirm`` is the token of a dry run that listed the same keys)."""
    operation = stats["operation"]
    token = confirm_token(operation, namespace, params, keys)
    stats.update(
        keys_matched=len(keys),
        by_kind=dict(Counter(key_kind(k, namespace) for k in keys)),
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
