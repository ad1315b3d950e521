"""The primary metric drives the guardrail, the allocation policy and the promotion evidence; it is set at creation
or with the policy settings (audited)."""

from decimal import Decimal

import numpy as np
import pytest

from experiments.business_models import ArmUserOutcome
from experiments.errors import ApplicationError
from experiments.models import Arm, Decision, Experiment
from experiments.selectors import results as result_selectors
from experiments.services import allocation, guardrails, lifecycle
from experiments.services import stats_tick as tick_services
from tests.experiments.stats_support import add_rollup, fast_passwords, make_experiment, make_login  # noqa: F401

pytestmark = pytest.mark.django_db


def shop(arms, *, buyers, revenue, users=400, seed=5):
    """Equal CTR on every arm; ``buyers[i]`` users of arm i buy once for ``revenue[i]``."""
    rng = np.random.default_rng(seed)
    for i, arm in enumerate(arms):
        n = 1 + rng.poisson(5, users)
        made = add_rollup(arm=arm, impressions=n, clicks=rng.binomial(n, 0.1), prefix=f"p{seed}")
        ArmUserOutcome.objects.bulk_create([ArmUserOutcome(arm=arm, user=u, epoch=0, purchases=1,
                                                           revenue=Decimal(revenue[i])) for u in made[:buyers[i]]])


def test_ctr_harm_on_another_metric_names_it():
    row = {"always_valid_p_holm": 0.001, "lift_cs": [-0.5, -0.2], "lift": -0.3, "value": 7.0, "users": 400}
    verdict = guardrails.ctr_harm(row, alpha=0.01, metric="revenue_per_user")
    assert verdict.rule == "revenue_per_user_below_control"
    assert verdict.message.startswith("Revenue per user below the control")
    assert verdict.evidence["metric"] == "revenue_per_user"


def test_the_guardrail_pauses_an_arm_whose_primary_metric_is_below_control_while_its_ctr_is_not():
    experiment, (control, treat) = make_experiment(slug="rev")
    Experiment.objects.filter(pk=experiment.pk).update(primary_metric="revenue_per_user")
    shop([control, treat], buyers=(200, 20), revenue=("50.00", "10.00"))
    payload = tick_services.stats_tick(experiment_id=experiment.id)["stats"]
    assert payload["report"]["arms"]["treat"]["always_valid_p"] > 0.01  # CTR alone would not act

    (decision,) = guardrails.guardrails_check()

    assert (decision.action, decision.arm) == ("guardrail_pause", treat)
    assert decision.stats_snapshot["guardrail"]["rule"] == "revenue_per_user_below_control"
    assert Arm.objects.get(pk=treat.pk).status == "paused"


def test_with_ctr_primary_the_same_traffic_is_left_alone():
    experiment, (control, treat) = make_experiment(slug="ctrp")
    shop([control, treat], buyers=(200, 20), revenue=("50.00", "10.00"))
    tick_services.stats_tick(experiment_id=experiment.id)

    assert guardrails.guardrails_check() == []


def test_thompson_on_revenue_moves_traffic_to_the_arm_that_earns_more():
    experiment, (control, treat) = make_experiment(slug="steer-rev")
    boss = make_login(username="boss", promoter=True)
    allocation.policy_set(experiment=experiment, policy="thompson", floor=0.1, interval_minutes=5, guardrails=False,
                          guardrail_alpha=0.01, user=boss, reason="steer by revenue", primary_metric="revenue_per_user")
    shop([control, treat], buyers=(20, 200), revenue=("10.00", "50.00"))

    decision = allocation.policy_evaluate(experiment_id=experiment.id)

    weights = dict(Arm.objects.filter(experiment=experiment).values_list("name", "weight"))
    assert weights == {"control": 0.1, "treat": 0.9}
    assert decision.stats_snapshot["policy"]["metric"] == "revenue_per_user"
    assert decision.stats_snapshot["policy"]["arms"]["treat"]["mean"] == pytest.approx(200 * 50 / 400)


def test_the_primary_metric_is_an_audited_setting():
    experiment, _ = make_experiment(slug="audited")
    boss = make_login(username="boss", promoter=True)

    decision = allocation.policy_set(experiment=experiment, policy="fixed", floor=0.1, interval_minutes=10,
                                     guardrails=True, guardrail_alpha=0.01, user=boss, reason="judge by sales",
                                     primary_metric="conversion_rate")

    assert Experiment.objects.get(pk=experiment.pk).primary_metric == "conversion_rate"
    assert decision.action == Decision.Action.POLICY
    assert decision.previous_state["primary_metric"] == "ctr"
    assert decision.stats_snapshot["settings"]["primary_metric"] == "conversion_rate"
    with pytest.raises(ApplicationError) as err:
        allocation.policy_set(experiment=experiment, policy="fixed", floor=0.1, interval_minutes=10, guardrails=True,
                              guardrail_alpha=0.01, user=boss, reason="x", primary_metric="clicks")
    assert err.value.code == "invalid_primary_metric"


def test_promotion_evidence_follows_the_primary_metric():
    experiment = lifecycle.experiment_create(
        slug="evid", arms=[lifecycle.ArmSpec("control", "popularity", {}, 1.0),
                           lifecycle.ArmSpec("treat", "popularity", {}, 1.0)],
        user=make_login(username="maker", promoter=True), primary_metric="conversion_rate")
    Experiment.objects.filter(pk=experiment.pk).update(status="running")
    control, treat = Arm.objects.filter(experiment=experiment).order_by("id")
    shop([control, treat], buyers=(250, 400), revenue=("10.00", "10.00"), users=1000)
    payload = tick_services.stats_tick(experiment_id=experiment.id)["stats"]

    evidence = result_selectors.arm_evidence(payload, "treat")

    assert evidence["primary_metric"]["name"] == "conversion_rate"
    assert evidence["primary_metric"]["always_valid_p"] < 0.05
    assert not [w for w in evidence["weak"] if w.startswith("Always-valid p")]
    assert payload["report"]["arms"]["treat"]["always_valid_p"] > 0.05  # on CTR it would be weak
