"""Click → dashboard number updated, through a real WebSocket client.

Starts the production path against a scratch database (``recsite_bench_latency``):
Daphne, a Celery worker on ``default`` and beat (the ``recsite.stats.tick`` entry,
every 1 s). A logged-in WebSocket client (``websockets``, session cookie) watches the
experiment. Each sample: serve a recommendation, wait until the dashboard shows its
impressions, wait a random 0–1 s (so clicks land at every phase of the tick), POST one
click and time until the first pushed stats event whose click count includes it.

Run: ``.venv/bin/python bench/bench_dashboard_latency.py [--samples 40] [--no-doc]``
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serving_common import ROOT, bench_database_create  # noqa: E402

DB = "recsite_bench_latency"
SLUG = "latency"
PASSWORD = "bench-Pa55word!"


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args()

    bench_database_create(DB)
    from django.contrib.auth import get_user_model
    from django.utils import timezone
    from websockets.sync.client import connect

    from experiments.models import Arm, Experiment, Item
    from experiments.services.demo import demo_items
    from tests.support import live

    experiment = Experiment.objects.create(
        slug=SLUG, name="latency", salt="latency", status="running", started_at=timezone.now()
    )
    control = Arm.objects.create(experiment=experiment, name="control", kind="popularity")
    Arm.objects.create(experiment=experiment, name="challenger", kind="popularity")
    experiment.control_arm = control
    experiment.save()
    Item.objects.bulk_create([Item(**row) for row in demo_items(n_items=40, seed=3)])
    get_user_model().objects.create_user(username="watcher", password=PASSWORD)

    env = live.live_env({"RECSITE_TRAIN_INTERVAL_S": "3600", "RECSITE_CHECKPOINT_RETENTION_INTERVAL_S": "3600"})
    procs = []
    tmp = tempfile.TemporaryDirectory()
    try:
        daphne, base = live.start_daphne(env=env)
        procs.append(daphne)
        procs.append(live.start_worker(queues="default", env=env))
        procs.append(live.LiveProcess(
            "celery-beat", [str(live.VENV_BIN / "celery"), "-A", "recsite", "beat", "-l", "WARNING",
                            "-s", str(Path(tmp.name) / "beat-schedule")], env))

        session = requests.Session()
        session.get(f"{base}/accounts/login/", timeout=10)
        session.post(f"{base}/accounts/login/", data={"username": "watcher", "password": PASSWORD,
                     "csrfmiddlewaretoken": session.cookies["csrftoken"]}, timeout=10)
        cookie = f"sessionid={session.cookies['sessionid']}"
        live.wait_until(lambda: requests.post(f"{base}/api/v1/recommendations",
                        json={"user_id": "warm", "experiment": SLUG}, timeout=30).status_code == 200,
                        timeout=90, what="serving ready")

        rng = np.random.default_rng(args.seed)
        latencies: list[float] = []
        ws_url = base.replace("http://", "ws://") + f"/ws/experiments/{SLUG}/"
        with connect(ws_url, additional_headers={"Cookie": cookie, "Origin": base}, open_timeout=10) as ws:
            first = json.loads(ws.recv(timeout=10))
            assert first["type"] == "snapshot", first["type"]

            def wait_for(predicate, timeout: float) -> float:
                deadline = time.monotonic() + timeout
                while True:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise TimeoutError("no matching stats event")
                    msg = json.loads(ws.recv(timeout=remaining))
                    if msg.get("type") == "stats" and predicate(msg["stats"]["report"]["arms"]):
                        return time.monotonic()

            def totals(arms: dict) -> tuple[int, int]:
                return sum(a["impressions"] for a in arms.values()), sum(a["clicks"] for a in arms.values())

            served_impressions = 0
            clicks = 0
            for i in range(args.samples):
                rec = requests.post(f"{base}/api/v1/recommendations", json={"user_id": f"s{i}", "k": 3,
                                    "experiment": SLUG}, timeout=30).json()
                served_impressions = sum(1 for _ in rec["items"]) + served_impressions
                wait_for(lambda arms, s=served_impressions: totals(arms)[0] >= s, timeout=10)
                time.sleep(float(rng.uniform(0, 1)))
                started = time.monotonic()
                response = requests.post(f"{base}/api/v1/clicks", json={"impression_id": rec["items"][0]["impression_id"]},
                                         timeout=10)
                assert response.status_code == 201, response.text
                clicks += 1
                seen = wait_for(lambda arms, c=clicks: totals(arms)[1] >= c, timeout=10)
                latencies.append(seen - started)
                print(f"sample {i + 1}: {latencies[-1] * 1000:.0f} ms", flush=True)
            # The first warm-up recommendation also counted impressions; served_impressions is a lower bound.
    finally:
        for proc in reversed(procs):
            proc.stop()
        tmp.cleanup()

    p50, p95, worst = percentile(latencies, 50), percentile(latencies, 95), max(latencies)
    verdict = "meets" if p95 <= 1.5 else "MISSES"
    print(f"click → dashboard: p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, max {worst * 1000:.0f} ms ({verdict} p95 ≤ 1.5 s)")
    markdown = f"""### Click → dashboard number updated (real WebSocket client)

`.venv/bin/python bench/bench_dashboard_latency.py --samples {args.samples}`: Daphne + a Celery worker on
`default` + beat ticking `recsite.stats.tick` every 1 s, against a scratch database; a `websockets` client
logged in with a session cookie. Each sample waits a random 0–1 s (seeded) before `POST /api/v1/clicks`,
so clicks land at every phase of the tick, and stops the clock at the first pushed event that counts the click.

| samples | p50 | p95 | max | target |
|---|---|---|---|---|
| {len(latencies)} | {p50 * 1000:,.0f} ms | {p95 * 1000:,.0f} ms | {worst * 1000:,.0f} ms | p95 ≤ 1.5 s: **{verdict}** |

The latency is the wait for the next tick (uniform 0–1 s at a 1 s beat) plus the tick itself
(fold of the changed rollup rows, report, snapshot write) and the Redis channel-layer hop; the
browser adds one `Plotly.extendTraces` per chart on top (the e2e test sees the CTR cell change
within its 2 s limit). Ticking faster (`RECSITE_STATS_INTERVAL_S`) lowers it proportionally."""
    out = ROOT / "var" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / "dashboard_latency.json").write_text(json.dumps(
        {"latencies": latencies, "p50": p50, "p95": p95, "max": worst, "markdown": markdown}, indent=2))
    if not args.no_doc:
        from bench_stats_db import dashboard_doc_write

        dashboard_doc_write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
