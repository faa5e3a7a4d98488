"""The ``tta-cache`` command line: the demo, health, stats, invalidation, cleanup, purges, erasure.

Every command but ``demo`` talks to the Redis named by ``--redis-url`` (else
``$TTA_CACHE_REDIS_URL``, else ``redis://127.0.0.1:6379/0``) and prints URLs with the password
masked. ``--json`` prints one JSON document on stdout for scripts; exit codes are listed in
``tta-cache --help``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TextIO

from .cache import Cache
from .exceptions import BackendError, ConfigurationError
from .tiers import mask_url

__all__ = [
    "EXIT_CONFIRM",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "Progress",
    "build_parser",
    "main",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_CONFIRM = 4

URL_ENV = "TTA_CACHE_REDIS_URL"
DEFAULT_URL = "redis://127.0.0.1:6379/0"

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


class _Exit(Exception):
    """Stop with ``code`` after printing ``message`` on stderr."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


# ---------------------------------------------------------------------- progress


class Progress:
    """A one-line progress indicator on stderr, drawn only once an operation outlasts ``delay``.

    With a ``total`` it is a bar with a percentage; without, a spinner with a count. ``update()``
    is cheap (an attribute write); a daemon thread redraws ten times a second, so a callback-less
    operation still shows that it is alive. The line is erased when the block ends.
    """

    WIDTH = 24

    def __init__(
        self,
        label: str,
        *,
        enabled: bool,
        total: int | None = None,
        unit: str = "keys",
        delay: float = 0.5,
        stream: TextIO | None = None,
    ) -> None:
        self.label = label
        self.enabled = enabled
        self.total = total
        self.unit = unit
        self.delay = delay
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0
        self.drawn = 0  # width of the last line drawn
        self._started = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def update(self, done: int, total: int | None = None) -> None:
        """Record progress (called from any thread)."""
        self.done = done
        if total is not None:
            self.total = total

    def line(self, elapsed: float) -> str:
        """The text drawn after ``elapsed`` seconds."""
        count = f"{self.done:,}" + (f"/{self.total:,}" if self.total else "")
        count = f"{count} {self.unit}".rstrip() if self.unit else ""
        if self.total:
            fraction = min(1.0, self.done / self.total)
            filled = round(fraction * self.WIDTH)
            bar = f"[{'#' * filled}{'.' * (self.WIDTH - filled)}] {fraction:4.0%}"
        else:
            bar = "|/-\\"[int(elapsed * 10) % 4]
        return "  ".join(part for part in (self.label, bar, count, f"{elapsed:.1f}s") if part)

    def _draw(self) -> None:
        text = self.line(time.monotonic() - self._started)
        self.stream.write("\r" + text.ljust(self.drawn))
        self.stream.flush()
        self.drawn = len(text)

    def _run(self) -> None:
        if self._stop.wait(self.delay):
            return
        while True:
            self._draw()
            if self._stop.wait(0.1):
                return

    def __enter__(self) -> Progress:
        self._started = time.monotonic()
        if self.enabled:
            self._thread = threading.Thread(
                target=self._run, name="tta-cache-progress", daemon=True
            )
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.drawn:
            self.stream.write("\r" + " " * self.drawn + "\r")
            self.stream.flush()


# ---------------------------------------------------------------------- the parser


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
        "slow SQLite 'database'; print hit rates, latency per tier, invalidation lag, Redis "
        "round trips per request and a stale-read check. Without --redis-url an embedded "
        "redis-server is started in a temporary directory and removed after.",
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
    return parser


def _add_confirm(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true", help="list, delete nothing")
    parser.add_argument("--confirm", metavar="TOKEN", help="the token a dry run printed")


# ---------------------------------------------------------------------- output


def _print_json(data: Any, out: TextIO) -> None:
    json.dump(data, out, indent=2, sort_keys=True, default=str)
    out.write("\n")


def _print_fields(data: Mapping[str, Any], out: TextIO, indent: str = "") -> None:
    width = max((len(k) for k in data), default=0)
    for key, value in data.items():
        if isinstance(value, Mapping):
            if not value:
                out.write(f"{indent}{key:<{width}}  -\n")
                continue
            out.write(f"{indent}{key}:\n")
            _print_fields(value, out, indent + "  ")
        elif isinstance(value, float):
            out.write(f"{indent}{key:<{width}}  {value:.4g}\n")
        else:
            out.write(f"{indent}{key:<{width}}  {'-' if value is None else value}\n")


# ---------------------------------------------------------------------- commands


def _redis_url(args: argparse.Namespace) -> str:
    url: str = args.redis_url or os.environ.get(URL_ENV) or DEFAULT_URL
    return url


@contextmanager
def _open(args: argparse.Namespace, *, reach: bool = True) -> Iterator[Cache]:
    """A Cache on the configured Redis; with ``reach``, exit 3 unless it answers PING."""
    url = _redis_url(args)
    try:
        cache = Cache(url, namespace=args.namespace, op_timeout=args.timeout)
    except ConfigurationError as exc:
        raise _Exit(EXIT_USAGE, f"bad configuration: {exc}") from exc
    except Exception as exc:  # a Cluster client connects at once: anything here is reachability
        raise _Exit(EXIT_UNREACHABLE, f"cannot reach Redis at {mask_url(url)}: {exc}") from exc
    try:
        if reach:
            assert cache.engine.redis is not None
            try:
                cache.engine.redis.ping()
            except BackendError as exc:
                raise _Exit(
                    EXIT_UNREACHABLE, f"cannot reach Redis at {mask_url(url)}: {exc}"
                ) from exc
        yield cache
    finally:
        cache.close()


def _manager(cache: Cache) -> Any:
    from .maintenance import CacheInvalidationManager

    return CacheInvalidationManager(cache)


def _progress(args: argparse.Namespace, label: str, **options: Any) -> Progress:
    return Progress(label, enabled=args.progress or sys.stderr.isatty(), **options)


def cmd_demo(args: argparse.Namespace, out: TextIO) -> int:
    """Run the demo (see :mod:`tta_cache.demo`)."""
    from .demo import DemoConfig, run_demo

    if args.local_only and args.redis_url:
        raise _Exit(EXIT_USAGE, "--local-only and --redis-url exclude each other")
    config = DemoConfig(
        workers=args.workers,
        duration=args.duration,
        players=args.players,
        redis_url=args.redis_url,
        local_only=args.local_only,
        namespace=args.namespace,
        choice_rate=args.choice_rate,
        seed=args.seed,
    )
    label = f"demo: {args.workers} workers"
    with _progress(args, label, total=1000, unit="", delay=0.0) as bar:
        try:
            report = run_demo(config, on_progress=lambda f: bar.update(int(f * 1000)))
        except BackendError as exc:
            url = mask_url(args.redis_url or "")
            raise _Exit(EXIT_UNREACHABLE, f"cannot reach Redis at {url}: {exc}") from exc
        except RuntimeError as exc:
            raise _Exit(EXIT_FAILED, f"demo failed: {exc}") from exc
    if args.json:
        _print_json(report.as_dict(), out)
    else:
        out.write(report.render() + "\n")
    stale = report.stale_reads + report.own_stale_reads
    return EXIT_FAILED if stale else EXIT_OK


def cmd_health(args: argparse.Namespace, out: TextIO) -> int:
    """Report health; exit 0 healthy, 1 degraded or unhealthy, 3 unreachable."""
    with _open(args, reach=False) as cache:
        assert cache.engine.redis is not None
        try:
            cache.engine.redis.ping()
        except BackendError:
            pass  # health() reports it; waiting for the channel would only take longer
        else:
            cache.wait_ready(min(args.timeout, 2.0))  # a fresh process: let the channel come up
        report = cache.health()
    redis = report["redis"]
    if args.json:
        _print_json(report, out)
    else:
        out.write(f"status     {report['overall_status']}\n")
        out.write(f"redis      {redis.get('url')} ({redis.get('mode')})")
        if redis.get("connected"):
            out.write(f", ping {redis['ping_latency'] * 1000:.2f} ms\n")
        else:
            out.write(f", unreachable: {redis.get('error')}\n")
        out.write(
            f"channel    {redis.get('channel')}; breaker {redis.get('breaker')}; "
            f"queued invalidations {redis.get('queued_invalidations', 0)}\n"
        )
        for reason in report["reasons"]:
            out.write(f"reason     {reason}\n")
    if not redis.get("connected"):
        return EXIT_UNREACHABLE
    return EXIT_OK if report["overall_status"] == "healthy" else EXIT_FAILED


def _namespace_stats(cache: Cache, args: argparse.Namespace) -> dict[str, Any]:
    from .maintenance import key_kind

    tier = cache.engine.redis
    assert tier is not None
    ns = cache.namespace
    tag_prefix = f"{ns}:tag:"
    by_kind: dict[str, int] = {}
    tags = 0
    with _progress(args, f"scanning {ns}:*") as bar:

        def scan(client: Any) -> None:
            nonlocal tags
            for n, raw in enumerate(client.scan_iter(match=f"{ns}:*", count=1000), 1):
                key = raw.decode() if isinstance(raw, bytes) else str(raw)
                if key.startswith(tag_prefix):
                    tags += 1
                else:
                    kind = key_kind(key, ns)
                    by_kind[kind] = by_kind.get(kind, 0) + 1
                bar.update(n)

        tier.execute("SCAN", scan)
    info = _merged_info(tier.execute("INFO", lambda c: c.info()))
    channel = f"{ns}:invalidate"
    subscribers = tier.execute("PUBSUB NUMSUB", lambda c: c.pubsub_numsub(channel))
    hits, misses = int(info.get("keyspace_hits", 0)), int(info.get("keyspace_misses", 0))
    return {
        "redis": mask_url(_redis_url(args)),
        "namespace": ns,
        "entries": sum(by_kind.values()),
        "entries_by_kind": dict(sorted(by_kind.items())),
        "tag_versions": tags,
        "listening_processes": int(dict(_pairs(subscribers)).get(channel, 0)),
        "redis_info": {
            "version": info.get("redis_version"),
            "used_memory": info.get("used_memory_human"),
            "connected_clients": info.get("connected_clients"),
            "keyspace_hits": hits,
            "keyspace_misses": misses,
            "hit_rate": hits / (hits + misses) if hits + misses else 0.0,
        },
    }


def _pairs(raw: Any) -> list[tuple[str, int]]:
    out = []
    for name, count in raw or ():
        out.append((name.decode() if isinstance(name, bytes) else str(name), int(count)))
    return out


def _merged_info(info: Mapping[str, Any]) -> dict[str, Any]:
    """INFO of one server, or of a Cluster's nodes summed (redis-py returns one dict per node)."""
    if "redis_version" in info or not all(isinstance(v, Mapping) for v in info.values()):
        return dict(info)
    merged: dict[str, Any] = {}
    for node in info.values():
        for key, value in node.items():
            if isinstance(value, int) and isinstance(merged.get(key, 0), int):
                merged[key] = merged.get(key, 0) + value
            else:
                merged.setdefault(key, value)
    return merged


def cmd_stats(args: argparse.Namespace, out: TextIO) -> int:
    """Print what the namespace holds and Redis's own figures."""
    with _open(args) as cache:
        try:
            stats = _namespace_stats(cache, args)
        except BackendError as exc:
            raise _Exit(EXIT_FAILED, f"stats failed: {exc}") from exc
    if args.json:
        _print_json(stats, out)
    else:
        _print_fields(stats, out)
    return EXIT_OK


def cmd_invalidate(args: argparse.Namespace, out: TextIO) -> int:
    """Invalidate the named users, sessions and characters."""
    if not (args.user or args.session or args.character):
        raise _Exit(EXIT_USAGE, "invalidate: give at least one --user, --session or --character")
    if args.preserve_therapeutic and not args.user:
        raise _Exit(EXIT_USAGE, "invalidate: --preserve-therapeutic goes with --user")
    results = []
    with _open(args) as cache:
        manager = _manager(cache)
        for user in args.user:
            results.append(manager.invalidate_user(user, args.preserve_therapeutic))
        for session in args.session:
            results.append(manager.invalidate_session(session))
        for character in args.character:
            results.append(manager.invalidate_character(character))
    failed = [r for r in results if not r.get("completed")]
    if args.json:
        _print_json(results, out)
    else:
        for r in results:
            state = "done" if r.get("completed") else f"FAILED: {r.get('error')}"
            out.write(f"{r['operation']:<22} {r['tags_invalidated']} tag(s)  {state}\n")
    return EXIT_FAILED if failed else EXIT_OK


def _report(args: argparse.Namespace, stats: Mapping[str, Any], out: TextIO) -> int:
    """Print a maintenance result and choose the exit code."""
    if args.json:
        _print_json(stats, out)
    else:
        _print_fields(stats, out)
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


def cmd_cleanup(args: argparse.Namespace, out: TextIO) -> int:
    """``cleanup expired`` or ``cleanup orphans``."""
    with _open(args) as cache:
        manager = _manager(cache)
        label = f"cleanup {args.what}" + (" (dry run)" if args.dry_run else "")
        with _progress(args, label) as bar:
            if args.what == "expired":
                stats = manager.cleanup_expired_sessions(
                    max_age_hours=args.max_age_hours,
                    dry_run=args.dry_run,
                    time_limit_s=args.time_limit,
                    progress=bar.update,
                )
            else:
                stats = manager.cleanup_orphaned_data(
                    dry_run=args.dry_run, time_limit_s=args.time_limit, progress=bar.update
                )
    return _report(args, stats, out)


def _confirmed_op(
    args: argparse.Namespace, label: str, run: Callable[[Any, dict[str, Any]], dict[str, Any]]
) -> dict[str, Any]:
    if not args.dry_run and not args.confirm:
        raise _Exit(
            EXIT_CONFIRM,
            f"{label} deletes live data: run it with --dry-run first, then pass the token it "
            "prints with --confirm TOKEN",
        )
    options = {"dry_run": args.dry_run, "confirm": None if args.dry_run else args.confirm}
    with _open(args) as cache, _progress(args, label):
        return run(_manager(cache), options)


def cmd_purge(args: argparse.Namespace, out: TextIO) -> int:
    """``purge kind KIND`` or ``purge namespace``, dry run first."""
    if args.what == "kind" and not args.kind:
        raise _Exit(EXIT_USAGE, "purge kind: name the kind (session, character, narrative, ...)")
    if args.what == "namespace" and args.kind:
        raise _Exit(EXIT_USAGE, "purge namespace takes no kind")
    if args.what == "kind":
        stats = _confirmed_op(
            args, f"purge kind {args.kind}", lambda m, o: m.purge_kind(args.kind, **o)
        )
    else:
        stats = _confirmed_op(args, "purge namespace", lambda m, o: m.purge_namespace(**o))
    return _report(args, stats, out)


def cmd_forget_user(args: argparse.Namespace, out: TextIO) -> int:
    """``forget-user USER_ID``, dry run first."""
    stats = _confirmed_op(args, "forget-user", lambda m, o: m.forget_user(args.user_id, **o))
    return _report(args, stats, out)


def cmd_anonymize_user(args: argparse.Namespace, out: TextIO) -> int:
    """``anonymize-user USER_ID``, dry run first."""
    stats = _confirmed_op(
        args,
        "anonymize-user",
        lambda m, o: m.anonymize_user(args.user_id, pseudonym=args.pseudonym, **o),
    )
    return _report(args, stats, out)


COMMANDS: dict[str, Callable[[argparse.Namespace, TextIO], int]] = {
    "demo": cmd_demo,
    "health": cmd_health,
    "stats": cmd_stats,
    "invalidate": cmd_invalidate,
    "cleanup": cmd_cleanup,
    "purge": cmd_purge,
    "forget-user": cmd_forget_user,
    "anonymize-user": cmd_anonymize_user,
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
    except _Exit as exc:
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
