"""The shadow arm's doubly robust estimate on a seeded simulated log whose truth is known (pure: no database)."""

import numpy as np

from experiments.selectors.shadow import doubly_robust

N_ITEMS, K, EPS = 20, 3, 0.2


def _log(n_requests: int, seed: int):
    rng = np.random.default_rng(seed)
    ctr = rng.uniform(0.01, 0.2, N_ITEMS)
    slot_factor = np.array([1.0, 0.7, 0.5])
    best = np.argsort(-ctr)[:K]  # the shadow's greedy slate
    rows = []
    for r in range(n_requests):
        shown = rng.permutation(N_ITEMS)[:K]  # the served arm: uniformly random slates, π₀ = 1/n per slot
        for j, a in enumerate(shown):
            greedy = rng.random() >= EPS
            own = best[j] if greedy else rng.integers(N_ITEMS)
            target = (1 - EPS) * (a == best[j]) + EPS / N_ITEMS
            click = rng.random() < ctr[a] * slot_factor[j]
            rows.append((a, own, j + 1, 1 / N_ITEMS, target, 3, float(click), r))
    truth = np.mean([((1 - EPS) * ctr[best[j]] + EPS * ctr.mean()) * slot_factor[j] for j in range(K)])
    return np.array(rows, dtype=np.float64), truth


def test_doubly_robust_recovers_the_shadow_policys_ctr_within_its_interval():
    covered, errors = 0, []
    for seed in range(8):
        rows, truth = _log(4_000, seed)
        est = doubly_robust(rows, seed=seed)
        covered += est["ci_low"] <= truth <= est["ci_high"]
        errors.append(est["value"] - truth)
        assert (est["rows"], est["requests"], est["model_version"]) == (len(rows), 4_000, 3)
        # π_e / π₀ is (1 − ε)·n + ε on the shadow's own item, ε elsewhere.
        assert est["max_weight"] == (1 - EPS) * N_ITEMS + EPS
        assert 0 < est["effective_sample_size"] < len(rows)
    assert covered >= 6  # a 95% interval, 8 seeded worlds
    assert abs(np.mean(errors)) < 0.01


def test_the_live_arms_ctr_is_not_what_the_shadow_reports():
    rows, truth = _log(4_000, 11)
    logged_ctr = rows[:, 6].mean()
    est = doubly_robust(rows, seed=11)
    # The served (random) arm's CTR is far below the shadow's greedy policy; the estimate follows the shadow.
    assert truth > 1.5 * logged_ctr
    assert abs(est["value"] - truth) < abs(est["value"] - logged_ctr)


def test_the_interval_is_clustered_by_request_by_hand():
    # Two requests of two slots, every weight 1 and every q̂ 0: DR terms are the clicks themselves.
    rows = np.array([(0, 0, 1, 0.5, 0.5, 1, 1.0, 7), (1, 1, 2, 0.5, 0.5, 1, 1.0, 7),
                     (0, 0, 1, 0.5, 0.5, 1, 0.0, 9), (1, 1, 2, 0.5, 0.5, 1, 0.0, 9)] * 30, dtype=np.float64)
    rows[:, 7] += np.repeat(np.arange(30) * 100, 4)  # 60 requests: 30 clicked twice, 30 not at all
    est = doubly_robust(rows, seed=0)
    # q̂ is cross-fitted, so the terms are not exactly the clicks; the clustered s.e. must exceed the i.i.d. one.
    iid = np.sqrt(0.25 / len(rows))
    assert est["requests"] == 60 and est["std_error"] > 1.3 * iid
