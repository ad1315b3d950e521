"""Replay one arm's recorded live stream through fresh arms, and score them on it the way training does.

After ``bench/learning_race.py`` its database holds the last world's impressions and clicks. This reads one
arm's stream, cuts it into FNW steps of ``--step-s`` seconds (each impression a fake negative in the step it
was served in, each counted click a positive in the step it arrived in), and for every spec predicts each step
before learning from it. Over the last ``--last-s`` seconds it prints, per spec:

* the guard's FNW-weighted logloss (weights from the spec's own ``feedback_reference``);
* the proper progressive logloss estimated from the FNW rows (``training_feedback.fnw_label_logloss``);
* the exact one: each impression's prediction in its own step against its eventual label.

``oracle`` scores the simulator's true click probabilities (the world rebuilt from ``--seed``, ``--users``,
``--items`` and ``--world``, as the race ran it). Different arms show different items, so compare specs on
one stream, not streams::

    .venv/bin/python bench/replay_streams.py --arm popularity oracle popularity deep_ctr \
        'popularity:{"prior_alpha": 0.5, "prior_beta": 4.5}'
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _stream(arm_id: int) -> tuple[list[dict], list[dict], object]:
    from django.db import connection

    from experiments.services.training_data import IMPRESSION_COLUMNS, Rows, entities_read

    cols = ", ".join(f"i.{c}" for c in IMPRESSION_COLUMNS)
    with connection.cursor() as cur:
        cur.execute(f"SELECT i.id, {cols}, extract(epoch FROM i.served_at) FROM experiments_impression i "
                    "WHERE i.arm_id = %s ORDER BY i.id", [arm_id])
        imps = [dict(zip(("id", *IMPRESSION_COLUMNS, "t"), r, strict=True)) for r in cur.fetchall()]
        cur.execute(f"SELECT c.id, c.clicked_at, c.impression_id, {cols}, extract(epoch FROM c.clicked_at) "
                    "FROM experiments_click c JOIN experiments_impression i ON i.id = c.impression_id "
                    "WHERE i.arm_id = %s AND NOT c.late ORDER BY c.id", [arm_id])
        clicks = [dict(zip(("id", "clicked_at", "impression_id", *IMPRESSION_COLUMNS, "t"), r, strict=True))
                  for r in cur.fetchall()]
        names = ("id", *IMPRESSION_COLUMNS)
        entities = entities_read(cur, Rows.of_records(names, imps), Rows.of_records(names, clicks))
    return imps, clicks, entities


class _Truth:
    """The simulator's click probabilities as an arm that never learns."""

    def __init__(self, args) -> None:
        from experiments.models import Item, ShopUser
        from experiments.simulation.world import ShopperWorld

        self.world = ShopperWorld(seed=args.seed, n_users=args.users, n_items=args.items, world=args.world)
        self.users = dict(ShopUser.objects.values_list("id", "external_id"))
        self.items = dict(Item.objects.values_list("id", "external_id"))

    def rows_p(self, rows: list[dict]) -> np.ndarray:
        return np.array([self.world.click_probability(self.users[r["user_id"]], [self.items[r["item_id"]]],
                                                      np.array([r["position"]]), 0)[0] for r in rows])


def replay(spec: str, steps: list[tuple[list[dict], list[dict], bool]], entities, source_params: dict,
           source_kind: str, truth: _Truth | None, clicked: set[int]) -> dict[str, float]:
    from experiments.services.training_data import IMPRESSION_COLUMNS, Rows, StepRows, step_batch
    from experiments.services.training_feedback import fnw_label_logloss, fnw_weights
    from models.metrics import logloss
    from models.registry import make_arm

    kind, _, extra = spec.partition(":")
    arm = None
    if kind != "oracle":
        params = dict(source_params) if kind == source_kind else {}
        params.update(json.loads(extra) if extra else {})
        arm = make_arm(kind, params, seed=0)
    sums = dict.fromkeys(("fnw", "fnw_n", "est", "est_n", "exact", "exact_n"), 0.0)
    for imps, clicks, scored in steps:
        rows = StepRows(Rows.of_records(("id", *IMPRESSION_COLUMNS), imps),
                        Rows.of_records(("id", "clicked_at", "impression_id", *IMPRESSION_COLUMNS), clicks), 0, 0,
                        entities)
        labels = np.concatenate([np.zeros(len(imps)), np.ones(len(clicks))]).astype(np.float32)
        if arm is None:
            assert truth is not None
            p = ref = truth.rows_p(imps + clicks)
        else:
            batch = step_batch(rows=rows, params=arm.params)
            p = np.asarray(arm.predict(batch), np.float64)
            ref = np.asarray(arm.feedback_reference(batch), np.float64)
        w = fnw_weights(labels=labels, p=ref)
        if scored:
            sums["fnw"] += logloss(labels, p, w) * len(labels)
            sums["fnw_n"] += len(labels)
            loss, count = fnw_label_logloss(labels=labels, p=p)
            sums["est"], sums["est_n"] = sums["est"] + loss, sums["est_n"] + count
            if imps:
                y = np.array([r["id"] in clicked for r in imps], np.float64)
                sums["exact"] += logloss(y, p[: len(imps)]) * len(imps)
                sums["exact_n"] += len(imps)
        if arm is not None:
            arm.partial_fit(dataclasses.replace(batch, sample_weight=w.astype(np.float32)))
    return {k: sums[k] / max(sums[f"{k}_n"], 1) for k in ("fnw", "est", "exact")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("specs", nargs="+", help="oracle, kind, or kind:{json params} (the source arm's params for its kind)")
    ap.add_argument("--arm", required=True, help="name of the arm whose stream is replayed")
    ap.add_argument("--database-url", default="postgres://127.0.0.1:5432/recsite_bench_race")
    ap.add_argument("--step-s", type=float, default=2.0, help="seconds of traffic per FNW step (the trainer's tick)")
    ap.add_argument("--last-s", type=float, default=120.0, help="score the last this many seconds")
    ap.add_argument("--world", choices=("latent", "ids"), default="ids")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--items", type=int, default=600)
    args = ap.parse_args()
    os.environ.update({"DATABASE_URL": args.database_url, "DJANGO_SETTINGS_MODULE": "recsite.settings",
                       "TF_CPP_MIN_LOG_LEVEL": "2"})
    os.environ.setdefault("RECSITE_DEV", "1")
    import django

    django.setup()
    from experiments.models import Arm

    source = Arm.objects.get(name=args.arm)
    imps, clicks, entities = _stream(source.id)
    if not imps:
        raise SystemExit(f"arm {args.arm!r} has no impressions in {args.database_url}")
    t0, t_end = float(imps[0]["t"]), float(imps[-1]["t"])
    step_of = lambda t: int((float(t) - t0) // args.step_s)  # noqa: E731
    n_steps = step_of(max(t_end, float(clicks[-1]["t"]) if clicks else t_end)) + 1
    by_step: list[tuple[list[dict], list[dict]]] = [([], []) for _ in range(n_steps)]
    for r in imps:
        by_step[step_of(r["t"])][0].append(r)
    for r in clicks:
        s = step_of(r["t"])
        if s < n_steps:
            by_step[s][1].append(r)
    scored_from = t_end - args.last_s
    steps = [(i, c, t0 + s * args.step_s >= scored_from) for s, (i, c) in enumerate(by_step) if i or c]
    truth = _Truth(args) if "oracle" in args.specs else None
    clicked = {c["impression_id"] for c in clicks}
    print(f"arm {source.name} ({source.kind}): {len(imps)} impressions, {len(clicks)} clicks, {len(steps)} steps of "
          f"{args.step_s:g} s; scored: the last {args.last_s:g} s\n")
    print("| spec | FNW-weighted (guard) | progressive, from the FNW rows | progressive, exact |\n|---|---:|---:|---:|")
    for spec in args.specs:
        r = replay(spec, steps, entities, source.params, source.kind, truth, clicked)
        print(f"| `{spec}` | {r['fnw']:.4f} | {r['est']:.4f} | {r['exact']:.4f} |", flush=True)


if __name__ == "__main__":
    main()
