"""``tta-cache invalidate``, ``cleanup`` and ``purge``: change what the namespace serves."""

from __future__ import annotations

import argparse
from typing import TextIO

from .common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    CommandExit,
    confirmed_op,
    manager,
    open_cache,
    print_json,
    progress,
    report_result,
)

__all__ = ["cmd_cleanup", "cmd_invalidate", "cmd_purge"]


def cmd_invalidate(args: argparse.Namespace, out: TextIO) -> int:
    """Invalidate the named users, sessions and characters."""
    if not (args.user or args.session or args.character):
        raise CommandExit(
            EXIT_USAGE, "invalidate: give at least one --user, --session or --character"
        )
    if args.preserve_therapeutic and not args.user:
        raise CommandExit(EXIT_USAGE, "invalidate: --preserve-therapeutic goes with --user")
    results = []
    with open_cache(args) as cache:
        m = manager(cache)
        for user in args.user:
            results.append(m.invalidate_user(user, args.preserve_therapeutic))
        for session in args.session:
            results.append(m.invalidate_session(session))
        for character in args.character:
            results.append(m.invalidate_character(character))
    failed = [r for r in results if not r.get("completed")]
    if args.json:
        print_json(results, out)
    else:
        for r in results:
            state = "done" if r.get("completed") else f"FAILED: {r.get('error')}"
            out.write(f"{r['operation']:<22} {r['tags_invalidated']} tag(s)  {state}\n")
    return EXIT_FAILED if failed else EXIT_OK


def cmd_cleanup(args: argparse.Namespace, out: TextIO) -> int:
    """``cleanup expired`` or ``cleanup orphans``."""
    with open_cache(args) as cache:
        m = manager(cache)
        label = f"cleanup {args.what}" + (" (dry run)" if args.dry_run else "")
        with progress(args, label) as bar:
            if args.what == "expired":
                stats = m.cleanup_expired_sessions(
                    max_age_hours=args.max_age_hours,
                    dry_run=args.dry_run,
                    time_limit_s=args.time_limit,
                    progress=bar.update,
                )
            else:
                stats = m.cleanup_orphaned_data(
                    dry_run=args.dry_run, time_limit_s=args.time_limit, progress=bar.update
                )
    return report_result(args, stats, out)


def cmd_purge(args: argparse.Namespace, out: TextIO) -> int:
    """``purge kind KIND`` or ``purge namespace``, dry run first."""
    if args.what == "kind" and not args.kind:
        raise CommandExit(
            EXIT_USAGE, "purge kind: name the kind (session, character, narrative, ...)"
        )
    if args.what == "namespace" and args.kind:
        raise CommandExit(EXIT_USAGE, "purge namespace takes no kind")
    if args.what == "kind":
        stats = confirmed_op(
            args, f"purge kind {args.kind}", lambda m, o: m.purge_kind(args.kind, **o)
        )
    else:
        stats = confirmed_op(args, "purge namespace", lambda m, o: m.purge_namespace(**o))
    return report_result(args, stats, out)
