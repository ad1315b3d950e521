"""import_obd and evaluate_offline against the database, on a miniature Open Bandit folder."""

from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from experiments.models import Arm, ArmUserStat, Click, Experiment, Impression, Item, OfflineEstimate, ShopUser
from experiments.offline import services
from experiments.offline.obd_import import obd_import, obd_user_external_id
from experiments.offline.services import OfflineEvaluationError, offline_evaluate

pytestmark = pytest.mark.django_db

HEADER = ",timestamp,item_id,position,click,propensity_score," + ",".join(
    [f"user_feature_{j}" for j in range(4)] + [f"user-item_affinity_{j}" for j in range(3)]
)
LOGS = {
    "random": [
        "0,2019-11-24 00:00:01+00:00,0,1,1,0.3333333333333333,a,b,c,d,0,0,0",
        "1,2019-11-24 00:00:02+00:00,1,2,0,0.3333333333333333,a,b,c,d,0,0,0",
        "2,2019-11-24 00:00:03+00:00,2,1,1,0.3333333333333333,a,b,c,e,0,0,0",
    ],
    "bts": [
        "0,2019-11-24 00:00:04+00:00,0,1,0,0.5,a,b,c,d,0,0,0",
        "1,2019-11-24 00:00:05+00:00,0,2,1,0.25,a,b,c,e,0,0,0",
    ],
}


@pytest.fixture
def obd_dir(tmp_path: Path) -> Path:
    for policy, rows in LOGS.items():
        folder = tmp_path / policy / "all"
        folder.mkdir(parents=True)
        (folder / "all.csv").write_text("\n".join([HEADER, *rows]) + "\n")
        (folder / "item_context.csv").write_text(
            ",item_id,item_feature_0,item_feature_1,item_feature_2,item_feature_3\n"
            + "".join(f"{i},{i},0.{i},c{i},d,e\n" for i in range(3))
        )
    return tmp_path


def test_import_keeps_positions_propensities_and_clicks(obd_dir):
    summary = obd_import(campaign="all", data_dir=obd_dir)
    assert (summary.experiment, summary.items, summary.users) == ("obd-all", 3, 2)
    assert summary.impressions_created == {"random": 3, "bts": 2}
    assert summary.clicks_created == {"random": 2, "bts": 1}
    bts = Arm.objects.get(experiment__slug="obd-all", name="bts")
    assert (bts.kind, bts.status) == ("logged:bts", Arm.Status.PAUSED)
    rows = list(Impression.objects.filter(arm=bts).order_by("served_at").values_list("position", "propensity"))
    assert rows == [(1, 0.5), (2, 0.25)]
    assert Click.objects.filter(impression__arm=bts, impression__position=2).count() == 1
    assert not Item.objects.filter(external_id__startswith="obd:all:item:", active=True).exists()
    assert ShopUser.objects.get(external_id=obd_user_external_id(user_features=["a", "b", "c", "e"])).attributes == {
        "obd_user_feature_0": "a",
        "obd_user_feature_1": "b",
        "obd_user_feature_2": "c",
        "obd_user_feature_3": "e",
    }


def test_import_builds_the_rollup_and_is_idempotent(obd_dir):
    obd_import(campaign="all", data_dir=obd_dir)
    again = obd_import(campaign="all", data_dir=obd_dir)
    assert again.impressions_created == {"random": 0, "bts": 0}
    assert Impression.objects.count() == 5
    stats = ArmUserStat.objects.filter(arm__experiment__slug="obd-all")
    assert sorted(stats.values_list("arm__name", "impressions", "clicks")) == [
        ("bts", 1, 0),
        ("bts", 1, 1),
        ("random", 1, 1),
        ("random", 2, 1),
    ]


class UniformArm:
    """Every candidate in every slot with probability 1/n: the hand calculation below relies on it."""

    params = {"user_dim": 4, "item_dim": 4, "history_len": 10}

    def propensity_matrix(self, ctx, k):
        return np.full((ctx.n, k), 1.0 / ctx.n)


def new_arm(monkeypatch) -> Arm:
    experiment = Experiment.objects.get(slug="obd-all")
    arm = Arm.objects.create(experiment=experiment, name="candidate", kind="uniform-test", weight=0.0)
    monkeypatch.setattr(services, "_target_model", lambda arm: (UniformArm(), 0))
    return arm


def test_offline_ips_of_a_new_arm_matches_the_hand_value(obd_dir, monkeypatch):
    obd_import(campaign="all", data_dir=obd_dir)
    new_arm(monkeypatch)
    result = offline_evaluate(experiment_slug="obd-all", target_arm="candidate", n_bootstrap=50)
    by_name = {e.estimator: e.value for e in result.estimates}
    # π = 1/3 everywhere. Weights: random rows 1, 1, 1; bts rows (1/3)/0.5, (1/3)/0.25. Σ w·r = 1 + 1 + 4/3 over 5 rows.
    assert by_name["ips"] == pytest.approx((1 + 1 + 4 / 3) / 5)
    # SNIPS per slot. Slot 1 rows (w, r): (1,1) (1,1) (2/3,0); slot 2: (1,0) (4/3,1). Shares 3/5 and 2/5.
    assert by_name["snips"] == pytest.approx(0.6 * 2 / (8 / 3) + 0.4 * (4 / 3) / (7 / 3))
    assert (result.rows, result.candidates, result.live_impressions, result.live_ctr) == (5, 3, 0, None)


def test_the_command_prints_the_offline_estimate(obd_dir, monkeypatch, capsys):
    obd_import(campaign="all", data_dir=obd_dir)
    new_arm(monkeypatch)
    call_command(
        "evaluate_offline",
        "--experiment",
        "obd-all",
        "--target-arm",
        "candidate",
        "--estimators",
        "ips",
        "--n-bootstrap",
        "20",
    )
    output = capsys.readouterr().out
    assert "no live traffic" in output
    assert f"{100 * (1 + 1 + 4 / 3) / 5:.3f}%" in output


def test_the_command_stores_the_estimate_for_the_dashboard(obd_dir, monkeypatch):
    obd_import(campaign="all", data_dir=obd_dir)
    new_arm(monkeypatch)
    call_command(
        "evaluate_offline", "--experiment", "obd-all", "--target-arm", "candidate",
        "--estimators", "ips", "dr", "--n-bootstrap", "20",
    )
    stored = OfflineEstimate.objects.get(arm_name="candidate")
    assert stored.estimator == "dr"
    assert stored.value == pytest.approx(stored.result["offline_estimate"]["dr"]["value"])
    assert stored.ci_low <= stored.value <= stored.ci_high
    assert stored.rows == 5


def test_no_save_stores_nothing(obd_dir, monkeypatch):
    obd_import(campaign="all", data_dir=obd_dir)
    new_arm(monkeypatch)
    call_command(
        "evaluate_offline", "--experiment", "obd-all", "--target-arm", "candidate",
        "--estimators", "ips", "--n-bootstrap", "20", "--no-save",
    )
    assert not OfflineEstimate.objects.exists()


@pytest.mark.parametrize(
    ("slug", "arm", "message"),
    [("nope", "candidate", "no experiment"), ("obd-all", "nope", "no arm"), ("obd-all", "bts", "imported logs")],
)
def test_the_command_refuses_what_it_cannot_evaluate(obd_dir, slug, arm, message):
    obd_import(campaign="all", data_dir=obd_dir)
    with pytest.raises(CommandError, match=message):
        call_command("evaluate_offline", "--experiment", slug, "--target-arm", arm)


def test_import_command_reports_counts(obd_dir, capsys):
    call_command("import_obd", "--campaign", "all", "--data-dir", str(obd_dir))
    assert "random: 3 impressions and 2 clicks created" in capsys.readouterr().out


def test_a_new_arm_can_be_evaluated_by_kind_without_saving_it(obd_dir, monkeypatch):
    obd_import(campaign="all", data_dir=obd_dir)
    monkeypatch.setattr(services, "_fresh_model", lambda kind, params, seed: UniformArm())
    result = offline_evaluate(experiment_slug="obd-all", target_arm="fresh", kind="popularity", n_bootstrap=20)
    assert {e.estimator: e.value for e in result.estimates}["ips"] == pytest.approx((1 + 1 + 4 / 3) / 5)
    assert not Arm.objects.filter(name="fresh").exists()


def test_a_tiny_effective_sample_size_is_flagged(obd_dir, monkeypatch):
    obd_import(campaign="all", data_dir=obd_dir)
    new_arm(monkeypatch)
    result = offline_evaluate(experiment_slug="obd-all", target_arm="candidate", n_bootstrap=20)
    # Weights [1, 1, 1, 2/3, 4/3]: (Σw)² / Σw² = 25 / (3 + 4/9 + 16/9).
    assert result.effective_sample_size == pytest.approx(25 / (3 + 20 / 9))
    assert result.notes[0].startswith("WARNING: effective sample size 5 < 100")


def test_logging_arms_restrict_the_evaluation_to_those_logs(obd_dir, monkeypatch):
    obd_import(campaign="all", data_dir=obd_dir)
    new_arm(monkeypatch)

    result = offline_evaluate(experiment_slug="obd-all", target_arm="candidate", n_bootstrap=20, logging_arms=["bts"])
    call_command("evaluate_offline", "--experiment", "obd-all", "--target-arm", "candidate", "--estimators", "ips",
                 "--n-bootstrap", "20", "--logging-arms", "random")

    # π = 1/3 everywhere; the two bts rows weigh (1/3)/0.5 and (1/3)/0.25, one of them clicked (w = 4/3).
    assert result.rows == 2 and {e.estimator: e.value for e in result.estimates}["ips"] == pytest.approx(2 / 3)
    assert result.max_weight == pytest.approx(4 / 3)
    assert OfflineEstimate.objects.get(arm_name="candidate").rows == 3
    with pytest.raises(OfflineEvaluationError, match="no logging arm"):
        offline_evaluate(experiment_slug="obd-all", target_arm="candidate", n_bootstrap=20, logging_arms=["nope"])
