"""``recsite.training.train_arm`` on real Celery workers: a SIGKILL mid-batch, and two workers on one arm.

Each test uses its own queue name so that workers of concurrent test runs on the
same Redis never take each other's tasks.
"""

from __future__ import annotations

import uuid

import pytest

from experiments.models import Click, Impression, ModelCheckpoint
from experiments.tasks import train_arm
from tests.support import live
from tests.support.training_world import traffic_log, world_make

pytestmark = [pytest.mark.e2e]


def _queue() -> str:
    return f"training-test-{uuid.uuid4().hex[:12]}"


def _ready(worker: live.LiveProcess) -> bool:
    if not worker.alive():
        raise RuntimeError(f"worker exited:\n{worker.output()[-3000:]}")
    return "ready." in worker.output()


def _versions(arm) -> list[ModelCheckpoint]:
    return list(ModelCheckpoint.objects.filter(arm=arm).order_by("version").defer("state"))


def _assert_trained_exactly_once(arm) -> None:
    """Versions 1..n without gap; each version's id ranges start where the previous ended; every row counted once."""
    versions = _versions(arm)
    assert [v.version for v in versions] == list(range(1, len(versions) + 1))
    prev_cursor = prev_click = 0
    for v in versions:
        m = v.metrics
        assert (m["imp_from"], m["click_from"]) == (prev_cursor, prev_click)
        assert (m["imp_to"], m["click_to"]) == (v.cursor, v.click_cursor)
        in_range = Impression.objects.filter(arm=arm, id__gt=m["imp_from"], id__lte=m["imp_to"]).count()
        clicks = Click.objects.filter(impression__arm=arm, late=False, id__gt=m["click_from"], id__lte=m["click_to"])
        assert (m["n_impressions"], m["n_clicks"]) == (in_range, clicks.count())
        prev_cursor, prev_click = v.cursor, v.click_cursor
    head = versions[-1]
    n_imps = Impression.objects.filter(arm=arm).count()
    n_clicks = Click.objects.filter(impression__arm=arm, late=False).count()
    assert sum(v.metrics["n_impressions"] for v in versions) == n_imps
    assert sum(v.metrics["n_clicks"] for v in versions) == n_clicks
    assert head.examples_seen == n_imps + n_clicks
    assert head.cursor == Impression.objects.filter(arm=arm).order_by("-id").values_list("id", flat=True).first()


def test_a_worker_killed_in_the_middle_of_a_batch_loses_and_repeats_nothing(worker_factory):
    world = world_make(seed=61)
    traffic_log(world, requests=30, k=5, seed=1)
    queue = _queue()
    paused = worker_factory(
        queues=queue, env=live.live_env({"RECSITE_TEST_TRAIN_PAUSE": "120", "RECSITE_TRAIN_BATCH_ROWS": "64", "RECSITE_TRAIN_FOLD_BATCHES": "1"})
    )
    live.wait_until(lambda: _ready(paused), timeout=90, what="the first worker to start")

    train_arm.apply_async(args=[world.arm.id], queue=queue)
    live.wait_until(lambda: "train_pause_begin" in paused.output(), timeout=60, what="the batch to reach the pause")
    paused.kill()  # SIGKILL between partial_fit + INSERT and COMMIT

    assert _versions(world.arm) == []
    traffic_log(world, requests=20, k=5, seed=2)  # traffic goes on while the trainer is down
    fresh = worker_factory(
        queues=queue, env=live.live_env({"RECSITE_TRAIN_BATCH_ROWS": "64", "RECSITE_TRAIN_FOLD_BATCHES": "1", "RECSITE_TRAIN_BUDGET_S": "60"})
    )
    live.wait_until(lambda: _ready(fresh), timeout=90, what="the second worker to start")
    last_imp = Impression.objects.filter(arm=world.arm).order_by("-id").values_list("id", flat=True).first()

    def caught_up() -> bool:
        head = ModelCheckpoint.objects.filter(arm=world.arm).order_by("-version").values_list("cursor", flat=True)
        if (head.first() or 0) >= last_imp:
            return True
        train_arm.apply_async(args=[world.arm.id], queue=queue)
        return False

    live.wait_until(caught_up, timeout=90, interval=1.0, what="the restarted worker to catch up")

    _assert_trained_exactly_once(world.arm)
    assert len(_versions(world.arm)) >= 4  # 250 impressions in batches of 64


def test_two_workers_never_both_apply_an_update_to_one_arm(worker_factory):
    world = world_make(seed=62)
    traffic_log(world, requests=20, k=5, seed=3)
    queue = _queue()
    env = live.live_env({"RECSITE_TEST_TRAIN_PAUSE": "4"})
    first, second = worker_factory(queues=queue, env=env), worker_factory(queues=queue, env=env)
    live.wait_until(lambda: _ready(first) and _ready(second), timeout=90, what="both workers to start")

    train_arm.apply_async(args=[world.arm.id], queue=queue)
    live.wait_until(
        lambda: "train_pause_begin" in first.output() + second.output(), timeout=60, what="one worker holding the arm"
    )
    holder, other = (first, second) if "train_pause_begin" in first.output() else (second, first)
    train_arm.apply_async(args=[world.arm.id], queue=queue)  # the idle worker takes it while the holder commits

    live.wait_until(lambda: "train_locked arm=" in other.output(), timeout=60, what="the second run to back off")
    live.wait_until(lambda: ModelCheckpoint.objects.filter(arm=world.arm).exists(), timeout=60, what="the commit")
    # The holder logs its step just after the commit: under load the row can be seen before the line is written.
    live.wait_until(lambda: "train_step arm=" in holder.output(), timeout=30, what="the holder's step log")

    assert "train_pause_begin" not in other.output()
    assert "train_step arm=" in holder.output()
    _assert_trained_exactly_once(world.arm)
    assert [v.version for v in _versions(world.arm)] == [1]


def _ctr_counts(arm, start, end) -> tuple[int, int]:
    from django.db.models import Count, Q

    agg = Impression.objects.filter(arm=arm, served_at__gte=start, served_at__lt=end).aggregate(
        n=Count("id"), c=Count("click", filter=Q(click__late=False))
    )
    return agg["n"], agg["c"]


def _expected_ctr(arm, start, end, world) -> float:
    """Mean true click probability of the arm's impressions in [start, end) under the simulator's world: the CTR
    without the click noise (what the arm chose to show, not which of those clicks happened to be drawn)."""
    import numpy as np

    rows = Impression.objects.filter(arm=arm, served_at__gte=start, served_at__lt=end).values_list(
        "user__external_id", "item__external_id", "position")
    p = [world.click_probability(u, [i], np.array([pos]), 0)[0] for u, i, pos in rows]
    return float(np.mean(p)) if p else 0.0


@pytest.mark.slow
def test_arms_learn_end_to_end_from_simulated_shoppers(daphne_server, worker_factory, tmp_path):
    import subprocess
    import sys
    import time
    from datetime import timedelta

    import numpy as np
    from django.db.models import Max, Min

    from experiments.models import Arm, Experiment
    from experiments.simulation.world import ShopperWorld
    from experiments.tasks import training_dispatch

    experiment = Experiment.objects.create(slug="learn-e2e", salt="learn", status="running")
    small = {"user_buckets": 2048, "item_buckets": 2048}
    popularity = Arm.objects.create(experiment=experiment, name="popularity", kind="popularity")
    deep = Arm.objects.create(experiment=experiment, name="deep", kind="deep_ctr", params=small)
    queue = _queue()
    trainer = worker_factory(queues=queue, env=live.live_env({"RECSITE_TRAIN_QUEUE": queue}))
    live.wait_until(lambda: "train_warmup_done" in trainer.output(), timeout=120, what="the trainer to warm up")

    sim = subprocess.Popen(
        [sys.executable, str(live.ROOT / "manage.py"), "simulate", "--base-url", daphne_server, "--users", "200",
         "--items", "100", "--rate", "30", "--duration", "60", "--seed", "3", "--no-progress"],
        env=live.live_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    deadline = time.monotonic() + 150
    while sim.poll() is None and time.monotonic() < deadline:  # the test plays beat: one dispatch per second
        training_dispatch(queue=queue)
        time.sleep(1.0)
    out, _ = sim.communicate(timeout=30)
    assert sim.returncode == 0, out[-3000:]

    span = Impression.objects.filter(experiment=experiment).aggregate(start=Min("served_at"), end=Max("served_at"))
    w = timedelta(seconds=20)
    # The last window stops 3 s before the end (the clicks of the final impressions may still be in flight).
    end = span["end"] - timedelta(seconds=3)
    # The simulator's world, rebuilt from the arguments above.
    truth = ShopperWorld(seed=3, n_users=200, n_items=100)
    first = {a.name: _expected_ctr(a, span["start"], span["start"] + w, truth) for a in (popularity, deep)}
    last = {a.name: _expected_ctr(a, end - 1.5 * w, end, truth) for a in (popularity, deep)}
    counts = {a.name: _ctr_counts(a, end - 1.5 * w, end) for a in (popularity, deep)}
    realised = {name: c / max(n, 1) for name, (n, c) in counts.items()}
    versions = {a.name: ModelCheckpoint.objects.filter(arm=a).count() for a in (popularity, deep)}

    assert min(versions.values()) >= 10, versions
    # Both arms learn: what they show in the last window is worth more clicks than what they showed at first, and
    # far more than random slates (0.132 in this world at the shoppers' default affinity; 0.112 at 1.6).
    chance = np.mean([truth.relevance(u, truth.item_ids, 0).mean() for u in truth.user_ids]) * truth.examine(
        np.arange(1, 11)).mean()
    assert last["popularity"] > first["popularity"], (first, last)
    assert last["deep"] > first["deep"], (first, last)
    assert min(last.values()) > 1.5 * chance, (last, chance)
    # The clicks that came back agree with the world the shoppers click from (within 5 standard errors).
    for name, (n, _) in counts.items():
        assert abs(realised[name] - last[name]) < 5 * (last[name] * (1 - last[name]) / max(n, 1)) ** 0.5, (realised, last)
    # Which arm is ahead after one minute is not asserted: the two are within a few standard errors of each other
    # here (CI once saw popularity 0.255 against deep 0.230, 2.8 s.e.), and bench/learning_race.py ranks them over
    # 10 minutes through the same stack.
