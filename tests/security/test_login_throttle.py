"""Finding 4: logins are throttled per username and per client address, on /accounts/login/ and /admin/login/.

django-axes counts failures in Postgres; at RECSITE_LOGIN_FAILURE_LIMIT (10) for one username or one
address, that login answers 429 with a clear message, even with the right password, until the cool-off
passes. And seed_demo never resets an existing account's password outside development mode.
"""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client

from tests.experiments.stats_support import fast_passwords  # noqa: F401  (autouse)

pytestmark = pytest.mark.django_db

RIGHT = "correct-Horse-battery-9"
# Documentation addresses (RFC 5737): only REMOTE_ADDR values in the test client, no traffic goes anywhere.
HOME, ELSEWHERE = "192.0.2.10", "198.51.100.20"


@pytest.fixture
def staff():
    return get_user_model().objects.create_user(username="ops", password=RIGHT, is_staff=True, is_superuser=True)


def attempt(path: str, username: str, password: str, address: str = HOME, **headers):
    return Client(REMOTE_ADDR=address).post(path, {"username": username, "password": password}, headers=headers)


@pytest.mark.parametrize("path", ["/accounts/login/", "/admin/login/"])
def test_twenty_wrong_passwords_in_a_row_are_throttled(staff, path):
    answers = [attempt(path, "ops", f"wrong-{i}").status_code for i in range(20)]

    assert answers[:9] == [200] * 9  # the form again, with its error
    assert answers[10:] == [429] * 10


def test_the_lockout_says_what_happened_and_when_to_retry(staff):
    for i in range(10):
        attempt("/accounts/login/", "ops", f"wrong-{i}")

    page = attempt("/accounts/login/", "ops", "wrong-again")

    assert page.status_code == 429
    assert "Too many failed logins" in page.content.decode()
    assert "Try again in 15 minutes" in page.content.decode()
    assert page["Retry-After"] == "900"


def test_a_json_client_gets_the_api_error_shape(staff):
    for i in range(10):
        attempt("/accounts/login/", "ops", f"wrong-{i}")

    response = attempt("/accounts/login/", "ops", "x", Accept="application/json")

    assert (response.status_code, response.json()["error"]["code"]) == (429, "login_throttled")


def test_a_locked_username_refuses_even_the_right_password_from_anywhere(staff):
    for i in range(10):
        attempt("/accounts/login/", "ops", f"wrong-{i}", address=HOME)

    client = Client(REMOTE_ADDR=ELSEWHERE)
    right = client.post("/accounts/login/", {"username": "ops", "password": RIGHT})

    assert right.status_code == 429
    assert "_auth_user_id" not in client.session


def test_one_address_guessing_many_usernames_is_throttled(staff):
    answers = [attempt("/accounts/login/", f"user-{i}", "guess").status_code for i in range(12)]
    right_from_there = attempt("/accounts/login/", "ops", RIGHT, address=HOME)
    right_from_elsewhere = attempt("/accounts/login/", "ops", RIGHT, address=ELSEWHERE)

    assert answers[10:] == [429, 429]
    assert right_from_there.status_code == 429
    assert right_from_elsewhere.status_code == 302  # the account itself was not attacked


def test_a_success_resets_the_count(staff):
    for i in range(9):
        attempt("/accounts/login/", "ops", f"wrong-{i}")
    assert attempt("/accounts/login/", "ops", RIGHT).status_code == 302

    answers = [attempt("/accounts/login/", "ops", f"again-{i}").status_code for i in range(9)]

    assert answers == [200] * 9


def test_the_lockout_ends_after_the_cool_off(staff, settings):
    for i in range(10):
        attempt("/accounts/login/", "ops", f"wrong-{i}")
    assert attempt("/accounts/login/", "ops", RIGHT).status_code == 429

    from axes.models import AccessAttempt

    # The failures as if they were older than the cool-off (django-axes compares attempt_time with now).
    AccessAttempt.objects.update(attempt_time=AccessAttempt.objects.first().attempt_time
                                 - settings.AXES_COOLOFF_TIME - timedelta(seconds=1))

    assert attempt("/accounts/login/", "ops", RIGHT).status_code == 302


def _seed(settings, dev: bool) -> None:
    settings.RECSITE_DEV = dev
    call_command("seed_demo", "--items", "5", "--users", "3", stdout=open("/dev/null", "w"))


def test_seed_demo_keeps_an_existing_password_outside_development(settings, monkeypatch):
    monkeypatch.setenv("RECSITE_ADMIN_PASSWORD", "seeded-admin-pw-1")
    get_user_model().objects.create_user(username="admin", password=RIGHT, is_staff=True)

    _seed(settings, dev=False)

    admin = get_user_model().objects.get(username="admin")
    assert admin.check_password(RIGHT)
    assert not admin.check_password("seeded-admin-pw-1")


def test_seed_demo_gives_new_production_logins_random_passwords(settings, monkeypatch):
    monkeypatch.delenv("RECSITE_ADMIN_PASSWORD", raising=False)

    _seed(settings, dev=False)

    assert not get_user_model().objects.get(username="admin").check_password("recsite-admin")


def test_seed_demo_resets_passwords_in_development(settings, monkeypatch):
    monkeypatch.setenv("RECSITE_ADMIN_PASSWORD", "seeded-admin-pw-1")
    get_user_model().objects.create_user(username="admin", password=RIGHT, is_staff=True)

    _seed(settings, dev=True)

    assert get_user_model().objects.get(username="admin").check_password("seeded-admin-pw-1")
