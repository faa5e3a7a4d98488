"""``tta-cache keygen`` and ``tta-cache rotate-keys``: making encryption keys, and moving the
entries an old key sealed to the current one so the old key can be retired.

Keys reach the CLI only through the environment (``$TTA_CACHE_ENCRYPTION_KEYS``,
``$TTA_CACHE_SIGNING_KEYS``), never the command line, where ``ps`` would show them. ``keygen``
is the one command that prints a secret: the new key, on stdout, for the secret store.
"""

from __future__ import annotations

import argparse
import datetime as dt
from typing import TextIO

from ..codec import ENCRYPTION_KEYS_ENV, encryption_keys, generate_key
from .common import (
    EXIT_CONFIRM,
    EXIT_OK,
    CommandExit,
    manager,
    open_cache,
    print_json,
    progress,
    report_result,
)

__all__ = ["cmd_keygen", "cmd_rotate_keys"]


def cmd_keygen(args: argparse.Namespace, out: TextIO) -> int:
    """Print a new AES-256 key as ``id:base64``, the form ``$TTA_CACHE_ENCRYPTION_KEYS`` takes."""
    key_id = args.key_id or "k" + dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d%H%M")
    key = generate_key()
    encryption_keys({key_id: key})  # a ConfigurationError (exit 2) for an id that cannot be used
    if args.json:
        print_json({"key_id": key_id, "key": key, "env": ENCRYPTION_KEYS_ENV}, out)
    else:
        out.write(f"{key_id}:{key}\n")
    return EXIT_OK


def cmd_rotate_keys(args: argparse.Namespace, out: TextIO) -> int:
    """Report (``--dry-run``) or reseal (``--confirm``) what old keys seal."""
    if args.dry_run == args.confirm:
        raise CommandExit(
            EXIT_CONFIRM,
            "rotate-keys rewrites entries: run it with --dry-run to see what old keys seal, "
            "then with --confirm to reseal them under the current keys",
        )
    with open_cache(args) as cache:
        label = "rotate-keys" + (" (dry run)" if args.dry_run else "")
        with progress(args, label) as bar:
            stats = manager(cache).rotate_keys(
                dry_run=args.dry_run, time_limit_s=args.time_limit, progress=bar.update
            )
    code = report_result(args, stats, out)
    if args.json or code != EXIT_OK:
        return code
    remaining = stats["remaining"]
    if args.dry_run:
        out.write(
            f"\ndry run: nothing rewritten. {stats['resealed']:,} entries would be resealed "
            "under the current keys: run again with --confirm\n"
        )
    elif remaining:
        left = ", ".join(f"{k} ({n:,})" for k, n in sorted(remaining.items()))
        out.write(f"\nstill sealed by old or unknown keys: {left}; keep those keys configured\n")
    elif stats["completed"]:
        out.write("\nnothing is sealed by an old key any more: the old keys can be removed\n")
    return code
