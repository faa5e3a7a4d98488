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
from .common import EXIT_OK, print_json

__all__ = ["cmd_keygen"]


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
