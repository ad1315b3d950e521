"""Results reads: the evidence a promotion is confirmed against."""

import pytest

from experiments.selectors import results as result_selectors
from tests.experiments.stats_support import add_rollup, make_experiment, random_counts

pytestmark = pytest.mark.django_db


def test_promotion_evidence_is_weak_when_srm_is_flagged_or_always_valid_p_is_high():
    from experiments.services import stats_tick as tick_services

    experiment, (control, treat) = make_experiment()
    n0, c0 = random_counts(seed=8, users=900, ctr=0.10)
    n1, c1 = random_counts(seed=9, users=300, ctr=0.30)
    add_rollup(arm=control, impressions=n0, clicks=c0)
    add_rollup(arm=treat, impressions=n1, clicks=c1)
    payload = tick_services.stats_tick(experiment_id=experiment.id)["stats"]

    evidence = result_selectors.arm_evidence(payload, "treat")

    assert payload["report"]["srm"]["alert"] is True  # 900 vs 300 users under equal weights
    assert evidence["row"]["always_valid_p"] < 0.05
    assert [w for w in evidence["weak"] if w.startswith("Sample-ratio mismatch")]
    assert not [w for w in evidence["weak"] if w.startswith("Always-valid p")]
