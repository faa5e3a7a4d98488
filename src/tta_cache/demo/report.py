"""The merged result of a demo run: the figures (:meth:`DemoReport.as_dict`, the ``--json``
output) and the summary table (:meth:`DemoReport.render`, what ``tta-cache demo`` prints)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .config import MEASURED, STALENESS_WINDOW, DemoConfig
from .measures import Histogram, WorkerReport

__all__ = ["DemoReport"]

_TIER_LABELS = {
    "l1": "L1 local",
    "l2": "L2 redis",
    "miss": "miss (db)",
    "write": "write + invalidate",
}


@dataclass
class DemoReport:
    """The merged result of a demo run; ``render()`` is the table, ``as_dict()`` the JSON."""

    config: DemoConfig
    redis: str
    workers: list[WorkerReport]
    tiers: dict[str, Histogram]
    lags: Histogram
    stale_reads: int
    own_stale_reads: int
    stale_by_tier: dict[str, int]
    worst_staleness: float

    def _sum(self, attr: str) -> int:
        return sum(int(getattr(w, attr)) for w in self.workers)

    def _stat(self, *path: str) -> int:
        total = 0
        for w in self.workers:
            node: Any = w.stats
            for step in path:
                node = node.get(step, 0) if isinstance(node, dict) else 0
            total += int(node)
        return total

    def as_dict(self) -> dict[str, Any]:
        """Every figure the table shows, for scripts (``tta-cache demo --json``)."""
        turns, reads = self._sum("turns"), self._sum("reads")
        local_hits, local_misses = self._stat("local", "hits"), self._stat("local", "misses")
        redis_hits, redis_misses = self._stat("redis", "hits"), self._stat("redis", "misses")
        redis_ops = self._stat("redis", "operations")

        def rate(hits: int, misses: int) -> float | None:
            return hits / (hits + misses) if hits + misses else None

        def tier(name: str) -> dict[str, Any]:
            hist = self.tiers[name]
            return {"count": hist.total, "p50": hist.quantile(0.5), "p99": hist.quantile(0.99)}

        queries = self._sum("queries")
        return {
            "redis": self.redis,
            "workers": self.config.workers,
            "players": self.config.players,
            "duration": self.config.duration,
            "requests": turns,
            "requests_per_second": turns / self.config.duration,
            "reads": reads,
            "choices": self._sum("choices"),
            "database_loads": self._sum("loads"),
            "database_queries": queries,
            "database_queries_per_request": queries / turns if turns else 0.0,
            "database_queries_per_request_uncached": self._uncached_queries(turns),
            "hit_rate": {
                "overall": rate(reads - self._sum("loads"), self._sum("loads")),
                "local": rate(local_hits, local_misses),
                "redis": None if self.config.local_only else rate(redis_hits, redis_misses),
            },
            "latency": {name: tier(name) for name in MEASURED},
            "invalidations": {
                "sent": self._stat("invalidations", "sent"),
                "received": self._stat("invalidations", "received"),
                "lag_p50": self.lags.quantile(0.5),
                "lag_p99": self.lags.quantile(0.99),
            },
            "redis_round_trips": redis_ops,
            "redis_round_trips_per_request": redis_ops / turns if turns else 0.0,
            "redis_round_trips_per_read": redis_ops / reads if reads else 0.0,
            "errors": self._stat("errors"),
            "stale_reads": self.stale_reads,
            "own_stale_reads": self.own_stale_reads,
            "stale_by_tier": self.stale_by_tier,
            "worst_staleness": self.worst_staleness,
            "versions_checked": sum(len(w.observed) for w in self.workers),
        }

    def _uncached_queries(self, turns: int) -> float:
        """SQL statements per request if every read were a load: each kind's measured statements
        per load times its reads (a turn reads each of the five kinds once), plus the writes'."""
        if not turns:
            return 0.0
        loads: dict[str, int] = {}
        spent: dict[str, int] = {}
        for w in self.workers:
            for kind, n in w.loads_by_kind.items():
                loads[kind] = loads.get(kind, 0) + n
            for kind, n in w.queries_by_kind.items():
                spent[kind] = spent.get(kind, 0) + n
        reads_per_kind = self._sum("reads") / 5
        written = self._sum("queries") - sum(spent.values())
        read = sum(spent[k] / loads[k] * reads_per_kind for k in loads if loads[k])
        return (read + written) / turns

    def render(self) -> str:
        """The human-readable summary: a header, an aligned table per tier, the checks."""
        d = self.as_dict()
        cfg = self.config
        hit_rates = {"l1": _pct(d["hit_rate"]["local"]), "l2": _pct(d["hit_rate"]["redis"])}
        rows = [("", "hit rate", "served", "p50", "p99")]
        for name in MEASURED:
            lat = d["latency"][name]
            rows.append(
                (
                    _TIER_LABELS[name],
                    hit_rates.get(name, ""),
                    f"{lat['count']:,}",
                    _dur(lat["p50"]),
                    _dur(lat["p99"]),
                )
            )
        inv = d["invalidations"]
        saved = 1 - d["database_loads"] / d["reads"] if d["reads"] else 0.0
        return "\n".join(
            [
                f"tta-cache demo: {cfg.workers} workers x {d['duration']:.1f} s, "
                f"{cfg.players} players, {cfg.choice_rate:.0%} of turns make a choice",
                f"redis: {self.redis}",
                "",
                f"requests (player turns)  {d['requests']:>10,}  "
                f"({d['requests_per_second']:,.0f}/s; a turn reads 5 kinds of state)",
                f"cache reads              {d['reads']:>10,}",
                f"database loads           {d['database_loads']:>10,}  "
                f"({saved:.1%} of reads served by the cache)",
                f"database queries         {d['database_queries_per_request']:.2f} per request "
                f"with the cache, {d['database_queries_per_request_uncached']:.2f} without "
                "(every read a load)",
                "",
                *_table(rows),
                "",
                f"invalidations            sent {inv['sent']:,}, "
                f"received by the other processes {inv['received']:,}",
                f"invalidation lag         p50 {_dur(inv['lag_p50'])}, p99 {_dur(inv['lag_p99'])} "
                "(publish to receipt)",
                f"redis round trips        {d['redis_round_trips_per_request']:.2f} per request, "
                f"{d['redis_round_trips_per_read']:.2f} per read",
                f"errors                   {d['errors']:,}",
                f"stale reads: {d['stale_reads'] + d['own_stale_reads']}{self._stale_detail()}",
                f"  ({d['versions_checked']:,} versions read, checked against "
                f"{d['choices']:,} choices; window 0 ms in the writing process, "
                f"{STALENESS_WINDOW * 1000:.0f} ms in the others)",
            ]
        )

    def _stale_detail(self) -> str:
        if not (self.stale_reads or self.own_stale_reads):
            return ""
        return (
            f" (in the writing process: {self.own_stale_reads}; in the others: "
            f"{self.stale_reads} {self.stale_by_tier}, the worst {_dur(self.worst_staleness)} "
            "after the invalidation returned)"
        )


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _dur(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} us"
    if seconds < 1.0:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    out = []
    for n, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        out.append("  ".join(cells).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return out
