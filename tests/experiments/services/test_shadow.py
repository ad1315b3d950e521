"""Shadow arms through the real serve path, Postgres and the trainer: what is logged for every served request,
the importance-weighted training, the live doubly robust estimate, and the decisions that put an arm there."""

import dataclasses
import os
import time
import uuid

import numpy as np
import pytest
import redis
from django.conf import settings
from django.db import connection

from experiments.errors import ApplicationError
from experiments.models import Arm, Click, Decision, Impression, ModelCheckpoint, ShadowRanking
from experiments.selectors import results as result_selectors
from experiments.selectors import shadow as shadow_selectors
from experiments.services import decisions, lifecycle, sessions, training
from experiments.services.clicks import click_record
from experiments.services.events import recommendation_serve
from experiments.services.shadow import queue_key, shadow_drain
from experiments.services.shadow_training import MAX_WEIGHT, shadow_rows_read
from experiments.services.shoppers import rank_context
from experiments.services.training_config import TrainingConfig
from experiments.services.training_data import Horizon, step_batch
from tests.experiments.stats_support import fast_passwords, make_login  # noqa: F401  (autouse)
from tests.support.serving import catalogue_make, serving_inline  # noqa: F401  (fixture)

pytestmark = pytest.mark.django_db

USERS = [f"shopper-{i}" for i in range(60)]
CONFIG = TrainingConfig(batch_rows=10_000, budget_s=60.0)


@pytest.fixture
def boss():
    return make_login(username="boss", promoter=True)


@pytest.fixture
def arena(boss, serving_manual, settings):
    settings.RECSITE = {**settings.RECSITE, "SHADOW_INLINE": True}
    catalogue_make(n=12)
    experiment = lifecycle.experiment_create(
        slug="shady", control="pop", user=boss,
        arms=[lifecycle.ArmSpec("pop", "popularity"), lifecycle.ArmSpec("ftrl", "ftrl_logreg"),
              lifecycle.ArmSpec("apprentice", "ftrl_logreg", {"epsilon": 0.2}, 0.0)])
    lifecycle.experiment_start(experiment=experiment, user=boss)
    arms = {a.name: a for a in experiment.arms.all()}
    decisions.arm_shadow(arm=arms["apprentice"], user=boss, reason="watch it learn")
    serving_manual.refresh()
    return experiment, {a.name: a for a in experiment.arms.all()}


def _age(seconds: int = 60) -> None:
    with connection.cursor() as cur:
        cur.execute("UPDATE experiments_shadowranking SET created_at = now() - make_interval(secs => %s)",
                    [seconds])
        cur.execute("UPDATE experiments_click SET clicked_at = now() - make_interval(secs => %s)", [seconds])


def test_every_served_request_is_ranked_in_the_shadow_and_the_shadow_is_shown_to_nobody(arena, serving_manual):
    experiment, arms = arena
    served = [recommendation_serve(user_id=u, k=4, experiment_slug="shady") for u in USERS]

    assert "apprentice" not in {r.arm for r in served}
    rows = list(ShadowRanking.objects.filter(arm=arms["apprentice"]).order_by("id"))
    impressions = {i.id: i for i in Impression.objects.filter(experiment=experiment)}
    assert len(rows) == len(USERS) and len(impressions) == 4 * len(USERS)  # one row per request
    assert {i for r in rows for i in r.impression_ids} == set(impressions)
    for r in rows:
        for j, impression_id in enumerate(r.impression_ids):
            shown = impressions[impression_id]
            assert (r.items[j], j + 1, r.served_arm_id, r.user_id, str(r.request_id)) == (
                shown.item_id, shown.position, shown.arm_id, shown.user_id, str(shown.request_id))
            assert r.logged_propensities[j] == pytest.approx(shown.propensity)
    # The shadow's own probability of each shown item is its exact propensity matrix for that request.
    state = serving_manual.current()
    model = state.models[arms["apprentice"].id].model
    first = rows[0]
    assert Impression.objects.filter(id=first.impression_ids[0]).get().user.external_id == USERS[0]
    ctx = rank_context(model=model, user_id=USERS[0], attributes={}, catalogue=state.catalogue,
                       session=sessions.EMPTY)
    matrix = model.propensity_matrix(ctx, 4)
    index = {int(pk): i for i, pk in enumerate(state.catalogue.pks)}
    for j, item in enumerate(first.items):
        assert first.target_propensities[j] == pytest.approx(matrix[index[item], j])
    assert 0 < sum(first.target_propensities) <= 4 + 1e-9
    assert len(set(first.shadow_items)) == 4 and len(first.shadow_scores) == 4  # its own slate: 4 distinct items


def test_the_shadow_learns_from_the_served_arms_clicks_importance_weighted(arena):
    experiment, arms = arena
    served = [recommendation_serve(user_id=u, k=4, experiment_slug="shady") for u in USERS]
    clicked = [r.items[0].impression_id for r in served[::3]]
    for impression_id in clicked:
        click_record(impression_id=impression_id)
    shadow = ShadowRanking.objects.filter(arm=arms["apprentice"])
    slots = {i: (r.id, r.target_propensities[j] / r.logged_propensities[j])
             for r in shadow for j, i in enumerate(r.impression_ids)}

    fresh = training.arm_train(arm_id=arms["apprentice"].id, config=CONFIG)
    assert [s.status for s in fresh.steps] == ["idle"]  # rows younger than the lag are not read yet
    _age()
    run = training.arm_train(arm_id=arms["apprentice"].id, config=CONFIG)

    (v1,) = ModelCheckpoint.objects.filter(arm=arms["apprentice"]).order_by("version").defer("state")
    assert run.versions == [1] and v1.metrics["accepted"] and v1.metrics["scheme"] == "fnw-ips"
    assert (v1.metrics["n_impressions"], v1.metrics["n_clicks"]) == (len(slots), len(clicked))
    assert (v1.metrics["shadow_cursor"], v1.metrics["shadow_click_cursor"]) == (
        max(shadow.values_list("id", flat=True)), max(Click.objects.values_list("id", flat=True)))
    assert (v1.cursor, v1.click_cursor) == (0, 0)  # its own cursors wait for its own traffic
    # Every row of the batch it learnt from carries its clipped importance ratio as its sample weight.
    rows = shadow_rows_read(arm_id=arms["apprentice"].id, cursor=0, click_cursor=0,
                            horizon=Horizon(0, 10**12, 0.0), limit=10_000)
    batch = step_batch(rows=rows, params=arms["apprentice"].params)
    by_slot = {}
    for r in shadow:
        for j in range(len(r.items)):
            by_slot[(r.id, j + 1)] = min(r.target_propensities[j] / r.logged_propensities[j], MAX_WEIGHT)
    expected = [by_slot[(r["id"], r["position"])] for r in rows.impressions.records()] + [
        min(slots[r["impression_id"]][1], MAX_WEIGHT) for r in rows.clicks.records()]
    assert batch.sample_weight == pytest.approx(np.array(expected), rel=1e-6)
    assert len(rows.clicks) == len(clicked) and max(expected) <= MAX_WEIGHT
    assert [s.status for s in training.arm_train(arm_id=arms["apprentice"].id, config=CONFIG).steps] == ["idle"]

    # Live again: it trains on its own impressions from its own cursors, none of the shadow rows twice.
    boss = Decision.objects.filter(experiment=experiment).first().user
    decisions.arm_resume(arm=arms["apprentice"], user=boss, reason="launch as a candidate")
    decisions.arm_reweight(arm=Arm.objects.get(pk=arms["apprentice"].id), weight=5.0, user=boss, reason="go")
    from experiments.serving.cache import serving_cache

    serving_cache.refresh()
    own = [r for r in (recommendation_serve(user_id=f"new-{i}", k=3, experiment_slug="shady") for i in range(40))
           if r.arm == "apprentice"]
    assert own
    training.arm_train(arm_id=arms["apprentice"].id, config=CONFIG)
    v2 = ModelCheckpoint.objects.filter(arm=arms["apprentice"]).order_by("-version").defer("state").first()
    assert "shadow" not in v2.metrics and v2.metrics["n_impressions"] == 3 * len(own)


def test_the_dashboard_payload_carries_the_shadow_arms_live_doubly_robust_estimate(arena):
    experiment, arms = arena
    served = [recommendation_serve(user_id=u, k=4, experiment_slug="shady") for u in USERS]
    for r in served[::4]:
        click_record(impression_id=r.items[1].impression_id)

    payload = result_selectors.experiment_stats_payload(experiment=experiment, previous=None)
    meta = payload["arms"]["apprentice"]
    estimate = meta["shadow_estimate"]
    assert meta["status"] == "shadow" and meta["offline_estimate"] == estimate
    assert estimate["estimator"] == "dr" and estimate["live"] and estimate["rows"] == 4 * len(USERS)  # slots
    assert 0 <= estimate["ci_low"] <= estimate["value"] <= estimate["ci_high"] <= 1
    assert 0 < estimate["effective_sample_size"] <= estimate["rows"]
    assert payload["arms"]["ftrl"]["shadow_estimate"] is None
    assert payload["report"]["arms"]["apprentice"]["impressions"] == 0
    # Ticks within EVERY_S reuse it (it reads up to 50,000 slots); after that it is recomputed on the new rows.
    [recommendation_serve(user_id=f"late-{i}", k=4, experiment_slug="shady") for i in range(20)]
    again = result_selectors.experiment_stats_payload(experiment=experiment, previous=payload)
    assert again["arms"]["apprentice"]["shadow_estimate"] == estimate
    fresh = shadow_selectors.shadow_estimates(arms=list(experiment.arms.all()), seed=experiment.id,
                                              previous=payload["arms"], every_s=0.0)
    assert fresh["apprentice"]["rows"] == 4 * (len(USERS) + 20)


def test_only_a_non_control_arm_of_an_ab_experiment_goes_into_the_shadow(arena, boss):
    experiment, arms = arena
    with pytest.raises(ApplicationError) as err:
        decisions.arm_shadow(arm=arms["pop"], user=boss, reason="x")
    assert (err.value.code, err.value.status) == ("control", 409)
    with pytest.raises(ApplicationError) as err:
        decisions.arm_shadow(arm=arms["apprentice"], user=boss, reason="x")
    assert err.value.code == "no_change"
    interleaved = lifecycle.experiment_create(slug="mixed", mode="interleaved", user=boss,
                                              arms=[lifecycle.ArmSpec("a", "popularity"),
                                                    lifecycle.ArmSpec("b", "popularity")])
    with pytest.raises(ApplicationError) as err:
        decisions.arm_shadow(arm=interleaved.arms.get(name="b"), user=boss, reason="x")
    assert err.value.code == "not_ab"


def test_requests_queue_on_redis_and_the_light_workers_drain_ranks_them(boss, serving_manual):
    catalogue_make(n=8)
    experiment = lifecycle.experiment_create(
        slug="queued", user=boss, arms=[lifecycle.ArmSpec("pop", "popularity"),
                                        lifecycle.ArmSpec("shadowy", "popularity", {}, 0.0)])
    lifecycle.experiment_start(experiment=experiment, user=boss)
    decisions.arm_shadow(arm=experiment.arms.get(name="shadowy"), user=boss, reason="queue")
    serving_manual.refresh()
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(queue_key())
    served = [recommendation_serve(user_id=u, k=3, experiment_slug="queued") for u in USERS[:20]]

    assert client.llen(queue_key()) == 20 and not ShadowRanking.objects.exists()  # nothing on the request path
    shadow_id = experiment.arms.get(name="shadowy").id
    # A web process never ranks with the shadow arm, so it neither loads nor hot-reloads its model...
    assert shadow_id not in serving_manual.current().models
    assert shadow_id in serving_manual.current().experiments["queued"].shadow_arm_ids
    done = shadow_drain(batch=8, seed=1)
    assert done == {"requests": 20, "rows": 20} and client.llen(queue_key()) == 0
    assert shadow_id in serving_manual.current().models  # ...the drain, which does, loads it
    rows = ShadowRanking.objects.filter(experiment=experiment)
    assert set(rows.values_list("request_id", flat=True)) == {uuid.UUID(r.request_id) for r in served}
    assert shadow_drain() == {"requests": 0, "rows": 0}


@pytest.mark.django_db(transaction=True)
def test_the_drain_loop_ranks_the_queue_until_stopped(boss, serving_manual, settings):
    import threading

    from experiments.services.shadow import drain_loop

    settings.RECSITE = {**settings.RECSITE, "SHADOW_MAX_DEFER_S": 2.0}  # a busy CI machine defers it no longer
    catalogue_make(n=8)
    experiment = lifecycle.experiment_create(
        slug="threaded", user=boss, arms=[lifecycle.ArmSpec("pop", "popularity"),
                                          lifecycle.ArmSpec("shadowy", "popularity", {}, 0.0)])
    lifecycle.experiment_start(experiment=experiment, user=boss)
    decisions.arm_shadow(arm=experiment.arms.get(name="shadowy"), user=boss, reason="thread")
    serving_manual.refresh()
    redis.Redis.from_url(settings.REDIS_URL).delete(queue_key())
    for u in USERS[:20]:
        recommendation_serve(user_id=u, k=3, experiment_slug="threaded")
    stop = threading.Event()
    thread = threading.Thread(target=drain_loop, args=(stop,), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while ShadowRanking.objects.filter(experiment=experiment).count() < 20 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert ShadowRanking.objects.filter(experiment=experiment).count() == 20
    finally:
        stop.set()
        thread.join(15)
    assert not thread.is_alive()


def test_the_drain_waits_while_the_rest_of_the_machine_is_busy_and_not_when_it_is_idle_enough(settings):
    import subprocess
    import sys
    import threading

    from experiments.services.shadow import CpuGauge, yield_to_serving

    gauge, stop = CpuGauge(), threading.Event()
    settings.RECSITE = {**settings.RECSITE, "SHADOW_YIELD_BUSY": 1.0, "SHADOW_MAX_DEFER_S": 5.0}
    assert yield_to_serving(gauge, stop) < 0.5  # busy can never exceed every core: no wait
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(gauge.cores)]
    try:
        time.sleep(0.3)
        assert gauge.others(0.3) >= 0.5 * gauge.cores  # real processes' CPU, not this one's
        settings.RECSITE = {**settings.RECSITE, "SHADOW_YIELD_BUSY": 0.25, "SHADOW_MAX_DEFER_S": 1.5}
        waited = yield_to_serving(gauge, stop)
        assert 1.4 <= waited < 3.0  # it waited for the machine, then ran anyway at the deadline
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()


def test_the_shadow_process_runs_at_the_lowest_priority_in_a_group_of_its_own_and_stops(settings):
    from experiments.services.shadow import shadow_process_start, shadow_process_stop

    process = shadow_process_start()
    try:
        deadline = time.monotonic() + 30
        def group() -> str:
            with open(f"/proc/{process.pid}/autogroup") as f:
                return f.read().strip()

        while not group().endswith("nice 19") and time.monotonic() < deadline:  # set last, after the nice
            time.sleep(0.1)
        assert os.getpriority(os.PRIO_PROCESS, process.pid) == 19
        assert os.getsid(process.pid) == process.pid  # its own session, so its own autogroup
        assert group().endswith("nice 19")
        assert shadow_process_start() is process  # once per worker
    finally:
        shadow_process_stop()
    assert process.poll() is not None


def test_a_full_queue_keeps_the_newest_requests_and_redis_down_drops_without_waiting(boss, serving_manual, settings,
                                                                                     monkeypatch):
    from experiments.services import shadow

    job = shadow.ShadowJob(1, "x", (2,), 3, "00000000-0000-0000-0000-000000000001", "u", 4, {}, sessions.EMPTY,
                           (5, 6), (0.5, 0.5), (7, 8))
    assert shadow.ShadowJob.decode(job.encode()) == job
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(queue_key())
    monkeypatch.setattr(shadow, "QUEUE_LIMIT", 3)
    for i in range(5):
        shadow.shadow_submit(dataclasses.replace(job, experiment_id=i))
    assert [shadow.ShadowJob.decode(t).experiment_id for t in client.lrange(queue_key(), 0, -1)] == [2, 3, 4]
    client.delete(queue_key())

    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    started = time.monotonic()
    try:
        assert shadow.shadow_submit(job) is False
        assert shadow.shadow_submit(job) is False  # the breaker: no second wait
        assert time.monotonic() - started < 1.0
    finally:
        shadow._broken_until = 0.0  # the next test's Redis is up


@pytest.mark.usefixtures("serving_inline")
def test_the_api_adds_a_shadow_arm_and_the_dashboard_puts_a_candidate_in_the_shadow(boss, login):
    from experiments.services.tokens import api_token_issue
    from tests.experiments.api.test_operator import Api, documented
    from tests.experiments.dashboard.test_workbench import post

    api = Api(api_token_issue(user=boss, name="ci")[1])
    catalogue_make(n=4)
    api.post("/api/v1/experiments", {"slug": "api-shadow", "arms": [{"name": "pop", "kind": "popularity"}]})
    added = api.post("/api/v1/experiments/api-shadow/arms", {"name": "deep", "kind": "ftrl_logreg", "shadow": True})
    assert added.status_code == 201, added.content
    arm = documented("/api/v1/experiments/{slug}/arms", "post", added, "ArmAdded")["arm"]
    assert (arm["status"], arm["weight"]) == ("shadow", 0.0)
    weighted = api.post("/api/v1/experiments/api-shadow/arms", {"name": "x", "kind": "popularity", "shadow": True,
                                                                "weight": 1})
    assert documented("/api/v1/experiments/{slug}/arms", "post", weighted)["error"]["field"] == "weight"
    control = api.post("/api/v1/experiments/api-shadow/arms/pop/shadow", {})
    assert documented("/api/v1/experiments/{slug}/arms/{arm}/shadow", "post", control)["error"]["code"] == "control"
    api.post("/api/v1/experiments/api-shadow/arms", {"name": "cand", "kind": "popularity", "weight": 0})

    client = login("boss2", promoter=True)
    cand = Arm.objects.get(experiment__slug="api-shadow", name="cand")
    response = post(client, f"/dashboard/api-shadow/arms/{cand.id}/shadow/", {"reason": "apprentice first"})
    cand.refresh_from_db()
    assert response.status_code == 302 and cand.status == "shadow"
    assert Decision.objects.filter(arm=cand, action="shadow").get().reason == "apprentice first"
