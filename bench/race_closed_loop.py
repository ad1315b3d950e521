"""The learning race without the stack: the same arms, world and users, in a closed loop, over many seeds.

``bench/learning_race.py`` runs the shipped demo arms through the real stack; one run takes 10 minutes a world
and its timing is its own, so a single run cannot say how much of an arm's figure is the arm and how much the
luck of its exploration. This loop replays the race's design in process, in seconds per arm:

* the simulator's world (``ShopperWorld``, seed 1, 200 shoppers, 600 items, ``--world``, ``--affinity``);
* each shopper in the arm the race assigns them (``assignment.bucket_of`` with the race's salt, equal weights,
  arms in ``DEMO_ARMS`` order), each request a uniformly random shopper, ``--rate`` requests/s;
* every ``--step-s`` seconds a training step the way the trainer makes one: the step's impressions as fake
  negatives, the previous step's clicks as positives (FNW), through the guard (``training_guard.step_guarded``);
* serving ranks with the model ``--lag`` versions old (the live stack serves a version ~1 s after its commit).

Per arm it reports the expected CTR under the truth over the last 2 minutes for every seed, the arm's best
single slate (the one list that would do best on its requests: no counting baseline beats it) and its oracle,
and per seed the race's first target (best personalised ≥ 1.15 × popularity)::

    .venv/bin/python bench/race_closed_loop.py --world ids --seeds 8
    .venv/bin/python bench/race_closed_loop.py --world ids --affinity 3.2 --seeds 8 --out /tmp/loop.md

What it leaves out, so read it beside the live race, not instead of it: the trainer's batching by rows and
folding, the web server's queueing, clicks that arrive after the next step.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from learning_race import RACE_SALT  # noqa: E402
from live_stack import demo_arms_with, set_flag  # noqa: E402

HEADING = "## Learning race, closed loop"
LAST_MINUTES = 2


def assignment(world, n_arms: int) -> np.ndarray:
    """Each world user's arm index, as the race's experiment assigns them."""
    from experiments.services.assignment import ArmSlot, arm_for_bucket, bucket_boundaries, bucket_of

    ids, bounds = bucket_boundaries(arms=[ArmSlot(arm_id=j, weight=1.0, status="active") for j in range(n_arms)])
    return np.array([arm_for_bucket(bucket=bucket_of(salt=RACE_SALT, user_id=u), arm_ids=ids, bounds=bounds)
                     for u in world.user_ids])


def run_seed(world, arms_spec: list[tuple[str, str, dict]], seed: int, args) -> dict[str, dict]:
    """One race with one seed: per arm of ``arms_spec`` (None: not run), expected CTR and last-window figures."""
    from experiments.services.training_config import TrainingConfig
    from experiments.services.training_guard import Baseline, step_guarded
    from experiments.simulation.world import CatalogueView
    from models.registry import arm_from_bytes, make_arm

    syn = world.synthetic
    arm_of = assignment(world, len(arms_spec))  # over every demo arm, run or not: the race's assignment
    catalogue = CatalogueView(world)
    catalogue.add(world.item_ids)
    config = TrainingConfig()
    k = args.k
    steps = int(round(args.minutes * 60 / args.step_s))
    per_step = int(round(args.rate * args.step_s))
    steps_per_minute = int(round(60 / args.step_s))
    last_from = steps - LAST_MINUTES * steps_per_minute
    rng = np.random.default_rng([seed, 7])
    slots = np.arange(1, k + 1)
    state = []
    for j, arm_spec in enumerate(arms_spec):
        if arm_spec is None:
            state.append(None)
            continue
        name, kind, params = arm_spec
        model = make_arm(kind, params, seed=seed * 100 + j)
        state.append({"name": name, "kind": kind, "model": model, "versions": [model.to_bytes()],
                      "serving": model, "baseline": Baseline(), "clicks": None, "refused": 0,
                      "expected": np.zeros(args.minutes), "n": np.zeros(args.minutes), "last_users": {}})
    for step in range(steps):
        minute = step // steps_per_minute
        users = rng.integers(0, len(world.user_ids), per_step)
        rows: list[list[np.ndarray]] = [[] for _ in arms_spec]
        for u in users:
            s = state[arm_of[u]]
            if s is None:
                continue
            ranking = s["serving"].rank(syn.context(u), k, rng)
            items = ranking.indices.astype(np.int64)
            n = len(items)
            p = syn.click_prob(np.full(n, u), items, slots[:n])
            s["expected"][minute] += p.sum()
            s["n"][minute] += n
            if step >= last_from:
                s["last_users"][world.user_ids[u]] = s["last_users"].get(world.user_ids[u], 0) + 1
            rows[arm_of[u]].append(np.stack([np.full(n, u), items, slots[:n], rng.random(n) < p]))
        for j, s in enumerate(state):
            if s is None:
                continue
            served = np.concatenate(rows[j], axis=1) if rows[j] else np.zeros((4, 0), np.int64)
            negatives = np.vstack([served[:3], np.zeros(served.shape[1], np.int64)])
            batch_rows = negatives if s["clicks"] is None else np.concatenate([negatives, s["clicks"]], axis=1)
            clicked = served[:, served[3] > 0]
            s["clicks"] = clicked
            if batch_rows.shape[1]:
                batch = syn.batch(batch_rows[0], batch_rows[1], batch_rows[3].astype(np.float32), batch_rows[2])
                out = step_guarded(model=s["model"], batch=batch, baseline=s["baseline"], config=config)
                s["baseline"] = out.baseline
                s["refused"] += not out.accepted
                if not out.accepted and out.touched:  # the trainer reloads its checkpoint after a refused step
                    s["model"] = arm_from_bytes(s["versions"][-1])
                s["versions"].append(s["model"].to_bytes())
                del s["versions"][:-(args.lag + 1)]
                s["serving"] = arm_from_bytes(s["versions"][0]) if args.lag else s["model"]
    out: dict[str, dict] = {}
    for s in filter(None, state):
        window = slice(args.minutes - LAST_MINUTES, args.minutes)
        nl = max(s["n"][window].sum(), 1)
        out[s["name"]] = {
            "kind": s["kind"],
            "per_minute": (s["expected"] / np.maximum(s["n"], 1)).tolist(),
            "last": float(s["expected"][window].sum() / nl),
            "single": world.best_single_slate_clicks(s["last_users"], catalogue, k, 0) / k,
            "oracle": float(np.average([world.oracle_expected_clicks(u, catalogue, k, 0) / k
                                        for u in s["last_users"]], weights=list(s["last_users"].values()))),
            "refused": s["refused"],
        }
    return out


def markdown(results: list[dict[str, dict]], args, seconds: float) -> str:
    names = list(results[0])
    pop = next(n for n in names if results[0][n]["kind"] == "popularity")
    personal = [n for n in names if n != pop]
    argv = sys.argv[1:]
    flags = shlex.join(a for i, a in enumerate(argv)  # the command as run, less where it wrote
                       if not (a == "--out" or a.startswith("--out=") or (i and argv[i - 1] == "--out")))
    lines = [
        f"{HEADING}{'' if args.affinity is None else f' with affinity {args.affinity:g}'}, world `{args.world}`"
        + "".join(f", {name} {raw}" for name, raw in args.set), "",  # a tuned run keeps its own section
        f"Produced by `.venv/bin/python bench/race_closed_loop.py {flags}` on "
        f"{time.strftime('%Y-%m-%d')} ({os.cpu_count()} cores, {seconds:.0f} s). The shipped demo arms, the race's "
        f"world and assignment, {args.rate:g} requests/s for {args.minutes} minutes, a training step every "
        f"{args.step_s:g} s (FNW rows through the guard), serving {args.lag} version(s) behind. Expected CTR under "
        f"the truth over the last {LAST_MINUTES} minutes; seeds 0–{args.seeds - 1}"
        + ("" if not args.set else "; params changed from the shipped demo's: "
           + ", ".join(f"{name} {raw}" for name, raw in args.set)) + ".", "",
        "| arm | median | min | max | best single slate | oracle | refused steps (median) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for n in names:
        vals = np.array([r[n]["last"] for r in results])
        lines.append(f"| {n} ({results[0][n]['kind']}) | {np.median(vals):.4f} | {vals.min():.4f} | {vals.max():.4f} | "
                     f"{np.median([r[n]['single'] for r in results]):.4f} | "
                     f"{np.median([r[n]['oracle'] for r in results]):.4f} | "
                     f"{np.median([r[n]['refused'] for r in results]):.0f} |")
    ratios = []
    for r in results:
        best = max(personal, key=lambda n: r[n]["last"])
        ratios.append((best, r[best]["last"] / r[pop]["last"], r[pop]["last"] / r[pop]["single"]))
    met = sum(q >= 1.15 for _, q, _ in ratios)
    lines += ["", "Per seed: the best personalised arm over popularity, and popularity's share of its ceiling:", "",
              "| seed | best personalised | ratio | popularity / its best single slate |", "|---:|---|---:|---:|"]
    lines += [f"| {i} | {b} | {q:.3f}× | {c:.1%} |" for i, (b, q, c) in enumerate(ratios)]
    reach = max(np.median([r[n]["oracle"] for r in results]) for n in personal) / np.median(
        [r[pop]["single"] for r in results])
    lines += ["", f"- best personalised ≥ 1.15 × popularity in {met} of {len(ratios)} seeds (median "
              f"{np.median([q for _, q, _ in ratios]):.3f}×); against popularity's best single slate the best "
              f"personalised arm's oracle is {reach:.3f}×, the most any arm could reach over a popularity that found "
              "its best slate.", ""]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", choices=("latent", "ids"), default="ids")
    ap.add_argument("--affinity", type=float, default=None, help="ShopperWorld.affinity (default 3.2)")
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--minutes", type=int, default=10)
    ap.add_argument("--rate", type=float, default=40.0)
    ap.add_argument("--step-s", type=float, default=2.0)
    ap.add_argument("--lag", type=int, default=1, help="versions between the trained model and the served one")
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--items", type=int, default=600)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--arms", nargs="*", default=None, help="names from DEMO_ARMS (default: all)")
    set_flag(ap)
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    args = ap.parse_args()
    if args.minutes <= LAST_MINUTES:
        ap.error(f"--minutes must be more than {LAST_MINUTES}")
    if args.seeds < 1 or args.lag < 0 or args.step_s <= 0 or args.rate <= 0:
        ap.error("--seeds must be >= 1, --lag >= 0, --step-s and --rate > 0")
    from experiments.services.demo import DEMO_ARMS
    from experiments.simulation.world import ShopperWorld

    unknown = set(args.arms or ()) - {name for name, _, _ in DEMO_ARMS}
    if unknown:
        ap.error(f"--arms: no demo arm named {', '.join(sorted(unknown))}")
    spec = [a if args.arms is None or a[0] in args.arms else None for a in demo_arms_with(args.set, ap.error)]
    run = [a for a in spec if a is not None]
    if not any(kind == "popularity" for _, kind, _ in run) or len(run) < 2:
        ap.error("--arms must name popularity and at least one other arm")
    world = ShopperWorld(seed=1, n_users=args.users, n_items=args.items, world=args.world, affinity=args.affinity)
    t0 = time.monotonic()
    results = []
    for seed in range(args.seeds):
        results.append(run_seed(world, spec, seed, args))
        print(f"seed {seed}: " + " ".join(f"{n} {r['last']:.4f}" for n, r in results[-1].items()), flush=True)
    body = markdown(results, args, time.monotonic() - t0)
    print(body)
    from bench_arms import write_section

    write_section(Path(args.out), body, body.splitlines()[0] + "\n")


if __name__ == "__main__":
    # No database: Django only for the demo's arm list and the trainer's guard settings.
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "recsite.settings")
    os.environ.setdefault("RECSITE_DEV", "1")  # a bench machine is a development machine
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import django

    django.setup()
    main()
