"""Schemathesis against the live OpenAPI document: no 5xx, every response as documented.

A real Daphne serves a seeded arena (a running experiment with two arms and a
small catalogue), so recommendations and clicks reach their 200/201 paths, not
only their errors, and the fuzzer is a logged-in admin, so the session endpoints
(stats, promote) do too. Bounded (25 positive + 25 negative cases per operation)
and seeded; ``bench/fuzz_long.py`` runs the same thing longer.
"""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from tests.reliability.fuzzing import fuzz_api, session_login
from tests.support.serving import catalogue_make, experiment_make


@pytest.mark.e2e
@pytest.mark.slow
def test_fuzzed_api_never_fails_and_answers_as_documented(daphne_server):
    """Logged in as an admin (session + CSRF token), so the staff endpoints get past 401 too."""
    experiment_make(slug="fuzz", salt="fuzz-salt")
    catalogue_make(n=40)
    admin = get_user_model().objects.create_user(username="fuzzer", password="fuzz-Pw-0987", is_staff=True)
    admin.user_permissions.add(Permission.objects.get(codename="promote_arm"))

    report = fuzz_api(daphne_server, max_examples=25, rng_seed=7, slug="fuzz",
                      session=session_login(daphne_server, "fuzzer", "fuzz-Pw-0987"))

    assert report.failures == []
    assert report.server_errors == 0
    assert report.statuses[("POST /api/v1/recommendations", 200)] > 0
    assert report.statuses[("GET /api/v1/experiments/{slug}/stats", 200)] > 0
