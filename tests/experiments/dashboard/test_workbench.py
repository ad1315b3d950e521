"""The operator's workbench pages: the whole lifecycle from /dashboard/, through the same services as the JSON API."""

import json

import pytest
from django.test import Client

from experiments.models import Arm, Decision, Experiment
from models.registry import kinds, param_docs

pytestmark = pytest.mark.django_db


def post(client: Client, url: str, data: dict):
    client.get(url)
    return client.post(url, {**data, "csrfmiddlewaretoken": client.cookies["csrftoken"].value})


def create_form(**extra) -> dict:
    return {"slug": "shoes", "name": "Shoes", "salt": "pepper-1", "arm_name": "control", "kind": "popularity",
            "reason": "", **extra}


def test_the_kind_picker_shows_every_registry_kind_with_its_defaults_and_help(login):
    page = login("admin", promoter=True).get("/dashboard/new/")
    html = page.content.decode()

    assert page.status_code == 200
    for kind, defaults in kinds().items():
        assert f'data-kind="{kind}"' in html
        for name in defaults:
            assert f'name="param-{kind}-{name}"' in html
    assert param_docs("deep_ctr")["lr"] in html
    assert 'id="id_param-deep_ctr-lr"' in html and 'value="0.003"' in html


def test_create_from_the_dashboard_makes_the_audited_draft_with_its_salt_control_and_params(login):
    client = login("admin", promoter=True)

    response = post(client, "/dashboard/new/", create_form(**{"param-popularity-epsilon": "0.1"}))

    experiment = Experiment.objects.get(slug="shoes")
    control = Arm.objects.get(experiment=experiment)
    decision = Decision.objects.get(experiment=experiment)
    assert response.status_code == 302 and response["Location"] == "/dashboard/shoes/"
    assert (experiment.name, experiment.salt, experiment.status, experiment.control_arm_id) == (
        "Shoes", "pepper-1", "draft", control.id)
    assert (control.name, control.kind, control.params["epsilon"], control.weight) == ("control", "popularity", 0.1, 1.0)
    assert (decision.action, decision.user.username) == ("create", "admin")


def test_the_mode_is_chosen_at_creation(login):
    client = login("admin", promoter=True)
    assert 'name="mode"' in client.get("/dashboard/new/").content.decode()

    response = post(client, "/dashboard/new/", create_form(mode="interleaved"))

    assert response.status_code == 302
    assert Experiment.objects.get(slug="shoes").mode == "interleaved"
    assert Decision.objects.get(experiment__slug="shoes").stats_snapshot["mode"] == "interleaved"


def test_a_bad_param_shows_the_registry_message_next_to_its_field_and_writes_nothing(login):
    client = login("admin", promoter=True)

    response = post(client, "/dashboard/new/", create_form(**{"param-popularity-epsilon": "7",
                                                              "param-popularity-heads": "many"}))
    html = response.content.decode()

    assert response.status_code == 400
    assert "param &#x27;epsilon&#x27; of kind &#x27;popularity&#x27; must be &lt;= " in html
    assert 'data-param="epsilon"' in html and 'data-param="heads"' in html
    assert "param &#x27;heads&#x27; of kind &#x27;popularity&#x27; must be a finite int, got &#x27;many&#x27;" in html
    assert not Experiment.objects.exists()


def test_a_taken_slug_is_refused_next_to_the_slug_field(login, experiment):
    client = login("admin", promoter=True)

    response = post(client, "/dashboard/new/", create_form(slug="homepage"))

    assert response.status_code == 409
    assert response.context["form"].errors["slug"] == ["An experiment 'homepage' exists already."]


def test_add_a_candidate_then_start_set_weights_stop_and_conclude_all_from_the_dashboard(login):
    client = login("admin", promoter=True)
    post(client, "/dashboard/new/", create_form())

    added = post(client, "/dashboard/shoes/arms/new/", {"arm_name": "cand", "kind": "ftrl_logreg", "weight": "0",
                                                        "param-ftrl_logreg-alpha": "0.1", "reason": "try FTRL"})
    post(client, "/dashboard/shoes/arms/new/", {"arm_name": "deep", "kind": "deep_ctr", "weight": "1", "reason": ""})
    started = post(client, "/dashboard/shoes/start/", {"reason": "go"})
    experiment = Experiment.objects.get(slug="shoes")
    cand, deep = Arm.objects.get(name="cand"), Arm.objects.get(name="deep")
    control = Arm.objects.get(name="control")
    launched = post(client, "/dashboard/shoes/weights/", {f"w-{control.id}": "1", f"w-{deep.id}": "1",
                                                          f"w-{cand.id}": "2", "reason": "launch cand"})
    stopped = post(client, "/dashboard/shoes/stop/", {"reason": "enough"})
    concluded = post(client, "/dashboard/shoes/conclude/", {"conclusion": "Nothing beat the control; keep it."})

    experiment.refresh_from_db()
    cand.refresh_from_db()
    assert [r.status_code for r in (added, started, launched, stopped, concluded)] == [302] * 5
    assert (cand.kind, cand.params["alpha"], cand.weight) == ("ftrl_logreg", 0.1, 2.0)
    assert (experiment.status, experiment.winner_id, experiment.conclusion) == (
        "concluded", control.id, "Nothing beat the control; keep it.")
    assert list(Decision.objects.filter(experiment=experiment).order_by("id").values_list("action", flat=True)) == [
        "create", "arm_add", "arm_add", "start", "reweight", "stop", "conclude"]
    page = client.get("/dashboard/shoes/")
    assert b'data-testid="conclusion"' in page.content and b"Nothing beat the control" in page.content
    assert json.loads(client.get("/dashboard/shoes/export.json").content)["experiment"]["conclusion"] == (
        "Nothing beat the control; keep it.")


def test_conclude_on_a_running_experiment_says_to_promote_or_stop_first(login, experiment):
    client = login("admin", promoter=True)

    response = post(client, "/dashboard/homepage/conclude/", {"conclusion": "too early"})

    assert response.status_code == 409
    assert "promote the winning arm" in response.content.decode()
    assert Experiment.objects.get(slug="homepage").conclusion == ""


@pytest.mark.parametrize("path", ["/dashboard/new/", "/dashboard/homepage/arms/new/", "/dashboard/homepage/start/",
                                  "/dashboard/homepage/stop/", "/dashboard/homepage/weights/",
                                  "/dashboard/homepage/conclude/"])
def test_analysts_cannot_open_or_post_any_workbench_page(login, experiment, path):
    client = login("analyst", promoter=False)
    client.get("/dashboard/homepage/")

    opened = client.get(path)
    posted = client.post(path, {"reason": "x", "conclusion": "x", **create_form(slug="sneaky")})

    assert (opened.status_code, posted.status_code) == (403, 403)
    assert not Experiment.objects.filter(slug="sneaky").exists()
    assert Experiment.objects.get(slug="homepage").status == "running"


def test_analysts_see_no_operator_buttons_and_admins_do(login, experiment):
    analyst = login("analyst", promoter=False).get("/dashboard/homepage/")
    admin = login("admin", promoter=True).get("/dashboard/homepage/")

    assert b'data-testid="operator-bar"' not in analyst.content
    assert b'data-testid="operator-bar"' in admin.content and b'data-testid="stop"' in admin.content


def test_the_empty_list_offers_creation_instead_of_a_command(login):
    page = login("admin", promoter=True).get("/dashboard/")

    assert b"seed_demo" not in page.content and b'href="/dashboard/new/"' in page.content


def test_launch_presets_the_candidate_weight(login, experiment):
    client = login("admin", promoter=True)
    Arm.objects.create(experiment=experiment, name="cand", kind="popularity", weight=0.0)

    page = client.get("/dashboard/homepage/weights/?launch=cand")

    form = page.context["form"]
    key = f"w-{Arm.objects.get(name='cand').id}"
    assert form.fields[key].initial == 1.0 and form.fields["reason"].initial == "launch cand"


def test_the_planning_calculator_answers_on_the_experiment_page(login, experiment):
    client = login("analyst", promoter=False)

    default = client.get("/dashboard/homepage/")
    asked = client.get("/dashboard/homepage/?mde=0.5&alpha=0.05&power=0.9")

    plan = asked.context["plan"]
    assert default.context["plan"]["mde"] == 0.05 and plan["mde"] == 0.5 and plan["power"] == 0.9
    assert plan["impressions_per_arm"] > 0 and plan["users_per_arm"] > 0
    assert 0 <= plan["progress"] <= 1
    assert b'data-testid="plan-result"' in asked.content and b'data-testid="plan-progress"' in asked.content


def test_segments_come_from_the_rollups_by_a_chosen_attribute_with_holm(login):
    from datetime import timedelta

    from django.utils import timezone

    from experiments.models import ShopUser
    from tests.experiments.stats_support import add_rollup, make_experiment

    experiment, (control, treat) = make_experiment(slug="seg")
    made = add_rollup(arm=control, impressions=[10, 10, 10, 10], clicks=[1, 2, 1, 0])
    made += add_rollup(arm=treat, impressions=[10, 10, 10, 10], clicks=[4, 5, 1, 2])
    for user, country in zip(made, ["FR", "FR", "DE", "DE"] * 2, strict=True):
        user.attributes = {"country": country}
        user.save(update_fields=["attributes"])
    ShopUser.objects.filter(pk__in=[made[0].pk, made[4].pk]).update(created_at=timezone.now() - timedelta(days=3))
    experiment.started_at = timezone.now() - timedelta(days=1)
    experiment.save(update_fields=["started_at"])
    client = login("analyst", promoter=False)

    by_country = client.get("/dashboard/seg/segments/?attribute=country")
    by_age = client.get("/dashboard/seg/segments/?attribute=new_vs_returning")

    report = by_country.context["report"]
    assert by_country.context["attributes"] == ["new_vs_returning", "country"]
    assert report["segments"] == ["DE", "FR"]
    fr = report["rows"]["FR"]
    assert (fr["control"]["clicks"], fr["control"]["impressions"], fr["treat"]["clicks"]) == (3, 20, 9)
    assert fr["treat"]["lift"] == pytest.approx((9 / 20) / (3 / 20) - 1)
    assert b"Holm-corrected across the 2 values" in by_country.content
    assert b'data-testid="exploratory"' in by_country.content
    assert set(by_age.context["report"]["segments"]) == {"new", "returning"}
    assert by_age.context["report"]["rows"]["returning"]["control"]["users"] == 1


def test_the_expected_finish_uses_the_last_hour_of_compacted_snapshots(experiment):
    from datetime import timedelta

    from experiments.models import StatsSnapshot
    from experiments.selectors.planning import arm_rates, experiment_plan_current
    from experiments.services.stats_tick import snapshot_compact

    newest = StatsSnapshot.objects.get(experiment=experiment)
    older = snapshot_compact(newest.payload)
    older["point"] = {"arms": {"control": {"impressions": 0}, "treat": {"impressions": 20}}}
    StatsSnapshot.objects.create(experiment=experiment, computed_at=newest.computed_at - timedelta(seconds=600),
                                 payload=older)

    rates = arm_rates(experiment=experiment)
    plan = experiment_plan_current(experiment=experiment, mde=0.5, alpha=0.05, power=0.8)

    assert rates == {"control": pytest.approx(60 / 600), "treat": pytest.approx(0.0)}
    assert plan["seconds_left"] is None and plan["finish_at"] is None  # treat got nothing in the window


@pytest.mark.parametrize("action", ["start", "stop"])
def test_a_button_and_its_json_twin_record_the_same_decision(login, action):
    from django.contrib.auth import get_user_model

    from experiments.services import lifecycle
    from experiments.services.tokens import api_token_issue

    page = login("admin", promoter=True)
    admin = get_user_model().objects.get(username="admin")
    token = api_token_issue(user=admin, name="ci")[1]
    made = {}
    for via in ("page", "api"):
        experiment = lifecycle.experiment_create(slug=f"twin-{via}", arms=[lifecycle.ArmSpec("control", "popularity")],
                                                 user=admin)
        if action == "stop":
            lifecycle.experiment_start(experiment=experiment, user=admin)
        if via == "page":
            response = post(page, f"/dashboard/twin-page/{action}/", {"reason": "same"})
        else:
            response = Client().post(f"/api/v1/experiments/twin-api/{action}", json.dumps({"reason": "same"}),
                                     content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")
        assert response.status_code in (200, 302)
        made[via] = Decision.objects.filter(experiment=experiment).order_by("-id").first()

    assert made["page"].action == made["api"].action == action
    assert made["page"].reason == made["api"].reason == "same"
    assert made["page"].user == made["api"].user == admin
    assert set(made["page"].stats_snapshot) == set(made["api"].stats_snapshot)
    assert set(made["page"].previous_state) == set(made["api"].previous_state)
