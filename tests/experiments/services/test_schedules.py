"""Schedules (services/schedules.py): scheduled start and stop, auto-stop on a decided test or the planned size,
each an audited decision by the system; the staff page sets them; beat runs the tick."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from experiments.errors import ApplicationError
from experiments.models import Decision, Experiment, ExperimentSchedule
from experiments.services import lifecycle, schedules
from experiments.services import stats_tick as tick_services
from tests.experiments.stats_support import (  # noqa: F401  (fast_passwords: autouse)
    add_rollup,
    fast_passwords,
    make_experiment,
    make_login,
    random_counts,
)

pytestmark = pytest.mark.django_db

ARMS = [lifecycle.ArmSpec("control", "popularity"), lifecycle.ArmSpec("challenger", "popularity")]
T0 = datetime(2026, 12, 24, 8, 0, tzinfo=UTC)


@pytest.fixture
def boss():
    return make_login(username="boss", promoter=True)


def _set(experiment, boss, **kw) -> Decision:
    return schedules.schedule_set(experiment=experiment, spec=schedules.ScheduleSpec(**kw), user=boss, reason="plan")


def test_a_draft_starts_at_its_time_and_stops_at_its_stop_time_as_system_decisions(boss):
    experiment = lifecycle.experiment_create(slug="xmas", arms=ARMS, user=boss)
    set_decision = _set(experiment, boss, start_at=T0, stop_at=T0 + timedelta(hours=2))
    assert set_decision.action == "schedule" and set_decision.stats_snapshot["schedule"]["start_at"] == T0.isoformat()

    assert schedules.schedules_apply(now=T0 - timedelta(seconds=1)) == []
    (started,) = schedules.schedules_apply(now=T0)
    assert schedules.schedules_apply(now=T0 + timedelta(minutes=1)) == []  # nothing twice
    (stopped,) = schedules.schedules_apply(now=T0 + timedelta(hours=2))

    experiment.refresh_from_db()
    assert experiment.status == "stopped" and experiment.winner_id is None
    assert (started.action, started.user, started.reason) == ("start", None, f"Scheduled start ({T0.isoformat()}).")
    assert (stopped.action, stopped.user, stopped.arm.name) == ("stop", None, "control")
    assert stopped.stats_snapshot["schedule"] == {"rule": "stop_at"}
    assert list(Decision.objects.filter(experiment=experiment).order_by("id").values_list("action", flat=True)) == [
        "create", "schedule", "start", "stop"]


def test_a_start_time_already_past_its_stop_time_never_starts(boss):
    experiment = lifecycle.experiment_create(slug="late", arms=ARMS, user=boss)
    _set(experiment, boss, start_at=T0, stop_at=T0 + timedelta(hours=1))
    assert schedules.schedules_apply(now=T0 + timedelta(hours=3)) == []
    experiment.refresh_from_db()
    assert experiment.status == "draft"


def test_auto_stop_when_the_always_valid_test_decides(boss):
    experiment, (control, treat) = make_experiment(slug="decide")
    _set(experiment, boss, auto_stop="decided")
    for arm, seed in ((control, 1), (treat, 2)):  # the same 10 % CTR: nothing to decide
        add_rollup(arm=arm, **dict(zip(("impressions", "clicks"), random_counts(seed=seed, users=150, ctr=0.1),
                                       strict=True)))
    tick_services.stats_tick(experiment_id=experiment.id)
    assert schedules.schedules_apply() == []
    for arm, seed, ctr in ((control, 3, 0.1), (treat, 4, 0.3)):  # then the challenger clearly better
        add_rollup(arm=arm, prefix="more", **dict(zip(("impressions", "clicks"),
                                                      random_counts(seed=seed, users=300, ctr=ctr), strict=True)))
    tick_services.stats_tick(experiment_id=experiment.id)

    (stopped,) = schedules.schedules_apply()
    experiment.refresh_from_db()
    assert experiment.status == "stopped"
    assert stopped.reason.startswith("Auto-stop: the always-valid test decided for treat (always-valid p ")
    assert stopped.stats_snapshot["schedule"]["rule"] == "decided" and "treat" in stopped.stats_snapshot["schedule"]["arms"]


def test_auto_stop_at_the_planned_sample_size(boss):
    experiment, (control, treat) = make_experiment(slug="planned")
    add_rollup(arm=control, impressions=[10] * 100, clicks=[1] * 100)
    add_rollup(arm=treat, impressions=[10] * 100, clicks=[1] * 100)
    tick_services.stats_tick(experiment_id=experiment.id)
    _set(experiment, boss, auto_stop="planned", planned_mde=0.2, planned_alpha=0.05, planned_power=0.8)
    assert schedules.schedules_apply() == []  # 1,000 impressions per arm: short of the plan for +20 %
    add_rollup(arm=control, impressions=[10] * 4000, clicks=[1] * 4000, prefix="more")
    add_rollup(arm=treat, impressions=[10] * 4000, clicks=[1] * 4000, prefix="more")
    tick_services.stats_tick(experiment_id=experiment.id)

    (stopped,) = schedules.schedules_apply()
    evidence = stopped.stats_snapshot["schedule"]
    assert evidence["rule"] == "planned" and 1_000 < evidence["impressions_per_arm"] <= 41_000
    assert "Auto-stop: every competing arm has the planned" in stopped.reason


def test_a_refused_stop_is_logged_and_tried_again(boss, caplog):
    experiment, (control, treat) = make_experiment(slug="paused-control")
    _set(experiment, boss, stop_at=T0)
    control.status = "paused"
    control.save(update_fields=["status"])
    assert schedules.schedules_apply(now=T0) == []
    assert "schedule_refused experiment=paused-control action=stop code=control_not_active" in caplog.text
    control.status = "active"
    control.save(update_fields=["status"])
    assert len(schedules.schedules_apply(now=T0)) == 1


@pytest.mark.parametrize(
    ("kw", "code"),
    [
        ({"start_at": T0, "stop_at": T0}, "stop_before_start"),
        ({"start_at": datetime(2026, 12, 24, 8, 0)}, "naive_time"),
        ({"auto_stop": "whenever"}, "invalid_choice"),
        ({"planned_power": 0.2}, "out_of_range"),
    ],
)
def test_bad_schedules_are_refused_with_their_field(boss, kw, code):
    experiment = lifecycle.experiment_create(slug="bad", arms=ARMS, user=boss)
    with pytest.raises(ApplicationError) as err:
        _set(experiment, boss, **kw)
    assert err.value.code == code
    assert not ExperimentSchedule.objects.exists()


def test_only_deciders_set_schedules_and_beat_runs_the_tick():
    analyst = make_login(username="ann", promoter=False)
    experiment, _ = make_experiment(slug="closed")
    with pytest.raises(ApplicationError) as err:
        schedules.schedule_set(experiment=experiment, spec=schedules.ScheduleSpec(stop_at=timezone.now()), user=analyst)
    assert err.value.status == 403
    entry = settings.CELERY_BEAT_SCHEDULE["schedules-apply"]
    assert (entry["task"], entry["options"]["queue"]) == ("recsite.schedules.apply", "default")
    from experiments import tasks

    assert tasks.schedules_apply.name == "recsite.schedules.apply"


def test_the_staff_page_sets_the_schedule_in_utc_and_analysts_get_403(login):
    boss_client = login("boss2", promoter=True)
    make_experiment(slug="page")
    url = "/dashboard/page/schedule/"
    assert login("ann2", promoter=False).get(url).status_code == 403
    assert boss_client.get(url).status_code == 200
    response = boss_client.post(url, {"start_at": "2026-12-24T08:00:00", "stop_at": "2026-12-24T07:00:00",
                                      "auto_stop": "off", "planned_mde": 0.05, "planned_alpha": 0.05,
                                      "planned_power": 0.8, "reason": ""})
    assert response.status_code == 400 and "The stop time must come after the start time." in response.content.decode()
    response = boss_client.post(url, {"start_at": "", "stop_at": "2026-12-24T09:30:00", "auto_stop": "decided",
                                      "planned_mde": 0.05, "planned_alpha": 0.05, "planned_power": 0.8, "reason": "Xmas"})
    assert response.status_code == 302
    saved = ExperimentSchedule.objects.get(experiment__slug="page")
    assert (saved.start_at, saved.stop_at, saved.auto_stop) == (None, datetime(2026, 12, 24, 9, 30, tzinfo=UTC), "decided")
    assert Experiment.objects.get(slug="page").decisions.get(action="schedule").reason == "Xmas"
    page = boss_client.get(url).content.decode()
    assert 'data-testid="schedule-current"' in page and "decided" in page
