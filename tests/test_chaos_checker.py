"""The chaos suite's stale-read checker can fail (issue 13).

First on records made by hand (each rule of :mod:`chaos.truth`), then on a real run of the
chaos workload with a deliberately broken setting: caches with no Redis at all, so nothing
carries one process's invalidations to the others, which must show as stale reads.
"""

from __future__ import annotations

import pytest
from chaos.runner import run
from chaos.scenarios import Scenario, Topology, no_fault
from chaos.truth import I2_WINDOW_NS, check

MS = 1_000_000
# entity 0: version 2's invalidation returned at t=1000 ms in process 7
INVALIDATIONS = [[0, 1, 500 * MS, 7], [0, 2, 1000 * MS, 7]]


def test_a_read_older_than_its_own_process_invalidation_is_stale_at_once() -> None:
    result = check(INVALIDATIONS, [[0, 1, 1000 * MS + 1, 7]])
    assert (result.stale, result.own, result.other, result.strict) == (1, 1, 0, 1)


def test_another_process_has_the_i2_window() -> None:
    inside = check(INVALIDATIONS, [[0, 1, 1000 * MS + I2_WINDOW_NS - 1, 8]])
    assert (inside.stale, inside.strict) == (0, 1)  # strict counts it, I2 allows it
    late = check(INVALIDATIONS, [[0, 1, 1000 * MS + I2_WINDOW_NS + 1, 8]])
    assert (late.stale, late.other) == (1, 1)
    assert late.worst_ms == pytest.approx(50.0, abs=0.01)


def test_reads_begun_before_the_return_or_of_the_newest_version_are_fresh() -> None:
    result = check(
        INVALIDATIONS,
        [[0, 1, 1000 * MS, 7], [0, 2, 5000 * MS, 8], [0, 3, 5000 * MS, 8], [1, 0, 9000 * MS, 8]],
    )
    assert (result.stale, result.strict) == (0, 0)


def test_the_worst_age_counts_from_the_first_newer_version() -> None:
    result = check(INVALIDATIONS, [[0, 0, 2000 * MS, 8]])
    assert result.stale == 1
    assert result.worst_ms == pytest.approx(1500.0)  # version 1 returned at 500 ms


class LocalOnly(Topology):
    """The broken setting: no Redis, so no invalidation channel between the workers."""

    url = None  # type: ignore[assignment]

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def data_servers(self) -> list:  # type: ignore[type-arg]
        return []


@pytest.mark.slow
def test_a_run_without_a_channel_reports_stale_reads() -> None:
    broken = Scenario("broken", "local-only caches", LocalOnly, no_fault, {"short": 0.5})
    row = run(
        broken,
        "short",
        overrides={
            "workers": 2,
            "threads": 1,
            "tasks": 2,
            "entities": 4,
            "warm": 0.2,
            "calm": 0.5,
            "after": 0.5,
            "write_every": 0.02,
            "recover_max": 0.0,
        },
    )
    assert row.errors == 0
    assert row.stale > 0, row
    assert not row.ok
