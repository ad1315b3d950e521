"""Replay evaluation with a deterministic arm whose ranking depends on how often it has learned."""

import numpy as np
import pytest

from experiments.offline.obd import load_item_context, load_obd_log
from experiments.offline.replay import (
    ReplayData,
    WeightedCTR,
    obd_replay_data,
    progressive_ips,
    replay,
    stable_key,
    wilson,
)

N_ITEMS, N_SLOTS = 4, 2


class RotatingArm:
    """Shows items (u, u+1, …) mod N_ITEMS, where u counts its updates, so stale state changes the outcome."""

    def __init__(self) -> None:
        self.fits: list[tuple[int, float, int]] = []

    def _slate(self) -> np.ndarray:
        return (len(self.fits) + np.arange(N_SLOTS)) % N_ITEMS

    def rank_many(self, users, item_keys, item_feats, k, rng, propensities=True):
        slates = np.tile(self._slate(), (users.keys.shape[0], 1))
        return slates, np.zeros(slates.shape), None

    def propensity_matrix(self, ctx, k):
        matrix = np.zeros((N_ITEMS, k))
        matrix[self._slate(), np.arange(k)] = 1.0
        return matrix

    def partial_fit(self, batch):
        self.fits.append((int(batch.item_keys[0]), float(batch.labels[0]), int(batch.position[0])))
        return {}


def data(item, slot, click) -> ReplayData:
    n = len(item)
    return ReplayData(
        user_keys=np.arange(n, dtype=np.int64),
        user_feats=np.ones((n, 3), np.float32),
        item=np.array(item),
        slot=np.array(slot),
        click=np.array(click),
        item_keys=np.arange(N_ITEMS, dtype=np.int64),
        item_feats=np.ones((N_ITEMS, 2), np.float32),
        n_slots=N_SLOTS,
    )


# event (item, slot, click) → slate shown then → match?
# e0 (0,0,0) [0,1] yes · e1 (1,0,1) [1,2] yes · e2 (1,0,1) [2,3] no · e3 (3,1,1) [2,3] yes · e4 (3,0,0) [3,0] yes
LOG = data(item=[0, 1, 1, 3, 3], slot=[0, 0, 0, 1, 0], click=[0, 1, 1, 1, 0])


@pytest.mark.parametrize("block", [1, 2, 64])
def test_replay_counts_matches_and_learns_from_each_one_in_order(block):
    arm = RotatingArm()
    result = replay(arm, LOG, seed=0, block=block)
    assert (result.events, result.matched, result.matched_clicks, result.updates) == (5, 4, 2, 4)
    assert result.replay_ctr == pytest.approx(0.5)
    assert arm.fits == [(0, 0.0, 1), (1, 1.0, 1), (3, 1.0, 2), (3, 0.0, 1)]


def test_rao_blackwellised_ctr_uses_the_probabilities_before_each_update():
    # π at e0…e4 before learning: 1 (u=0), 1 (u=1), 0 (u=2), 1 (u=2), 1 (u=3) → w = 4·π = [4, 4, 0, 4, 4].
    # Σw r = 4 (e1) + 0 (e2) + 4 (e3) = 8, Σw = 16; effective sample size 16² / 64 = 4.
    result = replay(RotatingArm(), LOG, seed=0)
    assert (result.rb.ctr, result.rb.effective_sample_size) == (pytest.approx(0.5), pytest.approx(4.0))
    assert result.rb.ci == (pytest.approx(0.1500, abs=1e-4), pytest.approx(0.8500, abs=1e-4))


def test_wilson_interval_of_two_in_four():
    # The textbook Wilson 95 % interval for 2/4 is [0.1500, 0.8500].
    assert wilson(2, 4) == (pytest.approx(0.1500, abs=1e-4), pytest.approx(0.8500, abs=1e-4))


def test_stable_key_is_a_fixed_signed_64_bit_hash():
    assert stable_key("a|b|c|d") == stable_key("a|b|c|d") != stable_key("a|b|c|e")
    assert -(2**63) <= stable_key("x") < 2**63


def test_obd_encoding_has_one_hot_users_and_items():
    log = load_obd_log("random", "all")
    encoded = obd_replay_data(log, load_item_context("random", "all"))
    assert encoded.user_feats.shape == (log.n, 3 + 5 + 8 + 8)
    np.testing.assert_array_equal(encoded.user_feats.sum(axis=1), 4.0)
    assert encoded.item_feats.shape == (80, 1 + 12 + 21 + 7)
    np.testing.assert_array_equal(encoded.item_feats[:, 1:].sum(axis=1), 3.0)
    assert np.unique(encoded.user_keys).size == np.unique(log.user_keys()).size


def test_progressive_ips_scores_each_batch_before_learning_from_it():
    # batch_size 2: e0, e1 under u=0 (slate [0, 1]) → π 1, 0; e2, e3 under u=1 ([1, 2]) → π 1, 0; e4 under u=2 → 0.
    # w = [4, 0, 4, 0, 0]; clicks e1, e2, e3 → Σw r = 4, Σw = 8; effective sample size 64 / 32 = 2.
    arm = RotatingArm()
    result = progressive_ips(arm, LOG, batch_size=2)
    assert (result.ctr, result.effective_sample_size) == (pytest.approx(0.5), pytest.approx(2.0))
    assert [fit[0] for fit in arm.fits] == [0, 1, 3]


def test_a_deterministic_arm_with_no_clicks_gets_wilsons_rule_of_three_interval():
    # Four events agree with the arm (w = 4 each) and none was clicked: ESS 4, interval [0, z²/(4 + z²)].
    result = WeightedCTR.of(np.array([4.0, 4.0, 4.0, 4.0, 0.0]), np.array([0.0, 0.0, 0.0, 0.0, 1.0]))
    assert (result.ctr, result.effective_sample_size, result.ci[0]) == (0.0, pytest.approx(4.0), 0.0)
    assert result.ci[1] == pytest.approx(1.959963984540054**2 / (4 + 1.959963984540054**2))
