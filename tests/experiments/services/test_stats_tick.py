"""The stats tick: report from the rollup, thinned history, always-valid state carried, push after commit."""

from datetime import timedelta

import pytest
from django.db import connection, transaction

from experiments.models import AllocationEpoch, StatsSnapshot
from experiments.services import metric_fold
from experiments.services import stats_tick as tick_services
from tests.experiments.stats_support import add_rollup, make_experiment, random_counts

pytestmark = pytest.mark.django_db


@pytest.fixture
def experiment():
    experiment, (control, treat) = make_experiment()
    add_rollup(arm=control, impressions=random_counts(seed=1, users=400, ctr=0.10)[0], clicks=random_counts(seed=1, users=400, ctr=0.10)[1])
    add_rollup(arm=treat, impressions=random_counts(seed=2, users=400, ctr=0.14)[0], clicks=random_counts(seed=2, users=400, ctr=0.14)[1])
    return experiment


def test_tick_stores_a_report_with_every_dashboard_number(experiment, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        event = tick_services.stats_tick(experiment_id=experiment.id)

    stats = event["stats"]
    treat = stats["report"]["arms"]["treat"]
    assert len(callbacks) == 1
    assert event["type"] == "stats"
    assert stats["seq"] == 1
    assert treat["impressions"] == sum(random_counts(seed=2, users=400, ctr=0.14)[0])
    assert treat["ctr_ci"][0] < treat["ctr"] < treat["ctr_ci"][1]
    assert treat["lift"] > 0
    assert 0 <= treat["always_valid_p"] <= 1
    assert stats["report"]["arms"]["control"]["p_best"] + treat["p_best"] == pytest.approx(1.0)
    assert stats["report"]["srm"]["alert"] is False
    assert set(stats["arms"]["treat"]) >= {"model_version", "seconds_since_update", "logloss", "auc", "health"}
    assert StatsSnapshot.objects.get(experiment=experiment).payload == stats
    assert AllocationEpoch.objects.get(experiment=experiment, epoch=0).weights == {"control": 1.0, "treat": 1.0}


def test_history_is_thinned_to_one_row_per_spacing_and_the_head_holds_the_latest(experiment):
    first = tick_services.stats_tick(experiment_id=experiment.id)
    second = tick_services.stats_tick(experiment_id=experiment.id)
    third = tick_services.stats_tick(experiment_id=experiment.id)
    rows = list(StatsSnapshot.objects.filter(experiment=experiment).order_by("computed_at"))

    assert [first["replaces_last"], second["replaces_last"], third["replaces_last"]] == [False, False, True]
    assert len(rows) == 2
    assert rows[-1].payload["seq"] == 3
    assert rows[-1].payload == third["stats"]
    assert set(rows[0].payload) == {"point", "seq", "computed_at", "experiment"}
    assert rows[0].payload["point"] == first["stats"]["point"]


def test_a_new_row_starts_once_the_head_is_older_than_the_spacing(experiment):
    tick_services.stats_tick(experiment_id=experiment.id)
    tick_services.stats_tick(experiment_id=experiment.id)
    head = StatsSnapshot.objects.filter(experiment=experiment).order_by("computed_at").last()
    StatsSnapshot.objects.filter(pk=head.pk).update(
        computed_at=head.computed_at + timedelta(seconds=tick_services.SNAPSHOT_SPACING_S)
    )

    event = tick_services.stats_tick(experiment_id=experiment.id)

    assert event["replaces_last"] is False
    assert StatsSnapshot.objects.filter(experiment=experiment).count() == 3


def test_always_valid_p_never_increases_between_ticks(experiment):
    p = [
        tick_services.stats_tick(experiment_id=experiment.id)["stats"]["report"]["arms"]["treat"]["always_valid_p"]
        for _ in range(3)
    ]
    looks = StatsSnapshot.objects.filter(experiment=experiment).latest("computed_at").payload["report"][
        "sequential_state"
    ]["arms"]["treat"]["looks"]

    assert p[0] >= p[1] >= p[2]
    assert looks == 3


def test_tick_carries_model_freshness_and_progressive_metrics_into_table_and_learning_chart(experiment):
    from experiments.models import Arm, ModelCheckpoint
    from experiments.selectors import dashboard as dashboard_selectors

    treat = Arm.objects.get(experiment=experiment, name="treat")
    ModelCheckpoint.objects.create(
        arm=treat, version=3, state=b"x", examples_seen=500,
        metrics={"accepted": True, "logloss_progressive": 0.41, "auc_progressive": 0.67},
    )

    stats = tick_services.stats_tick(experiment_id=experiment.id)["stats"]
    learning = dashboard_selectors.dashboard_state(experiment=experiment)["figures"]["learning"]

    assert stats["arms"]["treat"]["model_version"] == 3
    assert stats["arms"]["treat"]["logloss"] == 0.41 and stats["arms"]["treat"]["auc"] == 0.67
    assert 0 <= stats["arms"]["treat"]["seconds_since_update"] < 60
    assert stats["arms"]["control"]["model_version"] == 0
    assert learning["layout"]["meta"]["arms"] == ["control", "treat"]
    assert learning["data"][1]["y"] == [0.41]


def test_a_tick_before_any_traffic_gives_an_empty_but_complete_report():
    experiment, _ = make_experiment(slug="fresh", arms=("a", "b", "c", "d"))

    stats = tick_services.stats_tick(experiment_id=experiment.id)["stats"]

    assert stats["report"]["arm_order"] == ["a", "b", "c", "d"]
    assert [stats["report"]["arms"][n]["impressions"] for n in "abcd"] == [0, 0, 0, 0]
    assert stats["report"]["arms"]["b"]["always_valid_p"] == 1.0
    assert stats["point"]["arms"]["a"]["ctr"] is None


def test_the_fold_runs_without_jit_and_gives_the_setting_back(experiment, monkeypatch):
    """The covariate query's estimate passes jit_above_cost from ~1,000 batch users: compiling cost 0.2-1.8 s where
    running it costs milliseconds (bench/bench_stats_db.py)."""
    seen = []
    cuped_fold = metric_fold.cuped_fold

    def spy(cur, **kwargs):
        cur.execute("SHOW jit")
        seen.append(cur.fetchone()[0])
        return cuped_fold(cur, **kwargs)

    monkeypatch.setattr(metric_fold, "cuped_fold", spy)
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("SHOW jit")
        before = cur.fetchone()[0]
        assert tick_services.rollup_fold(arm_ids=list(experiment.arms.values_list("id", flat=True))) == 800
        cur.execute("SHOW jit")
        after = cur.fetchone()[0]
    assert seen == ["off"]
    assert after == before
