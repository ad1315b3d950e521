"""Featurisation shared by serving and training: stable keys, fixed shapes, hashing of attributes."""

import numpy as np

from experiments import features


def test_keys_are_stable_across_runs():
    assert features.external_key("sku-00001") == features.external_key("sku-00001")
    assert features.external_key("sku-00001") == -3250533017091193782


def test_keys_of_distinct_ids_differ():
    keys = features.external_keys([f"user-{i}" for i in range(10_000)])
    assert len(np.unique(keys)) == 10_000


def test_user_vector_has_the_requested_dim_and_a_bias():
    vec = features.user_features({"segment": "s1", "age": 30}, dim=8)
    assert (vec.shape, vec.dtype, vec[0]) == ((8,), np.float32, 1.0)


def test_attribute_order_does_not_matter():
    a = features.user_features({"segment": "s1", "age": 30}, dim=16)
    b = features.user_features({"age": 30, "segment": "s1"}, dim=16)
    assert np.array_equal(a, b)


def test_a_numeric_vector_attribute_is_positional():
    a = features.user_features({"vec": [1.0, 0.0]}, dim=64)
    b = features.user_features({"vec": [0.0, 1.0]}, dim=64)
    assert not np.array_equal(a, b)


def test_non_finite_numbers_are_ignored():
    assert np.array_equal(features.user_features({"x": float("nan")}, dim=8), features.user_features({}, dim=8))


def test_item_matrix_rows_match_single_items():
    rows = [("shoes", 12.5, {"colour": "red"}), ("", None, {})]
    matrix = features.item_matrix(rows, dim=16)
    single = features.item_features(category="shoes", price=12.5, features={"colour": "red"}, dim=16)
    assert (matrix.shape, np.array_equal(matrix[0], single)) == ((2, 16), True)
