"""Serving latency with a shadow arm against without, in one run (issue 19: within 1.3×).

Two deployments of this checkout side by side, each with its own scratch database (seeded with the demo,
``seed_demo --items 1000``: its five arms, 1,000 items) and Redis database: gunicorn with one worker per core (as
shipped), a light worker (``-Q default -P threads``) and beat. On the second, one more arm of the demo
experiment, ``apprentice`` (``deep_ctr`` with the demo's tables), is put in the shadow: every request the
experiment serves is queued on Redis by the web process and ranked by the light worker's drain, which logs the
shadow's own propensity of the shown slate. Both deployments run the same processes, so the only difference is
the shadow arm, and its whole cost (the queueing in the web process, the ranking on the same two cores) lands
in the measurement. Measurements alternate between the two servers (so machine noise hits both alike), for returning
shoppers (a pool each served once first):

* closed loop, ``--clients`` keep-alive clients for ``--seconds``: p50/p99 and req/s;
* open loop at each of ``--rates`` (latency from each request's scheduled time).

Reported: the ratios shadow / no shadow, and the share of served requests the shadow arm actually ranked (its
rows ÷ impressions, read from the database at the end): a shadow queue that dropped its work would hide its
cost, so the share is part of the result.

Run (quiet machine): ``.venv/bin/python bench/bench_shadow.py``
Quick check: ``.venv/bin/python bench/bench_shadow.py --seconds 2 --rates 50 --returning 200``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_serving_scale import Client, _python, closed_loop, open_loop, server_start  # noqa: E402
from tests.support import live  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

_SHADOW_SETUP = """
from experiments.models import Experiment
from experiments.services import decisions, lifecycle
from experiments.services.demo import DEMO_EXPERIMENT, _DEMO_TABLES
from django.contrib.auth import get_user_model
boss = get_user_model().objects.filter(is_staff=True).first()
experiment = Experiment.objects.get(slug=DEMO_EXPERIMENT)
arm = lifecycle.arm_create(experiment=experiment, spec=lifecycle.ArmSpec("apprentice", "deep_ctr", _DEMO_TABLES, 0.0),
                           user=boss)
decisions.arm_shadow(arm=arm, user=boss, reason="bench")
print(arm.id)
"""

_COUNT_SQL = """
SELECT (SELECT count(*) FROM experiments_impression),
       (SELECT COALESCE(sum(cardinality(s.items)), 0) FROM experiments_shadowranking s
        JOIN experiments_arm a ON a.id = s.arm_id WHERE a.name = 'apprentice')
"""


def _env(i: int) -> dict:
    return {**os.environ, "DATABASE_URL": f"postgres://{os.environ.get('PGUSER', 'root')}@127.0.0.1:5432/"
            f"recsite_bench_scale_{i}", "DJANGO_SETTINGS_MODULE": "recsite.settings", "RECSITE_DEV": "1",
            "REDIS_URL": _redis_url(i), "TF_CPP_MIN_LOG_LEVEL": "2", "LOG_LEVEL": "WARNING",
            "CHANNELS_PREFIX": f"bench-{i}", "RECSITE_TRAIN_INTERVAL_S": "3600"}


def _redis_url(i: int) -> str:
    return f"redis://127.0.0.1:6379/{12 + i}"  # a broker of its own: the two deployments' tasks never mix


def _workers(i: int, python: str, tmp: Path) -> list[live.LiveProcess]:
    celery = str(Path(python).parent / "celery")
    env = _env(i)
    subprocess.run(["redis-cli", "-n", str(12 + i), "FLUSHDB"], check=True, capture_output=True)
    return [
        live.LiveProcess(f"bench-light-{i}", [celery, "-A", "recsite", "worker", "-Q", "default", "-P", "threads",
                                              "-n", f"bench-light-{i}@%h", "--without-gossip", "--without-mingle",
                                              "-l", "WARNING"], env, cwd=ROOT),
        live.LiveProcess(f"bench-beat-{i}", [celery, "-A", "recsite", "beat", "-l", "WARNING", "-s",
                                             str(tmp / f"beat-{i}")], env, cwd=ROOT),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--returning", type=int, default=2000)
    parser.add_argument("--rates", type=float, nargs="+", default=[100, 200, 300])
    parser.add_argument("--rounds", type=int, default=3, help="alternations of the closed-loop measurement")
    args = parser.parse_args()
    load_before = " ".join(f"{x:.1f}" for x in os.getloadavg())
    python = _python(ROOT)
    servers, workers = [], []
    tmp = Path(tempfile.mkdtemp(prefix="bench-shadow-"))
    try:
        for i, label in enumerate(("no shadow", "one shadow arm")):
            os.environ["REDIS_URL"] = _redis_url(i)  # server_start passes the environment on
            proc, url, _kind = server_start(ROOT, i, "gunicorn")
            workers += _workers(i, python, tmp)
            if i == 1:
                out = subprocess.run([python, str(ROOT / "manage.py"), "shell", "-c", _SHADOW_SETUP], env=_env(i),
                                     cwd=ROOT, check=True, capture_output=True, text=True)
                print(f"shadow arm {out.stdout.strip()} added", flush=True)
                time.sleep(8)  # the servers load it on the announcement (or the 5 s poll)
            servers.append((label, proc, url))
            print(f"{label}: {url}", flush=True)
        pool = [f"returning-{u:05d}" for u in range(args.returning)]
        for _label, _proc, url in servers:
            client = Client(url)
            for user in pool:
                client.recommend(user)
            closed_loop(url, clients=4, seconds=3, kind="returning", pool=pool, seed=99)
        results: dict[str, list[dict]] = {label: [] for label, _p, _u in servers}
        for r in range(args.rounds):
            for label, _proc, url in (servers if r % 2 == 0 else servers[::-1]):
                row = closed_loop(url, clients=args.clients, seconds=args.seconds, kind="returning", pool=pool,
                                  seed=r + 1)
                results[label].append(row)
                print(json.dumps({"server": label, "round": r, "clients": args.clients, **row}), flush=True)
        open_rows = []
        for rate in args.rates:
            for label, _proc, url in servers:
                row = open_loop(url, rate=rate, seconds=args.seconds, kind="returning", pool=pool, seed=2)
                open_rows.append((label, rate, row))
                print(json.dumps({"server": label, "rate": rate, **row}), flush=True)
        time.sleep(5)  # let the drain finish the queue
        counts = subprocess.run(["psql", "-h", "127.0.0.1", "-d", "recsite_bench_scale_1", "-At", "-F", " ", "-c",
                                 _COUNT_SQL], check=True, capture_output=True, text=True).stdout.split()
    finally:
        for _label, proc, _url in servers:
            proc.stop()
        for proc in workers:
            proc.stop()

    def med(label: str, key: str) -> float:
        values = sorted(row[key] for row in results[label])
        return values[len(values) // 2]

    base, shadow = (label for label, _p, _u in servers)
    impressions, shadow_rows = int(counts[0]), int(counts[1])
    print(f"\nload average at the start: {load_before}")
    print(f"| server | p50 ms at {args.clients} clients | p99 ms | req/s |")
    print("|---|---|---|---|")
    for label in (base, shadow):
        print(f"| {label} | {med(label, 'p50'):.1f} | {med(label, 'p99'):.1f} | {med(label, 'rps'):.0f} |")
    print("\n| open loop req/s | p50 no shadow | p50 shadow | p99 no shadow | p99 shadow | done (shadow) |")
    print("|---|---|---|---|---|---|")
    for rate in args.rates:
        a = next(row for label, r, row in open_rows if label == base and r == rate)
        b = next(row for label, r, row in open_rows if label == shadow and r == rate)
        print(f"| {rate:.0f} | {a['p50']:.1f} | {b['p50']:.1f} | {a['p99']:.1f} | {b['p99']:.1f} | {b['done']:.0%} |")
    ranked = shadow_rows / (impressions or 1)
    print(f"\nshown items ranked in the shadow / impressions on the shadow server: {shadow_rows} / {impressions} = "
          f"{ranked:.1%}")
    for key in ("p50", "p99"):
        ratio = med(shadow, key) / med(base, key)
        print(f"target {key} with a shadow arm ≤ 1.3× without, {args.clients} clients: {ratio:.2f}× → "
              f"{'met' if ratio <= 1.3 else 'MISSED'}")


if __name__ == "__main__":
    main()
