"""``tta-cache health`` and ``tta-cache stats``: how the cache and its namespace are doing."""

from __future__ import annotations

import argparse
from typing import TextIO

from ..exceptions import BackendError
from ..tiers import mask_url
from .common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_UNREACHABLE,
    CommandExit,
    open_cache,
    ping,
    print_fields,
    print_json,
    progress,
    redis_url,
)

__all__ = ["cmd_health", "cmd_stats"]


def cmd_health(args: argparse.Namespace, out: TextIO) -> int:
    """Report health; exit 0 healthy, 1 degraded or unhealthy, 3 unreachable."""
    with open_cache(args, reach=False) as cache:
        # When Redis does not answer, health() reports it; waiting for the channel would only
        # take longer. A fresh process otherwise lets its channel come up first.
        if ping(cache) is None:
            cache.wait_ready(min(args.timeout, 2.0))
        report = cache.health()
    redis = report["redis"]
    if args.json:
        print_json(report, out)
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


def cmd_stats(args: argparse.Namespace, out: TextIO) -> int:
    """Print what the namespace holds and Redis's own figures."""
    from ..operations import namespace_inventory

    with open_cache(args) as cache:
        try:
            with progress(args, f"scanning {cache.namespace}:*") as bar:
                inventory = namespace_inventory(cache, progress=bar.update)
        except BackendError as exc:
            raise CommandExit(EXIT_FAILED, f"stats failed: {exc}") from exc
    stats = {"redis": mask_url(redis_url(args)), **inventory}
    if args.json:
        print_json(stats, out)
    else:
        print_fields(stats, out)
    return EXIT_OK
