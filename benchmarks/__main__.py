"""Run every benchmark and print one summary table: ``python -m benchmarks [--quick] [--json P]``.

``bench_core`` runs first, then ``bench_coherence.main()``, ``bench_telemetry.main()``,
``bench_throughput.main()`` and
``bench_peers.main()`` when those modules exist and import (a note says when one is skipped),
then ``race_peers.main()``, which prints which libraries serve a stale value after a stale-set
race.
A module's ``main`` gets ``quick=...`` if it has a ``quick`` parameter (else it is called with no
arguments and a bare ``sys.argv``); it may be ``async``. Rows it returns
(:class:`benchmarks._harness.Row`, or dicts with ``case``, ``ours_ns``, ``floor_ns`` and
optionally ``floor``, ``target``, ``round_trips``) join the summary. A MISS is reported; a
benchmark that crashes makes the exit status 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
import sys
import traceback
from collections.abc import Callable
from typing import Any

from . import bench_core
from ._harness import Row, machine, print_table, run_async, write_json

OPTIONAL = ("bench_coherence", "bench_telemetry", "bench_throughput", "bench_peers", "race_peers")


def _rows(result: object) -> list[Row]:
    if not isinstance(result, (list, tuple)):
        return []
    names = {f.name for f in dataclasses.fields(Row)}
    rows = []
    for item in result:
        if isinstance(item, Row):
            rows.append(item)
        elif isinstance(item, dict) and {"case", "ours_ns", "floor_ns"} <= item.keys():
            rows.append(Row(**{k: v for k, v in item.items() if k in names}))
    return rows


def _call(main: Callable[..., Any], name: str, quick: bool) -> object:
    kwargs = {"quick": quick} if "quick" in inspect.signature(main).parameters else {}
    argv, sys.argv = sys.argv, [f"benchmarks.{name}"]
    try:
        result = main(**kwargs)
        if inspect.iscoroutine(result):
            result = run_async(result)
    except SystemExit as exc:  # an argparse-style main
        if exc.code not in (None, 0):
            raise
        result = None
    finally:
        sys.argv = argv
    return result


def _optional(name: str) -> Callable[..., Any] | str:
    """The module's ``main``, or why it is skipped."""
    try:
        module = importlib.import_module(f"{__package__}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"{__package__}.{name}":
            return "skipped: not written yet"
        return f"skipped: import failed: {exc!r}"
    except Exception as exc:
        return f"skipped: import failed: {exc!r}"
    main = getattr(module, "main", None)
    return main if callable(main) else "skipped: has no main()"


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer iterations (CI smoke)")
    parser.add_argument("--json", metavar="PATH", help="also write every result as JSON")
    options = parser.parse_args()

    rows: list[Row] = []
    status: dict[str, str] = {}
    crashed = False
    steps: list[tuple[str, Callable[..., Any] | str]] = [("bench_core", bench_core.run)]
    steps += [(name, _optional(name)) for name in OPTIONAL]
    for name, main_or_note in steps:
        if isinstance(main_or_note, str):
            print(f"\n[{name}] {main_or_note}")
            status[name] = main_or_note
            continue
        print(f"\n[{name}]", flush=True)
        try:
            got = _rows(_call(main_or_note, name, options.quick))
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                raise
            traceback.print_exc()
            status[name] = f"CRASHED: {exc!r}"
            crashed = True
            continue
        rows += got
        status[name] = f"ok, {len(got)} rows" if got else "ok (see its output above)"

    print_table(rows, "summary: median ns/op over interleaved rounds; ratio = ours / floor")
    print()
    for name, state in status.items():
        print(f"  {name}: {state}")
    if options.json:
        write_json(
            options.json,
            {"machine": machine(), "modules": status, "rows": [r.as_dict() for r in rows]},
        )
        print(f"  JSON written to {options.json}")
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
