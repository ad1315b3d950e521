"""Pure statistics for the A/B dashboard: NumPy/SciPy only, never Django.

The database side computes per-arm :class:`ClusteredRatioSummary` sums and
calls :func:`experiment_report` once per tick.
"""

from experiments.stats.bayes import p_best_expected_loss
from experiments.stats.frequentist import (
    Estimate,
    binomial_variance,
    ctr_estimate,
    design_effect,
    difference,
    fixed_horizon_p,
    ratio_moments,
    relative_lift,
    relative_lift_moments,
    sample_size_per_arm,
    stratified_ctr,
    two_sided_p,
    wilson_interval,
)
from experiments.stats.multiple import holm_adjust
from experiments.stats.report import experiment_report
from experiments.stats.sequential import (
    DEFAULT_TAU,
    MIN_CLICKS,
    MIN_USERS,
    SequentialState,
    always_valid_p_update,
    confidence_sequence_halfwidth,
    enough_data,
    msprt_log_lambda,
    msprt_p,
    msprt_update,
)
from experiments.stats.srm import SrmResult, srm_across_periods, srm_test
from experiments.stats.summaries import AllocationPeriod, ClusteredRatioSummary, user_update_delta

__all__ = [
    "DEFAULT_TAU",
    "MIN_CLICKS",
    "MIN_USERS",
    "AllocationPeriod",
    "ClusteredRatioSummary",
    "Estimate",
    "SequentialState",
    "SrmResult",
    "always_valid_p_update",
    "binomial_variance",
    "confidence_sequence_halfwidth",
    "ctr_estimate",
    "design_effect",
    "difference",
    "enough_data",
    "experiment_report",
    "fixed_horizon_p",
    "holm_adjust",
    "msprt_log_lambda",
    "msprt_p",
    "msprt_update",
    "p_best_expected_loss",
    "ratio_moments",
    "relative_lift",
    "relative_lift_moments",
    "sample_size_per_arm",
    "srm_across_periods",
    "srm_test",
    "stratified_ctr",
    "two_sided_p",
    "wilson_interval",
    "user_update_delta",
]
