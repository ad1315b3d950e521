"""Schemathesis against the live OpenAPI document: no 5xx, every response as documented.

A real Daphne serves a seeded arena (a running experiment with two arms and a
small catalogue), so recommendations and clicks reach their 200/201 paths, not
only their errors. Bounded (30 positive + 30 negative cases per operation) and
seeded; ``bench/fuzz_long.py`` runs the same thing longer.
"""

import pytest

from tests.reliability.fuzzing import fuzz_api
from tests.support.serving import catalogue_make, experiment_make


@pytest.mark.e2e
@pytest.mark.slow
def test_fuzzed_api_never_fails_and_answers_as_documented(daphne_server):
    experiment_make(slug="fuzz", salt="fuzz-salt")
    catalogue_make(n=40)

    report = fuzz_api(daphne_server, max_examples=30, rng_seed=7)

    assert report.failures == []
    assert report.server_errors == 0
    assert report.statuses[("POST /api/v1/recommendations", 200)] > 0
