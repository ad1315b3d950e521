"""An experiment's life through the services: create, add arm, start, stop, and the hyper-parameter rule."""

import pytest

from experiments.errors import ApplicationError
from experiments.models import AllocationEpoch, Arm, Decision, Experiment, ModelCheckpoint
from experiments.services import lifecycle
from experiments.services.checkpoints import state_compact
from experiments.services.events import recommendation_serve
from experiments.serving.arms import arm_build
from tests.experiments.stats_support import fast_passwords, make_login  # noqa: F401  (autouse)
from tests.support.serving import catalogue_make

pytestmark = pytest.mark.django_db

ARMS = [lifecycle.ArmSpec("control", "popularity"), lifecycle.ArmSpec("challenger", "popularity", {"epsilon": 0.1})]


@pytest.fixture
def boss():
    return make_login(username="boss", promoter=True)


def test_create_makes_a_draft_with_complete_params_and_start_records_its_first_period(boss):
    experiment = lifecycle.experiment_create(slug="fresh", arms=ARMS, user=boss)
    draft = Experiment.objects.get(pk=experiment.pk)
    lifecycle.experiment_start(experiment=experiment, user=boss)

    experiment.refresh_from_db()
    assert (draft.status, draft.control_arm.name, draft.started_at) == ("draft", "control", None)
    assert Arm.objects.get(name="challenger").params["epsilon"] == 0.1
    assert len(Arm.objects.get(name="challenger").params) > 1  # the registry filled in the defaults
    assert (experiment.status, experiment.allocation_epoch) == ("running", 0)
    epoch = AllocationEpoch.objects.get(experiment=experiment)
    assert (epoch.epoch, epoch.weights, epoch.decision.action) == (0, {"control": 1.0, "challenger": 1.0}, "start")
    assert list(Decision.objects.order_by("id").values_list("action", flat=True)) == ["create", "start"]


def test_a_candidate_opens_no_period_and_a_weighted_arm_added_while_running_does(boss):
    experiment = lifecycle.experiment_create(slug="grow", arms=ARMS, user=boss)
    lifecycle.experiment_start(experiment=experiment, user=boss)

    lifecycle.arm_create(experiment=experiment, spec=lifecycle.ArmSpec("candidate", "popularity", weight=0), user=boss)
    after_candidate = Experiment.objects.get(pk=experiment.pk).allocation_epoch
    lifecycle.arm_create(experiment=experiment, spec=lifecycle.ArmSpec("third", "popularity", weight=2), user=boss)

    assert after_candidate == 0
    assert Experiment.objects.get(pk=experiment.pk).allocation_epoch == 1
    assert AllocationEpoch.objects.get(experiment=experiment, epoch=1).weights == {
        "control": 1.0, "challenger": 1.0, "candidate": 0.0, "third": 2.0}


def test_stop_serves_the_control_in_a_period_of_its_own_without_a_winner(boss):
    catalogue_make(n=5)
    experiment = lifecycle.experiment_create(slug="halt", arms=ARMS, user=boss)
    lifecycle.experiment_start(experiment=experiment, user=boss)

    lifecycle.experiment_stop(experiment=experiment, user=boss, reason="budget")

    experiment.refresh_from_db()
    assert (experiment.status, experiment.winner_id, experiment.allocation_epoch) == ("stopped", None, 1)
    assert AllocationEpoch.objects.get(experiment=experiment, epoch=1).weights == {"control": 1.0, "challenger": 0.0}


def test_an_arms_params_are_fixed_once_it_has_trained_and_the_refusal_says_what_to_do(boss):
    experiment = lifecycle.experiment_create(slug="tuned", arms=ARMS, user=boss)
    arm = Arm.objects.get(experiment=experiment, name="challenger")
    ModelCheckpoint.objects.create(arm=arm, version=1, state=state_compact(
        arm_build(kind="popularity", params=arm.params, arm_id=arm.id).to_bytes()), metrics={"accepted": True})

    with pytest.raises(ApplicationError) as err:
        lifecycle.arm_params_update(arm=arm, params={"epsilon": 0.3}, user=boss, reason="more exploration")

    assert (err.value.code, err.value.status, err.value.field) == ("params_locked", 409, "params")
    assert "Add a new arm with these params" in err.value.message and "trained model versions" in err.value.message
    assert Arm.objects.get(pk=arm.pk).params["epsilon"] == 0.1


def test_an_arm_that_has_served_refuses_new_params_too(boss, settings):
    settings.RECSITE = {**settings.RECSITE, "SERVING_REFRESH": "inline"}
    catalogue_make(n=5)
    experiment = lifecycle.experiment_create(slug="served", arms=ARMS[:1], user=boss)
    lifecycle.experiment_start(experiment=experiment, user=boss)
    recommendation_serve(user_id="someone", k=2)

    with pytest.raises(ApplicationError) as err:
        lifecycle.arm_params_update(arm=experiment.arms.get(), params={"epsilon": 0.3}, user=boss, reason="retune")

    assert err.value.code == "params_locked" and "served traffic" in err.value.message


def test_a_fresh_arms_new_params_are_what_serving_builds(boss, settings):
    settings.RECSITE = {**settings.RECSITE, "SERVING_REFRESH": "inline"}
    catalogue_make(n=5)
    experiment = lifecycle.experiment_create(slug="fresh-params", arms=ARMS[:1], user=boss)
    arm = experiment.arms.get()

    lifecycle.arm_params_update(arm=arm, params={"epsilon": 0.3}, user=boss, reason="decided before launch")
    lifecycle.experiment_start(experiment=experiment, user=boss)
    from experiments.serving.cache import serving_cache

    assert serving_cache.current().models[arm.id].model.params["epsilon"] == 0.3
    assert Decision.objects.get(action="params").previous_state["params"]["epsilon"] == 0.02


def test_bad_params_carry_the_registrys_message(boss):
    experiment = lifecycle.experiment_create(slug="p", arms=ARMS[:1], user=boss)

    with pytest.raises(ApplicationError) as err:
        lifecycle.arm_params_update(arm=experiment.arms.get(), params={"epsilon": 7.0}, user=boss, reason="x")

    assert err.value.code == "invalid_params" and "epsilon" in err.value.message


def test_an_analyst_can_do_none_of_it(boss):
    analyst = make_login(username="analyst", promoter=False)
    experiment = lifecycle.experiment_create(slug="mine", arms=ARMS, user=boss)

    for call in (
        lambda: lifecycle.experiment_create(slug="theirs", arms=ARMS, user=analyst),
        lambda: lifecycle.experiment_start(experiment=experiment, user=analyst),
        lambda: lifecycle.arm_create(experiment=experiment, spec=lifecycle.ArmSpec("x", "popularity"), user=analyst),
    ):
        with pytest.raises(ApplicationError) as err:
            call()
        assert err.value.status == 403
    assert Experiment.objects.count() == 1 and Decision.objects.count() == 1


def test_conclude_a_stopped_experiment_keeps_its_control_and_records_the_conclusion(boss):
    experiment = lifecycle.experiment_create(slug="ends", arms=ARMS, user=boss)
    lifecycle.experiment_start(experiment=experiment, user=boss)
    lifecycle.experiment_stop(experiment=experiment, user=boss)
    epoch = Experiment.objects.get(pk=experiment.pk).allocation_epoch

    decision = lifecycle.experiment_conclude(experiment=experiment, conclusion="  No lift; keep control.  ", user=boss)

    experiment.refresh_from_db()
    assert (experiment.status, experiment.winner.name, experiment.conclusion) == (
        "concluded", "control", "No lift; keep control.")
    assert experiment.allocation_epoch == epoch  # the control served everyone already: no new period
    assert (decision.action, decision.arm.name, decision.previous_state["status"]) == ("conclude", "control", "stopped")


def test_conclude_refuses_a_draft_an_empty_text_and_an_analyst(boss):
    experiment = lifecycle.experiment_create(slug="early", arms=ARMS, user=boss)
    analyst = make_login(username="analyst", promoter=False)

    with pytest.raises(ApplicationError) as draft:
        lifecycle.experiment_conclude(experiment=experiment, conclusion="done", user=boss)
    with pytest.raises(ApplicationError) as empty:
        lifecycle.experiment_conclude(experiment=experiment, conclusion="   ", user=boss)
    with pytest.raises(ApplicationError) as forbidden:
        lifecycle.experiment_conclude(experiment=experiment, conclusion="done", user=analyst)

    assert (draft.value.code, draft.value.status) == ("not_concludable", 409)
    assert (empty.value.code, empty.value.field) == ("conclusion_required", "conclusion")
    assert forbidden.value.status == 403
    assert not Decision.objects.filter(action="conclude").exists()


def test_the_dashboard_reserves_the_slug_new(boss):
    with pytest.raises(ApplicationError) as reserved:
        lifecycle.experiment_create(slug="new", arms=ARMS, user=boss)

    assert reserved.value.field == "slug"
