"""The learning race: the shipped demo arms, with their shipped defaults, learning from live traffic side by side.

Through the real stack (the shipped gunicorn web server, a trainer, a light worker, beat; ``live_stack``),
``manage.py simulate`` drives ``--users`` returning shoppers at ``--rate``
requests/s for ``--minutes``, once per world:

* ``latent`` — features are noisy views of the shoppers' hidden tastes;
* ``ids`` — the same hidden tastes, features that are noise: only the user and
  item ids tell shoppers apart (``WorldConfig(observable="none")``).

Per arm and per minute it reports the realised CTR, the **expected CTR under the
simulator's truth** (the mean of examination(slot) · relevance(user, item) over
the arm's impressions: the same number without the click noise) and the oracle's
(the best slate of k for the same requests). Targets (issue 11), over the last
2 minutes, in both worlds:

* the best personalised arm's expected CTR ≥ 1.15 × popularity's;
* ``deep_ctr`` ≥ popularity;
* the best arm ≥ 60% of the oracle;
* ``deep_ctr``'s progressive logloss ≤ popularity's.

The progressive logloss is the proper one: each impression scored by the arm's model before it learnt from
it, against its eventual label (``experiments.services.training_feedback.fnw_label_logloss``), beside the
true click probabilities' own logloss on the same impressions (each arm's stream has its own floor). The
guard's FNW-weighted batch logloss is shown too, but it does not rank arms: its weights come from each arm's
own estimate, and on popularity's stream of a 10-minute ids race it scored the true probabilities 0.4475
against popularity's 0.4285 (the proper score: 0.4426 against 0.5435; ``bench/replay_streams.py``).

    .venv/bin/python bench/learning_race.py                      # both worlds, 10 minutes each
    .venv/bin/python bench/learning_race.py --world ids --minutes 3 --out /tmp/race.md
    .venv/bin/python bench/learning_race.py --world ids --affinity 1.6   # the synthetic world's weaker tastes

Each arm's row also shows the **best single slate**: the one list that, shown to all of the arm's requests of the
last 2 minutes, has the highest expected CTR. No non-personalised arm beats it, so the first target can only be
met robustly where the personalised arm's oracle is well above popularity's single slate; the report prints that
reach beside the verdict. ``--affinity`` scales the weight of the shoppers' own tastes in the truth
(``ShopperWorld.affinity``, default ``DEFAULT_AFFINITY`` = 3.2; 1.6 before 2026-12-08, where no arm could be
1.15x a counter at its ceiling); a run with another value is
written under its own heading, beside the default race's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from live_stack import demo_arms_with, django_for, running_stack, set_flag, simulate  # noqa: E402

HEADING = "## Learning race\n"
LAST_MINUTES = 2
RACE_SALT = "race"  # fixed, so every run assigns each shopper to the same arm (bench/race_closed_loop.py too)
WEB = {"gunicorn": "gunicorn (recsite/gunicorn_conf.py, one uvicorn process per core)", "daphne": "one Daphne process"}


def _impressions(experiment_id: int):
    """(arm name, minute, user external id, item external id, position, clicked) of every impression."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(
            """
            SELECT a.name, floor(extract(epoch FROM i.served_at - s.t0) / 60)::int, u.external_id, it.external_id,
                   i.position, (c.id IS NOT NULL AND NOT c.late)
            FROM experiments_impression i
            JOIN experiments_arm a ON a.id = i.arm_id
            JOIN experiments_shopuser u ON u.id = i.user_id
            JOIN experiments_item it ON it.id = i.item_id
            LEFT JOIN experiments_click c ON c.impression_id = i.id
            CROSS JOIN (SELECT min(served_at) t0 FROM experiments_impression WHERE experiment_id = %s) s
            WHERE i.experiment_id = %s
            """,
            [experiment_id, experiment_id],
        )
        return cur.fetchall()


def _progressive_logloss(arm_id: int, since) -> tuple[float | None, float | None]:
    """The arm's progressive logloss over its training batches since ``since``: ``(proper, FNW-weighted)``.

    Proper: each impression scored by the model before it learnt from it, against its eventual label
    (``training_feedback.fnw_label_logloss``). FNW-weighted: the guard's batch logloss, weighted by batch
    size; its weights come from each arm's own estimate, so it does not rank arms (docs/training.md).
    """
    from experiments.models import ModelCheckpoint

    rows = [m for m in ModelCheckpoint.objects.filter(arm_id=arm_id, created_at__gte=since).values_list("metrics", flat=True)
            if m.get("accepted")]
    loss = sum(float(m.get("label_loss_sum") or 0.0) for m in rows)
    weight = sum(float(m.get("label_weight") or 0.0) for m in rows)
    pairs = [(m["logloss_before"], m.get("n_impressions", 0) + m.get("n_clicks", 0)) for m in rows
             if m.get("logloss_before") is not None]
    total = sum(n for _, n in pairs)
    return (loss / weight if weight > 0 else None), (sum(v * n for v, n in pairs) / total if total else None)


def race(world: str, args) -> dict:
    from datetime import timedelta

    django_for(args.database_url, args.redis_url, prefix=f"recsite-bench-race-{world}")
    from django.db.models import Max

    from experiments.models import Arm, Experiment, Impression
    from experiments.simulation.world import CatalogueView, ShopperWorld

    experiment = Experiment.objects.create(slug=f"race-{world}", salt=RACE_SALT, status="running")
    arms = [Arm.objects.create(experiment=experiment, name=name, kind=kind, params=dict(params))
            for name, kind, params in demo_arms_with(args.set, error=_bad_set)]
    experiment.control_arm = arms[0]
    experiment.save(update_fields=["control_arm"])
    seconds = args.minutes * 60
    with running_stack(web=args.web) as url:
        print(f"# learning race, world={world}: {args.users} shoppers, {args.rate} req/s, {args.minutes} min, {url}",
              flush=True)
        t0 = time.monotonic()
        report = simulate(
            url, "--users", str(args.users), "--items", str(args.items), "--rate", str(args.rate),
            "--duration", str(seconds), "--seed", str(args.seed), "--k", str(args.k), "--world", world,
            *(["--affinity", str(args.affinity)] if args.affinity is not None else []),
            json_path=Path(tempfile.mkdtemp(prefix="recsite-race-")) / "simulate.json",
        )
        elapsed = time.monotonic() - t0
    truth = ShopperWorld(seed=args.seed, n_users=args.users, n_items=args.items, world=world, affinity=args.affinity)
    catalogue = CatalogueView(truth)
    catalogue.add(truth.item_ids)
    oracle = {u: truth.oracle_expected_clicks(u, catalogue, args.k, 0) / args.k for u in truth.user_ids}
    rel = {u: dict(zip(truth.item_ids, truth.relevance(u, truth.item_ids, 0), strict=True)) for u in truth.user_ids}
    rows = _impressions(experiment.id)
    exam = {p: float(e) for p, e in zip(range(1, args.k + 1), truth.examine(np.arange(1, args.k + 1)), strict=True)}
    minutes = int(args.minutes)
    per: dict[str, dict[str, np.ndarray]] = {
        a.name: {k: np.zeros(minutes) for k in ("n", "clicks", "expected", "oracle", "floor")} for a in arms
    }
    last_users: dict[str, Counter] = {a.name: Counter() for a in arms}
    for arm, minute, user, item, position, clicked in rows:
        if minute >= minutes or user not in rel:
            continue
        if minute >= minutes - LAST_MINUTES:
            last_users[arm][user] += 1
        cell = per[arm]
        cell["n"][minute] += 1
        cell["clicks"][minute] += clicked
        p_true = min(max(exam[position] * rel[user][item], 1e-7), 1 - 1e-7)
        cell["expected"][minute] += p_true
        cell["floor"][minute] -= np.log(p_true) if clicked else np.log1p(-p_true)  # the truth's own logloss
        cell["oracle"][minute] += oracle[user]
    end = Impression.objects.filter(experiment=experiment).aggregate(end=Max("served_at"))["end"]
    since = end - timedelta(minutes=LAST_MINUTES)
    out = {"world": world, "elapsed_s": elapsed, "requests": report.get("requests"), "errors": report.get("errors"),
           "error_examples": report.get("error_examples") or {}, "arms": {}}
    for a in arms:
        c = per[a.name]
        n = np.maximum(c["n"], 1)
        last = slice(minutes - LAST_MINUTES, minutes)
        nl = max(c["n"][last].sum(), 1)
        out["arms"][a.name] = {
            "kind": a.kind,
            "n": c["n"].tolist(),
            "realised": (c["clicks"] / n).tolist(),
            "expected": (c["expected"] / n).tolist(),
            "oracle": (c["oracle"] / n).tolist(),
            "last_realised": float(c["clicks"][last].sum() / nl),
            "last_expected": float(c["expected"][last].sum() / nl),
            "last_oracle": float(c["oracle"][last].sum() / nl),
            "last_floor": float(c["floor"][last].sum() / nl),
            # No non-personalised slate does better on the same requests (ShopperWorld.best_single_slate_clicks).
            "last_single": truth.best_single_slate_clicks(last_users[a.name], catalogue, args.k, 0) / args.k,
            **dict(zip(("logloss_last", "logloss_fnw_last"), _progressive_logloss(a.id, since), strict=True)),
        }
    return out


def verdicts(result: dict) -> list[tuple[str, bool, str]]:
    arms = result["arms"]
    by_kind = {v["kind"]: (name, v) for name, v in arms.items()}
    pop = by_kind["popularity"][1]
    personal = {name: v for name, v in arms.items() if v["kind"] != "popularity"}
    best_name, best = max(personal.items(), key=lambda kv: kv[1]["last_expected"])
    top = max(arms.values(), key=lambda v: v["last_expected"])
    deep = by_kind["deep_ctr"][1]
    ratio = best["last_expected"] / pop["last_expected"]
    share = top["last_expected"] / top["last_oracle"]
    dl, pl = deep["logloss_last"], pop["logloss_last"]
    return [
        ("best personalised ≥ 1.15 × popularity", ratio >= 1.15,
         f"{best_name} {best['last_expected']:.4f} / {pop['last_expected']:.4f} = {ratio:.3f}× (popularity at "
         f"{pop['last_expected'] / pop['last_single']:.1%} of its ceiling, the best single slate "
         f"{pop['last_single']:.4f}; were popularity at that ceiling, {best_name} could reach at most "
         f"{best['last_oracle'] / pop['last_single']:.3f}×, its own oracle over it)"),
        ("deep_ctr ≥ popularity", deep["last_expected"] >= pop["last_expected"],
         f"{deep['last_expected']:.4f} vs {pop['last_expected']:.4f}"),
        ("best arm ≥ 60% of the oracle", share >= 0.6, f"{top['last_expected']:.4f} / {top['last_oracle']:.4f} = {share:.1%}"),
        ("deep_ctr progressive logloss ≤ popularity's", dl is not None and pl is not None and dl <= pl,
         f"{dl:.4f} vs {pl:.4f}" if dl is not None and pl is not None else f"{dl} vs {pl}"),
    ]


def _bad_set(message: str) -> None:
    raise SystemExit(f"learning_race.py: error: {message}")


def heading(args) -> str:
    """The docs section: the default race's, or one per ``--affinity`` and ``--set``, so none overwrites another."""
    if args.affinity is None and not args.set:
        return HEADING
    extra = ([f"affinity {args.affinity:g}"] if args.affinity is not None else []) + [f"{n} {raw}" for n, raw in args.set]
    return f"{HEADING.rstrip()} with {', '.join(extra)}\n"


def markdown(results: list[dict], args) -> str:
    lines = [
        heading(args).rstrip("\n"),
        "",
        f"Produced by `.venv/bin/python bench/learning_race.py --minutes {args.minutes}"
        f"{'' if args.world == 'both' else f' --world {args.world}'}"
        f"{'' if args.affinity is None else f' --affinity {args.affinity:g}'}"
        + "".join(f" --set {n} '{r}'" for n, r in args.set) + f"` on {time.strftime('%Y-%m-%d')} "
        f"({os.cpu_count()} cores, 1-minute load average {os.getloadavg()[0]:.1f} at the end). The shipped demo arms "
        f"(`experiments.services.demo.DEMO_ARMS`, "
        f"{'shipped defaults' if not args.set else 'shipped defaults but ' + ', '.join(f'{n} {r}' for n, r in args.set)})"
        f" through the real stack: {WEB[args.web]}, one "
        f"trainer, a light worker, beat; `simulate` with {args.users} returning shoppers, {args.items} items, k = {args.k}, "
        f"{args.rate:g} req/s"
        f"{'' if args.affinity is None else f', affinity {args.affinity:g} (simulate --affinity)'}. Expected CTR is "
        "the mean true click probability (examination × relevance) of the arm's impressions under the simulator's "
        "truth; the oracle shows each request's best slate, the best single slate the one list that, shown to all "
        "of the arm's requests, would do best: no counting baseline beats it.",
        "",
    ]
    for res in results:
        arms = res["arms"]
        names = list(arms)
        lines += [f"### World `{res['world']}`", "",
                  f"{res['requests']} requests in {res['elapsed_s']:.0f} s, errors: {res['errors'] or 'none'}"
                  + "".join(f"; the first {what}: `{detail}`" for what, detail in sorted(res.get('error_examples', {}).items()))
                  + ".", "",
                  "Expected CTR per minute (realised CTR in brackets):", "",
                  "| minute | " + " | ".join(f"{n} ({arms[n]['kind']})" for n in names) + " | oracle |",
                  "|---:|" + "---:|" * (len(names) + 1)]
        for m in range(len(arms[names[0]]["n"])):
            cells = [f"{arms[n]['expected'][m]:.3f} ({arms[n]['realised'][m]:.3f})" for n in names]
            lines.append(f"| {m + 1} | " + " | ".join(cells) + f" | {arms[names[0]]['oracle'][m]:.3f} |")
        lines += ["", f"Last {LAST_MINUTES} minutes:", "",
                  "| arm | expected CTR | realised CTR | oracle | best single slate | progressive logloss | true p's logloss "
                  "| FNW-weighted (guard) |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for n in names:
            a = arms[n]
            ll, fnw = (f"{a[k]:.4f}" if a.get(k) is not None else "–" for k in ("logloss_last", "logloss_fnw_last"))
            lines.append(f"| {n} ({a['kind']}) | {a['last_expected']:.4f} | {a['last_realised']:.4f} | "
                         f"{a['last_oracle']:.4f} | {a['last_single']:.4f} | {ll} | {a['last_floor']:.4f} | {fnw} |")
        lines.append("")
        for what, ok, detail in verdicts(res):
            lines.append(f"- {what}: {detail} — {'met' if ok else '**MISSED**'}")
        lines.append("")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", choices=("both", "latent", "ids"), default="both")
    ap.add_argument("--minutes", type=int, default=10)
    ap.add_argument("--rate", type=float, default=40.0)
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--items", type=int, default=600)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--affinity", type=float, default=None,
                    help="weight of the shoppers' own tastes in the truth (simulate --affinity; default 3.2)")
    set_flag(ap)
    ap.add_argument("--web", choices=("gunicorn", "daphne"), default="gunicorn",
                    help="the web server: the shipped gunicorn (one uvicorn process per core) or one Daphne process")
    ap.add_argument("--database-url", default="postgres://127.0.0.1:5432/recsite_bench_race")
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/12")
    ap.add_argument("--json", dest="json_path", default=None)
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    args = ap.parse_args()
    if args.minutes <= LAST_MINUTES:
        ap.error(f"--minutes must be more than {LAST_MINUTES}")
    worlds = ["latent", "ids"] if args.world == "both" else [args.world]
    results = [race(w, args) for w in worlds]
    body = markdown(results, args)
    print(body)
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(results, indent=2, default=str))
    from bench_arms import write_section

    write_section(Path(args.out), body, heading(args))


if __name__ == "__main__":
    main()
