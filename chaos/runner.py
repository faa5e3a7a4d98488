"""Runs one scenario: servers up, workers spawned (or forked by a pre-fork parent), warm, calm,
fault, after; then every read is checked and the figures become one row."""

from __future__ import annotations

import json
import multiprocessing
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tta_cache.demo.measures import Histogram

from .scenarios import Scenario
from .truth import AFTER, CALM, FAULT, STOP, Control, check
from .workload import prefork_main, worker_main

I2_GATE_MS = 100.0  # twice I2's 50 ms: the gate for another process's stale read, under load
RECOVER_MAX = 20.0  # seconds the after phase may go on, waiting for every worker to recover

PROFILES: dict[str, dict[str, Any]] = {
    "short": {
        "workers": 2,
        "threads": 3,
        "tasks": 12,
        "entities": 48,
        "think": 0.004,
        "write_every": 0.04,
        "warm": 0.5,
        "calm": 1.5,
        "after": 1.5,
    },
    "full": {
        "workers": 4,
        "threads": 8,
        "tasks": 64,
        "entities": 256,
        "think": 0.004,
        "write_every": 0.02,
        "warm": 2.0,
        "calm": 5.0,
        "after": 5.0,
    },
}


@dataclass
class Row:
    scenario: str
    title: str
    ops: int
    errors: int
    stale: int
    strict: int
    worst_stale_ms: float
    late_ms: float
    own: int
    calm_p50_ms: float
    calm_p99_ms: float
    fault_p50_ms: float
    fault_p99_ms: float
    recover_ms: float | None
    invalidate_max_ms: float
    leaked: int
    misrouted: int
    cancelled: int
    notes: dict[str, Any]
    error_samples: list[str]
    stale_samples: list[list[Any]]
    bound_ms: float | None
    bound_why: str
    known_failure: str
    rss: list[list[list[float]]]
    used_memory: list[list[float]]

    @property
    def counts(self) -> bool:
        """Whether this row decides the exit status (a known failure does not)."""
        return not self.known_failure

    @property
    def ok(self) -> bool:
        # I1 has no slack; I2's 50 ms is a p99 (DESIGN.md): no stale read later than the
        # scenario's bound, or than I2_GATE_MS where it states none.
        bound = self.bound_ms if self.bound_ms is not None else I2_GATE_MS
        stale_ok = self.stale == 0 or (self.own == 0 and self.late_ms <= bound)
        return self.errors == 0 and self.misrouted == 0 and self.leaked == 0 and stale_ok


def _ms(hist: Histogram, q: float) -> float:
    value = hist.quantile(q)
    return round(value * 1000, 2) if value is not None else 0.0


def _merge(reports: list[dict[str, Any]], phase: str) -> Histogram:
    hist = Histogram()
    for report in reports:
        other = Histogram()
        other.counts = {int(k): v for k, v in report["hist"][phase].items()}
        other.total = sum(other.counts.values())
        hist.merge(other)
    return hist


def run(
    scenario: Scenario,
    profile: str,
    *,
    seconds: float | None = None,
    overrides: dict[str, Any] | None = None,
    sample_memory: float = 0.0,
) -> Row:
    prof = {**PROFILES[profile], **(overrides or {})}
    topo = scenario.topology()
    topo.start()
    workdir = Path(tempfile.mkdtemp(prefix="tta-chaos-"))
    ctx = multiprocessing.get_context("spawn")
    workers = int(prof["workers"])
    ctl = Control.create(ctx, int(prof["entities"]), workers)
    cfg = {**prof, **scenario.cfg, "url": topo.url}
    outs = [str(workdir / f"worker{i}.json") for i in range(workers)]
    processes = []
    memory: list[list[float]] = []
    try:
        before = topo.clients()
        if scenario.prefork:
            processes.append(ctx.Process(target=prefork_main, args=(cfg, ctl, outs)))
        else:
            processes += [
                ctx.Process(target=worker_main, args=(i, cfg, ctl, out), name=f"worker-{i}")
                for i, out in enumerate(outs)
            ]
        for process in processes:
            process.start()
        ctl.wait_ready(workers, 90.0)
        time.sleep(prof["warm"])
        ctl.phase.value = CALM
        time.sleep(prof["calm"])
        ctl.phase.value = FAULT
        fault_seconds = seconds if seconds is not None else scenario.seconds[profile]
        if sample_memory:
            notes = _sampled(scenario, topo, fault_seconds, sample_memory, memory)
        else:
            notes = scenario.fault(topo, fault_seconds)
        ctl.fault_end_ns.value = time.monotonic_ns()
        ctl.phase.value = AFTER
        time.sleep(prof["after"])
        # On until every worker has had an L2 hit again (or RECOVER_MAX): the recovery figure.
        deadline = time.monotonic() + float(prof.get("recover_max", RECOVER_MAX))
        while not all(ctl.recovered[:workers]) and time.monotonic() < deadline:
            time.sleep(0.05)
        ctl.phase.value = STOP
        for process in processes:
            process.join(120.0)
            if process.exitcode != 0:
                raise RuntimeError(f"{process.name} exited with {process.exitcode}")
        reports = [json.loads(Path(out).read_text()) for out in outs]
        deadline = time.monotonic() + 5.0
        while (after := topo.clients()) > before and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join(5)
        topo.stop()
    notes["invalidate_ms_sync_async"] = [
        round(max(r["invalidate_max_ms"][how] for r in reports)) for how in ("sync", "async")
    ]
    return _row(
        scenario, ctl.fault_end_ns.value, reports, notes=notes, leaked=after - before, memory=memory
    )


def _sampled(
    scenario: Scenario, topo: Any, seconds: float, every: float, memory: list[list[float]]
) -> dict[str, Any]:
    """The soak: the scenario's fault repeated for ``seconds``, Redis ``used_memory`` sampled."""
    end = time.monotonic() + seconds
    notes: dict[str, Any] = {"rounds": 0}
    next_sample = 0.0
    while time.monotonic() < end:
        if time.monotonic() >= next_sample:
            next_sample = time.monotonic() + every
            memory.append([time.time(), topo.used_memory()])
        scenario.fault(topo, min(every, max(0.0, end - time.monotonic())))
        notes["rounds"] += 1
    memory.append([time.time(), topo.used_memory()])
    return notes


def _row(
    scenario: Scenario,
    fault_end_ns: int,
    reports: list[dict[str, Any]],
    *,
    notes: dict[str, Any],
    leaked: int,
    memory: list[list[float]],
) -> Row:
    invalidations = [inv for r in reports for inv in r["invalidations"]]
    candidates = [c for r in reports for c in r["candidates"]]
    staleness = check(invalidations, candidates, fault_end_ns=fault_end_ns)
    calm, fault = _merge(reports, "calm"), _merge(reports, "fault")
    recovered = [r["recover_ns"] for r in reports]
    errors = []
    for report in reports:
        errors += report["errors"]
    return Row(
        scenario=scenario.name,
        title=scenario.title,
        ops=sum(sum(r["ops"].values()) for r in reports),
        errors=sum(r["error_count"] for r in reports),
        stale=staleness.stale,
        strict=staleness.strict,
        worst_stale_ms=round(staleness.worst_ms, 1),
        late_ms=round(staleness.late_ms, 1),
        own=staleness.own,
        calm_p50_ms=_ms(calm, 0.5),
        calm_p99_ms=_ms(calm, 0.99),
        fault_p50_ms=_ms(fault, 0.5),
        fault_p99_ms=_ms(fault, 0.99),
        recover_ms=(
            None if None in recovered else round(max(recovered) / 1e6, 1)  # the slowest worker
        ),
        invalidate_max_ms=round(max(r["invalidate_max_ms"]["fault"] for r in reports), 1),
        leaked=leaked,
        misrouted=sum(r["misrouted"] for r in reports),
        cancelled=sum(r["cancelled"] for r in reports),
        notes=notes,
        error_samples=errors[:5],
        stale_samples=staleness.samples,
        bound_ms=scenario.stale_bound_ms,
        bound_why=scenario.bound_why,
        known_failure=scenario.known_failure,
        rss=[r["rss"] for r in reports],
        used_memory=memory,
    )
