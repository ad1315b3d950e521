import pytest

from models.registry import kinds, make_arm, validate_params


def test_kinds_lists_every_arm_with_defaults():
    ks = kinds()
    assert sorted(ks) == ["deep_ctr", "ftrl_logreg", "neural_bandit", "popularity", "q_learning"]
    assert ks["q_learning"]["gamma"] == 0.5
    assert ks["deep_ctr"]["hidden"] == 256
    assert all(ks[k]["user_dim"] == 8 and ks[k]["item_dim"] == 16 for k in ks)


def test_unknown_kind_is_named():
    with pytest.raises(ValueError, match="unknown arm kind 'bogus'"):
        make_arm("bogus", {}, seed=0)


def test_unknown_param_is_named():
    with pytest.raises(ValueError, match="learning_rate"):
        validate_params("deep_ctr", {"learning_rate": 0.1})


def test_wrong_type_is_named():
    with pytest.raises(ValueError, match="'hidden'"):
        validate_params("deep_ctr", {"hidden": "256"})
    with pytest.raises(ValueError, match="'heads'"):
        validate_params("neural_bandit", {"heads": True})
    with pytest.raises(ValueError, match="'epsilon'"):
        validate_params("ftrl_logreg", {"epsilon": float("nan")})


def test_out_of_range_is_named():
    with pytest.raises(ValueError, match="'gamma'.*<= 0.99"):
        validate_params("q_learning", {"gamma": 1.5})
    with pytest.raises(ValueError, match="'epsilon'.*>= 0.0"):
        validate_params("deep_ctr", {"epsilon": -0.1})
    with pytest.raises(ValueError, match="'exploration'"):
        validate_params("popularity", {"exploration": "ucb"})


def test_int_is_accepted_for_float_and_params_are_completed():
    p = validate_params("ftrl_logreg", {"alpha": 1})
    assert p["alpha"] == 1.0 and isinstance(p["alpha"], float)
    assert p["l1"] == 0.5


def test_seed_must_be_int():
    with pytest.raises(ValueError, match="seed"):
        make_arm("popularity", None, seed="1")
