"""End to end: two live Daphne processes, a real Celery worker on ``default``, beat, and headless Chromium.

1. An operator launches an experiment through the staff JSON API with a bearer token (no session, no CSRF).
2. Sticky assignment across processes: users first served by one Daphne come back on the other through a
   re-weight, a pause (only the paused arm's users move, to the same arm on both processes) and a resume.
3. The admin's dashboard shows the traffic policy and marks each change of the split on the traffic chart.
4. A guardrail acts on its own (beat): an arm whose updates diverge is paused, and the open page shows the banner.
5. The admin rolls a model back to a chosen version from the dashboard; the rollback is audited.

Screenshots go to test-artifacts/dashboard/.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from experiments.models import Arm, Decision, Impression, Item, ModelCheckpoint
from experiments.services.checkpoints import state_compact
from experiments.services.demo import demo_items
from experiments.services.tokens import api_token_issue
from experiments.serving.arms import arm_build
from tests.experiments.dashboard.test_e2e_browser import CHROMIUM, PASSWORD, SHOTS, start_beat
from tests.experiments.stats_support import make_login
from tests.support import live

pytestmark = [pytest.mark.e2e]

SLUG = "e2e-integrity"
USERS = [f"regular-{i}" for i in range(60)]


@pytest.fixture
def token(transactional_db):
    Item.objects.bulk_create([Item(**row) for row in demo_items(n_items=30, seed=5)])
    yield api_token_issue(user=make_login(username="admin", promoter=True), name="e2e")[1]
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()")


@pytest.fixture
def stack(token, worker_factory, tmp_path):
    env = live.live_env({"RECSITE_TRAIN_INTERVAL_S": "3600", "RECSITE_CHECKPOINT_RETENTION_INTERVAL_S": "3600",
                         "RECSITE_POLICY_TICK_S": "3600", "RECSITE_GUARDRAIL_INTERVAL_S": "1"})
    worker = worker_factory(queues="default", env=env)
    beat = start_beat(tmp_path, env)
    first, url_a = live.start_daphne(env=env)
    second, url_b = live.start_daphne(env=env)
    yield url_a, url_b
    first.stop()
    second.stop()
    beat.stop()
    assert worker.alive(), worker.output()[-3000:]


@pytest.fixture
def browser(monkeypatch):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium chromium-driver")
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        # Inside Playwright's loop the ORM runs in another async context, whose connection an earlier test's teardown
        # may have terminated: start this test's queries on fresh ones.
        from django.db import connections

        connections.close_all()
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
        yield chromium
        chromium.close()


def operator(base: str, token: str, path: str, body: dict | None = None, status: int = 200) -> dict:
    response = requests.post(f"{base}{path}", json=body or {}, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert response.status_code == status, response.text
    return response.json()


def serve(base: str, users) -> dict[str, str]:
    out = {}
    for user in users:
        response = requests.post(f"{base}/api/v1/recommendations", json={"user_id": user, "k": 2, "experiment": SLUG},
                                 timeout=30)
        assert response.status_code == 200, response.text
        out[user] = response.json()["arm"]
    return out


def sees_epoch(base: str, epoch: int, probe: str) -> bool:
    """The process behind ``base`` serves with the snapshot of this allocation epoch (read off a probe's impressions)."""
    request_id = requests.post(f"{base}/api/v1/recommendations", json={"user_id": probe, "k": 1, "experiment": SLUG},
                               timeout=30).json()["request_id"]
    return Impression.objects.filter(request_id=request_id, epoch=epoch).exists()


def both_see(urls, epoch: int) -> None:
    for i, base in enumerate(urls):
        live.wait_until(lambda b=base, i=i: sees_epoch(b, epoch, f"probe-{epoch}-{i}-{len(USERS)}"), timeout=10,
                        interval=0.1, what=f"{base} serving epoch {epoch}")


def moved(before: dict, after: dict) -> set[str]:
    return {u for u in before if before[u] != after[u]}


def test_sticky_assignment_across_processes_policy_markers_guardrail_banner_and_model_rollback(stack, token, browser):
    url_a, url_b = stack
    arms = [{"name": "control", "kind": "popularity"}, {"name": "challenger", "kind": "popularity"},
            {"name": "third", "kind": "popularity"}]
    created = requests.post(f"{url_a}/api/v1/experiments", json={"slug": SLUG, "name": "Integrity", "arms": arms},
                            headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert created.status_code == 201, created.text
    operator(url_a, token, f"/api/v1/experiments/{SLUG}/start", {"reason": "launched from CI"})
    for base in (url_a, url_b):  # each process sees the started experiment on its own poll
        live.wait_until(lambda b=base: requests.post(f"{b}/api/v1/recommendations",
                                                     json={"user_id": "warm", "experiment": SLUG},
                                                     timeout=30).status_code == 200, timeout=90, what="serving ready")

    # 2. First seen on A, back on B: the same arms. Then a re-weight, a pause and a resume.
    first = serve(url_a, USERS)
    assert set(first.values()) == {"control", "challenger", "third"}
    assert serve(url_b, USERS) == first
    operator(url_b, token, f"/api/v1/experiments/{SLUG}/weights", {"weights": {"challenger": 3}, "reason": "ramp"})
    both_see((url_a, url_b), 1)
    assert serve(url_b, USERS) == first  # a re-weight moves nobody
    operator(url_a, token, f"/api/v1/experiments/{SLUG}/arms/third/pause", {"reason": "looks off"})
    both_see((url_a, url_b), 2)
    half = len(USERS) // 2
    paused = {**serve(url_a, USERS[:half]), **serve(url_b, USERS[half:])}
    assert moved(first, paused) == {u for u, arm in first.items() if arm == "third"}
    assert {**serve(url_b, USERS[:half]), **serve(url_a, USERS[half:])} == paused  # the same arm on both processes
    operator(url_b, token, f"/api/v1/experiments/{SLUG}/arms/third/resume")
    both_see((url_a, url_b), 3)
    assert serve(url_a, USERS) == paused  # a resume moves nobody

    # 3. The dashboard shows the policy and marks each change on the traffic chart.
    context = browser.new_context(viewport={"width": 1500, "height": 1400})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{url_a}/accounts/login/?next=/dashboard/{SLUG}/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{url_a}/dashboard/{SLUG}/")
    page.wait_for_selector("#ws-status[data-state=live]", timeout=15_000)
    page.wait_for_selector("#policy:has-text('fixed weights')", timeout=15_000)
    page.wait_for_function(
        "() => [...document.querySelectorAll('#chart-traffic .annotation-text')].map(e => e.textContent).join('|')"
        " === 'P1 weights|P2 pause|P3 resume'", timeout=15_000)
    assert page.locator("#changes li").count() == 3
    page.screenshot(path=str(SHOTS / "integrity-1-policy-and-markers.png"), full_page=True)

    # 4. A guardrail pauses a diverging arm by itself; the open page shows the banner, no reload.
    challenger = Arm.objects.get(experiment__slug=SLUG, name="challenger")
    states = {v: state_compact(arm_build(kind="popularity", params={"prior_alpha": float(v)}, arm_id=challenger.id)
                               .to_bytes()) for v in (1, 2, 3, 4)}
    ModelCheckpoint.objects.create(arm=challenger, version=1, state=states[1], metrics={"accepted": True, "n": 300})
    for v in (2, 3, 4):
        ModelCheckpoint.objects.create(arm=challenger, version=v, state=states[v], metrics={
            "accepted": False, "reject_reason": f"non-finite loss: nan in batch {v}", "n": 300})
    page.wait_for_selector("#banners li[data-code=guardrail]:has-text('challenger')", timeout=15_000)
    decision = Decision.objects.get(action="guardrail_pause")
    assert (decision.arm_id, decision.user, decision.stats_snapshot["guardrail"]["rule"]) == (
        challenger.id, None, "diverging_updates")
    assert Arm.objects.get(pk=challenger.pk).status == "paused"
    both_see((url_a, url_b), 4)
    assert "challenger" not in set(serve(url_b, [f"after-guardrail-{i}" for i in range(12)]).values())
    page.screenshot(path=str(SHOTS / "integrity-2-guardrail-banner.png"), full_page=True)

    # 5. The admin rolls the challenger's model back to version 1 from the dashboard.
    page.goto(f"{url_a}/dashboard/{SLUG}/arms/{challenger.id}/model/")
    page.check("input[name=version][value='1']")
    page.fill("#id_reason", "the refused versions never trained; start again from v1")
    page.screenshot(path=str(SHOTS / "integrity-3-model-versions.png"), full_page=True)
    page.click("[data-testid=confirm]")
    page.wait_for_url(f"{url_a}/dashboard/{SLUG}/")
    head = ModelCheckpoint.objects.filter(arm=challenger).order_by("-version").first()
    assert (head.version, head.metrics["rollback_to"], bytes(head.state)) == (5, 1, states[1])
    rollback = Decision.objects.get(action="checkpoint_rollback")
    assert (rollback.user.username, rollback.previous_state["version"]) == ("admin", 4)
    assert errors == []
