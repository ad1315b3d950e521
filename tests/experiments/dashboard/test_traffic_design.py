"""The traffic-design pages: layers (list, make, create an experiment in one) and an experiment's holdout (set on a
draft, end once running), through the same services and audit as their JSON twins."""

import pytest

from experiments.models import Arm, Decision, Experiment, Layer
from experiments.services import layers, lifecycle
from tests.experiments.dashboard.test_workbench import create_form, post

pytestmark = pytest.mark.django_db


def test_a_layer_is_made_and_an_experiment_created_in_it_from_the_dashboard(login):
    client = login("admin", promoter=True)
    assert "No layer yet" in client.get("/dashboard/layers/").content.decode()
    made = post(client, "/dashboard/layers/", {"slug": "ranking", "name": "Ranking"})
    assert made.status_code == 302 and Layer.objects.filter(slug="ranking").exists()

    created = post(client, "/dashboard/new/", create_form(layer="ranking", layer_share="0.4"))
    assert created.status_code == 302
    allocation = Experiment.objects.get(slug="shoes").layer_allocation
    assert (allocation.layer.slug, allocation.start, allocation.end) == ("ranking", 0, 4_000)
    page = client.get("/dashboard/layers/").content.decode()
    assert "shoes" in page and "0–4000" in page and "free 60%" in page
    assert "Layer <a" in client.get("/dashboard/shoes/").content.decode()

    full = post(client, "/dashboard/new/", create_form(slug="boots", layer="ranking", layer_share="0.7"))
    assert full.status_code == 409 and "no free range" in full.content.decode()
    assert not Experiment.objects.filter(slug="boots").exists()
    duplicate = post(client, "/dashboard/layers/", {"slug": "ranking"})
    assert duplicate.status_code == 409 and "exists already" in duplicate.content.decode()


def test_an_analyst_sees_the_layers_but_cannot_make_one_or_touch_a_holdout(login):
    boss = login("boss", promoter=True)
    post(boss, "/dashboard/layers/", {"slug": "ranking"})
    post(boss, "/dashboard/new/", create_form())
    analyst = login("ann", promoter=False)
    page = analyst.get("/dashboard/layers/")
    assert page.status_code == 200 and "ranking" in page.content.decode() and "layer-form" not in page.content.decode()
    assert post(analyst, "/dashboard/layers/", {"slug": "mine"}).status_code == 403
    assert analyst.get("/dashboard/shoes/holdout/").status_code == 403


def test_a_draft_sets_its_holdout_and_a_running_one_ends_it_from_the_dashboard(login):
    client = login("admin", promoter=True)
    post(client, "/dashboard/new/", create_form())
    experiment = Experiment.objects.get(slug="shoes")
    lifecycle.arm_create(experiment=experiment, spec=lifecycle.ArmSpec("new", "popularity"),
                         user=experiment.decisions.first().user)
    assert 'data-testid="holdout"' in client.get("/dashboard/shoes/").content.decode()

    bad = post(client, "/dashboard/shoes/holdout/", {"arm": "control", "share": "0.9", "reason": ""})
    assert bad.status_code == 400
    done = post(client, "/dashboard/shoes/holdout/", {"arm": "control", "share": "0.1", "reason": "long-term read"})
    experiment.refresh_from_db()
    assert done.status_code == 302 and experiment.holdout_running and experiment.holdout_share == 0.1
    assert Arm.objects.get(experiment=experiment, name="control").weight == 0.0
    assert "Holdout: 10% of the users on" in client.get("/dashboard/shoes/").content.decode()

    post(client, "/dashboard/shoes/start/", {"reason": "go"})
    page = client.get("/dashboard/shoes/holdout/").content.decode()
    assert "End the holdout" in page
    ended = post(client, "/dashboard/shoes/holdout/", {"reason": "readout done"})
    experiment.refresh_from_db()
    assert ended.status_code == 302 and not experiment.holdout_running
    assert list(Decision.objects.filter(experiment=experiment, action__startswith="holdout")
                .order_by("id").values_list("action", "reason")) == [("holdout", "long-term read"),
                                                                     ("holdout_end", "readout done")]
    assert "was ended" in client.get("/dashboard/shoes/holdout/").content.decode()


def test_layer_bars_scale_with_the_ranges(login, django_user_model):
    client = login("admin", promoter=True)
    user = django_user_model.objects.get(username="admin")
    layers.layer_create(slug="ranking", user=user)
    lifecycle.experiment_create(slug="a", arms=[lifecycle.ArmSpec("x", "popularity")], user=user, layer="ranking",
                                layer_share=0.25)
    lifecycle.experiment_create(slug="b", arms=[lifecycle.ArmSpec("x", "popularity")], user=user, layer="ranking")
    page = client.get("/dashboard/layers/").content.decode()
    assert "left: 0%; width: 25%" in page and "left: 25%; width: 75%" in page
