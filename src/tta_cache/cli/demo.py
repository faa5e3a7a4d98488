"""``tta-cache demo``: run the simulation (:mod:`tta_cache.demo`) and print its report."""

from __future__ import annotations

import argparse
from typing import TextIO

from ..exceptions import BackendError
from .common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, CommandExit, print_json, progress, unreachable

__all__ = ["cmd_demo"]


def cmd_demo(args: argparse.Namespace, out: TextIO) -> int:
    """Run the demo; exit 1 if a read was stale."""
    from ..demo import DemoConfig, run_demo

    if args.local_only and args.redis_url:
        raise CommandExit(EXIT_USAGE, "--local-only and --redis-url exclude each other")
    config = DemoConfig(
        workers=args.workers,
        duration=args.duration,
        players=args.players,
        redis_url=args.redis_url,
        local_only=args.local_only,
        namespace=args.namespace,
        choice_rate=args.choice_rate,
        seed=args.seed,
        database_url=args.database_url,
    )
    label = f"demo: {args.workers} workers"
    with progress(args, label, total=1000, unit="", delay=0.0) as bar:
        try:
            report = run_demo(config, on_progress=lambda f: bar.update(int(f * 1000)))
        except BackendError as exc:
            raise unreachable(args.redis_url or "", exc) from exc
        except RuntimeError as exc:
            raise CommandExit(EXIT_FAILED, f"demo failed: {exc}") from exc
    if args.json:
        print_json(report.as_dict(), out)
    else:
        out.write(report.render() + "\n")
    stale = report.stale_reads + report.own_stale_reads
    return EXIT_FAILED if stale else EXIT_OK
