"""Every model of the app has an admin whose list, search and filters render for an operator."""

import pytest
from django.apps import apps
from django.contrib import admin
from django.urls import reverse

from experiments.services.demo import demo_seed
from tests.experiments.stats_support import fast_passwords  # noqa: F401  (autouse)

pytestmark = pytest.mark.django_db

MODELS = sorted(apps.get_app_config("experiments").get_models(), key=lambda model: model.__name__)


def test_every_model_is_registered():
    assert [model.__name__ for model in MODELS if model not in admin.site._registry] == []


@pytest.fixture
def seeded():
    # Before admin_client: seeding sets the admin's password, which would end an existing session.
    demo_seed(n_items=20, n_users=10, seed=1, admin_password="pw-a-123456", analyst_password="pw-b-123456")


@pytest.mark.parametrize("model", MODELS, ids=lambda model: model.__name__)
def test_changelist_renders_with_a_search(seeded, admin_client, model):
    url = reverse(f"admin:experiments_{model._meta.model_name}_changelist")

    response = admin_client.get(url, {"q": "sku"})

    assert response.status_code == 200


def test_seed_demo_twice_creates_nothing_twice():
    first = demo_seed(n_items=30, n_users=12, seed=3, admin_password="pw-a-123456", analyst_password="pw-b-123456")
    second = demo_seed(n_items=30, n_users=12, seed=3, admin_password="pw-a-123456", analyst_password="pw-b-123456")

    assert (first.items_created, first.users_created, first.experiment_created, first.arms_created) == (30, 12, True, 4)
    assert (second.items_created, second.users_created, second.experiment_created, second.arms_created) == (0, 0, False, 0)
    assert [login.username for login in second.logins] == ["admin", "analyst"]
