"""The chaos suite: ``python -m chaos [--profile short|full] [--soak SECONDS] [--json PATH]``.

Every scenario runs real redis-server processes (the test helpers': standalone behind the fault
proxy, a Cluster, a Sentinel), worker OS processes each with reader threads and asyncio reader
tasks, a writer thread and a writer task, and checks every read against the source of truth
(:mod:`chaos.truth`). One row per scenario; the exit status is 1 when a scenario has a caller
error, a reply for another caller, a leaked connection, or a stale read (beyond the bound the
scenario states, where it states one).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path

from . import runner, soak
from .runner import Row
from .scenarios import BY_NAME, SCENARIOS
from .truth import I2_WINDOW_NS

HEADER = (
    "| scenario | operations | caller errors | stale reads (strict) | added p50 / p99 ms "
    "| time to recover | invalidate() max ms | notes |"
)


def _line(row: Row) -> str:
    added50 = row.fault_p50_ms - row.calm_p50_ms
    added99 = row.fault_p99_ms - row.calm_p99_ms
    recover = "-" if row.recover_ms is None else f"{row.recover_ms / 1000:.2f} s"
    stale = f"{row.stale} ({row.strict})"
    if row.stale:
        stale += f", {row.own} in the issuing process; worst {row.late_ms:.0f} ms late"
    if row.bound_ms is not None:
        stale += f" (bound {row.bound_ms:.0f} ms)"
    notes = ", ".join(f"{k} {v}" for k, v in row.notes.items())
    if row.misrouted:
        notes += f"; {row.misrouted} WRONG REPLIES"
    if row.cancelled:
        notes += f"; {row.cancelled} reads cancelled"
    if row.leaked:
        notes += f"; {row.leaked} LEAKED CONNECTIONS"
    if row.known_failure:
        notes += "; KNOWN FAILURE" if not row.ok else "; passes now: drop its known_failure"
    elif not row.ok:
        notes += "; **FAIL**"
    return (
        f"| {row.title} | {row.ops:,} | {row.errors} | {stale} | {added50:+.2f} / {added99:+.2f} "
        f"| {recover} | {row.invalidate_max_ms:.0f} | {notes.strip('; ')} |"
    )


def print_table(rows: list[Row], command: str) -> None:
    print(f"\n`{command}` on {platform.node()} ({os.cpu_count()} cores), {time.strftime('%F %T')}")
    print(HEADER)
    print("|" + "---|" * 8)
    for row in rows:
        print(_line(row))
    for row in rows:
        for sample in row.error_samples:
            print(f"  {row.scenario}: {sample}")
        for entity, got, newest, age, pid in row.stale_samples:
            print(
                f"  {row.scenario}: stale read of e{entity}: version {got} after {newest} "
                f"returned, {age} ms late (pid {pid})"
            )


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    parser.add_argument("--profile", choices=sorted(runner.PROFILES), default="short")
    parser.add_argument("--soak", type=float, metavar="SECONDS", help="run the soak only")
    parser.add_argument("--json", metavar="PATH", help="also write every row as JSON")
    parser.add_argument("--only", metavar="NAMES", help=f"comma-separated: {','.join(BY_NAME)}")
    options = parser.parse_args()
    command = "python -m chaos " + " ".join(sys.argv[1:])
    print(
        f"profile {options.profile}: {runner.PROFILES[options.profile]}; "
        f"stale = older than an invalidation returned in the same process, or in another "
        f"more than {I2_WINDOW_NS // 1_000_000} ms before the read began; gate: none in the "
        f"issuing process, none later than {runner.I2_GATE_MS:.0f} ms or the scenario's bound",
        flush=True,
    )
    rows: list[Row] = []
    failed = False
    if options.soak:
        scenarios = [soak.SOAK]
    elif options.only:
        scenarios = [BY_NAME[name] for name in options.only.split(",")]
    else:
        scenarios = SCENARIOS
    for scenario in scenarios:
        t0 = time.monotonic()
        try:
            if scenario is soak.SOAK:
                row = runner.run(
                    scenario, options.profile, seconds=options.soak, sample_memory=soak.EVERY
                )
            else:
                row = runner.run(scenario, options.profile)
        except Exception:
            traceback.print_exc()
            print(f"{scenario.name}: CRASHED", flush=True)
            failed = True
            continue
        rows.append(row)
        failed |= row.counts and not row.ok
        print(f"{_line(row)}  [{time.monotonic() - t0:.0f} s]", flush=True)
    print_table(rows, command)
    if options.soak and rows:
        flat, lines = soak.verdict(rows[0].rss, rows[0].used_memory)
        print("\n".join(lines))
        print(f"connections leaked: {rows[0].leaked}")
        failed |= not flat
    if options.json:
        Path(options.json).write_text(
            json.dumps([dataclasses.asdict(r) for r in rows], indent=1, default=str)
        )
    print("chaos: FAILED" if failed else "chaos: ok")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
