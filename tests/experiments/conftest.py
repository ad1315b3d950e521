"""Fixtures shared by the experiment tests that read a live experiment through a logged-in client."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.test import Client

from experiments.models import Experiment
from experiments.services import stats_tick as tick_services
from tests.experiments.stats_support import PASSWORD, add_rollup, make_experiment, make_login


@pytest.fixture
def experiment(db) -> Experiment:
    """"homepage": control 6 clicks of 60 impressions over 3 users, treat 9 of 20 over 2, one tick stored."""
    experiment, (control, treat) = make_experiment(slug="homepage")
    add_rollup(arm=control, impressions=[10, 20, 30], clicks=[1, 2, 3])
    add_rollup(arm=treat, impressions=[10, 10], clicks=[5, 4])
    tick_services.stats_tick(experiment_id=experiment.id)
    return experiment


@pytest.fixture
def login(db, settings) -> Callable[..., Client]:
    """``login(username, promoter, csrf=False)``: a client logged in as a new staff user (promoter) or analyst."""
    # In-process logins hash with MD5 (PBKDF2 costs ~1 s a login on this machine).
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

    def make(username: str, promoter: bool, csrf: bool = False) -> Client:
        make_login(username=username, promoter=promoter)
        client = Client(enforce_csrf_checks=csrf)
        assert client.login(username=username, password=PASSWORD)
        return client

    return make
