"""The ``tta-cache`` argument parser: the options every command takes, and each command's own."""

from __future__ import annotations

import argparse
import textwrap
from typing import Any

from .common import (
    DEFAULT_URL,
    EXIT_CONFIRM,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    URL_ENV,
)

__all__ = ["EPILOG", "build_parser"]

EPILOG = f"""\
exit codes:
  {EXIT_OK}  ok (health: healthy)
  {EXIT_FAILED}  health degraded or unhealthy, or the operation failed
  {EXIT_USAGE}  usage error (bad arguments, bad URL)
  {EXIT_UNREACHABLE}  Redis unreachable
  {EXIT_CONFIRM}  confirmation token missing or wrong: run with --dry-run first, then pass
     its token with --confirm

Redis URL: --redis-url, else ${URL_ENV}, else {DEFAULT_URL}.
`demo` uses --redis-url only; without it, it starts an embedded redis-server.
"""


def _add_common(parser: argparse.ArgumentParser, *, top: bool) -> None:
    # On subcommands the defaults are SUPPRESS, so an option given before the command is not
    # overwritten by the subparser's default.
    def default(value: Any) -> Any:
        return value if top else argparse.SUPPRESS

    parser.add_argument(
        "--redis-url",
        metavar="URL",
        default=default(None),
        help=f"Redis URL (redis://, rediss://, unix://, redis+sentinel://, redis+cluster://); "
        f"default ${URL_ENV} or {DEFAULT_URL}",
    )
    parser.add_argument(
        "--namespace", default=default("tta"), help="the cache namespace (default: tta)"
    )
    parser.add_argument(
        "--json", action="store_true", default=default(False), help="print JSON for scripts"
    )
    parser.add_argument(
        "--progress",
        action="store_true",
        default=default(False),
        help="show progress on stderr even when it is not a terminal",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=default(0),
        help="log warnings (-v) or everything (-vv) on stderr",
    )
    parser.add_argument(
        "--timeout",
        type=_positive_float,
        metavar="SECONDS",
        default=default(5.0),
        help="timeout of each Redis operation (default: 5)",
    )


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, not {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, not {text}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be within [0, 1], not {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The ``tta-cache`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="tta-cache",
        description="Operate a tta-cache namespace in Redis, or run the demo.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common(parser, top=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, help: str, description: str | None = None) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            help=help,
            description=textwrap.fill(description or help, 79),
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _add_common(sub, top=False)
        return sub

    demo = command(
        "demo",
        "simulate TTA traffic across processes and print per-tier figures",
        "Simulate players, sessions, characters and choices across worker processes over a "
        "real database (a SQLite file, or --database-url), writing in transactions whose "
        "invalidations are sent after the commit; print hit rates, latency per tier, "
        "invalidation lag, Redis round trips and database queries per request and a stale-read "
        "check against the rows' versions. Without --redis-url an embedded redis-server is "
        "started in a temporary directory and removed after.",
    )
    demo.add_argument("--workers", type=_positive_int, default=4, help="processes (default: 4)")
    demo.add_argument(
        "--duration", type=_positive_float, default=10.0, help="seconds of traffic (default: 10)"
    )
    demo.add_argument("--players", type=_positive_int, default=200, help="players (default: 200)")
    demo.add_argument(
        "--choice-rate",
        type=_fraction,
        default=0.05,
        help="share of turns that make a choice (default: 0.05)",
    )
    demo.add_argument("--seed", type=int, default=None, help="random seed")
    demo.add_argument(
        "--local-only", action="store_true", help="no Redis: each process has only its L1"
    )
    demo.add_argument(
        "--database-url",
        default=None,
        help="a SQLAlchemy URL (e.g. postgresql+psycopg://...) instead of a temporary SQLite "
        "file; its tta_* tables are dropped and recreated",
    )

    command("health", "check Redis and the invalidation channel; exit 1 unless healthy")
    command("stats", "entries per kind in the namespace, Redis memory and hit rate")

    invalidate = command(
        "invalidate", "invalidate users', sessions' or characters' entries in every process"
    )
    invalidate.add_argument("--user", action="append", default=[], metavar="USER_ID")
    invalidate.add_argument("--session", action="append", default=[], metavar="SESSION_ID")
    invalidate.add_argument("--character", action="append", default=[], metavar="CHARACTER_ID")
    invalidate.add_argument(
        "--preserve-therapeutic",
        action="store_true",
        help="with --user: keep the users' therapeutic progress",
    )

    cleanup = command("cleanup", "remove expired sessions or orphaned entries")
    cleanup.add_argument("what", choices=("expired", "orphans"))
    cleanup.add_argument("--dry-run", action="store_true", help="count, delete nothing")
    cleanup.add_argument(
        "--max-age-hours",
        type=float,
        default=24.0,
        metavar="N",
        help="expired: sessions cached more than N hours ago (default: 24)",
    )
    cleanup.add_argument(
        "--time-limit",
        type=_positive_float,
        default=300.0,
        metavar="S",
        help="stop cleanly after S seconds (default: 300)",
    )

    purge = command(
        "purge",
        "delete every entry of a kind, or the whole namespace (dry run first)",
        "Delete live data in bulk. Run with --dry-run to see what would go and get a token; "
        "run again with --confirm TOKEN to delete exactly that.",
    )
    purge.add_argument("what", choices=("kind", "namespace"))
    purge.add_argument(
        "kind", nargs="?", metavar="KIND", help="with `kind`: session, character, narrative, ..."
    )
    _add_confirm(purge)

    forget = command(
        "forget-user",
        "erase a user's data in Redis and every process's L1 (dry run first)",
        "Erase everything of USER_ID (entries tagged with the user, their therapeutic progress "
        "and their sessions' data). Run with --dry-run to get a token, then --confirm TOKEN.",
    )
    forget.add_argument("user_id", metavar="USER_ID")
    _add_confirm(forget)

    anonymize = command(
        "anonymize-user",
        "keep a user's therapeutic progress under a pseudonym, erase the rest (dry run first)",
    )
    anonymize.add_argument("user_id", metavar="USER_ID")
    anonymize.add_argument("--pseudonym", default=None, help="default: a random anon-<hex>")
    _add_confirm(anonymize)

    rotate = command(
        "rotate-keys",
        "reseal entries that old encryption or signing keys sealed under the current ones",
        "Walk the namespace and reseal every entry that only an old key of "
        "$TTA_CACHE_ENCRYPTION_KEYS or $TTA_CACHE_SIGNING_KEYS (the current key first) opens, "
        "so the old key can be retired; entries rewritten meanwhile are kept. --dry-run reports "
        "what each key id seals; --confirm reseals. Either way it reports what remains.",
    )
    rotate.add_argument("--dry-run", action="store_true", help="count, rewrite nothing")
    rotate.add_argument("--confirm", action="store_true", help="reseal the entries")
    rotate.add_argument(
        "--time-limit",
        type=_positive_float,
        default=300.0,
        metavar="S",
        help="stop cleanly after S seconds (default: 300); run again to continue",
    )

    keygen = command(
        "keygen",
        "print a new encryption key as id:base64 (for $TTA_CACHE_ENCRYPTION_KEYS)",
        "Print a new random AES-256 key as ID:BASE64, the form $TTA_CACHE_ENCRYPTION_KEYS "
        "takes (comma-separated, the first encrypts). Put the new key first to start using it; "
        "run rotate-keys, then drop the old one. This is the only command that prints a secret.",
    )
    keygen.add_argument(
        "--id", dest="key_id", metavar="ID", help="the key id (default: kYYYYMMDDHHMM)"
    )
    return parser


def _add_confirm(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true", help="list, delete nothing")
    parser.add_argument("--confirm", metavar="TOKEN", help="the token a dry run printed")
