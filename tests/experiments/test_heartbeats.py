"""A missing part is visible: trainer, light worker and beat check in; /healthz and the dashboard name the silent ones."""

import threading
import uuid

import pytest

from experiments.heartbeats import PARTS, part_checkin, parts_missing
from tests.support import live

FAST = {"RECSITE_CHECKIN_INTERVAL_S": "0.5", "RECSITE_CHECKIN_STALE_S": "2"}


@pytest.fixture
def checkins(settings):
    """A private key space for check-ins (as a separate Channels prefix), with fast check-ins for child processes."""
    layers = {**settings.CHANNEL_LAYERS["default"]}
    layers["CONFIG"] = {**layers["CONFIG"], "prefix": f"checkin-test-{uuid.uuid4().hex[:8]}"}
    settings.CHANNEL_LAYERS = {"default": layers}
    settings.RECSITE = {**settings.RECSITE, "CHECKIN_INTERVAL_S": 0.5, "CHECKIN_STALE_S": 2.0}


@pytest.mark.django_db
def test_healthz_is_degraded_but_200_and_names_every_part_that_has_not_checked_in(client, checkins):
    nothing = client.get("/healthz")
    part_checkin(part="trainer")
    part_checkin(part="beat")
    one_missing = client.get("/healthz")

    assert (nothing.status_code, nothing.json()["status"], nothing.json()["missing"]) == (200, "degraded", list(PARTS))
    assert one_missing.status_code == 200
    assert one_missing.json()["missing"] == ["light worker"]
    assert one_missing.json()["parts"] == {"trainer": "ok", "light worker": "missing", "beat": "ok"}
    assert one_missing.json()["message"] == "not checked in recently: light worker"


@pytest.mark.django_db
def test_healthz_is_ok_when_every_part_has_checked_in(client, checkins):
    for part in PARTS:
        part_checkin(part=part)

    body = client.get("/healthz").json()

    assert body == {"status": "ok", "checks": {"database": "ok", "redis": "ok"},
                    "parts": {"trainer": "ok", "light worker": "ok", "beat": "ok"}}


def test_a_check_in_expires(checkins):
    part_checkin(part="trainer")
    assert "trainer" not in parts_missing()
    live.wait_until(lambda: "trainer" in parts_missing(), timeout=5, what="the check-in to expire")


@pytest.mark.django_db
def test_the_dashboard_banner_names_the_missing_parts_and_hides_when_none_is(experiment, login, checkins):
    client = login("analyst", promoter=False)
    part_checkin(part="trainer")
    degraded = client.get("/dashboard/homepage/").content.decode()
    for part in PARTS:
        part_checkin(part=part)
    healthy = client.get("/dashboard/homepage/").content.decode()

    banner = degraded.split('data-testid="stack-banner"', 1)[1].split("</div>", 1)[0]
    assert 'role="alert">' in banner  # shown: no "hidden" before the tag closes
    assert '<span data-testid="stack-missing">light worker, beat</span>' in banner
    assert "nothing is dispatched for training" in banner
    assert 'data-testid="stack-banner" role="alert" hidden>' in healthy


def _wait_part(part: str, present: bool, timeout: float) -> None:
    live.wait_until(lambda: (part not in parts_missing()) == present, timeout=timeout, interval=0.1,
                    what=f"{part} {'checked in' if present else 'missing'}")


@pytest.mark.e2e
def test_a_real_trainer_checks_in_and_is_missing_soon_after_it_stops(transactional_db, checkins):
    trainer = live.start_worker(queues="training", pool="solo", env=live.live_env(FAST))
    try:
        _wait_part("trainer", present=True, timeout=90)
        assert parts_missing() == ["light worker", "beat"]
    finally:
        trainer.stop()
    _wait_part("trainer", present=False, timeout=5)


@pytest.mark.e2e
def test_a_real_light_worker_checks_in_and_is_missing_soon_after_it_stops(transactional_db, checkins):
    worker = live.start_worker(queues="default", pool="threads", env=live.live_env(FAST), extra=("-c", "2"))
    try:
        _wait_part("light worker", present=True, timeout=90)
        assert parts_missing() == ["trainer", "beat"]
    finally:
        worker.stop()
    _wait_part("light worker", present=False, timeout=5)


@pytest.mark.e2e
def test_a_real_beat_checks_in_and_is_missing_soon_after_it_stops(transactional_db, checkins, tmp_path):
    beat = live.start_beat(env=live.live_env(FAST), schedule=tmp_path / "beat-schedule")
    try:
        _wait_part("beat", present=True, timeout=60)
        assert parts_missing() == ["trainer", "light worker"]
    finally:
        beat.stop()
    _wait_part("beat", present=False, timeout=5)


@pytest.mark.e2e
def test_the_open_dashboard_banner_follows_the_parts_live_in_chromium(transactional_db, checkins, monkeypatch):
    from pathlib import Path

    from playwright.sync_api import sync_playwright

    from tests.experiments.dashboard.test_e2e_browser import CHROMIUM
    from tests.experiments.stats_support import PASSWORD, make_login
    from tests.support.serving import catalogue_make, experiment_make

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: make browser"
    catalogue_make(n=5)
    experiment_make(slug="banner")
    make_login(username="analyst", promoter=False)
    alive = {"trainer"}  # the parts "running": checked in every 0.5 s, as their processes would
    stop = threading.Event()

    def check_in() -> None:
        while not stop.wait(0.5):
            for part in list(alive):
                part_checkin(part=part)

    beating = threading.Thread(target=check_in, daemon=True)
    beating.start()
    daphne, url = live.start_daphne(env=live.live_env(FAST))
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
            page = browser.new_page()
            page.goto(f"{url}/accounts/login/?next=/dashboard/banner/")
            page.fill("#id_username", "analyst")
            page.fill("#id_password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(f"{url}/dashboard/banner/")
            shown = page.inner_text("[data-testid=stack-missing]")
            alive.update(PARTS)
            page.wait_for_selector("[data-testid=stack-banner]", state="hidden", timeout=15_000)
            alive.clear()
            page.wait_for_selector("[data-testid=stack-banner]", state="visible", timeout=15_000)
            again = page.inner_text("[data-testid=stack-missing]")
            why = page.inner_text("[data-testid=stack-why]")
            browser.close()
    finally:
        stop.set()
        beating.join()
        daphne.stop()
    assert shown == "light worker, beat"
    assert again == "trainer, light worker, beat"
    assert "nothing is dispatched for training" in why
