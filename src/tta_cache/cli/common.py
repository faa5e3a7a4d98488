"""What every command shares: exit codes, the Redis URL and the Cache on it, the progress line,
printing a result, and the dry-run-first rule of the commands that delete live data."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TextIO

from ..api import Cache
from ..api.options import keys_from_environment
from ..exceptions import BackendError, ConfigurationError
from ..tiers import mask_url
from .progress import Progress

if TYPE_CHECKING:
    from ..tta import CacheInvalidationManager

__all__ = [
    "DEFAULT_URL",
    "EXIT_CONFIRM",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "URL_ENV",
    "CommandExit",
    "confirmed_op",
    "manager",
    "open_cache",
    "ping",
    "print_fields",
    "print_json",
    "progress",
    "redis_url",
    "report_result",
    "unreachable",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_CONFIRM = 4

URL_ENV = "TTA_CACHE_REDIS_URL"
DEFAULT_URL = "redis://127.0.0.1:6379/0"


class CommandExit(Exception):
    """Stop with ``code`` after printing ``message`` on stderr."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def unreachable(url: str, exc: BaseException) -> CommandExit:
    """Exit 3, naming the Redis with its password masked."""
    return CommandExit(EXIT_UNREACHABLE, f"cannot reach Redis at {mask_url(url)}: {exc}")


def redis_url(args: argparse.Namespace) -> str:
    """``--redis-url``, else ``$TTA_CACHE_REDIS_URL``, else the default."""
    url: str = args.redis_url or os.environ.get(URL_ENV) or DEFAULT_URL
    return url


def ping(cache: Cache) -> BackendError | None:
    """PING the cache's Redis: the error, or None when it answers."""
    assert cache.engine.redis is not None
    try:
        cache.engine.redis.ping()
    except BackendError as exc:
        return exc
    return None


@contextmanager
def open_cache(args: argparse.Namespace, *, reach: bool = True) -> Iterator[Cache]:
    """A Cache on the configured Redis; with ``reach``, exit 3 unless it answers PING."""
    url = redis_url(args)
    try:
        options = keys_from_environment({"namespace": args.namespace, "op_timeout": args.timeout})
        cache = Cache(url, **options)
    except ConfigurationError as exc:
        raise CommandExit(EXIT_USAGE, f"bad configuration: {exc}") from exc
    except Exception as exc:  # a Cluster client connects at once: anything here is reachability
        raise unreachable(url, exc) from exc
    try:
        if reach and (error := ping(cache)) is not None:
            raise unreachable(url, error) from error
        yield cache
    finally:
        cache.close()


def progress(args: argparse.Namespace, label: str, **options: Any) -> Progress:
    """The progress line, drawn on a terminal or with ``--progress``."""
    return Progress(label, enabled=args.progress or sys.stderr.isatty(), **options)


def print_json(data: Any, out: TextIO) -> None:
    """``data`` as one indented JSON document (``--json``)."""
    json.dump(data, out, indent=2, sort_keys=True, default=str)
    out.write("\n")


def print_fields(data: Mapping[str, Any], out: TextIO, indent: str = "") -> None:
    """``data`` as aligned ``name  value`` lines, nested mappings indented."""
    width = max((len(k) for k in data), default=0)
    for key, value in data.items():
        if isinstance(value, Mapping):
            if not value:
                out.write(f"{indent}{key:<{width}}  -\n")
                continue
            out.write(f"{indent}{key}:\n")
            print_fields(value, out, indent + "  ")
        elif isinstance(value, float):
            out.write(f"{indent}{key:<{width}}  {value:.4g}\n")
        else:
            out.write(f"{indent}{key:<{width}}  {'-' if value is None else value}\n")


def report_result(args: argparse.Namespace, stats: Mapping[str, Any], out: TextIO) -> int:
    """Print a maintenance result and choose the exit code."""
    if args.json:
        print_json(stats, out)
    else:
        print_fields(stats, out)
    if stats.get("refused"):
        sys.stderr.write(f"tta-cache: refused: {stats['refused']}\n")
        return EXIT_CONFIRM
    if stats.get("error"):
        sys.stderr.write(f"tta-cache: {stats['operation']} failed: {stats['error']}\n")
        return EXIT_FAILED
    if stats.get("dry_run") and stats.get("confirm_token") and not args.json:
        out.write(
            f"\ndry run: nothing deleted. To delete these {stats.get('keys_matched', 0):,} keys, "
            f"run the same command with --confirm {stats['confirm_token']}\n"
        )
    if stats.get("time_limit_reached") and not args.json:
        out.write(
            f"\nstopped at the time limit after {stats.get('keys_scanned', 0):,} keys; "
            "run again to continue\n"
        )
    return EXIT_OK


def confirmed_op(
    args: argparse.Namespace,
    label: str,
    run: Callable[[CacheInvalidationManager, dict[str, Any]], dict[str, Any]],
) -> dict[str, Any]:
    """Run a delete of live data: ``run(manager, options)`` with ``--dry-run`` or ``--confirm``
    as the options; exit 4 when neither is given."""
    if not args.dry_run and not args.confirm:
        raise CommandExit(
            EXIT_CONFIRM,
            f"{label} deletes live data: run it with --dry-run first, then pass the token it "
            "prints with --confirm TOKEN",
        )
    options = {"dry_run": args.dry_run, "confirm": None if args.dry_run else args.confirm}
    with open_cache(args) as cache, progress(args, label):
        return run(manager(cache), options)


def manager(cache: Cache) -> CacheInvalidationManager:
    """The maintenance manager of ``cache`` (the TTA one: anonymization keeps progress)."""
    # Imported when used, as the demo is: `tta-cache --help` and `health` need neither.
    from ..tta import CacheInvalidationManager

    return CacheInvalidationManager(cache)
