"""End to end in headless Chromium: live Daphne, a real Celery worker on ``default`` and beat ticking stats.

1. The analyst's dashboard renders the Plotly charts.
2. Clicks posted through the API change the CTR on the page, without a reload, within 2 s;
   when the socket drops (Daphne restarts) the page reconnects by itself and gets a fresh snapshot.
3. The analyst has no promote button, and the server refuses the action.
4. The admin promotes with a reason: the next recommendations all come from the winner,
   and the decision is on the audit page.

Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests
from django.db.models import Sum
from django.utils import timezone

from experiments.models import Arm, ArmUserStat, Experiment, Item
from experiments.services.demo import demo_items
from tests.experiments.stats_support import PASSWORD, make_login
from tests.support import live

pytestmark = [pytest.mark.e2e]

CHROMIUM = "/usr/bin/chromium"
SHOTS = live.ARTIFACTS / "dashboard"
SLUG = "e2e-arena"


def start_beat(tmp_path: Path, env: dict) -> live.LiveProcess:
    return live.LiveProcess(
        "celery-beat",
        [str(live.VENV_BIN / "celery"), "-A", "recsite", "beat", "-l", "INFO", "-s", str(tmp_path / "beat-schedule")],
        env,
    )


@pytest.fixture
def arena(transactional_db):
    experiment = Experiment.objects.create(
        slug=SLUG, name="E2E arena", salt="e2e-salt", status=Experiment.Status.RUNNING, started_at=timezone.now()
    )
    control = Arm.objects.create(experiment=experiment, name="control", kind="popularity", weight=1.0)
    Arm.objects.create(experiment=experiment, name="challenger", kind="popularity", weight=1.0)
    # Shown to nobody: ranks every served request and learns off-policy (services/shadow.py).
    Arm.objects.create(experiment=experiment, name="apprentice", kind="popularity", weight=0.0, status="shadow")
    experiment.control_arm = control
    experiment.save(update_fields=["control_arm"])
    Item.objects.bulk_create([Item(**row) for row in demo_items(n_items=40, seed=3)])
    make_login(username="analyst", promoter=False)
    make_login(username="admin", promoter=True)
    yield experiment
    # Torn down after the live processes: drop whatever connection they left, so the test database can go.
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


class Stack:
    """Daphne on a fixed port (so it can be restarted under an open page) + worker + beat."""

    def __init__(self, env: dict):
        self.env = env
        self.port = live.free_port()
        self.daphne, self.base = live.start_daphne(env=env, port=self.port)

    def restart_daphne(self, down_s: float) -> None:
        self.daphne.stop()
        time.sleep(down_s)  # the outage itself: the page must notice it and back off
        self.daphne, _ = live.start_daphne(env=self.env, port=self.port)


@pytest.fixture
def stack(arena, worker_factory, tmp_path):
    """Daphne + a default-queue worker + beat with only the stats tick due."""
    env = live.live_env({"RECSITE_TRAIN_INTERVAL_S": "3600", "RECSITE_CHECKPOINT_RETENTION_INTERVAL_S": "3600"})
    worker = worker_factory(queues="default", env=env)
    beat = start_beat(tmp_path, env)
    running = Stack(env)
    yield running
    running.daphne.stop()
    beat.stop()
    assert worker.alive(), worker.output()[-3000:]


@pytest.fixture
def browser(monkeypatch):
    # Playwright's sync API keeps an event loop on this thread; the test's own ORM reads are still synchronous.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium chromium-driver")
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        )
        yield chromium
        chromium.close()


JS_ERRORS: list[str] = []


def log_in(browser, base: str, username: str):
    context = browser.new_context(viewport={"width": 1500, "height": 1300})
    page = context.new_page()
    page.on("pageerror", lambda exc: JS_ERRORS.append(f"{username}: {exc}"))
    page.goto(f"{base}/accounts/login/?next=/dashboard/{SLUG}/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/dashboard/{SLUG}/")
    return page


def recommend(base: str, user_id: str, k: int = 4) -> dict:
    response = requests.post(f"{base}/api/v1/recommendations", json={"user_id": user_id, "k": k, "experiment": SLUG}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def ctr_cell(page, arm: str) -> str:
    return page.get_attribute(f'#arms-table tr[data-arm="{arm}"] td[data-field="ctr"]', "data-value") or ""


def impressions_shown(page, arm: str) -> str:
    return page.inner_text(f'#arms-table tr[data-arm="{arm}"] td[data-field="impressions"]')


def test_dashboard_live_updates_permissions_and_promotion(stack, browser):
    base = stack.base
    # Serving loads its models on the first request; traffic for both arms before the page opens.
    live.wait_until(lambda: requests.post(f"{base}/api/v1/recommendations", json={"user_id": "warm", "experiment": SLUG},
                                          timeout=30).status_code == 200, timeout=90, what="serving ready")
    served = [recommend(base, f"shopper-{i}") for i in range(16)]
    by_arm: dict[str, list[int]] = {}
    for response in served:
        by_arm.setdefault(response["arm"], []).extend(item["impression_id"] for item in response["items"])
    assert set(by_arm) == {"control", "challenger"}

    # 1. The analyst's dashboard renders the four Plotly charts from the live snapshot.
    analyst = log_in(browser, base, "analyst")
    analyst.evaluate("window.__noReload = 'still-here'")
    analyst.wait_for_selector("#ws-status[data-state=live]", timeout=15_000)
    for kind in ("ctr", "traffic", "p_best", "learning"):
        analyst.wait_for_selector(f"#chart-{kind}.js-plotly-plot .main-svg", timeout=15_000)
    stored = ArmUserStat.objects.filter(arm__experiment__slug=SLUG, arm__name="challenger").aggregate(n=Sum("impressions"))["n"]
    live.wait_until(lambda: impressions_shown(analyst, "challenger") == f"{stored:,}", timeout=10, what="traffic on the page")
    assert analyst.locator("#chart-ctr .scatterlayer .trace").count() >= 2
    # The shadow arm's live doubly robust estimate (interval, ESS) sits next to the live arms, updated by the ticks.
    analyst.wait_for_function(
        "() => { const td = document.querySelector('#arms-table tr[data-arm=\"apprentice\"] td[data-field=ctr] .sub');"
        " return td && /^shadow [0-9.]+% \\[[0-9.]+%, [0-9.]+%\\] DR · ESS [0-9,]+ v/.test(td.textContent); }",
        timeout=30_000,
    )
    assert analyst.inner_text('#arms-table tr[data-arm="apprentice"] td[data-field="name"] .sub').startswith("shadow")
    # Every metric has its table, the primary one first.
    analyst.wait_for_selector('[data-testid=metric-revenue_per_user] tr[data-arm="challenger"]', timeout=15_000)
    assert analyst.eval_on_selector_all("#metrics-tables .metric", "els => els.map(e => e.dataset.metric)") == [
        "ctr", "conversion_rate", "revenue_per_user"]
    assert analyst.inner_text("#metrics-tables .metric h3").endswith("(primary)")
    # The serving guardrail table counts each arm's requests from the web process (flushed to Redis every 5 s; the
    # warm-up requests count too).
    served_by = {arm: sum(r["arm"] == arm for r in served) for arm in ("control", "challenger")}
    analyst.wait_for_function(
        "(want) => Object.entries(want).every(([arm, n]) => { const td = document.querySelector("
        "`#serving-table tr[data-arm=\"${arm}\"] td[data-field=requests]`); "
        "return td && Number(td.textContent.replace(/,/g, '')) >= n; })",
        arg=served_by, timeout=30_000,
    )
    assert analyst.inner_text('#serving-table tr[data-arm="challenger"] td[data-field="breaches"]') == "none"
    assert analyst.inner_text('#serving-table tr[data-arm="challenger"] td[data-field="latency_p95"]').endswith(" ms")
    analyst.screenshot(path=str(SHOTS / "1-analyst-dashboard.png"), full_page=True)

    # 2. Clicks through the API move the CTR on the open page within 2 s, with no reload.
    before = ctr_cell(analyst, "challenger")
    clicked_at = time.monotonic()
    for impression_id in by_arm["challenger"][:3]:
        assert requests.post(f"{base}/api/v1/clicks", json={"impression_id": impression_id}, timeout=10).status_code == 201
    analyst.wait_for_function(
        "([arm, before]) => { const td = document.querySelector(`#arms-table tr[data-arm=\"${arm}\"] td[data-field=ctr]`);"
        " return td && td.dataset.value !== before && Number(td.dataset.value) > 0; }",
        arg=["challenger", before], timeout=2_000,
    )
    elapsed = time.monotonic() - clicked_at
    assert elapsed <= 2.0
    assert analyst.evaluate("window.__noReload") == "still-here"
    assert analyst.evaluate("window.recsiteDashboard.snapshots") == 1
    analyst.screenshot(path=str(SHOTS / "2-analyst-after-clicks.png"), full_page=True)

    # The socket drops (Daphne restarts): the page backs off, reconnects and gets a fresh snapshot.
    stack.restart_daphne(down_s=1.0)
    analyst.wait_for_function("window.recsiteDashboard.reconnects >= 1", timeout=10_000)
    analyst.wait_for_function("window.recsiteDashboard.snapshots === 2", timeout=30_000)
    analyst.wait_for_selector("#ws-status[data-state=live]", timeout=10_000)
    assert analyst.evaluate("window.__noReload") == "still-here"

    # 3. No promote button for the analyst, and the server refuses the action anyway.
    assert analyst.locator("a[data-action=promote]").count() == 0
    assert analyst.locator("a[data-action=pause]").count() == 0
    challenger_id = Arm.objects.get(experiment__slug=SLUG, name="challenger").id
    csrf = next(c["value"] for c in analyst.context.cookies() if c["name"] == "csrftoken")
    refused = analyst.request.post(
        f"{base}/api/v1/experiments/{SLUG}/promote",
        data={"arm": "challenger", "reason": "analyst tries"}, headers={"X-CSRFToken": csrf},
    )
    assert refused.status == 403 and refused.json()["error"]["code"] == "forbidden"
    assert analyst.request.get(f"{base}/dashboard/{SLUG}/arms/{challenger_id}/promote/").status == 403
    assert Experiment.objects.get(slug=SLUG).status == "running"

    # 4. The admin promotes with a reason, through the confirmation page.
    admin = log_in(browser, base, "admin")
    admin.wait_for_selector('#arms-table tr[data-arm="challenger"] a[data-action=promote]', timeout=15_000)
    admin.click('#arms-table tr[data-arm="challenger"] a[data-action=promote]')
    admin.wait_for_selector("[data-testid=evidence]")
    assert admin.locator("[data-testid=weak-evidence]").count() == 1  # a handful of clicks is weak evidence
    admin.fill("#id_reason", "challenger wins the e2e run")
    admin.screenshot(path=str(SHOTS / "3-admin-confirm.png"), full_page=True)
    admin.click("[data-testid=confirm]")
    admin.wait_for_url(f"{base}/dashboard/{SLUG}/")
    assert Experiment.objects.get(slug=SLUG).winner_id == challenger_id

    # Serving re-reads its experiment state every 0.25 s; after that, every bucket goes to the winner.
    live.wait_until(lambda: recommend(base, "probe-after-promotion")["arm"] == "challenger", timeout=2, what="winner served")
    arms_after = {recommend(base, f"new-shopper-{i}")["arm"] for i in range(20)}
    arms_after |= {recommend(base, f"shopper-{i}")["arm"] for i in range(16)}
    assert arms_after == {"challenger"}
    admin.wait_for_selector("#exp-status:has-text('winner challenger')", timeout=10_000)
    admin.screenshot(path=str(SHOTS / "4-admin-after-promotion.png"), full_page=True)

    admin.goto(f"{base}/dashboard/{SLUG}/audit/")
    row = admin.locator("[data-testid=audit-table] tbody tr").first
    assert row.locator("td.action").inner_text() == "promote"
    assert row.locator("td.reason").inner_text() == "challenger wins the e2e run"
    assert "admin" in row.inner_text()
    admin.screenshot(path=str(SHOTS / "5-audit.png"), full_page=True)
    assert JS_ERRORS == []
