"""Does planning pay? ``q_learning`` with γ > 0 against γ = 0 on clicks per session, in a world with session dynamics.

``models.synthetic`` has session dynamics: showing an item again lowers its
click probability (``repeat_penalty``) and clicking raises the appeal of items
close to the clicked ones (``history_affinity``). So a slate choice changes the
rest of the session, which is what a discount γ > 0 can plan for and γ = 0 (a
contextual bandit on the same state and network) cannot.

The loop: sessions of ``--session-len`` steps; at each step the arm ranks the
candidates on the session's state (recent clicks and impressions, as serving
passes them) and shows one item; the click is drawn from the world's truth;
after every block of sessions the arm learns from the block's logged steps
(with their states, as training does). Clicks per session over the last 20% of
sessions, per seed; then the mean and its standard error over seeds.

    .venv/bin/python bench/bench_q_learning.py --seeds 5
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from models.registry import make_arm  # noqa: E402
from models.synthetic import SyntheticWorld, WorldConfig  # noqa: E402
from models.types import PAD, Users  # noqa: E402

HEADING = "## q_learning: γ > 0 against γ = 0\n"


def run(gamma: float, seed: int, args) -> float:
    config = WorldConfig(n_users=args.users, n_items=args.items, repeat_penalty=args.repeat_penalty,
                         history_affinity=args.history_affinity, session_len=args.session_len)
    world = SyntheticWorld(config, seed=seed)
    rng = np.random.default_rng(seed + 100)
    arm = make_arm("q_learning", {"gamma": gamma, "user_buckets": 4096, "item_buckets": 4096}, seed=seed)
    cands = rng.choice(args.items, args.candidates, replace=False)
    keys, feats = world.item_keys[cands], world.item_feats[cands]
    h = config.history_len
    per_session = []
    for _ in range(args.sessions // args.block):
        users = rng.integers(0, args.users, args.block)
        hist_clk = np.full((args.block, h), -1, np.int64)
        hist_imp = np.full((args.block, h), -1, np.int64)
        log = []
        clicks = np.zeros(args.block)
        for _step in range(args.session_len):
            as_keys = [np.where(x >= 0, world.item_keys[np.maximum(x, 0)], PAD) for x in (hist_clk, hist_imp)]
            slates, _, _ = arm.rank_many(Users.make(world.user_keys[users], world.user_feats[users], *as_keys,
                                                    history_len=h), keys, feats, 1, rng, propensities=False)
            shown = cands[slates[:, 0]]
            p = world.click_prob(users, shown, 1, hist_imp, hist_clk)
            y = (rng.random(args.block) < p).astype(np.float32)
            log.append((users.copy(), shown, y, hist_clk.copy(), hist_imp.copy()))
            clicks += y
            hist_imp = np.concatenate([shown[:, None], hist_imp[:, :-1]], axis=1)
            hit = y > 0
            hist_clk[hit] = np.concatenate([shown[hit, None], hist_clk[hit, :-1]], axis=1)
        per_session.append(clicks)
        u, it, y, hc, hi = (np.concatenate(c) for c in zip(*log, strict=True))
        arm.partial_fit(world.batch(u, it, y, np.ones(len(u), np.int64), hc, hi))
    sessions = np.concatenate(per_session)
    return float(sessions[-len(sessions) // 5 :].mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--gammas", default="0,0.5")
    ap.add_argument("--sessions", type=int, default=2000)
    ap.add_argument("--block", type=int, default=100)
    ap.add_argument("--session-len", type=int, default=10)
    ap.add_argument("--users", type=int, default=500)
    ap.add_argument("--items", type=int, default=200)
    ap.add_argument("--candidates", type=int, default=50)
    ap.add_argument("--repeat-penalty", type=float, default=3.0)
    ap.add_argument("--history-affinity", type=float, default=1.5)
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    args = ap.parse_args()
    gammas = [float(g) for g in args.gammas.split(",")]
    results = {g: [] for g in gammas}
    for seed in range(args.seeds):
        for g in gammas:
            results[g].append(run(g, seed, args))
            print(f"gamma={g} seed={seed} clicks/session={results[g][-1]:.3f}", flush=True)
    lines = [
        HEADING.rstrip("\n"), "",
        f"Produced by `.venv/bin/python bench/bench_q_learning.py --seeds {args.seeds}` on {time.strftime('%Y-%m-%d')} "
        f"(load average {os.getloadavg()[0]:.1f}). `models.synthetic` world with session dynamics "
        f"(repeat penalty {args.repeat_penalty}, history affinity {args.history_affinity}), {args.users} users, "
        f"{args.candidates} candidate items, sessions of {args.session_len} one-item steps, {args.sessions} sessions "
        f"per run, learning after every {args.block}; clicks per session over the last 20% of sessions.", "",
        "| γ | clicks per session (mean ± s.e. over seeds) | per seed |", "|---:|---:|---|",
    ]
    for g in gammas:
        v = np.array(results[g])
        lines.append(f"| {g:g} | {v.mean():.3f} ± {v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else 0:.3f} | "
                     + ", ".join(f"{x:.3f}" for x in v) + " |")
    if len(gammas) == 2 and args.seeds > 1:
        d = np.array(results[gammas[1]]) - np.array(results[gammas[0]])
        se = d.std(ddof=1) / np.sqrt(len(d))
        lines += ["", f"Paired difference γ = {gammas[1]:g} − γ = {gammas[0]:g}: {d.mean():+.3f} ± {se:.3f} clicks per "
                  f"session (t = {d.mean() / se if se > 0 else float('nan'):.2f} over {len(d)} seeds)."]
    body = "\n".join(lines) + "\n"
    print(body)
    from bench_arms import write_section

    write_section(Path(args.out), body, HEADING)


if __name__ == "__main__":
    main()
