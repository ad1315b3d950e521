import numpy as np

from models import metrics


def _auc_pairs(y, s, w):
    pos, neg = y > 0.5, y <= 0.5
    d = s[pos][:, None] - s[neg][None, :]
    ww = w[pos][:, None] * w[neg][None, :]
    return ((d > 0) * ww + 0.5 * (d == 0) * ww).sum() / ww.sum()


def test_auc_matches_pairwise_definition_with_ties_and_weights():
    rng = np.random.default_rng(3)
    y = (rng.random(300) < 0.3).astype(float)
    s = np.round(rng.random(300) + 0.3 * y, 1)  # rounding makes many ties
    w = rng.uniform(0.1, 2.0, 300)
    assert abs(metrics.auc(y, s, w) - _auc_pairs(y, s, w)) < 1e-12
    assert abs(metrics.auc(y, s) - _auc_pairs(y, s, np.ones(300))) < 1e-12


def test_auc_is_nan_with_one_class():
    assert np.isnan(metrics.auc(np.zeros(5), np.arange(5.0)))


def test_logloss_of_known_values():
    y = np.array([1.0, 0.0])
    p = np.array([0.8, 0.4])
    expected = -(np.log(0.8) + np.log(0.6)) / 2
    assert abs(metrics.logloss(y, p) - expected) < 1e-12
    assert abs(metrics.logloss(y, p, np.array([3.0, 1.0])) - (-(3 * np.log(0.8) + np.log(0.6)) / 4)) < 1e-12
