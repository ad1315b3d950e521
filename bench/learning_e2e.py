"""Learning end to end: the whole product under simulated shoppers, then per-arm CTR over time and freshness.

Starts, against its own fresh database and its own Redis database (so a demo on
the same machine is not disturbed): Daphne, a trainer (``-Q training -P solo``),
a light worker (``-Q default``) and beat; creates one running experiment with the
arms given; runs ``manage.py simulate`` over HTTP at ``--rate`` requests/s for
``--duration`` seconds; then reads from the database, per arm:

* CTR of the impressions served in the first and in the last minute;
* event → serving lag of every click (click → first impression served by a
  version trained on it): p50 / p95, the freshness benchmark;
* versions written, rejected batches, examples trained, and the trainer's
  median step timings under load.

    .venv/bin/python bench/learning_e2e.py --rate 50 --duration 300
    .venv/bin/python bench/learning_e2e.py --rate 100 --duration 120   # freshness at 100 req/s
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from live_stack import django_for, running_stack, simulate  # noqa: E402


def _window_ctr(arm_id: int, start, end) -> tuple[int, int]:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(*), count(c.id) FILTER (WHERE NOT c.late) FROM experiments_impression i "
            "LEFT JOIN experiments_click c ON c.impression_id = i.id "
            "WHERE i.arm_id = %s AND i.served_at >= %s AND i.served_at < %s",
            [arm_id, start, end],
        )
        n, clicks = cur.fetchone()
    return int(n), int(clicks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--duration", type=float, default=300.0)
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--arms", default="popularity,ftrl_logreg,deep_ctr,neural_bandit")
    parser.add_argument("--window", type=float, default=60.0, help="seconds of the first/last CTR windows")
    parser.add_argument("--trainers", type=int, default=1)
    parser.add_argument("--arm-params", default="{}", help='JSON {kind: params}, e.g. {"deep_ctr": {"user_buckets": 4096}}')
    parser.add_argument("--database-url", default="postgres://127.0.0.1:5432/recsite_bench_learning")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/11")
    parser.add_argument("--json", dest="json_path", default=None)
    parser.add_argument("--asgi-app", default="recsite.asgi:application",
                        help="e.g. recsite.asgi:fast_application (serving's fast path for the event endpoints)")
    args = parser.parse_args()

    django_for(
        args.database_url, args.redis_url, prefix="recsite-bench-learning",
        # Keep every version: the lags of all clicks are computed from the versions afterwards.
        extra_env={"RECSITE_CHECKPOINT_KEEP_LAST": os.environ.get("RECSITE_CHECKPOINT_KEEP_LAST", "1000000")},
    )
    import numpy as np

    from experiments.models import Arm, Experiment, ModelCheckpoint
    from experiments.selectors.training import click_serving_lags

    experiment = Experiment.objects.create(slug="bench-learning", salt="bench", status="running")
    arm_params = json.loads(args.arm_params)
    arms = [
        Arm.objects.create(experiment=experiment, name=kind, kind=kind, params=arm_params.get(kind, {}))
        for kind in (k.strip() for k in args.arms.split(",") if k.strip())
    ]
    experiment.control_arm = arms[0]
    experiment.save(update_fields=["control_arm"])

    with running_stack(asgi_app=args.asgi_app, trainers=args.trainers, web="daphne") as url:
        print(f"# learning_e2e rate={args.rate} duration={args.duration}s arms={args.arms} url={url}", flush=True)
        sim_report = simulate(
            url, "--users", str(args.users), "--items", str(args.items), "--rate", str(args.rate),
            "--duration", str(args.duration), "--seed", str(args.seed), "--k", str(args.k),
            json_path=Path(tempfile.mkdtemp(prefix="recsite-sim-")) / "simulate.json",
        )
        time.sleep(3)  # let the last clicks be trained and served

    from django.db import connection
    from django.db.models import Max, Min

    from experiments.models import Impression

    span = Impression.objects.filter(experiment=experiment).aggregate(start=Min("served_at"), end=Max("served_at"))
    start, end = span["start"], span["end"]
    from datetime import timedelta

    w = timedelta(seconds=args.window)
    rows = []
    for arm in arms:
        n1, c1 = _window_ctr(arm.id, start, start + w)
        n2, c2 = _window_ctr(arm.id, end - w, end + timedelta(seconds=1))
        nt, ct = _window_ctr(arm.id, start, end + timedelta(seconds=1))
        lags = click_serving_lags(arm_id=arm.id, since=start - timedelta(seconds=5))
        cps = list(ModelCheckpoint.objects.filter(arm=arm).order_by("version").values("metrics", "examples_seen"))
        timings = [c["metrics"].get("timings_ms") or {} for c in cps if c["metrics"].get("accepted")]

        def med(key: str, timings=timings) -> float | None:
            vals = [t[key] for t in timings if key in t]
            return round(float(np.median(vals)), 1) if vals else None

        rows.append(
            {
                "arm": arm.name,
                "ctr_first": c1 / max(n1, 1), "n_first": n1,
                "ctr_last": c2 / max(n2, 1), "n_last": n2,
                "ctr_all": ct / max(nt, 1), "n_all": nt,
                "lag_p50": float(np.percentile(lags, 50)) if lags.size else None,
                "lag_p95": float(np.percentile(lags, 95)) if lags.size else None,
                "lag_n": int(lags.size),
                "versions": len(cps),
                "rejected": sum(1 for c in cps if c["metrics"].get("accepted") is False),
                "examples": cps[-1]["examples_seen"] if cps else 0,
                "read_ms": med("read"), "fit_ms": med("fit"), "serialise_ms": med("serialise"),
            }
        )
    connection.close()
    elapsed = sim_report.get("elapsed_s") or args.duration
    achieved = sim_report.get("requests", 0) / elapsed
    print(f"asgi app: {args.asgi_app}")
    print(f"arm params: {args.arm_params}; train interval {os.environ.get('RECSITE_TRAIN_INTERVAL_S', '2.0')} s")
    print(f"\nhost: python {platform.python_version()}, {os.cpu_count()} cpus; achieved {achieved:.1f} req/s "
          f"over {elapsed:.0f} s ({sim_report.get('requests')} requests, errors {sim_report.get('errors')})")
    print(f"| arm | CTR first {args.window:.0f} s | CTR last {args.window:.0f} s | CTR whole run | click→serving p50 s "
          "| p95 s | clicks timed | versions | rejected | examples trained | read / fit / serialise ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        lag50 = f"{r['lag_p50']:.2f}" if r["lag_p50"] is not None else "–"
        lag95 = f"{r['lag_p95']:.2f}" if r["lag_p95"] is not None else "–"
        print(f"| {r['arm']} | {r['ctr_first']:.4f} ({r['n_first']}) | {r['ctr_last']:.4f} ({r['n_last']}) "
              f"| {r['ctr_all']:.4f} | {lag50} | {lag95} | {r['lag_n']} | {r['versions']} | {r['rejected']} "
              f"| {r['examples']} | {r['read_ms']} / {r['fit_ms']} / {r['serialise_ms']} |")
    with connection.cursor() as cur:  # the lag split: click → version commit, commit → first served
        cur.execute(
            """
            WITH v AS (
              SELECT c.arm_id, c.version, c.created_at, (c.metrics->>'click_from')::bigint cf,
                     (c.metrics->>'click_to')::bigint ct,
                     (SELECT i.served_at FROM experiments_impression i WHERE i.arm_id = c.arm_id AND i.id > c.cursor
                      AND i.model_version >= c.version ORDER BY i.id LIMIT 1) fs
              FROM experiments_modelcheckpoint c WHERE (c.metrics->>'accepted')::boolean)
            SELECT extract(epoch FROM v.created_at - k.clicked_at), extract(epoch FROM v.fs - v.created_at)
            FROM v JOIN experiments_click k ON k.id > v.cf AND k.id <= v.ct
            JOIN experiments_impression i ON i.id = k.impression_id AND i.arm_id = v.arm_id
            WHERE NOT k.late AND v.fs IS NOT NULL
            """
        )
        split = np.array(cur.fetchall(), dtype=float)
    if split.size:
        print(f"lag split: click→commit p50 {np.percentile(split[:, 0], 50):.2f} s p95 "
              f"{np.percentile(split[:, 0], 95):.2f} s; commit→first served p50 {np.percentile(split[:, 1], 50):.2f} s "
              f"p95 {np.percentile(split[:, 1], 95):.2f} s")
    all_lags = np.concatenate([click_serving_lags(arm_id=a.id, since=start - timedelta(seconds=5)) for a in arms])
    if all_lags.size:
        print(f"\nall arms: click→serving p50 {np.percentile(all_lags, 50):.2f} s, p95 {np.percentile(all_lags, 95):.2f} s "
              f"over {all_lags.size} clicks")
    if args.json_path:
        Path(args.json_path).write_text(json.dumps({"achieved_rps": achieved, "arms": rows,
                                                    "simulate": sim_report}, indent=2, default=str))


if __name__ == "__main__":
    main()
