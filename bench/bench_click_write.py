"""The cost of recording a click: ``clicks.click_record`` (one statement: the click row, the rollup, the
interleaving credit, the session), timed per call in-process against Postgres.

Each code tree runs in its own process and database (``--code NAME=PATH``, as ``bench_training.py``), on the
same seeded traffic: ``--impressions`` logged impressions of one arm, then a click on each of ``--clicks`` of
them in a seeded random order, timed one by one. Reported: median and p95 µs per click, over ``--repeats``
rounds on fresh impressions (the median of the rounds' medians).

    .venv/bin/python bench/bench_click_write.py --code old=<worktree> --code new=.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_training import _setup, code_args, code_trees, inner_run  # noqa: E402


def _inner(args: argparse.Namespace, code: Path) -> dict:
    sys.path.insert(0, str(code))
    os.chdir(code)
    _setup(args.database_url, code)
    from experiments.services.clicks import click_record
    from experiments.services.impression_ids import impression_id_encode
    from tests.support.training_world import traffic_log, world_make

    world = world_make(seed=7, n_users=500, n_items=300, kinds=("popularity",))
    rng = np.random.default_rng(7)
    medians, p95s = [], []
    for r in range(args.repeats):
        imps, _ = traffic_log(world, requests=args.impressions // 10, k=10, seed=100 + r, click=False)
        chosen = rng.choice(len(imps), size=min(args.clicks, len(imps)), replace=False)
        times = []
        for idx in chosen:
            token = impression_id_encode(imps[int(idx)])
            t0 = time.perf_counter()
            click_record(impression_id=token)
            times.append((time.perf_counter() - t0) * 1e6)
        medians.append(statistics.median(times))
        p95s.append(float(np.quantile(times, 0.95)))
    return {"median_us": statistics.median(medians), "p95_us": statistics.median(p95s),
            "medians": [round(m, 1) for m in medians], "clicks": args.clicks, "repeats": args.repeats}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--impressions", type=int, default=20_000, help="logged impressions per round")
    parser.add_argument("--clicks", type=int, default=2_000, help="clicks timed per round")
    parser.add_argument("--repeats", type=int, default=5)
    args = code_args(parser, "postgres://127.0.0.1:5432/recsite_bench_click_write", _inner)
    if args is None:
        return
    codes = code_trees(args.code)
    print(f"# bench_click_write  impressions {args.impressions}  clicks {args.clicks}  repeats {args.repeats}"
          f"  load average {os.getloadavg()[0]:.1f}")
    print("| code | click_record median µs | p95 µs | round medians µs |\n|---|---:|---:|---|")
    for i, (name, path) in enumerate(codes):
        r = inner_run(__file__, path, ["--impressions", str(args.impressions), "--clicks", str(args.clicks),
                                       "--repeats", str(args.repeats), "--database-url", f"{args.database_url}_{i}"])
        print(f"| {name} | {r['median_us']:,.0f} | {r['p95_us']:,.0f} | {', '.join(map(str, r['medians']))} |",
              flush=True)


if __name__ == "__main__":
    main()
