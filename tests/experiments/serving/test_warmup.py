"""No request waits for a model: every arm is loaded and warmed (TensorFlow tracing included) before it serves."""

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests

from experiments import features
from experiments.models import ModelCheckpoint
from experiments.services.demo import DEMO_ARMS
from experiments.serving.arms import arm_build
from experiments.serving.cache import ServingCache
from models.types import Context
from tests.support import live
from tests.support.serving import catalogue_make, experiment_make


def _traces(model) -> int:
    graphs = model.tower.graphs
    return graphs.matrix.experimental_get_tracing_count() + graphs.rows.experimental_get_tracing_count()


def _rank_like_a_request(state, arm_id: int, user_id: str) -> None:
    model = state.models[arm_id].model
    catalogue = state.catalogue
    ctx = Context.make(features.external_key(user_id), features.user_features({}, dim=int(model.params["user_dim"])),
                       catalogue.keys, catalogue.feats[int(model.params["item_dim"])])
    model.rank(ctx, 10, np.random.default_rng(1))


@pytest.mark.django_db(transaction=True)
def test_a_published_tensorflow_arm_ranks_without_tracing_and_so_does_its_hot_reloaded_version():
    catalogue_make(n=40)
    deep = next(params for name, _, params in DEMO_ARMS if name == "deep")
    experiment = experiment_make(arms=(("deep", "deep_ctr", 1.0),))
    arm = experiment.arms.get()
    arm.params = deep
    arm.save()
    cache = ServingCache(poll_interval_s=0.1)
    try:
        cache.current()
        live.wait_until(lambda: cache.ready, timeout=120, what="the first warm snapshot")
        state = cache.current()
        before = _traces(state.models[arm.id].model)
        _rank_like_a_request(state, arm.id, "new-user-1")
        catalogue_make(n=5, prefix="more")  # the catalogue grows: a different candidate count
        live.wait_until(lambda: cache.current().catalogue.n == 45, timeout=10, what="the grown catalogue")
        _rank_like_a_request(cache.current(), arm.id, "new-user-2")
        assert _traces(state.models[arm.id].model) == before

        ModelCheckpoint.objects.create(arm=arm, version=1,
                                       state=arm_build(kind="deep_ctr", params=deep, arm_id=arm.id).to_bytes())
        live.wait_until(lambda: cache.current().models[arm.id].version == 1, timeout=10, what="version 1")
        reloaded = cache.current()
        before = _traces(reloaded.models[arm.id].model)
        _rank_like_a_request(reloaded, arm.id, "new-user-3")
        assert _traces(reloaded.models[arm.id].model) == before
    finally:
        cache.stop()


def _first_requests(url: str, *, clients: int, per_client: int) -> list[float]:
    def client(c: int) -> list[float]:
        session = requests.Session()  # keep-alive, as a shop's backend would
        out = []
        for i in range(per_client):
            started = time.perf_counter()
            response = session.post(f"{url}/api/v1/recommendations", json={"user_id": f"new-{c}-{i}", "k": 10},
                                    timeout=10)
            out.append(time.perf_counter() - started)
            assert response.status_code == 200, response.text
        return out

    with ThreadPoolExecutor(clients) as pool:
        return [seconds for part in pool.map(client, range(clients)) for seconds in part]


@pytest.mark.e2e
def test_healthz_says_warming_until_every_demo_arm_is_warm_then_the_first_100_requests_are_quick(transactional_db):
    seeded = live.manage("seed_demo", "--items", "600", "--users", "50")
    assert seeded.returncode == 0, seeded.stderr
    port = live.free_port()
    url = f"http://127.0.0.1:{port}"
    proc = live.LiveProcess("daphne-warm", [str(live.VENV_BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port),
                                            "recsite.asgi:application"], live.live_env())
    seen: list[tuple[int, str]] = []

    def healthy() -> bool:
        response = requests.get(f"{url}/healthz", timeout=5)
        seen.append((response.status_code, response.json()["status"]))
        return response.status_code == 200

    try:
        live.wait_until(healthy, timeout=180, interval=0.1, what="/healthz 200")
        latencies = _first_requests(url, clients=4, per_client=25)
    finally:
        proc.stop()
    assert seen[0] == (503, "warming")
    assert set(seen[:-1]) == {(503, "warming")}
    assert len(latencies) == 100
    assert max(latencies) < 0.300, sorted(latencies)[-5:]


@pytest.mark.e2e
def test_under_gunicorn_the_first_100_requests_after_healthz_200_are_quick(transactional_db):
    """Two workers: each accepts only once warm, so no request reaches a worker that is still loading."""
    seeded = live.manage("seed_demo", "--items", "600", "--users", "50")
    assert seeded.returncode == 0, seeded.stderr
    server, url = live.start_gunicorn(workers=2)
    try:
        latencies = _first_requests(url, clients=4, per_client=25)
    finally:
        server.stop()
    assert len(latencies) == 100
    assert max(latencies) < 0.300, sorted(latencies)[-5:]
