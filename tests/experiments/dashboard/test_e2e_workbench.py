"""End to end in headless Chromium at 1,280 px: the operator's whole story, from the browser only.

log in → create an experiment (a bad param first: the registry's message next to the field) → add an arm and a
candidate → start → simulated shoppers (``manage.py simulate`` over HTTP) → evaluate the candidate offline (a real
Celery job on ``default``, its progress bar fed by the WebSocket) → launch it → pause one arm → promote → conclude →
the audit page, with the webhook deliveries a local receiver got. Live Daphne, a default-queue worker and beat (stats ticks). Keyboard focus is visible and the live
table fits the window. One screenshot per step in test-artifacts/dashboard/workbench-*.png.
"""

from __future__ import annotations

import pytest
import requests

from experiments.models import Arm, Decision, Experiment, Item, OfflineEstimate
from experiments.services.demo import demo_items
from tests.experiments.dashboard.test_e2e_browser import CHROMIUM, PASSWORD, SHOTS, start_beat
from tests.experiments.dashboard.test_e2e_integrity import browser  # noqa: F401  (fixture)
from tests.experiments.services.test_webhooks import Receiver
from tests.experiments.stats_support import make_login
from tests.support import live

pytestmark = [pytest.mark.e2e]

SLUG = "e2e-workbench"
WIDTH = 1280
assert CHROMIUM


@pytest.fixture
def people(transactional_db):
    Item.objects.bulk_create([Item(**row) for row in demo_items(n_items=30, seed=11)])
    make_login(username="admin", promoter=True)
    yield
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()")


@pytest.fixture
def stack(people, worker_factory, tmp_path):
    env = live.live_env({"RECSITE_TRAIN_INTERVAL_S": "3600", "RECSITE_CHECKPOINT_RETENTION_INTERVAL_S": "3600",
                         "RECSITE_POLICY_TICK_S": "3600", "RECSITE_GUARDRAIL_INTERVAL_S": "3600"})
    worker = worker_factory(queues="default", env=env)
    beat = start_beat(tmp_path, env)
    daphne, base = live.start_daphne(env=env)
    yield base, env
    daphne.stop()
    beat.stop()
    assert worker.alive(), worker.output()[-3000:]


def shot(page, step: int, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"workbench-{step:02d}-{name}.png"), full_page=True)


def confirm(page, base: str, reason: str | None = None) -> None:
    if reason is not None:
        page.fill("#id_reason", reason)
    page.click("[data-testid=confirm]")
    page.wait_for_url(f"{base}/dashboard/{SLUG}/")


def widths(page) -> dict:
    """The page's and the live table's widths, and whatever sticks out past the window."""
    return page.evaluate(f"""() => ({{page: document.documentElement.scrollWidth,
        table: Math.ceil(document.getElementById('arms-table').getBoundingClientRect().right),
        over: [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > {WIDTH})
              .slice(0, 5).map(e => e.tagName + '.' + e.className + '#' + e.id)}})""")


def test_the_operator_runs_an_experiment_from_the_browser_only(stack, browser):  # noqa: F811
    base, env = stack
    SHOTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": WIDTH, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    # 1. Log in: the empty list offers "New experiment", not a command line.
    page.goto(f"{base}/accounts/login/?next=/dashboard/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/dashboard/")
    assert "seed_demo" not in page.content()
    shot(page, 1, "logged-in")

    # 2. Create: a bad param shows the registry's own message next to the field; then the real thing.
    page.click("[data-testid=new-experiment]")
    page.fill("#id_slug", SLUG)
    page.fill("#id_name", "Workbench story")
    page.fill("#id_salt", "story-salt")
    page.fill("#id_arm_name", "control")
    page.select_option("#id_kind", "ftrl_logreg")
    assert page.is_visible("[data-testid=params-ftrl_logreg]") and not page.is_visible("[data-testid=params-popularity]")
    page.select_option("#id_kind", "popularity")
    page.fill("#id_param-popularity-epsilon", "1.5")
    page.click("[data-testid=confirm]")
    error = page.locator("[data-testid=param-error][data-param=epsilon]")
    assert error.inner_text() == "param 'epsilon' of kind 'popularity' must be <= 1.0, got 1.5"
    shot(page, 2, "create-bad-param")
    page.fill("#id_param-popularity-epsilon", "0.5")
    page.click("[data-testid=confirm]")
    page.wait_for_url(f"{base}/dashboard/{SLUG}/")
    experiment = Experiment.objects.get(slug=SLUG)
    assert (experiment.status, experiment.salt) == ("draft", "story-salt")
    shot(page, 3, "created")

    # 3. Add an arm and a weight-0 candidate from the kind picker.
    for name, epsilon, weight in (("challenger", "0.5", "1"), ("candidate", "1", "0")):
        page.click("[data-testid=add-arm]")
        page.fill("#id_arm_name", name)
        page.select_option("#id_kind", "popularity")
        page.fill("#id_param-popularity-epsilon", epsilon)
        page.fill("#id_weight", weight)
        page.click("[data-testid=confirm]")
        page.wait_for_url(f"{base}/dashboard/{SLUG}/")
    assert page.locator("[data-testid=candidate-row][data-candidate=candidate]").count() == 1
    shot(page, 4, "arms-and-candidate")

    # The experiment's webhook goes to a local receiver (the real worker delivers it).
    hook = Receiver()
    page.click("[data-testid=webhook]")
    page.fill("#id_url", hook.url)
    page.fill("#id_secret", "story-secret-0123456789")
    page.click("[data-testid=confirm]")
    page.wait_for_selector("[data-testid=webhook-current]")
    page.goto(f"{base}/dashboard/{SLUG}/")

    # 4. Start.
    page.click("[data-testid=start]")
    confirm(page, base, "the story begins")
    assert Experiment.objects.get(slug=SLUG).status == "running"
    shot(page, 5, "started")

    # 5. Simulated shoppers over HTTP; the live table fills in and fits 1,280 px.
    live.wait_until(lambda: requests.post(f"{base}/api/v1/recommendations", json={"user_id": "warm", "experiment": SLUG},
                                          timeout=30).status_code == 200, timeout=90, what="serving ready")
    run = live.manage("simulate", "--base-url", base, "--users", "80", "--rate", "0", "--duration", "6", "--items", "0",
                      "--experiment", SLUG, "--k", "4", "--concurrency", "4", "--no-progress", env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    page.wait_for_selector("#ws-status[data-state=live]", timeout=15_000)
    page.wait_for_function("() => { const td = document.querySelector('#arms-table tr[data-arm=challenger] "
                           "td[data-field=impressions]'); return td && Number(td.textContent.replace(/,/g, '')) > 50; }",
                           timeout=20_000)
    shot(page, 6, "shoppers-live-table")
    size = widths(page)
    assert size["page"] <= WIDTH and size["table"] <= WIDTH, size
    # Keyboard: tabbing reaches the operator's buttons, and the focused one shows a visible outline.
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.dataset.testid === 'stop'"):
            break
    assert page.evaluate("() => document.activeElement.dataset.testid") == "stop"
    assert page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle") == "solid"
    shot(page, 6, "shoppers-live-table")

    # 6. Evaluate the candidate offline: a Celery job whose progress bar moves over the WebSocket.
    page.click("[data-candidate=candidate] button[data-action=evaluate]")
    page.wait_for_selector("[data-candidate=candidate] .progress:not([hidden])", timeout=10_000)
    shot(page, 7, "evaluating")
    page.wait_for_selector("[data-candidate=candidate] td[data-field=ess]:not(:has-text('—'))", timeout=120_000)
    estimate = OfflineEstimate.objects.get(arm__name="candidate")
    row = page.locator("[data-candidate=candidate]")
    assert row.locator("td[data-field=dr]").count() == 1 and not estimate.result["insufficient_overlap"]
    assert 0.0 <= float(row.locator("td[data-field=dr]").get_attribute("data-value")) <= 1.0
    assert row.locator("td[data-field=ess]").inner_text() == f"{round(estimate.effective_sample_size):,}"
    shot(page, 8, "evaluated")

    # 7. Launch: the candidate gets traffic (an audited re-weight).
    row.locator("a[data-action=launch]").click()
    page.wait_for_selector("[data-testid=weights-form]")
    shot(page, 9, "launch")
    confirm(page, base)
    assert Arm.objects.get(experiment__slug=SLUG, name="candidate").weight == 1.0
    page.wait_for_selector("#arms-table tr[data-arm=candidate] td[data-field=weight]:not(:has-text('0%'))",
                           timeout=15_000)
    shot(page, 10, "launched")

    # 8. Pause one arm.
    page.click("#arms-table tr[data-arm=challenger] a[data-action=pause]")
    confirm(page, base, "challenger looks weak")
    assert Arm.objects.get(experiment__slug=SLUG, name="challenger").status == "paused"
    shot(page, 11, "paused")

    # 9. Promote the candidate.
    page.wait_for_selector("#arms-table tr[data-arm=candidate] a[data-action=promote]", timeout=15_000)
    page.click("#arms-table tr[data-arm=candidate] a[data-action=promote]")
    page.wait_for_selector("[data-testid=evidence]")
    shot(page, 12, "promote-confirm")
    confirm(page, base, "the candidate ships")
    assert Experiment.objects.get(slug=SLUG).winner.name == "candidate"
    shot(page, 13, "promoted")

    # 10. Conclude with a written conclusion, kept with the results.
    page.click("[data-testid=conclude]")
    page.fill("#id_conclusion", "The uniform candidate was evaluated offline, launched and promoted.")
    page.click("[data-testid=confirm]")
    page.wait_for_url(f"{base}/dashboard/{SLUG}/")
    assert "evaluated offline, launched and promoted" in page.inner_text("[data-testid=conclusion]")
    shot(page, 14, "concluded")

    # 11. The audit page holds every step, by the admin.
    page.goto(f"{base}/dashboard/{SLUG}/audit/")
    actions = page.locator("[data-testid=audit-table] tbody tr td.action").all_inner_texts()
    assert actions[::-1] == ["create", "arm_add", "arm_add", "webhook", "start", "reweight", "pause", "promote",
                             "conclude"]
    assert set(Decision.objects.filter(experiment__slug=SLUG).values_list("user__username", flat=True)) == {"admin"}
    live.wait_until(lambda: {r["headers"]["X-Recsite-Event"] for r in hook.requests} >= {"promotion", "conclusion"},
                    timeout=30, what="webhooks delivered by the worker")
    page.reload()
    assert page.locator("[data-testid=deliveries-table] tr[data-state=delivered]").count() >= 2
    shot(page, 15, "audit")
    hook.close()
    assert errors == []
