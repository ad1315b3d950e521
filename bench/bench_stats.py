"""Micro-benchmark of the pure statistics: one ``experiment_report`` for 10 arms.

Only the compute after the SQL aggregation is timed (the summaries are built
up front). Run: ``.venv/bin/python bench/bench_stats.py [--runs 200]``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.stats import AllocationPeriod, ClusteredRatioSummary, experiment_report  # noqa: E402


def _summary(rng: np.random.Generator, users: int, ctr: float) -> ClusteredRatioSummary:
    n = 1 + rng.poisson(4, users)
    return ClusteredRatioSummary.from_users(n, rng.binomial(n, rng.beta(ctr * 19, (1 - ctr) * 19, users)))


def _time(fn, runs: int) -> tuple[float, float]:
    fn()  # warm-up (imports, SciPy first calls)
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    samples.sort()
    return statistics.median(samples) * 1e3, samples[int(0.9 * (len(samples) - 1))] * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--arms", type=int, default=10)
    parser.add_argument("--periods", type=int, default=6)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    names = [f"arm{i}" for i in range(args.arms)]
    weights = dict.fromkeys(names, 1.0)
    periods = [
        AllocationPeriod(weights=weights, arms={a: _summary(rng, 2_000, 0.05 + 0.001 * i) for i, a in enumerate(names)})
        for _ in range(args.periods)
    ]
    totals = {a: sum((p.arms[a] for p in periods), ClusteredRatioSummary.empty()) for a in names}
    state = experiment_report(totals, control=names[0], weights=weights)["sequential_state"]

    cases = {
        "pooled (no periods)": lambda: experiment_report(
            totals, control=names[0], weights=weights, sequential_state=state, seed=1
        ),
        f"{args.periods} allocation periods": lambda: experiment_report(
            totals, control=names[0], weights=weights, periods=periods, sequential_state=state, seed=1
        ),
        "pooled, 2,000 Bayes draws": lambda: experiment_report(
            totals, control=names[0], weights=weights, sequential_state=state, seed=1, draws=2_000
        ),
    }
    print(
        f"experiment_report, {args.arms} arms, {args.runs} runs, Python {platform.python_version()}, "
        f"NumPy {np.__version__}"
    )
    for label, fn in cases.items():
        median, p90 = _time(fn, args.runs)
        print(f"  {label:<28} median {median:7.2f} ms   p90 {p90:7.2f} ms")


if __name__ == "__main__":
    main()
