"""Delta checkpoints through the training service and the database: chains, serving, retention, rollback."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.models import Arm, ModelCheckpoint
from experiments.services import checkpoints, decisions, training
from experiments.services.training_config import TrainingConfig
from tests.support.training_world import traffic_log, world_make

pytestmark = pytest.mark.django_db

SMALL_TF = {"emb_dim": 4, "hidden": 16, "user_buckets": 512, "item_buckets": 512, "warmup_examples": 0}
KINDS = ("popularity", "ftrl_logreg", "deep_ctr", "neural_bandit", "q_learning")
# Small mini-batches, one per version, a snapshot every 4 versions.
CONFIG = TrainingConfig(batch_rows=30, budget_s=120.0, fold_batches=1, snapshot_every=4)


def _assert_same_state(a, b) -> None:
    ma, aa = a.state()
    mb, ab = b.state()
    assert ma == mb
    assert set(aa) == set(ab)
    for name in aa:
        np.testing.assert_allclose(np.asarray(ab[name], np.float64), np.asarray(aa[name], np.float64), atol=1e-6,
                                   rtol=0, err_msg=name)


def _world(kind: str, seed: int, requests: int = 60):
    world = world_make(seed=seed, kinds=(kind,))
    if kind in ("deep_ctr", "neural_bandit", "q_learning"):
        Arm.objects.filter(pk=world.arm.id).update(params=SMALL_TF)
        world.arm.refresh_from_db()
    traffic_log(world, requests=requests, k=5, seed=seed + 1)
    return world


def _kinds_of_state(arm) -> list[str]:
    rows = ModelCheckpoint.objects.filter(arm=arm).order_by("version").values_list("version", "snapshot_version")
    return ["S" if s is None else f"D{s}" for _, s in rows]


@pytest.mark.parametrize("kind", KINDS)
def test_snapshot_plus_deltas_restore_the_trainers_state(kind):
    world = _world(kind, seed=30 + KINDS.index(kind))
    training._models.clear()

    run = training.arm_train(arm_id=world.arm.id, config=CONFIG)

    head = ModelCheckpoint.objects.filter(arm=world.arm).order_by("-version").first()
    assert run.versions == list(range(1, head.version + 1)) and head.version >= 9
    # Versions 1, 4, 8 are snapshots; the rest are deltas of the chain they follow.
    assert _kinds_of_state(world.arm)[:9] == ["S", "D1", "D1", "S", "D4", "D4", "D4", "S", "D8"]
    deltas = ModelCheckpoint.objects.filter(arm=world.arm, snapshot_version__isnull=False)
    snapshots = ModelCheckpoint.objects.filter(arm=world.arm, snapshot_version__isnull=True)
    assert max(len(d.state) for d in deltas) < min(len(s.state) for s in snapshots)
    trainer_version, trainer_model = training._models[world.arm.id]
    assert trainer_version == head.version
    restored = checkpoints.checkpoint_model(arm_id=world.arm.id, kind=kind, version=head.version)
    _assert_same_state(trainer_model, restored)


@pytest.mark.parametrize("kind", ["ftrl_logreg", "deep_ctr"])
def test_serving_advances_by_the_deltas_after_its_version_only(kind):
    world = _world(kind, seed=50)
    training.arm_train(arm_id=world.arm.id, config=CONFIG)
    top = ModelCheckpoint.objects.filter(arm=world.arm).order_by("-version").values_list("version", flat=True)[0]
    have_version = 5  # a delta of the chain that starts at snapshot 4; top's chain starts at 8
    have = checkpoints.checkpoint_model(arm_id=world.arm.id, kind=kind, version=have_version)

    full, states = checkpoints.checkpoint_chain(arm_id=world.arm.id, version=7, have=have_version)
    assert (full, len(states)) == (False, 2)  # 6 and 7, nothing else
    advanced = checkpoints.checkpoint_model(arm_id=world.arm.id, kind=kind, version=7, have=have,
                                            have_version=have_version)
    _assert_same_state(checkpoints.checkpoint_model(arm_id=world.arm.id, kind=kind, version=7), advanced)
    # Too far behind (another chain): the newest snapshot and its deltas instead.
    full, states = checkpoints.checkpoint_chain(arm_id=world.arm.id, version=top, have=have_version)
    assert full and len(states) == top - 8 + 1
    # The model it advanced from is left as it was (requests may still be using it).
    _assert_same_state(checkpoints.checkpoint_model(arm_id=world.arm.id, kind=kind, version=have_version), have)


def test_a_broken_chain_is_refused_not_half_applied():
    world = _world("ftrl_logreg", seed=60)
    training.arm_train(arm_id=world.arm.id, config=CONFIG)
    ModelCheckpoint.objects.filter(arm=world.arm, version=6).delete()
    with pytest.raises(checkpoints.ChainBroken):
        checkpoints.checkpoint_model(arm_id=world.arm.id, kind="ftrl_logreg", version=7)


def test_retention_keeps_snapshots_and_the_chains_of_kept_versions_and_prunes_old_deltas():
    world = world_make(seed=61)
    rows = []
    for v in range(1, 48):
        snapshot = v == 1 or v % 10 == 0
        rows.append(ModelCheckpoint(arm=world.arm, version=v, state=b"x", cursor=v,
                                    snapshot_version=None if snapshot else (v // 10) * 10 or 1))
    ModelCheckpoint.objects.bulk_create(rows)

    checkpoints.checkpoint_retention_apply(config=TrainingConfig(keep_last=5, keep_every=15))

    kept = sorted(ModelCheckpoint.objects.filter(arm=world.arm).values_list("version", flat=True))
    # last 5 (43..47) with their chain from snapshot 40; every 15th: 15 (chain 10..15), 30 (a snapshot), 45.
    assert kept == [10, 11, 12, 13, 14, 15, 30, 40, 41, 42, 43, 44, 45, 46, 47]


def test_retention_after_real_training_leaves_every_kept_version_restorable():
    world = _world("popularity", seed=62, requests=80)
    training.arm_train(arm_id=world.arm.id, config=CONFIG)
    trainer = training._models[world.arm.id][1]
    deleted = checkpoints.checkpoint_retention_apply(config=TrainingConfig(keep_last=3, keep_every=5),
                                                     arm_id=world.arm.id)
    kept = list(ModelCheckpoint.objects.filter(arm=world.arm).order_by("version").values_list("version", flat=True))
    assert deleted > 0
    for v in kept:
        checkpoints.checkpoint_model(arm_id=world.arm.id, kind="popularity", version=v)
    _assert_same_state(trainer, checkpoints.checkpoint_model(arm_id=world.arm.id, kind="popularity", version=kept[-1]))


def test_rolling_back_to_a_delta_version_restores_its_chain_as_a_snapshot(django_user_model):
    from django.contrib.auth.models import Permission

    admin = django_user_model.objects.create_user("boss", password="x", is_staff=True)
    admin.user_permissions.add(Permission.objects.get(codename="promote_arm"))
    admin = django_user_model.objects.get(pk=admin.pk)
    world = _world("ftrl_logreg", seed=63)
    training.arm_train(arm_id=world.arm.id, config=CONFIG)
    head = ModelCheckpoint.objects.filter(arm=world.arm).order_by("-version").first()
    target = ModelCheckpoint.objects.get(arm=world.arm, version=6)
    assert target.snapshot_version == 4
    expected = checkpoints.checkpoint_model(arm_id=world.arm.id, kind="ftrl_logreg", version=6)

    new = decisions.arm_rollback_to_checkpoint(arm_id=world.arm.id, version=6, user=admin, reason="v6 was better")

    assert new.version == head.version + 1 and new.snapshot_version is None
    _assert_same_state(expected, checkpoints.checkpoint_model(arm_id=world.arm.id, kind="ftrl_logreg",
                                                               version=new.version))
    # Training goes on from the rolled-back state, as deltas on the new snapshot.
    traffic_log(world, requests=20, k=5, seed=99)
    run = training.arm_train(arm_id=world.arm.id, config=CONFIG)
    assert run.versions and ModelCheckpoint.objects.get(arm=world.arm, version=new.version + 1).snapshot_version \
        in (new.version, None)


def test_a_step_folds_pending_mini_batches_into_one_version_and_learns_the_same():
    world = _world("popularity", seed=64, requests=30)  # 150 impressions

    run = training.arm_train(arm_id=world.arm.id, config=TrainingConfig(batch_rows=40, budget_s=60.0, fold_batches=3))

    versions = list(ModelCheckpoint.objects.filter(arm=world.arm).order_by("version").defer("state"))
    assert run.versions == [1, 2]
    assert [v.metrics["n_impressions"] for v in versions] == [120, 30]
    assert [v.metrics["batches"] for v in versions] == [3, 1]
    assert versions[1].metrics["imp_from"] == versions[0].cursor
    assert versions[-1].examples_seen == sum(v.metrics["n_impressions"] + v.metrics["n_clicks"] for v in versions)
    folded = training._models[world.arm.id][1]
    # The same rows one mini-batch per version: the same guarded updates, so the same model.
    ModelCheckpoint.objects.filter(arm=world.arm).delete()
    training._models.clear()
    run = training.arm_train(arm_id=world.arm.id, config=TrainingConfig(batch_rows=40, budget_s=60.0, fold_batches=1))
    assert run.versions == [1, 2, 3, 4]
    _assert_same_state(training._models[world.arm.id][1], folded)
