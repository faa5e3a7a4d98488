"""``tta-cache forget-user`` and ``anonymize-user``: erase a user's data, dry run first."""

from __future__ import annotations

import argparse
from typing import TextIO

from .common import confirmed_op, report_result

__all__ = ["cmd_anonymize_user", "cmd_forget_user"]


def cmd_forget_user(args: argparse.Namespace, out: TextIO) -> int:
    """``forget-user USER_ID``, dry run first."""
    stats = confirmed_op(args, "forget-user", lambda m, o: m.forget_user(args.user_id, **o))
    return report_result(args, stats, out)


def cmd_anonymize_user(args: argparse.Namespace, out: TextIO) -> int:
    """``anonymize-user USER_ID``, dry run first."""
    stats = confirmed_op(
        args,
        "anonymize-user",
        lambda m, o: m.anonymize_user(args.user_id, pseudonym=args.pseudonym, **o),
    )
    return report_result(args, stats, out)
