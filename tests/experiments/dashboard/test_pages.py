"""Dashboard pages: login required, analysts read everything and change nothing, admins decide with CSRF."""

import csv
import io

import pytest
from django.test import Client

from experiments.models import Decision, Experiment
from tests.experiments.stats_support import (
    PASSWORD,
    fast_passwords,  # noqa: F401  (autouse)
    make_login,
)

pytestmark = pytest.mark.django_db


def csrf_post(client: Client, url: str, data: dict):
    client.get(url)
    return client.post(url, {**data, "csrfmiddlewaretoken": client.cookies["csrftoken"].value})


@pytest.mark.parametrize("path", ["/dashboard/", "/dashboard/homepage/", "/dashboard/homepage/audit/", "/dashboard/homepage/export.csv"])
def test_pages_require_login(experiment, path):
    response = Client().get(path)

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


def test_login_page_renders_and_logs_in():
    make_login(username="analyst", promoter=False)
    client = Client()

    page = client.get("/accounts/login/")
    response = client.post("/accounts/login/", {"username": "analyst", "password": PASSWORD})

    assert page.status_code == 200 and b'name="password"' in page.content
    assert response.status_code == 302 and response["Location"] == "/dashboard/"


def test_analyst_sees_the_dashboard_with_local_plotly_and_no_decision_rights(experiment, login):
    client = login("analyst", promoter=False)

    page = client.get("/dashboard/homepage/")
    config = page.context["config"]

    assert page.status_code == 200
    assert b"/static/vendor/plotly.min.js" in page.content and b"cdn" not in page.content.lower()
    assert config["canDecide"] is False
    assert b"<th>actions</th>" not in page.content


def test_analyst_cannot_open_or_post_any_decision(experiment, login):
    client = login("analyst", promoter=False)
    treat = experiment.arms.get(name="treat")

    for action in ("promote", "pause", "resume", "reweight"):
        url = f"/dashboard/homepage/arms/{treat.id}/{action}/"
        assert client.get(url).status_code == 403
        assert client.post(url, {"reason": "x", "weight": 2}).status_code == 403

    assert Decision.objects.count() == 0
    assert Experiment.objects.get(pk=experiment.pk).status == "running"


def test_admin_confirmation_shows_numbers_and_weak_evidence_then_promotes(experiment, login):
    client = login("boss", promoter=True, csrf=True)
    treat = experiment.arms.get(name="treat")
    url = f"/dashboard/homepage/arms/{treat.id}/promote/"

    confirm = client.get(url)
    without_token = client.post(url, {"reason": "ship it"})
    response = csrf_post(client, url, {"reason": "ship it"})

    assert confirm.status_code == 200
    assert b'data-testid="weak-evidence"' in confirm.content
    assert b"Always-valid p" in confirm.content
    assert without_token.status_code == 403
    assert response.status_code == 302
    decision = Decision.objects.get()
    assert (decision.action, decision.arm_id, decision.user.username, decision.reason) == ("promote", treat.id, "boss", "ship it")
    assert Experiment.objects.get(pk=experiment.pk).winner_id == treat.id


def test_audit_lists_decisions_and_rollback_restores(experiment, login):
    client = login("boss", promoter=True)
    treat = experiment.arms.get(name="treat")
    client.post(f"/dashboard/homepage/arms/{treat.id}/pause/", {"reason": "looks broken"})
    decision = Decision.objects.get()

    audit = client.get("/dashboard/homepage/audit/")
    rollback = client.post(f"/dashboard/homepage/decisions/{decision.id}/rollback/", {"reason": "false alarm"})

    assert b"looks broken" in audit.content and b"pause" in audit.content
    assert rollback.status_code == 302
    assert experiment.arms.get(name="treat").status == "active"
    assert list(Decision.objects.order_by("id").values_list("action", flat=True)) == ["pause", "rollback"]


def test_invalid_reweight_is_a_400_with_the_form_and_no_decision(experiment, login):
    client = login("boss", promoter=True)
    treat = experiment.arms.get(name="treat")

    response = client.post(f"/dashboard/homepage/arms/{treat.id}/reweight/", {"reason": "x", "weight": "-2"})

    assert response.status_code == 400
    assert Decision.objects.count() == 0


def test_exports_have_one_row_per_arm_with_the_dashboard_numbers(experiment, login):
    client = login("analyst", promoter=False)

    rows = list(csv.DictReader(io.StringIO(client.get("/dashboard/homepage/export.csv").content.decode())))
    doc = client.get("/dashboard/homepage/export.json").json()

    assert [r["arm"] for r in rows] == ["control", "treat"]
    assert rows[1]["impressions"] == "20" and float(rows[1]["ctr"]) == pytest.approx(0.45)
    assert [a["arm"] for a in doc["arms"]] == ["control", "treat"]
    assert doc["arms"][0]["ctr"] == pytest.approx(6 / 60)
    assert set(doc) >= {"experiment", "computed_at", "srm", "warnings"}


def test_the_page_links_the_per_user_export_beside_the_results_exports(experiment, login):
    client = login("analyst", promoter=False)

    page = client.get("/dashboard/homepage/").content.decode()
    links = [page.index(f'href="{url}"') for url in ("/dashboard/homepage/export.json",
                                                      "/api/v1/experiments/homepage/export/users.csv",
                                                      "/api/v1/experiments/homepage/export/users.parquet")]
    downloaded = client.get("/api/v1/experiments/homepage/export/users.csv")

    assert links == sorted(links)
    assert (downloaded.status_code, len(b"".join(downloaded.streaming_content).splitlines())) == (200, 1 + 5)
