"""Profile of the recommendation hot path, in process (no HTTP, no client threads): where a request's time goes.

A scratch database is seeded like the demo (``seed_demo --items 1000``: the demo's arms, 1,000 items); the
serving cache is loaded and warmed as a web process would; then ``recommendation_serve`` runs ``--requests``
times for new shoppers and for returning ones. Prints per-arm ranking time (p50/p99), the whole call's p50/p99
per kind of shopper, and cProfile's top functions by cumulative time (``--top``).

Run (quiet machine): ``.venv/bin/python bench/profile_serving.py [--requests 500] [--top 30]``
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serving_common import bench_database_create  # noqa: E402


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    bench_database_create("recsite_bench_profile")
    from django.conf import settings
    from django.core.management import call_command

    call_command("seed_demo", "--items", "1000", "--users", "50", stdout=open("/dev/null", "w"))
    settings.RECSITE = {**settings.RECSITE, "SERVING_REFRESH": "manual"}
    from experiments.services import events
    from experiments.serving.cache import serving_cache

    state = serving_cache.refresh()  # loads and warms every arm, as a web process does before /healthz says 200
    per_arm: dict[str, list[float]] = {}
    for loaded in state.models.values():  # time each arm's rank() as the request path calls it
        original = loaded.model.rank
        name = f"{loaded.model.kind} (arm {loaded.arm_id})"

        def timed(*a, _original=original, _name=name, **kw):
            t0 = time.perf_counter()
            try:
                return _original(*a, **kw)
            finally:
                per_arm.setdefault(_name, []).append((time.perf_counter() - t0) * 1000)

        loaded.model.rank = timed
    pool = [f"returning-{i}" for i in range(200)]
    for user in pool:
        events.recommendation_serve(user_id=user, k=10)
    per_arm.clear()
    whole: dict[str, list[float]] = {"returning": [], "new": []}
    profile = cProfile.Profile()
    profile.enable()
    for i in range(args.requests):
        for kind in ("returning", "new"):
            user = pool[i % len(pool)] if kind == "returning" else f"new-{uuid.uuid4().hex}"
            t0 = time.perf_counter()
            events.recommendation_serve(user_id=user, k=10)
            whole[kind].append((time.perf_counter() - t0) * 1000)
    profile.disable()
    for kind, values in whole.items():
        print(f"recommendation_serve, {kind} users: p50 {_pct(values, 0.5):.2f} ms, p99 {_pct(values, 0.99):.2f} ms")
    for name, values in sorted(per_arm.items()):
        print(f"  rank() {name}: p50 {_pct(values, 0.5):.2f} ms, p99 {_pct(values, 0.99):.2f} ms ({len(values)} calls)")
    pstats.Stats(profile).sort_stats("cumulative").print_stats(args.top)


if __name__ == "__main__":
    main()
