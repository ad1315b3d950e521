"""Delayed feedback: FNW (train at once, correct with importance weights) vs waiting out the attribution window.

A replay of a synthetic served stream with exponentially delayed clicks; both
schemes train the same online logistic regression every ``--tick`` seconds.
Logloss is measured as serving experiences it: the prediction of the model as
it stood when each impression was served, against the impression's true label.
Pure NumPy, seconds to run:

    .venv/bin/python bench/bench_delayed_feedback.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.services.training_feedback import replay, replay_stream  # noqa: E402

CASES = [
    # (label, mean click delay s, attribution window s, drift every s)
    ("stationary, 30 s mean delay, 30 min window", 30.0, 1800.0, None),
    ("stationary, 5 min mean delay, 30 min window", 300.0, 1800.0, None),
    ("drift every 20 min, 30 s delay, 30 min window", 30.0, 1800.0, 1200.0),
    ("stationary, 20 s delay, 5 min window", 20.0, 300.0, None),
]


def main() -> None:
    print("| stream (20 impressions/s, 2 h, tick 2 s) | seeds | FNW logloss | window logloss | FNW last half | "
          "window last half | FNW click→update s | window click→update s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for label, delay, window, drift in CASES:
        rows = []
        for seed in range(3):
            stream = replay_stream(n=144_000, dim=8, rate_per_s=20.0, mean_delay_s=delay, window_s=window,
                                   seed=seed, drift_every_s=drift)
            rows.append([replay(stream, scheme=s, tick_s=2.0, window_s=window) for s in ("fnw", "window")])

        def mean(f, rows=rows):
            return sum(f(r) for r in rows) / len(rows)

        print(f"| {label} | {len(rows)} | {mean(lambda r: r[0].logloss):.4f} | {mean(lambda r: r[1].logloss):.4f} "
              f"| {mean(lambda r: r[0].logloss_last_half):.4f} | {mean(lambda r: r[1].logloss_last_half):.4f} "
              f"| {mean(lambda r: r[0].mean_label_delay_s):.1f} | {mean(lambda r: r[1].mean_label_delay_s):.0f} |",
              flush=True)


if __name__ == "__main__":
    main()
