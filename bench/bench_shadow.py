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
* open loop at each of ``--rates`` for ``--open-seconds`` (latency from each request's scheduled time), in the same
  alternating ``--rounds``; medians over the rounds.

While one deployment is measured, every process of the other (server, workers, beat, the shadow drain) is stopped
(SIGSTOP, then SIGCONT), so neither measures the other's background work; the shadow deployment is stopped only
once its drain has emptied the queue of what it was just served, so its whole cost stays on its own side.

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
import signal
import statistics
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


def _descendants(pids: list[int]) -> list[int]:
    """These processes and every process below them (the drain child runs in a session of its own)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], list(pids)
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def _signal(procs: list[live.LiveProcess], sig: int) -> None:
    for pid in _descendants([p.pid for p in procs]):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _queue_drained(timeout: float = 120.0) -> float:
    """Seconds until the shadow deployment's queue is empty (its drain ranked what it was served)."""
    started = time.monotonic()
    key = "recsite:shadow:recsite_bench_scale_1"
    while time.monotonic() - started < timeout:
        out = subprocess.run(["redis-cli", "-n", "13", "LLEN", key], check=True, capture_output=True, text=True)
        if int(out.stdout.strip() or 0) == 0:
            return time.monotonic() - started
        time.sleep(0.2)
    raise TimeoutError(f"the shadow queue still holds work after {timeout:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--returning", type=int, default=2000)
    parser.add_argument("--rates", type=float, nargs="+", default=[100, 200, 300])
    parser.add_argument("--open-seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=3, help="alternations of the measurements")
    args = parser.parse_args()
    load_before = " ".join(f"{x:.1f}" for x in os.getloadavg())
    python = _python(ROOT)
    servers, workers = [], []
    groups: list[list[live.LiveProcess]] = []
    tmp = Path(tempfile.mkdtemp(prefix="bench-shadow-"))
    try:
        for i, label in enumerate(("no shadow", "one shadow arm")):
            os.environ["REDIS_URL"] = _redis_url(i)  # server_start passes the environment on
            proc, url, _kind = server_start(ROOT, i, "gunicorn")
            mine = _workers(i, python, tmp)
            workers += mine
            groups.append([proc, *mine])
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
        _queue_drained()
        results: dict[str, list[dict]] = {label: [] for label, _p, _u in servers}
        open_rows: list[tuple[str, float, dict]] = []

        def alone(i: int, measure):
            """Measure deployment i with the other one stopped; the shadow side first drains its queue."""
            _signal(groups[1 - i], signal.SIGSTOP)
            _signal(groups[i], signal.SIGCONT)
            time.sleep(1.0)
            try:
                return measure()
            finally:
                if i == 1:
                    drained = _queue_drained()
                    print(f"shadow queue drained {drained:.1f} s after the measurement", flush=True)
                _signal(groups[1 - i], signal.SIGCONT)

        for r in range(args.rounds):
            order = [0, 1] if r % 2 == 0 else [1, 0]
            for i in order:
                label, _proc, url = servers[i]
                row = alone(i, lambda url=url, r=r: closed_loop(url, clients=args.clients, seconds=args.seconds,
                                                                 kind="returning", pool=pool, seed=r + 1))
                results[label].append(row)
                print(json.dumps({"server": label, "round": r, "clients": args.clients, **row}), flush=True)
            for rate in args.rates:
                for i in order:
                    label, _proc, url = servers[i]
                    row = alone(i, lambda url=url, rate=rate, r=r: open_loop(
                        url, rate=rate, seconds=args.open_seconds, kind="returning", pool=pool, seed=2 + r))
                    open_rows.append((label, rate, row))
                    print(json.dumps({"server": label, "round": r, "rate": rate, **row}), flush=True)
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
    print(f"\n| open loop req/s (median of {args.rounds} rounds) | p50 no shadow | p50 shadow | p99 no shadow | "
          "p99 shadow | p50 ratio | p99 ratio | p99 per round |")
    print("|---|---|---|---|---|---|---|---|")
    for rate in args.rates:
        def of(who: str, key: str, rate=rate) -> list[float]:
            return [row[key] for label, r, row in open_rows if label == who and r == rate]

        a50, b50, a99, b99 = (statistics.median(of(w, k)) for w, k in ((base, "p50"), (shadow, "p50"), (base, "p99"),
                                                                       (shadow, "p99")))
        rounds = " / ".join(f"{x:.0f} → {y:.0f}" for x, y in zip(of(base, "p99"), of(shadow, "p99"), strict=True))
        print(f"| {rate:.0f} | {a50:.1f} | {b50:.1f} | {a99:.1f} | {b99:.1f} | {b50 / a50:.2f}× | {b99 / a99:.2f}× | "
              f"{rounds} |")
    ranked = shadow_rows / (impressions or 1)
    print(f"\nshown items ranked in the shadow / impressions on the shadow server: {shadow_rows} / {impressions} = "
          f"{ranked:.1%}")
    for key in ("p50", "p99"):
        ratio = med(shadow, key) / med(base, key)
        print(f"target {key} with a shadow arm ≤ 1.3× without, {args.clients} clients: {ratio:.2f}× → "
              f"{'met' if ratio <= 1.3 else 'MISSED'}")


if __name__ == "__main__":
    main()
