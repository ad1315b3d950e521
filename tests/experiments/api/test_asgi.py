"""The thin ASGI path (``experiments.api.asgi``) on a live Daphne: same answers as through Django."""

import pytest
import requests

from experiments.api.openapi import openapi_document
from experiments.models import ArmUserStat, Click
from tests.support import live
from tests.support.serving import catalogue_make, experiment_make, schema_check

pytestmark = [pytest.mark.e2e]


@pytest.fixture
def fast_server(transactional_db):
    catalogue_make(n=20)
    experiment_make()
    port = live.free_port()
    proc = live.LiveProcess("daphne-fast", [str(live.VENV_BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port),
                                            "recsite.asgi:fast_application"],
                            live.live_env({"RECSITE_HEALTH_FLUSH_S": "0.5"}))
    url = f"http://127.0.0.1:{port}"
    live.wait_until(lambda: requests.get(f"{url}/healthz", timeout=2).status_code == 200, timeout=60,
                    what="daphne on the fast path")
    yield url
    proc.stop()


def test_recommendations_and_clicks_answer_as_through_django(fast_server):
    served = requests.post(f"{fast_server}/api/v1/recommendations", json={"user_id": "ann", "k": 3}, timeout=60)
    schema_check(openapi_document(), "Recommendation", served.json())
    clicked = requests.post(f"{fast_server}/api/v1/clicks", json={"impression_id": served.json()["items"][0]["impression_id"]},
                            timeout=30)
    assert (served.status_code, clicked.status_code, Click.objects.count()) == (200, 201, 1)
    assert ArmUserStat.objects.get().clicks == 1


def test_the_server_s_flusher_adds_its_per_arm_counts_to_redis(fast_server):
    from experiments.models import Arm, Experiment
    from experiments.selectors.arm_health import arms_health

    for i in range(12):
        assert requests.post(f"{fast_server}/api/v1/recommendations", json={"user_id": f"u{i}", "k": 2},
                             timeout=60).status_code == 200
    experiment = Experiment.objects.get()
    arms = list(Arm.objects.filter(experiment=experiment))

    def counted():
        health = arms_health(experiment=experiment, arms=arms)
        return health if sum(h.requests for h in health.values()) == 12 else None

    health = live.wait_until(counted, timeout=30, what="the serving process's counts in Redis")
    assert sum(h.shown for h in health.values()) == 24 and all(h.errors == 0 for h in health.values())


def test_security_headers_are_kept(fast_server):
    response = requests.get(f"{fast_server}/api/v1/ping", timeout=30)
    assert (response.headers["X-Content-Type-Options"], response.headers["X-Frame-Options"]) == ("nosniff", "DENY")


def test_errors_keep_their_shape_and_status(fast_server):
    oversized = requests.post(f"{fast_server}/api/v1/recommendations", data=b'{"user_id": "' + b"x" * 70_000 + b'"}',
                              timeout=30)
    invalid = requests.post(f"{fast_server}/api/v1/clicks", data=b"{", timeout=30)
    wrong_method = requests.get(f"{fast_server}/api/v1/clicks", timeout=30)
    statuses = [(r.status_code, r.json()["error"]["code"]) for r in (oversized, invalid, wrong_method)]
    assert statuses == [(413, "body_too_large"), (400, "invalid_json"), (405, "method_not_allowed")]


def test_a_disallowed_host_is_refused(fast_server):
    response = requests.post(f"{fast_server}/api/v1/recommendations", json={"user_id": "u"},
                             headers={"Host": "evil.example"}, timeout=30)
    assert (response.status_code, response.json()["error"]["code"]) == (400, "bad_host")


def test_other_paths_go_through_django(fast_server):
    response = requests.post(f"{fast_server}/api/v1/items", json={"items": [{"item_id": "new"}]}, timeout=30)
    assert (response.status_code, response.json()["created"]) == (200, 1)
