"""Simulate XFetch early refresh on one hot key and print when recomputations start.

Callers read the key ``--rate`` times a second (evenly spaced); each asks ``policy.judge`` with its
own random draw, and a REFRESH or EXPIRED verdict starts a recomputation that takes
``--compute-time`` seconds and then writes a new entry (``policy.expiries``). Callers decide alone,
as processes without a shared lease would (the XFetch paper's setting). A window is the life of one
entry; it ends when a recomputation for the next one starts.

    .venv/bin/python benchmarks/xfetch_sim.py [--rate 10000 --ttl 60 --windows 10 ...]
"""

from __future__ import annotations

import argparse
import math
import random
from collections import Counter, deque

from tta_cache.core.policy import Freshness, Verdict, expiries, judge


def simulate(
    *, rate: int, windows: int, freshness: Freshness, compute_time: float, seed: int
) -> list[list[float]]:
    """Per window, the recomputation start times relative to the expiry of the entry replaced."""
    rng = random.Random(seed)
    fresh_until, hard_until = expiries(0.0, freshness, rng.random())
    entry = 0
    in_flight: deque[float] = deque()  # finish times, in order
    starts: dict[int, list[float]] = {}
    tick = 0
    while len(starts) <= windows:
        tick += 1
        now = tick / rate
        while in_flight and in_flight[0] <= now:
            fresh_until, hard_until = expiries(in_flight.popleft(), freshness, rng.random())
            entry += 1
        verdict = judge(now, fresh_until, hard_until, compute_time, freshness.beta, rng.random())
        if verdict is Verdict.REFRESH or verdict is Verdict.EXPIRED:
            starts.setdefault(entry, []).append(now - fresh_until)
            in_flight.append(now + compute_time)
    return list(starts.values())[:windows]


def histogram(offsets: list[float], bucket: float, width: int = 50) -> list[str]:
    """Text bars of ``offsets`` in ``bucket``-second bins."""
    bins = Counter(math.floor(o / bucket) for o in offsets)
    most = max(bins.values())
    lines = []
    for b in range(min(bins), max(bins) + 1):
        n = bins.get(b, 0)
        bar = "#" * max(1 if n else 0, round(n / most * width))
        lines.append(f"  [{b * bucket:+6.1f}, {(b + 1) * bucket:+6.1f}) s {n:6d}  {bar}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rate", type=int, default=10_000, help="callers per second")
    parser.add_argument("--ttl", type=float, default=60.0)
    parser.add_argument("--jitter", type=float, default=0.1)
    parser.add_argument("--compute-time", type=float, default=0.5)
    parser.add_argument("--beta", type=float, default=1.0)
    parser.add_argument("--windows", type=int, default=10)
    parser.add_argument("--bucket", type=float, default=0.5, help="histogram bin, seconds")
    parser.add_argument("--seed", type=int, default=2015)
    parser.add_argument(
        "--baseline-windows", type=int, default=2, help="windows to run with beta 0 for contrast"
    )
    args = parser.parse_args()

    freshness = Freshness(ttl=args.ttl, jitter=args.jitter, beta=args.beta)
    per_window = simulate(
        rate=args.rate,
        windows=args.windows,
        freshness=freshness,
        compute_time=args.compute_time,
        seed=args.seed,
    )
    offsets = [o for w in per_window for o in w]
    counts = [len(w) for w in per_window]
    print(
        f"XFetch: {args.rate} callers/s, ttl {args.ttl:g} s (jitter {args.jitter:g}), "
        f"compute_time {args.compute_time:g} s, beta {args.beta:g}, seed {args.seed}"
    )
    print("recomputation start relative to expiry (negative = before):")
    print("\n".join(histogram(offsets, args.bucket)))
    print(f"per window: {counts}")
    # Expected per window: one, then Poisson(H * (e**(1/beta) - 1)) more while it computes, where
    # H ~ Exp(1) is the hazard accumulated by the first: e**(1/beta) in all, whatever the rate.
    theory = f"{math.exp(1 / args.beta):.2f}" if args.beta > 0 else "n/a"
    print(
        f"total {len(offsets)} over {len(counts)} windows: mean {sum(counts) / len(counts):.2f} "
        f"(theory e^(1/beta) = {theory}), max {max(counts)}; earliest {min(offsets):.2f} s, "
        f"latest {max(offsets):.2f} s; started at or after expiry: {sum(o >= 0 for o in offsets)}"
    )
    if args.baseline_windows:
        baseline = simulate(
            rate=args.rate,
            windows=args.baseline_windows,
            freshness=Freshness(ttl=args.ttl, jitter=args.jitter, beta=0),
            compute_time=args.compute_time,
            seed=args.seed,
        )
        print(f"without early refresh (beta 0), per window: {[len(w) for w in baseline]}")


if __name__ == "__main__":
    main()
