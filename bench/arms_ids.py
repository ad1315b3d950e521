"""The ids-only section of ``bench_arms.py``: arms alone on a stream whose features carry no signal.

The world (``WorldConfig(observable="none")``) has the latent world's truth, but
its features are noise, so anything an arm learns beyond item popularity it
learns from the user and item ids. Target (issue 11): last-20% progressive AUC
of ``deep_ctr`` and ``neural_bandit`` ≥ popularity's + 0.02, with River and
Vowpal Wabbit beside them.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from bench_arms import make_stream, rebatch, run_arm, run_river, run_vw, write_section

from models.synthetic import WorldConfig

HEADING = "## Arms, ids-only world\n"


def ids_only_section(args) -> None:
    users, items = (int(x) for x in args.ids_world.lower().split("x"))
    config = WorldConfig(n_users=users, n_items=items, observable="none")
    _, batches = make_stream(args.n, args.seed, config)
    rows = []
    for kind in ("popularity", "ftrl_logreg", "deep_ctr", "neural_bandit", "q_learning"):
        res, _ = run_arm(kind, rebatch(batches, 1024), 1)
        rows.append((f"`{kind}` (batch 1024)", kind, res))
        print("ids", kind, {k: round(v, 4) for k, v in res.items()}, flush=True)
    for name, fn in [
        ("River `LogisticRegression` (1 at a time)", run_river),
        ("Vowpal Wabbit `-q ui` (1 at a time)", run_vw),
    ]:
        res = fn(batches)
        rows.append((name, None, res))
        print("ids", name, {k: round(v, 4) for k, v in res.items()}, flush=True)
    auc = {kind: r["auc_last"] for _, kind, r in rows if kind}
    lines = [
        HEADING.rstrip("\n"),
        "",
        f"Produced by `.venv/bin/python bench/bench_arms.py --n {args.n} --only-ids --ids-world {args.ids_world}` "
        f"on {time.strftime('%Y-%m-%d')} (1-minute load average {os.getloadavg()[0]:.1f} at the end). "
        f"A seeded {args.n:,}-example stream of the ids-only world ({users} users × {items} items, "
        "`WorldConfig(observable=\"none\")`: the same hidden user×item affinity, features that are noise). "
        "Progressive validation; arms at their registry defaults.",
        "",
        "| learner | logloss | AUC | logloss last 20% | AUC last 20% |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, _, r in rows:
        lines.append(f"| {name} | {r['logloss']:.4f} | {r['auc']:.4f} | {r['logloss_last']:.4f} | {r['auc_last']:.4f} |")
    lines.append("")
    for kind in ("deep_ctr", "neural_bandit"):
        gain = auc[kind] - auc["popularity"]
        verdict = "met" if gain >= 0.02 else "**MISSED**"
        lines.append(f"- `{kind}` last-20% AUC {auc[kind]:.4f} = popularity {gain:+.4f} (target ≥ +0.02): {verdict}.")
    body = "\n".join(lines) + "\n"
    write_section(Path(args.out), body, HEADING)
    print(body)
