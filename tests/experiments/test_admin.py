"""Every model of the app has an admin whose list, search and filters render for an operator, and no admin form
changes traffic, the inputs of the statistics or the audit log behind the audited services."""

import re
from html.parser import HTMLParser

import pytest
from django.apps import apps
from django.contrib import admin
from django.urls import reverse

from experiments.models import ApiToken, Arm, Decision, Experiment
from experiments.services.demo import demo_seed
from tests.experiments.stats_support import fast_passwords, make_experiment  # noqa: F401  (autouse)

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

    assert (first.items_created, first.users_created, first.experiment_created, first.arms_created) == (30, 12, True, 5)
    assert (second.items_created, second.users_created, second.experiment_created, second.arms_created) == (0, 0, False, 0)
    assert [login.username for login in second.logins] == ["admin", "analyst"]


# ------------------------------------------------------------------ no back door


class _FormFields(HTMLParser):
    """The (name, value) pairs a browser would submit from the admin's change form."""

    def __init__(self):
        super().__init__()
        self.values: dict[str, str] = {}
        self._select: str | None = None
        self._textarea: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        name = a.get("name")
        if tag == "input" and name and a.get("type") not in ("submit", "checkbox"):
            self.values[name] = a.get("value") or ""
        elif tag == "input" and name and a.get("type") == "checkbox" and "checked" in a:
            self.values[name] = a.get("value") or "on"
        elif tag == "select" and name:
            self._select = name
            self.values.setdefault(name, "")
        elif tag == "option" and self._select and "selected" in a:
            self.values[self._select] = a.get("value") or ""
        elif tag == "textarea" and name:
            self._textarea = name
            self.values[name] = ""

    def handle_endtag(self, tag):
        if tag == "select":
            self._select = None
        if tag == "textarea":
            self._textarea = None

    def handle_data(self, data):
        if self._textarea:
            self.values[self._textarea] += data


def form_fields(html: str) -> dict[str, str]:
    parser = _FormFields()
    parser.feed(html)
    return parser.values


def traffic_state(experiment):
    experiment.refresh_from_db()
    arms = [(a.name, a.weight, a.status, a.params, a.kind) for a in experiment.arms.order_by("id")]
    return (experiment.status, experiment.control_arm_id, experiment.winner_id, experiment.allocation_epoch,
            experiment.policy, arms)


@pytest.fixture
def arena():
    experiment, (control, treat) = make_experiment(slug="backdoor")
    return experiment, control, treat


def test_the_arm_change_form_shows_traffic_fields_read_only_and_refuses_a_post(arena, admin_client):
    experiment, control, treat = arena
    url = reverse("admin:experiments_arm_change", args=[treat.id])
    before = traffic_state(experiment)

    page = admin_client.get(url)
    fields = form_fields(page.content.decode())
    response = admin_client.post(url, {**fields, "name": "renamed", "weight": "50", "status": "paused",
                                       "params": '{"prior_a": 9.0}', "kind": "deep_ctr"})

    assert page.status_code == 200
    assert not {"weight", "status", "params", "kind", "name", "experiment"} & set(fields)
    assert response.status_code == 403
    assert traffic_state(experiment) == before
    assert Decision.objects.count() == 0


def test_the_experiment_change_form_saves_only_the_name(arena, admin_client):
    experiment, control, treat = arena
    url = reverse("admin:experiments_experiment_change", args=[experiment.id])
    before = traffic_state(experiment)

    fields = form_fields(admin_client.get(url).content.decode())
    forged = {**fields, "name": "Renamed", "status": "concluded", "control_arm": str(treat.id), "winner": str(treat.id),
              "policy": "thompson", "allocation_epoch": "7", "arms-0-weight": "99", "arms-0-status": "paused",
              "arms-1-params": '{"prior_a": 9.0}'}
    response = admin_client.post(url, forged)

    assert set(fields) & {"name", "arms-TOTAL_FORMS"} == {"name", "arms-TOTAL_FORMS"}
    assert not {"status", "control_arm", "winner", "policy", "arms-0-weight", "arms-0-status", "arms-1-params"} & set(fields)
    assert response.status_code == 302
    assert Experiment.objects.get(pk=experiment.pk).name == "Renamed"
    assert traffic_state(experiment) == before
    assert Decision.objects.count() == 0


@pytest.mark.parametrize("model", ["arm", "assignment", "impression", "armuserstat", "allocationepoch", "decision"])
def test_traffic_and_event_tables_cannot_be_added_to(arena, admin_client, model):
    assert admin_client.get(reverse(f"admin:experiments_{model}_add")).status_code == 403


def test_an_arm_cannot_be_deleted_in_the_admin(arena, admin_client):
    _, control, _ = arena

    delete = admin_client.post(reverse("admin:experiments_arm_delete", args=[control.id]), {"post": "yes"})

    assert delete.status_code == 403
    assert Arm.objects.filter(pk=control.pk).exists()


def test_only_a_draft_experiment_can_be_deleted(arena, admin_client):
    experiment, _, _ = arena
    draft = Experiment.objects.create(slug="draft-one", salt="s")

    running = admin_client.post(reverse("admin:experiments_experiment_delete", args=[experiment.id]), {"post": "yes"})
    drafted = admin_client.post(reverse("admin:experiments_experiment_delete", args=[draft.id]), {"post": "yes"})

    assert running.status_code == 403 and Experiment.objects.filter(pk=experiment.pk).exists()
    assert drafted.status_code == 302 and not Experiment.objects.filter(pk=draft.pk).exists()


def test_an_api_token_made_in_the_admin_is_shown_once_works_and_can_be_revoked(admin_client, admin_user, client):
    page = admin_client.post(reverse("admin:experiments_apitoken_add"), {"user": admin_user.pk, "name": "ci"})
    raw = re.search(r'data-testid="api-token"[^>]*>([^<]+)<', page.content.decode()).group(1)
    token = ApiToken.objects.get()

    used = client.get("/api/v1/experiments", HTTP_AUTHORIZATION=f"Bearer {raw}")
    listing = admin_client.get(reverse("admin:experiments_apitoken_changelist")).content.decode()
    admin_client.post(reverse("admin:experiments_apitoken_changelist"),
                      {"action": "revoke", "_selected_action": [token.pk]})
    revoked = client.get("/api/v1/experiments", HTTP_AUTHORIZATION=f"Bearer {raw}")

    assert page.status_code == 200 and raw.startswith("rs_") and len(raw) > 40
    assert raw not in str(list(ApiToken.objects.values_list()))  # only its hash is stored
    assert raw not in listing and token.prefix in listing
    assert used.status_code == 200 and "experiments" in used.json()
    assert revoked.status_code == 401 and revoked.json()["error"]["code"] == "invalid_token"
