"""Operations: GET /metrics (Prometheus, every process of the machine), its access rule, and JSON log lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis
import requests
from django.conf import settings
from django.test import override_settings
from prometheus_client.parser import text_string_to_metric_families

from experiments.observability import metrics_dir_prune
from experiments.services import training
from experiments.services.stats_tick import stats_tick
from experiments.services.training_config import TrainingConfig
from tests.support import live
from tests.support.serving import catalogue_make, experiment_make, post_json, serving_inline  # noqa: F401
from tests.support.training_world import traffic_log, world_make

ROOT = Path(__file__).resolve().parents[2]


def _samples(text: str) -> dict[tuple[str, frozenset], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def _value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _scrape(client) -> dict:
    response = client.get("/metrics")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    return _samples(response.content.decode())


@pytest.mark.django_db
@pytest.mark.usefixtures("serving_inline")
def test_api_calls_are_counted_and_timed_per_endpoint_and_serving_arm(client):
    catalogue_make(n=20)
    experiment_make()
    before = _scrape(client)
    body = post_json(client, "/api/v1/recommendations", {"user_id": "ann", "k": 3}).json()
    post_json(client, "/api/v1/clicks", {"impression_id": body["items"][0]["impression_id"]})
    post_json(client, "/api/v1/clicks", {"impression_id": "forged"})
    after = _scrape(client)

    def moved(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert moved("recsite_api_requests_total", endpoint="recommendations", status="200") == 1
    assert moved("recsite_api_requests_total", endpoint="clicks", status="201") == 1
    assert moved("recsite_api_requests_total", endpoint="clicks", status="404") == 1
    served = {"endpoint": "recommendations", "experiment": body["experiment"], "arm": body["arm"]}
    assert moved("recsite_api_request_seconds_count", **served) == 1
    assert moved("recsite_api_request_seconds_sum", **served) > 0
    assert moved("recsite_api_request_seconds_count", endpoint="clicks", experiment="", arm="") == 2


@pytest.mark.django_db
def test_training_steps_examples_and_lag_are_exported_per_arm(client):
    world = world_make(seed=11)
    imps, clicks = traffic_log(world, requests=30, k=5, seed=12)
    labels = {"experiment": world.arm.experiment.slug, "arm": world.arm.name}
    before = _scrape(client)
    training.arm_train(arm_id=world.arm.id, config=TrainingConfig(batch_rows=10_000, budget_s=60.0))
    after = _scrape(client)
    assert _value(after, "recsite_training_steps_total", status="trained", **labels) - \
        _value(before, "recsite_training_steps_total", status="trained", **labels) == 1
    assert _value(after, "recsite_training_examples_total", **labels) - \
        _value(before, "recsite_training_examples_total", **labels) == len(imps) + len(clicks)
    assert _value(after, "recsite_training_step_seconds_count", **labels) == \
        _value(before, "recsite_training_step_seconds_count", **labels) + 1
    assert clicks and _value(after, "recsite_training_lag_seconds_count", **labels) == \
        _value(before, "recsite_training_lag_seconds_count", **labels) + 1


@pytest.mark.django_db
def test_a_stats_tick_is_timed_and_the_queues_depth_is_read_from_the_broker(client, experiment):
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    broker.delete("training")
    broker.rpush("training", "a", "b", "c")
    try:
        before = _scrape(client)
        stats_tick(experiment_id=experiment.id)
        after = _scrape(client)
    finally:
        broker.delete("training")
    assert _value(after, "recsite_stats_tick_seconds_count", experiment=experiment.slug) == \
        _value(before, "recsite_stats_tick_seconds_count", experiment=experiment.slug) + 1
    assert _value(after, "recsite_queue_depth", queue="training") == 3


@pytest.mark.django_db
def test_metrics_are_closed_in_production_without_a_token_and_need_the_bearer_with_one(client):
    with override_settings(METRICS_TOKEN="", METRICS_PUBLIC=False):
        closed = client.get("/metrics")
    with override_settings(METRICS_TOKEN="s3cret-token", METRICS_PUBLIC=False):
        missing = client.get("/metrics")
        wrong = client.get("/metrics", HTTP_AUTHORIZATION="Bearer nope")
        right = client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-token")
    posted = client.post("/metrics")
    assert (closed.status_code, closed.json()["error"]["code"]) == (403, "metrics_closed")
    assert [r.status_code for r in (missing, wrong, right)] == [401, 401, 200]
    assert b"# TYPE recsite_queue_depth gauge" in right.content
    assert (posted.status_code, posted["Allow"]) == (405, "GET")


def test_files_of_dead_processes_are_pruned_and_live_ones_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    for name in (f"counter_{dead_pid}.db", f"histogram_{dead_pid}.db", f"counter_{os.getpid()}.db",
                 f"counter_{os.getppid()}.db", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert metrics_dir_prune(str(tmp_path)) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"counter_{os.getpid()}.db", f"counter_{os.getppid()}.db", "notes.txt"])


@pytest.mark.e2e
def test_one_scrape_of_a_web_process_covers_the_fast_path_and_the_other_processes(transactional_db):
    # gunicorn's two workers serve through the fast path (no Django middleware); the training step runs in this
    # test's own process, as a trainer would: one scrape of the web server shows both.
    catalogue_make(n=20)
    slug = experiment_make().slug
    world = world_make(seed=13)
    traffic_log(world, requests=20, k=5, seed=14)
    trained = {"experiment": world.arm.experiment.slug, "arm": world.arm.name, "status": "trained"}
    proc, url = live.start_gunicorn(workers=2)
    try:
        before = _samples(requests.get(f"{url}/metrics", timeout=30).text)
        with requests.Session() as session:
            for i in range(12):
                answer = session.post(f"{url}/api/v1/recommendations", json={"user_id": f"u{i}", "k": 3, "experiment": slug},
                                      timeout=30)
                assert answer.status_code == 200, answer.text
        training.arm_train(arm_id=world.arm.id, config=TrainingConfig(batch_rows=10_000, budget_s=60.0))
        after = _samples(requests.get(f"{url}/metrics", timeout=30).text)
    finally:
        proc.stop()
    ok = {"endpoint": "recommendations", "status": "200"}
    assert _value(after, "recsite_api_requests_total", **ok) - _value(before, "recsite_api_requests_total", **ok) == 12
    assert _value(after, "recsite_training_steps_total", **trained) - \
        _value(before, "recsite_training_steps_total", **trained) == 1


def test_json_logs_are_one_object_per_line_and_a_bad_format_is_refused():
    code = ("import django, logging; django.setup(); "
            "logging.getLogger('experiments.probe').warning('probe_event arm=%s n=%d', 'a', 3)")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "recsite.settings", "RECSITE_DEV": "1", "RECSITE_LOG_FORMAT": "json"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    (line,) = [ln for ln in done.stderr.splitlines() if "probe_event" in ln]
    record = json.loads(line)
    assert (record["level"], record["logger"], record["message"]) == ("WARNING", "experiments.probe",
                                                                      "probe_event arm=a n=3")
    assert record["time"] and record["pid"] > 0
    bad = subprocess.run([sys.executable, "-c", "import django; django.setup()"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, env={**env, "RECSITE_LOG_FORMAT": "xml"})
    assert bad.returncode != 0 and "RECSITE_LOG_FORMAT='xml'" in bad.stderr


@pytest.mark.e2e
def test_a_celery_worker_logs_json_lines_too(transactional_db):
    worker = live.start_worker(queues="default", pool="threads", env=live.live_env({"RECSITE_LOG_FORMAT": "json"}),
                               extra=("-c", "1"))
    try:
        live.wait_until(lambda: "ready." in worker.output(), timeout=90, what="the worker to start")
    finally:
        worker.stop()
    lines = [ln for ln in worker.log_path.read_text(errors="replace").splitlines() if ln.startswith("{")]
    ready = [json.loads(ln) for ln in lines if "ready." in ln]
    assert ready and ready[0]["level"] == "INFO" and ready[0]["logger"].startswith("celery")
    assert all(json.loads(ln)["message"] is not None for ln in lines)


@pytest.mark.django_db
def test_queue_depth_follows_the_trainers_queue_and_its_shards(client, monkeypatch):
    monkeypatch.setenv("RECSITE_TRAIN_QUEUE", "learners")
    monkeypatch.setenv("RECSITE_TRAIN_SHARDS", "2")
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    broker.delete("learners.1")
    broker.rpush("learners.1", "x", "y")
    try:
        after = _scrape(client)
    finally:
        broker.delete("learners.1")
    queues = {dict(labels)["queue"] for name, labels in after if name == "recsite_queue_depth"}
    assert queues == {"default", "learners.0", "learners.1"}
    assert _value(after, "recsite_queue_depth", queue="learners.1") == 2
