"""Guardrails: the three rules as pure functions, then acting against Postgres (pause, rollback, audit, override)."""

import numpy as np
import pytest

from experiments.models import Arm, Decision, ModelCheckpoint
from experiments.selectors import policy as policy_selectors
from experiments.services import decisions, guardrails
from experiments.services import stats_tick as tick_services
from experiments.services.checkpoints import state_compact
from experiments.serving.arms import arm_build
from tests.experiments.stats_support import add_rollup, fast_passwords, make_experiment, make_login  # noqa: F401

ACCEPTED = {"accepted": True, "reject_reason": "", "n": 500}


def refused(reason: str) -> dict:
    return {"accepted": False, "reject_reason": reason, "n": 500}


def history(lls, *, start: int = 1, n: int = 500) -> list[tuple[int, dict]]:
    return [(v, {**ACCEPTED, "n": n, "base_version": v - 1, "logloss_before": ll}) for v, ll in enumerate(lls, start)]


# ------------------------------------------------------------------------- the rules


def test_three_diverged_updates_in_a_row_are_diverging():
    nan = refused("non-finite loss: nan")
    diverged = refused("update refused by the arm: DivergedUpdateError: weights exploded")

    assert guardrails.diverging([nan, diverged, nan]).rule == "diverging_updates"
    assert guardrails.diverging([nan, nan]) is None  # not yet a streak
    assert guardrails.diverging([nan, ACCEPTED, nan]) is None
    assert guardrails.diverging([nan, refused("bad batch: ragged features"), nan]) is None  # the data's fault


def test_ctr_below_control_needs_the_guardrail_alpha_and_a_confidence_sequence_below_zero():
    harmful = {"is_control": False, "always_valid_p_holm": 0.001, "lift": -0.3, "lift_cs": [-0.5, -0.1]}

    assert guardrails.ctr_harm(harmful, alpha=0.01).rule == "ctr_below_control"
    assert guardrails.ctr_harm({**harmful, "always_valid_p_holm": 0.02}, alpha=0.01) is None
    assert guardrails.ctr_harm({**harmful, "lift": 0.3, "lift_cs": [0.1, 0.5]}, alpha=0.01) is None  # better
    assert guardrails.ctr_harm({**harmful, "always_valid_p_holm": None}, alpha=0.01) is None
    assert guardrails.ctr_harm({**harmful, "is_control": True}, alpha=0.01) is None



def test_an_arm_behind_at_cold_start_is_not_pausable_once_it_has_caught_up():
    """The rule reads the stats tick's current look (experiments/stats/sequential.py), not a running minimum."""
    from experiments.stats import ClusteredRatioSummary, experiment_report

    rng = np.random.default_rng(21)

    def users(n: int, ctr: float) -> ClusteredRatioSummary:
        shown = 1 + rng.poisson(4, n)
        return ClusteredRatioSummary.from_users(shown, rng.binomial(shown, ctr))

    control, learner = users(3000, 0.05), users(3000, 0.035)  # cold start: the learner is 30% behind
    first = experiment_report({"control": control, "learner": learner}, control="control",
                              weights={"control": 1, "learner": 1}, draws=100)
    assert guardrails.ctr_harm(first["arms"]["learner"], alpha=0.01).rule == "ctr_below_control"
    # It learnt: its next 20,000 users click a little more than the control's, and over the whole run it is level.
    control, learner = control + users(20000, 0.05), learner + users(20000, 0.0525)
    later = experiment_report({"control": control, "learner": learner}, control="control",
                              weights={"control": 1, "learner": 1}, draws=100,
                              sequential_state=first["sequential_state"])
    row = later["arms"]["learner"]
    assert abs(row["lift"]) < 0.03 and row["lift_cs"][0] < 0 < row["lift_cs"][1]
    assert guardrails.ctr_harm(row, alpha=0.01) is None

def test_a_logloss_collapse_rolls_back_to_the_model_the_last_good_batch_scored():
    steady = [0.30, 0.31, 0.29, 0.30, 0.32, 0.30, 0.31, 0.29, 0.30, 0.31]

    target, verdict = guardrails.logloss_collapse(history([*steady, 0.70, 0.72, 0.69]))

    # Version 10's batch (good) scored model 9; version 11's (bad) scored model 10: model 10 went wrong.
    assert target == 9
    assert verdict.rule == "logloss_collapse" and verdict.evidence["reference_logloss"] == pytest.approx(0.30)


@pytest.mark.parametrize(
    "lls, n",
    [
        ([0.30] * 10 + [0.70, 0.72, 0.30], 500),  # recovered on the third batch: noise
        ([0.30] * 4 + [0.70, 0.72, 0.69], 500),  # too little reference to judge
        ([0.30] * 10 + [0.40, 0.42, 0.41], 500),  # worse, not collapsed (factor 1.5)
        ([0.30] * 10 + [0.70, 0.72, 0.69], 50),  # batches too small to judge
    ],
)
def test_no_collapse_without_a_sustained_jump_on_judged_batches(lls, n):
    assert guardrails.logloss_collapse(history(lls, n=n)) is None


# --------------------------------------------------------------------------- acting



@pytest.fixture
def arena(db):
    experiment, arms = make_experiment(slug="guarded", arms=("control", "treat", "other"))
    return experiment, arms


def harmful_traffic(control, treat, other, seed=3):
    rng = np.random.default_rng(seed)
    for arm, rate in ((control, 0.12), (treat, 0.03), (other, 0.12)):
        n = 1 + rng.poisson(5, 400)
        add_rollup(arm=arm, impressions=n, clicks=rng.binomial(n, rate))


@pytest.mark.django_db
def test_an_arm_with_a_ctr_significantly_below_control_is_paused_with_the_evidence_and_a_banner(arena):
    experiment, (control, treat, other) = arena
    harmful_traffic(control, treat, other)
    tick_services.stats_tick(experiment_id=experiment.id)

    made = guardrails.guardrails_check()
    again = guardrails.guardrails_check()

    (decision,) = made
    assert (decision.action, decision.arm, decision.user) == ("guardrail_pause", treat, None)
    assert decision.stats_snapshot["guardrail"]["rule"] == "ctr_below_control"
    assert decision.stats_snapshot["guardrail"]["always_valid_p_holm"] < experiment.guardrail_alpha
    assert "report" in decision.stats_snapshot
    assert Arm.objects.get(pk=treat.pk).status == "paused"
    assert again == []
    (banner,) = policy_selectors.guardrail_banners(experiment=experiment)
    assert (banner["arm"], banner["rule"], banner["in_force"]) == ("treat", "ctr_below_control", True)


@pytest.mark.django_db
def test_an_operators_resume_overrides_the_ctr_guardrail(arena):
    experiment, (control, treat, other) = arena
    harmful_traffic(control, treat, other)
    tick_services.stats_tick(experiment_id=experiment.id)
    guardrails.guardrails_check()
    boss = make_login(username="boss", promoter=True)
    decisions.arm_resume(arm=treat, user=boss, reason="known seasonal dip, keep it running")
    tick_services.stats_tick(experiment_id=experiment.id)

    assert guardrails.guardrails_check() == []
    assert Arm.objects.get(pk=treat.pk).status == "active"
    assert policy_selectors.guardrail_banners(experiment=experiment)[0]["in_force"] is False


@pytest.mark.django_db
def test_guardrails_switched_off_do_nothing(arena):
    experiment, (control, treat, other) = arena
    harmful_traffic(control, treat, other)
    tick_services.stats_tick(experiment_id=experiment.id)
    type(experiment).objects.filter(pk=experiment.pk).update(guardrails=False)

    assert guardrails.guardrails_check() == []
    assert set(Arm.objects.filter(experiment=experiment).values_list("status", flat=True)) == {"active"}


def diverge(arm):
    state = state_compact(arm_build(kind="popularity", params={}, arm_id=arm.id).to_bytes())
    for version in (1, 2, 3):
        ModelCheckpoint.objects.create(arm=arm, version=version, state=state,
                                       metrics=refused(f"non-finite loss: inf at batch {version}"))


@pytest.mark.django_db
def test_the_control_is_never_paused_by_a_guardrail(arena):
    experiment, (control, treat, other) = arena
    diverge(control)

    assert guardrails.guardrails_check() == []
    assert Arm.objects.get(pk=control.pk).status == "active"


@pytest.mark.django_db
def test_diverging_updates_pause_the_arm(arena):
    experiment, (control, treat, other) = arena
    diverge(treat)

    (decision,) = guardrails.guardrails_check()

    assert (decision.action, decision.arm_id) == ("guardrail_pause", treat.id)
    assert decision.stats_snapshot["guardrail"]["rule"] == "diverging_updates"


@pytest.mark.django_db
def test_a_collapsed_model_is_rolled_back_to_its_last_good_version_once(arena):
    experiment, (control, treat, other) = arena
    build = {v: state_compact(arm_build(kind="popularity", params={"prior_alpha": float(v)}, arm_id=treat.id)
                              .to_bytes()) for v in range(1, 14)}
    for version, metrics in history([0.30, 0.31, 0.29, 0.30, 0.32, 0.30, 0.31, 0.29, 0.30, 0.31, 0.70, 0.72, 0.69]):
        ModelCheckpoint.objects.create(arm=treat, version=version, state=build[version], metrics=metrics)

    made = guardrails.guardrails_check()
    again = guardrails.guardrails_check()

    (decision,) = made
    head = ModelCheckpoint.objects.filter(arm=treat).order_by("-version").first()
    assert (decision.action, decision.arm_id, decision.user) == ("guardrail_rollback", treat.id, None)
    assert (head.version, head.metrics["rollback_to"], bytes(head.state)) == (14, 9, build[9])
    assert decision.stats_snapshot["guardrail"]["rule"] == "logloss_collapse"
    assert again == []
    assert Arm.objects.get(pk=treat.pk).status == "active"  # rolled back, not paused
    assert Decision.objects.filter(action="guardrail_rollback").count() == 1
