"""``simulate`` end to end: a live Daphne, a live trainer, shoppers over HTTP; plus the hidden world."""

import json
import sys
import uuid

import numpy as np
import pytest

from experiments.models import Click, Impression
from experiments.simulation.world import CatalogueView, ShopperWorld
from experiments.tasks import train_arm
from tests.support import live
from tests.support.serving import experiment_make


def test_the_hidden_world_is_a_function_of_ids_and_seed():
    one, two = ShopperWorld(seed=3, n_users=10, n_items=10), ShopperWorld(seed=3, n_users=10, n_items=10)
    ids = ["sim-item-00001", "foreign-sku-9"]
    assert np.array_equal(one.relevance("sim-user-00002", ids, 0), two.relevance("sim-user-00002", ids, 0))


def test_drift_changes_the_tastes():
    world = ShopperWorld(seed=3, n_users=10, n_items=10, drift_at=5.0)
    ids = world.item_ids
    before = world.relevance("sim-user-00002", ids, world.phase(1.0))
    after = world.relevance("sim-user-00002", ids, world.phase(6.0))
    assert not np.allclose(before, after)


def test_the_oracle_beats_any_slate():
    world = ShopperWorld(seed=4, n_users=5, n_items=50)
    catalogue = CatalogueView(world)
    catalogue.add(world.item_ids)
    shown = world.item_ids[:5]
    expected = world.click_probability("sim-user-00001", shown, np.arange(1, 6), 0).sum()
    assert world.oracle_expected_clicks("sim-user-00001", catalogue, 5, 0) >= expected


@pytest.mark.e2e
def test_shoppers_drive_every_arm_and_the_served_version_rises(daphne_server, worker_factory, tmp_path):
    experiment = experiment_make(arms=(("popular", "popularity", 1.0), ("ftrl", "ftrl_logreg", 1.0)))
    arms = list(experiment.arms.all())
    queue = f"training-test-{uuid.uuid4().hex[:12]}"
    worker = worker_factory(queues=queue, env=live.live_env({"RECSITE_TRAIN_BATCH_ROWS": "200"}))
    live.wait_until(lambda: "ready." in worker.output(), timeout=90, what="the trainer to start")

    report_path = tmp_path / "report.json"
    shoppers = live.LiveProcess("simulate", [
        sys.executable, str(live.ROOT / "manage.py"), "simulate", "--base-url", daphne_server, "--users", "80",
        "--items", "60", "--rate", "40", "--duration", "12", "--seed", "5", "--k", "5", "--concurrency", "4",
        "--no-progress", "--json", str(report_path),
    ], live.live_env())

    def trained_while_running() -> bool:
        for arm in arms:
            train_arm.apply_async(args=[arm.id], queue=queue)
        return not shoppers.alive()

    live.wait_until(trained_while_running, timeout=90, interval=1.0, what="the simulation to end")
    assert shoppers.stop() == 0, shoppers.output()[-3000:]
    report = json.loads(report_path.read_text())

    for arm in arms:
        assert Impression.objects.filter(arm=arm).exists()
        assert Click.objects.filter(impression__arm=arm).exists()
    versions = {name: (a["model_version_first"], a["model_version_max"]) for name, a in report["arms"].items()}
    assert set(versions) == {"popular", "ftrl"}
    assert all(first == 0 and last > 0 for first, last in versions.values()), versions


@pytest.mark.parametrize("flag, value, message", [
    ("--users", "0", "--users must be at least 1"),
    ("--affinity", "-0.5", "--affinity must be a finite number >= 0"),
    ("--affinity", "nan", "--affinity must be a finite number >= 0"),
])
def test_a_bad_option_is_a_clear_error_before_any_request(flag, value, message):
    from django.core.management import CommandError, call_command

    # The base URL points at nothing: the command must fail on the option, not on the connection.
    with pytest.raises(CommandError, match=message):
        call_command("simulate", "--base-url", "http://127.0.0.1:9", flag, value, "--no-progress")
