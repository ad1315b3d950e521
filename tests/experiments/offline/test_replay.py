"""Replay evaluation with a deterministic arm whose ranking depends on how often it has learned."""

import numpy as np
import pytest

from experiments.offline.obd import load_item_context, load_obd_log
from experiments.offline.replay import ReplayData, obd_replay_data, progressive_ips, replay, stable_key, wilson

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
    # clicks: e1 with u=1 shows item 1 in slot 0 (π=1), e2 with u=2 does not (π=0), e3 with u=2 shows item 3 in slot 1.
    result = replay(RotatingArm(), LOG, seed=0)
    assert result.rb_ctr == pytest.approx(N_ITEMS * (1 + 0 + 1) / 5)


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
    # batch_size 2: e0,e1 scored with u=0 (slate [0,1]); learn → u=1; e2,e3 scored with u=1 (slate [1,2]); → u=2; e4.
    # clicks: e1 item 1 slot 0 under [0,1] → 0; e2 item 1 slot 0 under [1,2] → 1; e3 item 3 slot 1 under [1,2] → 0.
    arm = RotatingArm()
    value, (low, high) = progressive_ips(arm, LOG, batch_size=2)
    assert value == pytest.approx(N_ITEMS * 1 / 5)
    assert low <= value <= high
    assert [fit[0] for fit in arm.fits] == [0, 1, 3]
