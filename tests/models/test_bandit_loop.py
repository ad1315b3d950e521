"""The arm picks, the simulator clicks: 50k rounds, realised CTR vs uniform."""

from __future__ import annotations

import numpy as np
import pytest

from models.registry import make_arm
from models.types import Users
from tests.models.conftest import KINDS, TF_KINDS

ROUNDS, BLOCK, N_CAND = 50_000, 500, 50


@pytest.mark.parametrize("kind", [pytest.param(k, marks=pytest.mark.slow) if k in TF_KINDS else k for k in KINDS])
def test_last_fifth_ctr_is_well_above_uniform(kind, world):
    rng = np.random.default_rng(7)
    arm = make_arm(kind, None, seed=0)
    cands = rng.choice(world.config.n_items, N_CAND, replace=False)
    keys, feats = world.item_keys[cands], world.item_feats[cands]
    clicks = []
    for _ in range(ROUNDS // BLOCK):
        users = rng.integers(0, world.config.n_users, BLOCK)
        slates, _, props = arm.rank_many(
            Users.make(world.user_keys[users], world.user_feats[users]),
            keys,
            feats,
            1,
            rng,
            propensities=True,
        )
        shown = cands[slates[:, 0]]
        y = (rng.random(BLOCK) < world.click_prob(users, shown, 1)).astype(np.float32)
        clicks.append(y)
        arm.partial_fit(world.batch(users, shown, y, np.ones(BLOCK, np.int64)))
    realised = np.concatenate(clicks)[-ROUNDS // 5 :].mean()
    uniform = world.click_prob(np.arange(world.config.n_users)[:, None], cands[None, :], 1).mean()
    assert realised >= 1.5 * uniform, (realised, uniform)
