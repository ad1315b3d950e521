"""Arms on their own traffic, offline: each arm serves slates of k from the whole catalogue to its own shoppers and
learns from what it showed, in steps of a given size, optionally through the FNW delayed-feedback scheme.

The live stack without the stack: the same loop the learning race runs, minus HTTP, Postgres and timing, so a
design question (step size, delayed-feedback weights, exploration) gets a deterministic answer in a minute.

    .venv/bin/python bench/own_traffic_loop.py --world ids --fnw same --step-requests 19 popularity deep_ctr
    .venv/bin/python bench/own_traffic_loop.py --fnw-own-p deep_ctr      # FNW weights from the network's own p

FNW ``same``: every impression enters its step as a fake negative and its click (if any) as a positive duplicate in
the same step (the simulator clicks at once); ``next``: the click arrives one step later; ``off``: exact labels.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.metrics import logloss  # noqa: E402
from models.registry import make_arm  # noqa: E402
from models.synthetic import SyntheticWorld, WorldConfig  # noqa: E402
from models.types import Users  # noqa: E402


def fnw_weights(labels: np.ndarray, p: np.ndarray) -> np.ndarray:  # as experiments.services.training_feedback
    p = np.clip(p, 0.0, 1.0)
    return np.where(labels > 0.5, 1.0 + p, (1.0 - p) * (1.0 + p))


def run(spec: str, args) -> tuple[float, ...]:
    kind, _, extra = spec.partition(":")
    cfg = WorldConfig(n_users=200, n_items=args.items, observable="none" if args.world == "ids" else "latent")
    world = SyntheticWorld(cfg, seed=args.seed)
    k = args.k
    exam = world.examination(np.arange(1, k + 1))
    logit = cfg.base_logit + world.item_bias[None, :] + cfg.interaction_scale * world.user_latent @ world.item_latent.T
    rel = 1 / (1 + np.exp(-logit))
    params = {} if kind in ("popularity", "ftrl_logreg") else {"user_buckets": 4096, "item_buckets": 4096}
    params.update(json.loads(extra) if extra else {})
    arm = make_arm(kind, params, seed=0)
    rng = np.random.default_rng(args.seed + 4)
    pool = rng.choice(200, args.users, replace=False)
    oracle = float(((np.sort(rel[pool], axis=1)[:, ::-1][:, :k]) * exam).sum(1).mean() / k)
    pending = (np.zeros(0, np.int64),) * 3
    expected, losses, done, m = [], [], 0, args.step_requests
    while done < args.impressions:
        u = rng.choice(pool, m)
        slates, _, _ = arm.rank_many(Users.make(world.user_keys[u], world.user_feats[u]), world.item_keys,
                                     world.item_feats, k, rng, propensities=False)
        p_true = rel[u[:, None], slates] * exam[None, :]
        y = (rng.random(p_true.shape) < p_true).astype(np.float32).ravel()
        expected.append(p_true.mean())
        uu, ii, pos = np.repeat(u, k), slates.ravel(), np.tile(np.arange(1, k + 1), m)
        if args.fnw == "off":
            batch = world.batch(uu, ii, y, pos)
            pb = arm.predict(batch)  # progressive: before the step
            losses.append((logloss(y, pb), float(len(y)), float(pb.sum()), float(y.sum())))
            arm.partial_fit(batch)
        else:
            clicked = (uu[y > 0], ii[y > 0], pos[y > 0])
            if args.fnw == "same":
                pending = clicked
            cols = [np.concatenate([a, b]) for a, b in zip((uu, ii, pos), pending, strict=True)]
            labels = np.concatenate([np.zeros(len(uu), np.float32), np.ones(len(pending[0]), np.float32)])
            batch = world.batch(cols[0], cols[1], labels, cols[2])
            p = arm.predict(batch) if args.fnw_own_p else arm.feedback_reference(batch)
            w = fnw_weights(labels, p)
            # Progressive logloss as the trainer's guard computes it: the arm's prediction before the step, FNW-weighted.
            pb = arm.predict(batch)
            losses.append((logloss(labels, pb, w), float(w.sum()), float((w * pb).sum()), float((w * labels).sum())))
            arm.partial_fit(dataclasses.replace(batch, sample_weight=w.astype(np.float32)))
            pending = clicked
        done += m * k
    e = np.array(expected)
    q = max(1, len(e) // 5)
    ll, lw, ps, ys = np.array(losses[-q:]).T
    loss, base = float((ll * lw).sum() / lw.sum()), float(ys.sum() / lw.sum())
    entropy = -(base * np.log(base) + (1 - base) * np.log1p(-base))
    # Normalised entropy (He et al. 2014): the logloss over that of always predicting the stream's own CTR, so arms
    # whose traffic has different click rates compare; calibration = mean prediction / observed CTR.
    return float(e[:q].mean()), float(e[-q:].mean()), oracle, loss, loss / entropy, float(ps.sum() / ys.sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("arms", nargs="+", help="kind or kind:{json params}")
    ap.add_argument("--world", choices=("ids", "latent"), default="ids")
    ap.add_argument("--users", type=int, default=40, help="this arm's shoppers (200 over 5 arms in the race)")
    ap.add_argument("--items", type=int, default=600)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--impressions", type=int, default=60_000)
    ap.add_argument("--step-requests", type=int, default=19, help="requests per training step (~190 rows live)")
    ap.add_argument("--fnw", choices=("same", "next", "off"), default="same")
    ap.add_argument("--fnw-own-p", action="store_true", help="FNW weights from arm.predict, not feedback_reference")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    print("| arm | expected CTR, first 20% | last 20% | oracle | progressive logloss, last 20% | normalised entropy |"
          " calibration |\n|---|---:|---:|---:|---:|---:|---:|")
    for spec in args.arms:
        first, last, oracle, ll, ne, cal = run(spec, args)
        print(f"| `{spec}` | {first:.4f} | {last:.4f} | {oracle:.4f} | {ll:.4f} | {ne:.4f} | {cal:.3f} |", flush=True)


if __name__ == "__main__":
    main()
