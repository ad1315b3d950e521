"""The allocation policy against Postgres: settings are audited decisions, a re-evaluation re-weights as one."""

from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone

from experiments.errors import ApplicationError
from experiments.models import AllocationEpoch, Arm, Decision, Experiment
from experiments.services import allocation, decisions
from tests.experiments.stats_support import add_rollup, fast_passwords, make_experiment, make_login  # noqa: F401

pytestmark = pytest.mark.django_db


@pytest.fixture
def setup():
    experiment, arms = make_experiment(slug="steered", arms=("control", "treat"))
    return experiment, arms, make_login(username="boss", promoter=True)


def thompson(experiment, boss, **kw):
    settings = {"policy": "thompson", "floor": 0.1, "interval_minutes": 5, "guardrails": True, "guardrail_alpha": 0.01}
    return allocation.policy_set(experiment=experiment, user=boss, reason="steer by evidence", **{**settings, **kw})


def traffic(arms, *, users=200, ctr=(0.05, 0.08), seed=1):
    rng = np.random.default_rng(seed)
    for arm, rate in zip(arms, ctr, strict=True):
        n = 1 + rng.poisson(4, users)
        add_rollup(arm=arm, impressions=n, clicks=rng.binomial(n, rate), prefix=f"s{seed}")


def test_setting_a_policy_is_an_audited_decision_that_moves_no_traffic(setup):
    experiment, arms, boss = setup

    decision = thompson(experiment, boss)

    experiment.refresh_from_db()
    assert (experiment.policy, experiment.policy_floor, experiment.policy_interval_minutes) == ("thompson", 0.1, 5)
    assert decision.action == "policy" and decision.user == boss
    assert decision.previous_state["policy"] == "fixed"
    assert experiment.allocation_epoch == 0
    assert timezone.now() < experiment.policy_next_at <= timezone.now() + timedelta(minutes=5)


@pytest.mark.parametrize(
    "kw, code",
    [
        ({"policy": "greedy"}, "invalid_policy"),
        ({"floor": 0.0}, "invalid_floor"),
        ({"floor": 0.6}, "invalid_floor"),
        ({"interval_minutes": 0}, "invalid_interval"),
        ({"interval_minutes": 2.5}, "invalid_interval"),
        ({"guardrail_alpha": 0.0}, "invalid_alpha"),
    ],
)
def test_bad_settings_are_refused(setup, kw, code):
    experiment, _, boss = setup

    with pytest.raises(ApplicationError) as err:
        thompson(experiment, boss, **kw)

    assert err.value.code == code
    assert Decision.objects.count() == 0


def test_a_floor_the_arms_cannot_all_keep_is_refused(setup):
    experiment, arms, boss = setup
    Arm.objects.create(experiment=experiment, name="third", kind="popularity")

    with pytest.raises(ApplicationError) as err:
        thompson(experiment, boss, floor=0.4)

    assert err.value.code == "invalid_floor" and "1/3" in err.value.message


def test_nothing_moves_during_burn_in(setup):
    experiment, arms, boss = setup
    thompson(experiment, boss)
    traffic(arms, users=40)

    assert allocation.policy_evaluate(experiment_id=experiment.id) is None
    assert Experiment.objects.get(pk=experiment.pk).allocation_epoch == 0


def test_a_re_evaluation_follows_the_evidence_as_one_decision_and_a_new_period(setup):
    experiment, (control, treat), boss = setup
    thompson(experiment, boss)
    traffic([control, treat], users=300, ctr=(0.04, 0.10))

    decision = allocation.policy_evaluate(experiment_id=experiment.id)

    experiment.refresh_from_db()
    weights = dict(Arm.objects.filter(experiment=experiment).values_list("name", "weight"))
    assert decision.action == "reallocate" and decision.user is None
    assert weights == {"control": 0.1, "treat": 0.9}  # treat is surely better: all but the floor
    assert experiment.allocation_epoch == 1
    assert AllocationEpoch.objects.get(experiment=experiment, epoch=1).decision == decision
    record = decision.stats_snapshot["policy"]
    assert record["arms"]["treat"]["share_after"] == pytest.approx(0.9) and "report" in decision.stats_snapshot
    assert decision.reason == "thompson: control 50%→10%, treat 50%→90%"


def test_a_policy_steered_experiment_refuses_weights_by_hand(setup):
    experiment, (control, treat), boss = setup
    thompson(experiment, boss)

    with pytest.raises(ApplicationError) as err:
        decisions.arm_reweight(arm=treat, weight=5, user=boss, reason="by hand")

    assert err.value.code == "policy_managed" and err.value.status == 409


def test_the_tick_evaluates_only_due_experiments(setup):
    experiment, arms, boss = setup
    thompson(experiment, boss)
    traffic(arms, users=300, ctr=(0.04, 0.10))
    other, other_arms = make_experiment(slug="later", arms=("a", "b"))
    thompson(other, boss)

    not_yet = allocation.policy_tick()
    due = allocation.policy_tick(now=timezone.now() + timedelta(minutes=6))

    assert not_yet == {}
    assert due == {"steered": "reallocated", "later": "unchanged"}
    assert Experiment.objects.get(pk=experiment.pk).policy_next_at > timezone.now() + timedelta(minutes=10)
