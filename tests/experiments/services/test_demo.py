"""The demo experiment's arms are valid for the registry, so serving and training can build them."""

from experiments.services.demo import DEMO_ARMS
from models.registry import validate_params


def test_every_demo_arm_has_a_registered_kind_and_valid_params():
    validated = [validate_params(kind, params) for _, kind, params in DEMO_ARMS]

    assert [kind for _, kind, _ in DEMO_ARMS] == ["popularity", "ftrl_logreg", "deep_ctr", "neural_bandit", "q_learning"]
    assert validated[2]["user_buckets"] == 4096
