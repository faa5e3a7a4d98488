"""The program: dispatch to the command, route the library's logs, map failures to exit codes."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TextIO

from ..exceptions import ConfigurationError
from .common import EXIT_FAILED, EXIT_USAGE, CommandExit
from .demo import cmd_demo
from .keys import cmd_keygen, cmd_rotate_keys
from .maintenance import cmd_cleanup, cmd_invalidate, cmd_purge
from .parser import build_parser
from .privacy import cmd_anonymize_user, cmd_forget_user
from .status import cmd_health, cmd_stats

__all__ = ["COMMANDS", "main"]


COMMANDS: dict[str, Callable[[argparse.Namespace, TextIO], int]] = {
    "demo": cmd_demo,
    "health": cmd_health,
    "stats": cmd_stats,
    "invalidate": cmd_invalidate,
    "cleanup": cmd_cleanup,
    "purge": cmd_purge,
    "forget-user": cmd_forget_user,
    "anonymize-user": cmd_anonymize_user,
    "keygen": cmd_keygen,
    "rotate-keys": cmd_rotate_keys,
}


@contextmanager
def _logging(verbosity: int) -> Iterator[None]:
    """Route the library's log records to stderr for one command, then restore the loggers."""
    # The library logs fail-open events as warnings; a command reports its own outcome, so by
    # default only errors and the audit trail (forget-user, anonymize-user) reach stderr.
    level = (logging.ERROR, logging.WARNING, logging.DEBUG)[min(verbosity, 2)]
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("tta-cache: %(name)s: %(message)s"))
    root, audit = logging.getLogger("tta_cache"), logging.getLogger("tta_cache.audit")
    saved = (root.handlers[:], root.level, root.propagate, audit.level)
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    audit.setLevel(min(level, logging.INFO))
    try:
        yield
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        root.propagate = saved[2]
        audit.setLevel(saved[3])


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run ``tta-cache`` with ``argv`` (default: the process's); returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2)
        return int(exc.code or 0)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    out = out if out is not None else sys.stdout
    try:
        with _logging(args.verbose):
            return COMMANDS[args.command](args, out)
    except CommandExit as exc:
        sys.stderr.write(f"tta-cache: {exc}\n")
        return exc.code
    except ConfigurationError as exc:
        sys.stderr.write(f"tta-cache: {exc}\n")
        return EXIT_USAGE
    except BrokenPipeError:  # `tta-cache ... | head`: the reader left; say nothing more
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILED
    except KeyboardInterrupt:
        sys.stderr.write("tta-cache: interrupted\n")
        return 130
