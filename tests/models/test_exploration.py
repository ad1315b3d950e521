import numpy as np

from models import exploration, thompson


def test_topk_is_ordered_and_breaks_ties_by_index():
    s = np.array([[0.1, 0.5, 0.5, 0.9, 0.2]])
    assert exploration.topk(s, 3).tolist() == [[3, 1, 2]]


def test_epsilon_greedy_matrix_is_a_slot_distribution():
    s = np.random.default_rng(0).random(7)
    p = exploration.epsilon_greedy_matrix(s, 3, 0.2)
    np.testing.assert_allclose(p.sum(axis=0), 1.0)
    assert p[np.argmax(s), 0] == 0.8 + 0.2 / 7


def test_thompson_marginals_match_fine_quadrature_reference():
    # Two independent discretisations agree: the default is precise to ~1e-6.
    rng = np.random.default_rng(5)
    a = rng.uniform(1, 30, 8)
    b = a * rng.uniform(2, 10, 8)
    coarse = thompson.slot_marginals(a, b, np.arange(8), 4)
    fine = thompson.slot_marginals(a, b, np.arange(8), 4, per_panel=48)
    np.testing.assert_allclose(coarse, fine, atol=2e-6)
    np.testing.assert_allclose(fine.sum(axis=0), 1.0, atol=1e-6)


def test_thompson_marginals_handle_identical_posteriors_by_symmetry():
    a = np.array([2.0, 2.0, 2.0, 2.0])
    b = np.array([5.0, 5.0, 5.0, 5.0])
    p = thompson.slot_marginals(a, b, np.array([0, 3]), 3, per_panel=8)
    np.testing.assert_allclose(p, 0.25, atol=1e-6)
