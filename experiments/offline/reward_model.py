"""A reward model for DM and DR: click rate per (item, slot), shrunk toward simpler rates.

Logged CTRs are tiny (≈0.4 %) and a cell of the item × slot table sees few clicks,
so each cell is pulled toward its item's rate times its slot's relative rate, and
each item toward the overall rate (Beta–Binomial style pseudo-counts). The model
is cross-fitted: a row's prediction comes from the folds it is not in, which keeps
DR's residual term honest (OBP's ``RegressionModel.fit_predict`` does the same).

Pure NumPy, no Django.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_PRIOR_STRENGTH = 200.0


def fit_item_slot_ctr(
    item: np.ndarray,
    slot: np.ndarray,
    reward: np.ndarray,
    *,
    n_items: int,
    n_slots: int,
    prior_strength: float = DEFAULT_PRIOR_STRENGTH,
) -> np.ndarray:
    """(n_items, n_slots) table of shrunken mean rewards from rows (item, 0-based slot, reward)."""
    item = np.asarray(item, dtype=np.int64)
    slot = np.asarray(slot, dtype=np.int64)
    reward = np.asarray(reward, dtype=np.float64)
    if not (item.shape == slot.shape == reward.shape) or item.ndim != 1:
        raise ValueError("item, slot and reward must be 1-D arrays of one length")
    if item.size and (item.min() < 0 or item.max() >= n_items or slot.min() < 0 or slot.max() >= n_slots):
        raise ValueError("item or slot index out of range")
    if prior_strength <= 0:
        raise ValueError("prior_strength must be positive")
    m = prior_strength
    overall = reward.mean() if reward.size else 0.0
    shown = np.zeros((n_items, n_slots))
    clicked = np.zeros((n_items, n_slots))
    np.add.at(shown, (item, slot), 1.0)
    np.add.at(clicked, (item, slot), reward)
    slot_rate = (clicked.sum(axis=0) + m * overall) / (shown.sum(axis=0) + m)
    slot_factor = slot_rate / overall if overall > 0 else np.ones(n_slots)
    item_rate = (clicked.sum(axis=1) + m * overall) / (shown.sum(axis=1) + m)
    cell_prior = item_rate[:, None] * slot_factor[None, :]
    return (clicked + m * cell_prior) / (shown + m)


@dataclass(frozen=True)
class CrossFitted:
    """Per-fold tables and each row's fold: row i is predicted by ``tables[fold[i]]``."""

    tables: np.ndarray  # (n_folds, n_items, n_slots)
    fold: np.ndarray  # (n,)

    def logged(self, item: np.ndarray, slot: np.ndarray) -> np.ndarray:
        """q̂(a_i, k_i) for each logged row."""
        return self.tables[self.fold, item, slot]

    def expected(self, slot: np.ndarray, policy_table: np.ndarray) -> np.ndarray:
        """Σ_a π(a, k_i) q̂(a, k_i) for a context-free policy given as an (n_items, n_slots) table."""
        per_fold = np.einsum("fas,as->fs", self.tables, policy_table)
        return per_fold[self.fold, slot]

    def expected_rows(self, slot: np.ndarray, action_probability: np.ndarray) -> np.ndarray:
        """Σ_a π(a | x_i, k_i) q̂(a, k_i) for a contextual policy given as an (n, n_items) matrix."""
        q_rows = self.tables[self.fold, :, slot]  # (n, n_items)
        return (q_rows * action_probability).sum(axis=1)


def cross_fit_item_slot_ctr(
    item: np.ndarray,
    slot: np.ndarray,
    reward: np.ndarray,
    *,
    n_items: int,
    n_slots: int,
    n_folds: int = 5,
    seed: int = 0,
    prior_strength: float = DEFAULT_PRIOR_STRENGTH,
) -> CrossFitted:
    """Fit one table per fold on the other folds' rows (rows are assigned to folds at random)."""
    if n_folds < 2:
        raise ValueError("n_folds must be at least 2")
    n = np.asarray(item).shape[0]
    fold = np.random.default_rng(seed).permutation(np.arange(n) % n_folds)
    tables = np.stack(
        [
            fit_item_slot_ctr(
                np.asarray(item)[fold != f],
                np.asarray(slot)[fold != f],
                np.asarray(reward)[fold != f],
                n_items=n_items,
                n_slots=n_slots,
                prior_strength=prior_strength,
            )
            for f in range(n_folds)
        ]
    )
    return CrossFitted(tables=tables, fold=fold)
