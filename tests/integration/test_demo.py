"""``tta-cache demo``: real worker processes against real Redis (the suite's, and the embedded one
the demo starts itself); the printed summary parses and no read was stale."""

from __future__ import annotations

import io
import json
import os
import re
import socket
import subprocess
import sys
from urllib.parse import urlsplit

import pytest
import redis

from helpers.postgres import PostgresServer
from tta_cache.cli import EXIT_OK, main
from tta_cache.demo import STALENESS_WINDOW, Histogram
from tta_cache.demo.measures import WorkerReport as _WorkerReport
from tta_cache.demo.measures import count_stale as _count_stale

pytestmark = pytest.mark.slow

SHORT = ["--duration", "2", "--workers", "2", "--players", "20", "--choice-rate", "0.2"]
ROWS = ("L1 local", "L2 redis", "miss (db)")


def demo(*argv: str) -> str:
    out = io.StringIO()
    code = main(["demo", *SHORT, *argv], out=out)
    assert code == EXIT_OK, out.getvalue()
    return out.getvalue()


def number(text: str) -> int:
    return int(text.replace(",", ""))


def parse(summary: str) -> dict[str, object]:
    """The figures of the printed summary; fails on any line it expects and does not find."""

    def field(pattern: str) -> re.Match[str]:
        match = re.search(pattern, summary, re.MULTILINE)
        assert match, f"no {pattern!r} in:\n{summary}"
        return match

    tiers = {}
    for line in summary.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if cells[0] in ROWS:
            tiers[cells[0]] = {
                "hit_rate": cells[1] if len(cells) == 5 else None,
                "served": number(cells[-3]),
                "p50": cells[-2],
                "p99": cells[-1],
            }
    assert set(tiers) == set(ROWS), summary
    sent, received = field(
        r"^invalidations\s+sent ([\d,]+), received by the other processes ([\d,]+)$"
    ).groups()
    return {
        "requests": number(field(r"^requests \(player turns\)\s+([\d,]+)").group(1)),
        "reads": number(field(r"^cache reads\s+([\d,]+)").group(1)),
        "loads": number(field(r"^database loads\s+([\d,]+)").group(1)),
        "tiers": tiers,
        "sent": number(sent),
        "received": number(received),
        "round_trips": float(field(r"^redis round trips\s+([\d.]+) per request").group(1)),
        "queries": tuple(
            map(
                float,
                field(
                    r"^database queries\s+([\d.]+) per request with the cache, ([\d.]+) without"
                ).groups(),
            )
        ),
        "stale": number(field(r"^stale reads: (\d+)").group(1)),
        "redis": field(r"^redis: (.*)$").group(1),
    }


def test_demo_against_a_redis_url_shows_every_tier_and_no_stale_read(redis_url: str) -> None:
    figures = parse(demo("--redis-url", redis_url))
    tiers = figures["tiers"]
    assert isinstance(tiers, dict)
    assert figures["stale"] == 0
    assert figures["reads"] == 5 * figures["requests"] > 0  # type: ignore[operator]
    assert sum(t["served"] for t in tiers.values()) == figures["reads"]
    assert tiers["miss (db)"]["served"] == figures["loads"]
    # Two workers share the players: one finds in Redis what the other loaded.
    assert tiers["L1 local"]["served"] > 0
    assert tiers["L2 redis"]["served"] > 0
    assert tiers["L2 redis"]["hit_rate"].endswith("%")
    assert figures["sent"] > 0
    assert figures["received"] > 0  # the other worker heard the choices
    assert figures["round_trips"] > 0
    assert figures["redis"] == redis_url
    with_cache, without = figures["queries"]  # type: ignore[misc]
    assert 0 < with_cache < without
    with redis.Redis.from_url(redis_url) as client:
        assert client.dbsize() == 0  # the demo removed its namespace from a Redis it did not start


def test_demo_starts_and_removes_an_embedded_redis_server() -> None:
    out = io.StringIO()
    assert main(["demo", *SHORT, "--json"], out=out) == EXIT_OK
    report = json.loads(out.getvalue())
    assert report["stale_reads"] == report["own_stale_reads"] == 0
    assert report["redis"].startswith("embedded ")
    assert report["hit_rate"]["redis"] is not None
    assert 0.0 <= report["hit_rate"]["local"] <= 1.0
    assert report["invalidations"]["received"] > 0
    assert report["invalidations"]["lag_p99"] is not None
    assert report["latency"]["l2"]["count"] > 0
    assert report["redis_round_trips_per_request"] > 0
    url = re.search(r"redis://\S+", report["redis"])
    assert url
    port = urlsplit(url.group(0)).port
    assert port is not None
    with socket.socket() as sock, pytest.raises(ConnectionRefusedError):
        sock.connect(("127.0.0.1", port))  # gone with the demo


def test_demo_on_postgresql(redis_url: str, postgres: PostgresServer) -> None:
    url = postgres.url(postgres.create_database("demo"))
    figures = parse(demo("--redis-url", redis_url, "--database-url", url))
    assert figures["stale"] == 0
    assert figures["reads"] == 5 * figures["requests"] > 0  # type: ignore[operator]
    assert figures["loads"] > 0


def test_demo_local_only_needs_no_redis() -> None:
    figures = parse(demo("--local-only"))
    tiers = figures["tiers"]
    assert isinstance(tiers, dict)
    assert figures["stale"] == 0
    assert figures["redis"].startswith("none")  # type: ignore[union-attr]
    assert tiers["L2 redis"]["served"] == 0
    assert tiers["L2 redis"]["hit_rate"] == "-"
    assert tiers["L1 local"]["served"] > 0
    assert figures["round_trips"] == 0.0
    assert figures["sent"] == figures["received"] == 0


# ---------------------------------------------------------------------- the checks themselves


def report(index: int, **fields: object) -> _WorkerReport:
    return _WorkerReport(index, **fields)  # type: ignore[arg-type]


def test_a_read_older_than_an_invalidation_past_the_window_is_stale() -> None:
    writer = report(0, writes=[("session:s1", 200, 100.0)])
    late = 100.0 + STALENESS_WINDOW + 0.01
    stale = _count_stale([writer, report(1, observed={("session:s1", 100, "l1"): late})])
    assert (stale.count, stale.by_tier) == (1, {"l1": 1})
    assert stale.worst == pytest.approx(late - 100.0)
    # within the window, a newer version, or another entity: not stale
    for observed in (
        (("session:s1", 100, "l1"), 100.02),
        (("session:s1", 200, "l2"), late),
        (
            ("session:s2", 100, "l1"),
            late,
        ),
    ):
        assert _count_stale([writer, report(1, observed=dict([observed]))]).count == 0


def test_staleness_uses_the_newest_version_invalidated_before_the_read() -> None:
    # Two writers finished out of version order: version 300 returned before version 200.
    writes = [("e", 300, 10.0), ("e", 200, 11.0)]
    reads = {("e", 250, "l1"): 10.5, ("e", 299, "l2"): 12.0}
    stale = _count_stale([report(0, writes=writes), report(1, observed=reads)])
    assert (stale.count, stale.by_tier) == (2, {"l1": 1, "l2": 1})
    assert stale.worst == pytest.approx(2.0)  # 299 < 300, whose invalidation returned at 10.0


def test_histogram_quantiles_are_within_a_bucket() -> None:
    hist, other = Histogram(), Histogram()
    for i in range(1, 101):
        (hist if i % 2 else other).add(i * 1e-3)
    hist.merge(other)
    assert hist.total == 100
    p50, p99 = hist.quantile(0.5), hist.quantile(0.99)
    assert p50 is not None
    assert p99 is not None
    assert p50 == pytest.approx(50e-3, rel=0.03)
    assert p99 == pytest.approx(99e-3, rel=0.03)
    assert Histogram().quantile(0.5) is None


def test_an_embedded_server_does_not_outlive_a_program_that_fails() -> None:
    script = (
        "from tta_cache.operations import EmbeddedRedis\n"
        "server = EmbeddedRedis().start()\n"
        "print(server.port, server.directory, flush=True)\n"
        "raise SystemExit('the program fails without stopping it')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1, done.stderr
    port, directory = done.stdout.split()
    with socket.socket() as sock, pytest.raises(ConnectionRefusedError):
        sock.connect(("127.0.0.1", int(port)))
    assert not os.path.exists(directory)
