"""Training throughput end to end, as a ratio of the arm's raw ``partial_fit`` rate, per arm kind.

End to end = what ``recsite.training.train_arm`` does: the safe-horizon check, the
DB read of impressions and clicks with their users and items, featurisation,
progressive validation (predict), the guarded ``partial_fit`` per mini-batch,
serialising the version (a delta, or a snapshot every N versions, in the code
that has deltas) and writing it. Raw = only ``partial_fit`` on the same
featurised mini-batches, in the same process and run. Target: ratio >= 0.7 for
every kind. Each kind logs its traffic once and is timed ``--repeats`` times on it
(raw, then end to end from version 0, alternately); the table gives the medians and
the spread of the ratio.

Run (drops, creates and migrates its own database per code tree):

    .venv/bin/python bench/bench_training.py [--kinds popularity,ftrl_logreg] [--requests 3000]

``--read-only`` times the read path alone instead: the arm's whole backlog read as catch-up steps read it
(pages of ``batch_rows`` × ``fold_batches`` rows) and cut into featurised mini-batches, ``--repeats`` times.

Old against new in one run: give each code tree (e.g. a ``git worktree`` of the old
commit) with ``--code NAME=PATH``; each runs in its own process and database, and
one table lists both:

    git worktree add /tmp/recsite-old <old-commit>
    .venv/bin/python bench/bench_training.py --code old=/tmp/recsite-old --code new=.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _setup(database_url: str, code: Path) -> None:
    import psycopg2

    name = database_url.rsplit("/", 1)[1]
    conn = psycopg2.connect(database_url.rsplit("/", 1)[0] + "/postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "recsite.settings")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    subprocess.run([sys.executable, str(code / "manage.py"), "migrate", "-v0"], check=True, env=os.environ,
                   cwd=code)
    import django

    django.setup()


def _arm_reset(arm) -> None:
    """The arm back at version 0, as if it had never trained (for the next repeat on the same traffic)."""
    from experiments.models import ModelCheckpoint
    from experiments.services import training

    ModelCheckpoint.objects.filter(arm=arm).delete()
    for cache in ("_models", "_trackers"):
        getattr(training, cache, {}).pop(arm.id, None)
    getattr(training, "_no_fold", set()).discard(arm.id)


def _arm_logged(kind: str, *, requests: int, k: int, seed: int, params: dict):
    """A fresh arm of ``kind`` with ``requests`` × ``k`` logged impressions and their clicks."""
    from tests.support.training_world import traffic_log, world_make

    world = world_make(seed=seed, n_users=500, n_items=300, kinds=(kind,))
    arm = world.arm
    arm.params = params
    arm.save(update_fields=["params"])
    chunks = 10
    for c in range(chunks):
        traffic_log(world, requests=requests // chunks, k=k, seed=seed * 100 + c)
    return arm


def bench_read(kind: str, *, requests: int, k: int, batch_rows: int, seed: int, params: dict, fold: int,
               repeats: int) -> dict:
    """The read path alone: the arm's whole backlog read page by page (``batch_rows`` × ``fold`` rows, as a
    catch-up step reads it) and cut into featurised mini-batches, timed ``repeats`` times (medians)."""
    from experiments.services import training_data
    from experiments.services.training_data import Horizon
    from experiments.serving.arms import arm_build

    arm = _arm_logged(kind, requests=requests, k=k, seed=seed, params=params)
    model_params = arm_build(kind=kind, params=arm.params, arm_id=arm.id).params
    horizon = Horizon(10**15, 10**15, 0.0)
    runs = []
    for _ in range(repeats):
        cursor = click_cursor = pages = rows_n = clicks_n = 0
        read_s = batch_s = 0.0
        while True:
            t0 = time.perf_counter()
            rows = training_data.step_rows_read(arm_id=arm.id, cursor=cursor, click_cursor=click_cursor,
                                                horizon=horizon, limit=batch_rows * fold)
            t1 = time.perf_counter()
            if rows.n == 0:
                break
            for chunk in rows.chunks(batch_rows):
                training_data.step_batch(rows=chunk, params=model_params)
            read_s += t1 - t0
            batch_s += time.perf_counter() - t1
            pages, rows_n, clicks_n = pages + 1, rows_n + rows.n, clicks_n + len(rows.clicks)
            cursor, click_cursor = rows.cursor, rows.click_cursor
        runs.append((read_s, batch_s))
    return {"kind": kind, "read": True, "pages": pages, "rows": rows_n, "clicks": clicks_n, "repeats": repeats,
            "read_s": statistics.median(r[0] for r in runs), "batch_s": statistics.median(r[1] for r in runs),
            "read_s_min": min(r[0] for r in runs), "read_s_max": max(r[0] for r in runs)}


def bench_kind(kind: str, *, requests: int, k: int, batch_rows: int, seed: int, params: dict,
               config_extra: dict, repeats: int = 1) -> dict:
    import dataclasses

    from experiments.models import ModelCheckpoint
    from experiments.services import checkpoints, training, training_data
    from experiments.services.training_config import TrainingConfig
    from experiments.services.training_data import Horizon
    from experiments.services.training_feedback import fnw_weights
    from experiments.serving.arms import arm_build

    arm = _arm_logged(kind, requests=requests, k=k, seed=seed, params=params)

    # Raw: partial_fit alone on the same rows, featurised up front.
    model = arm_build(kind=kind, params=arm.params, arm_id=arm.id)
    batches, cursor, click_cursor = [], 0, 0
    horizon = Horizon(10**15, 10**15, 0.0)
    while True:
        rows = training_data.step_rows_read(
            arm_id=arm.id, cursor=cursor, click_cursor=click_cursor, horizon=horizon, limit=batch_rows
        )
        if rows.n == 0:
            break
        batch = training_data.step_batch(rows=rows, params=model.params)
        w = fnw_weights(labels=batch.labels, p=model.predict(batch)).astype("float32")
        batches.append(dataclasses.replace(batch, sample_weight=w))
        cursor, click_cursor = rows.cursor, rows.click_cursor  # as a training step moves them
    model.partial_fit(batches[0])  # warm-up (tf.function tracing, caches)
    examples = sum(len(b) for b in batches)
    known = {f.name for f in dataclasses.fields(TrainingConfig)}
    config = TrainingConfig(**{k: v for k, v in {"batch_rows": batch_rows, "budget_s": 3600.0, **config_extra}.items()
                               if k in known})
    runs, steps = [], []
    # Each repeat times the raw updates, then the service, on the same traffic with a fresh arm: the two sides of
    # one repeat share the machine's state of the moment, and the median over repeats damps the rest.
    for _ in range(repeats):
        model = arm_build(kind=kind, params=arm.params, arm_id=arm.id)
        t0 = time.perf_counter()
        for b in batches:
            model.partial_fit(b)
        raw_s = time.perf_counter() - t0

        # End to end through the service (a version per step, folding as configured).
        _arm_reset(arm)
        # As a trainer does at start (training_warmup): the arm is built before the clock starts, like the raw one.
        training._model_for(arm, 0)
        t0 = time.perf_counter()
        while True:
            run = training.arm_train(arm_id=arm.id, config=config)
            steps.extend(s for s in run.steps if s.status in ("trained", "rejected"))
            if not run.steps or run.steps[-1].status == "idle":
                break
        e2e_s = time.perf_counter() - t0
        head = ModelCheckpoint.objects.filter(arm=arm).order_by("-version").values("examples_seen", "version").first()
        runs.append({"raw_per_s": examples / raw_s, "e2e_per_s": head["examples_seen"] / e2e_s,
                     "ratio": (head["examples_seen"] / e2e_s) / (examples / raw_s), "versions": head["version"]})
    state_bytes = len(model.to_bytes())
    stored_bytes = len(checkpoints.state_compact(model.to_bytes()))
    written = sum(len(s) for s in ModelCheckpoint.objects.filter(arm=arm).values_list("state", flat=True))

    def med(key: str) -> float:
        return round(statistics.median(s.timings_ms.get(key, 0.0) for s in steps), 1)

    return {
        "kind": kind,
        "examples": examples,
        "versions": runs[-1]["versions"],
        "rejected": sum(1 for s in steps if s.status == "rejected") // repeats,
        "repeats": repeats,
        "raw_per_s": statistics.median(r["raw_per_s"] for r in runs),
        "e2e_per_s": statistics.median(r["e2e_per_s"] for r in runs),
        "ratio": statistics.median(r["ratio"] for r in runs),
        "ratio_min": min(r["ratio"] for r in runs),
        "ratio_max": max(r["ratio"] for r in runs),
        "ratios": [round(r["ratio"], 3) for r in runs],
        "state_kib": state_bytes / 1024,
        "written_kib_per_version": written / 1024 / max(1, runs[-1]["versions"]),
        "stored_kib": stored_bytes / 1024,
        "read_ms": med("read"),
        "fit_ms": med("fit"),
        "serialise_ms": med("serialise"),
        "write_ms": med("write"),
    }


HEADER = (
    "| code | arm | examples | versions | raw partial_fit ex/s | end-to-end ex/s | ratio (target >= 0.7) "
    "| ratio min-max over repeats | state KiB raw / snapshot | written KiB per version | read ms | fit ms "
    "| serialise ms | write ms |\n"
    "|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|"
)


READ_HEADER = (
    "| code | arm | pages | rows (clicks) | read s (min-max) | featurised mini-batches s |\n"
    "|---|---|---:|---:|---:|---:|"
)


def _row(code: str, r: dict) -> str:
    if "skipped" in r:
        return f"| {code} | {r['kind']} | skipped: {r['skipped']} |"
    if r.get("read"):
        return (f"| {code} | {r['kind']} | {r['pages']} | {r['rows']:,} ({r['clicks']:,}) "
                f"| {r['read_s']:.3f} ({r['read_s_min']:.3f}-{r['read_s_max']:.3f}) | {r['batch_s']:.3f} |")
    return (
        f"| {code} | {r['kind']} | {r['examples']} | {r['versions']} | {r['raw_per_s']:,.0f} | {r['e2e_per_s']:,.0f} "
        f"| {r['ratio']:.2f} | {r['ratio_min']:.2f}-{r['ratio_max']:.2f} ({r['repeats']}) "
        f"| {r['state_kib']:,.0f} / {r['stored_kib']:,.0f} | {r['written_kib_per_version']:,.1f} "
        f"| {r['read_ms']} | {r['fit_ms']} | {r['serialise_ms']} | {r['write_ms']} |"
    )


def code_args(parser: argparse.ArgumentParser, database_url: str, inner) -> argparse.Namespace | None:
    """Parse the options of a bench that measures code trees side by side, each in its own process and database.

    In the inner process (``--inner PATH``) it runs ``inner(args, PATH)``, prints its RESULTS line and returns None.
    """
    parser.add_argument("--code", action="append", default=[], metavar="NAME=PATH",
                        help="a code tree to measure (repeatable); default: this checkout")
    parser.add_argument("--database-url", default=database_url)
    parser.add_argument("--inner", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.inner:
        return args
    print("RESULTS " + json.dumps(inner(args, Path(args.inner).resolve())), flush=True)
    return None


def code_trees(specs: list[str]) -> list[list[str]]:
    """``--code NAME=PATH`` values as [name, path] pairs (this checkout when there are none)."""
    return [c.split("=", 1) if "=" in c else [Path(c).name, c] for c in specs] or [["this", str(ROOT)]]


def inner_run(script: str, path: str, argv: list[str]):
    """``script --inner PATH ARGV`` in a process with the tree at ``path`` first on the path: its RESULTS JSON."""
    out = subprocess.run([sys.executable, str(Path(script).resolve()), "--inner", str(Path(path).resolve()), *argv],
                         check=True, stdout=subprocess.PIPE, text=True,
                         env={"LOG_LEVEL": "WARNING", **os.environ, "PYTHONPATH": str(Path(path).resolve())}).stdout
    return json.loads(next(line for line in out.splitlines() if line.startswith("RESULTS "))[8:])


def _inner(args: argparse.Namespace, code: Path) -> list[dict]:
    sys.path.insert(0, str(code))
    os.chdir(code)
    _setup(args.database_url, code)
    from models.registry import arm_class  # noqa: F401  (fails early when the arms are missing)

    results = []
    for i, kind in enumerate(k.strip() for k in args.kinds.split(",") if k.strip()):
        common = {"requests": args.requests, "k": args.k, "batch_rows": args.batch_rows, "seed": 1000 + i,
                  "params": json.loads(args.arm_params).get(kind, {}), "repeats": args.repeats}
        try:
            if args.read_only:
                from experiments.services.training_config import TrainingConfig

                fold = int(json.loads(args.train_config).get("fold_batches", TrainingConfig().fold_batches))
                r = bench_read(kind, fold=fold, **common)
            else:
                r = bench_kind(kind, config_extra=json.loads(args.train_config), **common)
        except (KeyError, ValueError) as exc:
            r = {"kind": kind, "skipped": str(exc)}
        results.append(r)
        print(json.dumps(r), file=sys.stderr, flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kinds", default="popularity,ftrl_logreg,deep_ctr,neural_bandit,q_learning")
    parser.add_argument("--requests", type=int, default=12000,
                        help="recommendation requests logged per arm (x k impressions)")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--batch-rows", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3,
                        help="raw and end-to-end timings per kind on the same traffic (medians reported)")
    parser.add_argument("--arm-params", default="{}", help='JSON {kind: params}')
    parser.add_argument("--train-config", default="{}",
                        help='JSON TrainingConfig overrides, e.g. {"fold_batches": 1} (unknown fields are ignored)')
    parser.add_argument("--read-only", action="store_true",
                        help="time only the read path (reads + featurised mini-batches of the whole backlog)")
    args = code_args(parser, "postgres://127.0.0.1:5432/recsite_bench_training", _inner)
    if args is None:
        return

    codes = code_trees(args.code)
    print(f"# bench_training  python {platform.python_version()}  cpus {os.cpu_count()}  batch_rows {args.batch_rows}"
          f"  requests {args.requests}  repeats {args.repeats}  arm params {args.arm_params}  training {args.train_config}"
          f"  load average {os.getloadavg()[0]:.1f}")
    rows = []
    for i, (name, path) in enumerate(codes):
        results = inner_run(__file__, path, [
            "--kinds", args.kinds, "--requests", str(args.requests), "--k", str(args.k),
            "--batch-rows", str(args.batch_rows), "--repeats", str(args.repeats), "--arm-params", args.arm_params,
            "--train-config", args.train_config, "--database-url", f"{args.database_url}_{i}",
            *(["--read-only"] if args.read_only else [])])
        rows.extend(_row(name, r) for r in results)
    print(READ_HEADER if args.read_only else HEADER)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
