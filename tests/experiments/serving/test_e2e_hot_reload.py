"""Two real serving processes (two Daphnes on one database and Redis) hear of a new version and serve it.

Their fallback poll is set to a minute, so only the announcement can make them
serve the new version within seconds. The version is trained by the real
training service, as a delta on top of the snapshot both processes serve.
"""

import time

import pytest
import requests

from experiments.models import ModelCheckpoint, ShopUser
from experiments.services import training
from experiments.services.training_config import TrainingConfig
from tests.support import live
from tests.support.serving import catalogue_make, experiment_make
from tests.support.training_world import World, traffic_log

USERS = [f"hot-user-{i}" for i in range(6)]
CONFIG = TrainingConfig(batch_rows=10_000, budget_s=60.0, snapshot_every=20)


def _served(url: str) -> set[int]:
    session = requests.Session()
    return {
        session.post(f"{url}/api/v1/recommendations", json={"user_id": u, "k": 2}, timeout=10).json()["model_version"]
        for u in USERS
    }


@pytest.mark.e2e
@pytest.mark.slow
def test_two_serving_processes_serve_an_announced_delta_version_within_seconds(transactional_db):
    import numpy as np

    items = catalogue_make(n=30, prefix="hot")
    experiment = experiment_make(arms=(("a", "popularity", 1.0),))
    arm = experiment.arms.get()
    env = live.live_env({"RECSITE_SERVING_POLL_SUBSCRIBED_S": "60"})
    servers = [live.start_daphne(env=env) for _ in range(2)]
    try:
        for proc, url in servers:
            live.wait_until(lambda url=url: _served(url) == {0}, timeout=60, what="version 0 to be served")
            live.wait_until(lambda proc=proc: "model_version_subscribed" in proc.output(), timeout=20,
                            what="the serving process to subscribe")
        world = World(experiment, [arm], [ShopUser.objects.create(external_id="hot-trainee")], items,
                      np.full(len(items), 0.3))
        traffic_log(world, requests=20, k=3, seed=5)
        training.arm_train(arm_id=arm.id, config=CONFIG)  # version 1: a snapshot
        for _, url in servers:
            live.wait_until(lambda url=url: _served(url) == {1}, timeout=10, what="version 1 to be served")
        time.sleep(1.0)  # both are now in their one-minute fallback wait

        traffic_log(world, requests=20, k=3, seed=6)
        started = time.monotonic()
        training.arm_train(arm_id=arm.id, config=CONFIG)  # version 2: a delta, announced after commit
        assert ModelCheckpoint.objects.get(arm=arm, version=2).snapshot_version == 1
        seen = []
        for _, url in servers:
            live.wait_until(lambda url=url: _served(url) == {2}, timeout=10, what="version 2 to be served")
            seen.append(time.monotonic() - started)
        logs = [proc.output() for proc, _ in servers]
    finally:
        for proc, _ in servers:
            proc.stop()
    assert max(seen) < 3.0, seen
    assert all(f"model_loaded arm={arm.id} version=2" in log for log in logs)
