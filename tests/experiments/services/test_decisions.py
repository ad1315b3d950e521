"""Decisions: permission, audit record with evidence and previous state, epoch bump, rollback, model rollback."""

import pytest

from experiments.errors import ApplicationError
from experiments.models import AllocationEpoch, Arm, Decision, Experiment, ModelCheckpoint
from experiments.services import decisions, training
from experiments.services.training_config import TrainingConfig
from tests.experiments.stats_support import (
    add_rollup,
    fast_passwords,  # noqa: F401  (autouse)
    make_experiment,
    make_login,
)
from tests.support.training_world import traffic_log, world_make

pytestmark = pytest.mark.django_db

TRAIN = TrainingConfig(batch_rows=10_000, budget_s=60.0)


@pytest.fixture
def setup():
    experiment, arms = make_experiment(arms=("control", "treat", "third"))
    add_rollup(arm=arms[0], impressions=[10, 12, 9], clicks=[1, 2, 0])
    add_rollup(arm=arms[1], impressions=[11, 8], clicks=[3, 2])
    admin = make_login(username="boss", promoter=True)
    return experiment, arms, admin


def state(experiment):
    experiment.refresh_from_db()
    arms = {a.name: (a.weight, a.status) for a in Arm.objects.filter(experiment=experiment)}
    return experiment.status, experiment.winner_id, experiment.allocation_epoch, arms


def test_promote_concludes_records_evidence_and_bumps_the_epoch(setup):
    experiment, (control, treat, third), admin = setup

    decision = decisions.arm_promote(experiment=experiment, arm=treat, user=admin, reason="treat wins")

    experiment.refresh_from_db()
    assert (experiment.status, experiment.winner_id, experiment.allocation_epoch) == ("concluded", treat.id, 1)
    assert decision.user == admin and decision.reason == "treat wins" and decision.action == "promote"
    assert decision.stats_snapshot["report"]["arms"]["treat"]["impressions"] == 19
    assert decision.previous_state["status"] == "running"
    assert decision.previous_state["arms"][str(treat.id)] == {"name": "treat", "weight": 1.0, "status": "active"}
    assert AllocationEpoch.objects.get(experiment=experiment, epoch=1).weights == {"control": 0.0, "treat": 1.0, "third": 0.0}
    assert AllocationEpoch.objects.get(experiment=experiment, epoch=0).weights == {"control": 1.0, "treat": 1.0, "third": 1.0}


def test_rollback_restores_the_previous_state_as_another_decision(setup):
    experiment, (control, treat, third), admin = setup
    before = state(experiment)
    promote = decisions.arm_promote(experiment=experiment, arm=treat, user=admin, reason="ship")

    rollback = decisions.decision_rollback(decision=promote, user=admin, reason="too early")

    after = state(experiment)
    assert after[:2] == before[:2] and after[3] == before[3]
    assert after[2] == 2
    assert rollback.action == "rollback" and rollback.previous_state["winner_id"] == treat.id
    assert Decision.objects.filter(experiment=experiment).count() == 2


def test_pause_resume_and_reweight_change_traffic_and_are_audited(setup):
    experiment, (control, treat, third), admin = setup

    decisions.arm_pause(arm=third, user=admin, reason="broken")
    decisions.arm_reweight(arm=treat, weight=3.0, user=admin, reason="more data")
    decisions.arm_resume(arm=third, user=admin, reason="fixed")

    assert state(experiment) == ("running", None, 3, {"control": (1.0, "active"), "treat": (3.0, "active"), "third": (1.0, "active")})
    assert list(Decision.objects.filter(experiment=experiment).order_by("id").values_list("action", flat=True)) == [
        "pause", "reweight", "resume",
    ]
    assert AllocationEpoch.objects.get(experiment=experiment, epoch=1).weights == {"control": 1.0, "treat": 1.0, "third": 0.0}


def test_an_analyst_and_a_non_staff_permission_holder_are_refused(setup):
    experiment, (control, treat, third), _ = setup
    analyst = make_login(username="analyst", promoter=False)
    not_staff = make_login(username="perm-only", promoter=True)
    type(not_staff).objects.filter(pk=not_staff.pk).update(is_staff=False)
    not_staff.refresh_from_db()

    for user in (analyst, not_staff):
        with pytest.raises(ApplicationError) as exc:
            decisions.arm_promote(experiment=experiment, arm=treat, user=user, reason="sneaky")
        assert exc.value.status == 403

    assert state(experiment)[:3] == ("running", None, 0)
    assert Decision.objects.count() == 0


@pytest.mark.parametrize(
    "call, code",
    [
        (lambda e, a, u: decisions.arm_promote(experiment=e, arm=a[1], user=u, reason="  "), "reason_required"),
        (lambda e, a, u: decisions.arm_reweight(arm=a[1], weight=-1, user=u, reason="x"), "invalid_weight"),
        (lambda e, a, u: decisions.arm_reweight(arm=a[1], weight=float("nan"), user=u, reason="x"), "invalid_weight"),
        (lambda e, a, u: decisions.arm_resume(arm=a[1], user=u, reason="x"), "no_change"),
    ],
)
def test_invalid_decisions_are_refused_without_writing(setup, call, code):
    experiment, arms, admin = setup

    with pytest.raises(ApplicationError) as exc:
        call(experiment, arms, admin)

    assert exc.value.code == code
    assert state(experiment)[2] == 0 and Decision.objects.count() == 0


def test_pausing_every_arm_is_refused_atomically(setup):
    experiment, (control, treat, third), admin = setup
    decisions.arm_pause(arm=third, user=admin, reason="a")
    decisions.arm_pause(arm=treat, user=admin, reason="b")

    with pytest.raises(ApplicationError) as exc:
        decisions.arm_pause(arm=control, user=admin, reason="c")

    assert exc.value.code == "no_traffic"
    assert Arm.objects.get(pk=control.pk).status == "active"
    assert Experiment.objects.get(pk=experiment.pk).allocation_epoch == 2


def test_an_admin_rolls_an_arm_back_to_a_kept_checkpoint(django_user_model):
    from django.contrib.auth.models import Permission

    world = world_make(seed=8)
    traffic_log(world, requests=10, seed=9)
    training.arm_train(arm_id=world.arm.id, config=TRAIN)
    traffic_log(world, requests=10, seed=10)
    training.arm_train(arm_id=world.arm.id, config=TRAIN)
    Arm.objects.filter(pk=world.arm.id).update(health="unhealthy", health_reason="bad batch")
    admin = django_user_model.objects.create_user("boss", password="x", is_staff=True)
    admin.user_permissions.add(Permission.objects.get(codename="promote_arm"))
    admin = django_user_model.objects.get(pk=admin.pk)

    new = decisions.arm_rollback_to_checkpoint(arm_id=world.arm.id, version=1, user=admin, reason="v2 looks off")

    v1, v2, v3 = ModelCheckpoint.objects.filter(arm=world.arm).order_by("version")
    assert new.version == 3
    assert bytes(v3.state) == bytes(v1.state)
    assert (v3.cursor, v3.click_cursor) == (v2.cursor, v2.click_cursor)
    assert v3.metrics["rollback_to"] == 1
    arm = Arm.objects.get(pk=world.arm.id)
    assert (arm.health, arm.health_reason) == ("healthy", "")
    decision = Decision.objects.get(arm=arm)
    assert decision.action == "checkpoint_rollback"
    assert decision.previous_state["version"] == 2


def test_rollback_is_refused_without_the_permission(django_user_model):
    world = world_make(seed=9)
    traffic_log(world, requests=5, seed=9)
    training.arm_train(arm_id=world.arm.id, config=TRAIN)
    analyst = django_user_model.objects.create_user("analyst", password="x", is_staff=True)

    with pytest.raises(ApplicationError) as err:
        decisions.arm_rollback_to_checkpoint(arm_id=world.arm.id, version=1, user=analyst, reason="r")

    assert err.value.status == 403
    assert ModelCheckpoint.objects.filter(arm=world.arm).count() == 1



def test_a_stop_can_be_rolled_back_but_a_start_cannot(setup):
    from experiments.services import lifecycle

    experiment, arms, admin = setup
    stop = lifecycle.experiment_stop(experiment=experiment, user=admin, reason="pause the test")
    decisions.decision_rollback(decision=stop, user=admin, reason="resume it")
    draft = lifecycle.experiment_create(slug="other", arms=[lifecycle.ArmSpec("a", "popularity")], user=admin)
    start = lifecycle.experiment_start(experiment=draft, user=admin)

    with pytest.raises(ApplicationError) as err:
        decisions.decision_rollback(decision=start, user=admin, reason="undo the start")

    assert Experiment.objects.get(pk=experiment.pk).status == "running"
    assert err.value.code == "not_reversible"
    assert Experiment.objects.get(pk=draft.pk).status == "running"
