"""Mutually exclusive layers: ranges, routing, exclusivity over 100k users through the real serving snapshot,
orthogonality of two layers by a χ² test, and Postgres refusing overlapping ranges."""

from collections import Counter

import numpy as np
import pytest
from django.db import IntegrityError, transaction
from scipy.stats import chi2_contingency

from experiments.errors import ApplicationError
from experiments.models import Assignment, Experiment, LayerAllocation
from experiments.services import layers, lifecycle
from experiments.services.events import experiment_resolve, recommendation_serve
from experiments.services.layers import free_ranges, range_for, route
from tests.experiments.stats_support import fast_passwords, make_login  # noqa: F401  (autouse)
from tests.support.serving import catalogue_make

USERS = [f"user-{i}" for i in range(100_000)]
ARMS = [lifecycle.ArmSpec("a", "popularity"), lifecycle.ArmSpec("b", "popularity")]


def test_free_ranges_and_first_fit():
    assert free_ranges([]) == [(0, 10_000)]
    assert free_ranges([(3_000, 5_000), (0, 1_000)]) == [(1_000, 3_000), (5_000, 10_000)]
    assert free_ranges([(0, 10_000)]) == []
    taken = [(0, 1_000), (3_000, 5_000)]
    assert range_for(taken, 0.2) == (1_000, 3_000)  # the first gap that fits
    assert range_for(taken, 0.25) == (5_000, 7_500)
    assert range_for(taken, None) == (5_000, 10_000)  # the largest gap
    assert range_for(taken, 0.6) is None
    assert range_for([(0, 10_000)], None) is None


def test_route_finds_the_owner_and_nothing_in_a_gap():
    starts, ends, owners = (0, 3_000, 5_000), (1_000, 5_000, 10_000), ("x", "y", "z")
    got = [route(starts=starts, ends=ends, owners=owners, bucket=b) for b in (0, 999, 1_000, 2_999, 3_000, 9_999)]
    assert got == ["x", "x", None, None, "y", "z"]


@pytest.fixture
def boss(db):
    return make_login(username="boss", promoter=True)


def _layered(boss, layer: str, shares: dict[str, float | None], start: bool = True) -> list[Experiment]:
    made = []
    for slug, share in shares.items():
        experiment = lifecycle.experiment_create(slug=slug, arms=ARMS, user=boss, layer=layer, layer_share=share)
        if start:
            lifecycle.experiment_start(experiment=experiment, user=boss)
        made.append(experiment)
    return made


@pytest.mark.django_db
def test_no_user_is_in_two_experiments_of_a_layer_over_100k_users(boss, serving_manual):
    layers.layer_create(slug="ranking", user=boss)
    _layered(boss, "ranking", {"r1": 0.3, "r2": 0.2, "r3": None})  # r3: the rest (50%)
    state = serving_manual.refresh()

    by_layer = [experiment_resolve(state=state, slug=None, layer="ranking", user_id=u).slug for u in USERS]
    # Naming any experiment of the layer, or none (they all share the layer), routes every user the same way.
    for slug in ("r1", "r2", "r3", None):
        named = [experiment_resolve(state=state, slug=slug, user_id=u).slug for u in USERS[:20_000]]
        assert named == by_layer[:20_000]
    counts = Counter(by_layer)
    assert sum(counts.values()) == len(USERS)  # everyone in exactly one experiment of the layer
    for slug, share in (("r1", 0.3), ("r2", 0.2), ("r3", 0.5)):
        assert abs(counts[slug] / len(USERS) - share) < 0.006


@pytest.mark.django_db
def test_two_layers_are_orthogonal_by_a_chi_square_test(boss, serving_manual):
    layers.layer_create(slug="ranking", user=boss)
    layers.layer_create(slug="pricing", user=boss)
    _layered(boss, "ranking", {"r1": 0.5, "r2": None})
    _layered(boss, "pricing", {"p1": 0.25, "p2": 0.25, "p3": None})
    state = serving_manual.refresh()

    ranking = [experiment_resolve(state=state, slug=None, layer="ranking", user_id=u).slug for u in USERS]
    pricing = [experiment_resolve(state=state, slug=None, layer="pricing", user_id=u).slug for u in USERS]
    table = np.zeros((2, 3))
    for r, p in zip(ranking, pricing, strict=True):
        table[("r1", "r2").index(r), ("p1", "p2", "p3").index(p)] += 1
    assert chi2_contingency(table)[1] > 0.001
    # Several running experiments in two layers: a request must say which.
    with pytest.raises(ApplicationError) as err:
        experiment_resolve(state=state, slug=None, user_id="u")
    assert err.value.code == "experiment_required"


@pytest.mark.django_db
def test_serving_writes_assignments_in_one_experiment_of_the_layer_only(boss, serving_manual):
    catalogue_make(n=5)
    layers.layer_create(slug="ranking", user=boss)
    _layered(boss, "ranking", {"r1": 0.5, "r2": None})
    serving_manual.refresh()
    users = [f"shopper-{i}" for i in range(120)]
    for u in users:
        for slug in ("r1", "r2"):
            served = recommendation_serve(user_id=u, k=2, experiment_slug=slug)
            assert served.experiment == recommendation_serve(user_id=u, k=2, layer="ranking").experiment
    per_user = Counter(Assignment.objects.values_list("user__external_id", flat=True))
    assert set(per_user) == set(users) and set(per_user.values()) == {1}
    assert set(Assignment.objects.values_list("experiment__slug", flat=True)) == {"r1", "r2"}


@pytest.mark.django_db
def test_a_draft_range_serves_nobody_until_it_starts_and_a_full_layer_refuses(boss, serving_manual):
    catalogue_make(n=5)
    layers.layer_create(slug="ranking", user=boss)
    (live,) = _layered(boss, "ranking", {"live": 0.5})
    (draft,) = _layered(boss, "ranking", {"draft": None}, start=False)
    state = serving_manual.refresh()
    outside = next(u for u in USERS if experiment_resolve_or_none(state, u) is None)
    with pytest.raises(ApplicationError) as err:
        recommendation_serve(user_id=outside, k=2, layer="ranking")
    assert (err.value.code, err.value.status) == ("layer_unallocated", 409)
    with pytest.raises(ApplicationError) as err:
        lifecycle.experiment_create(slug="late", arms=ARMS, user=boss, layer="ranking", layer_share=0.1)
    assert (err.value.code, err.value.status) == ("layer_full", 409)
    assert not Experiment.objects.filter(slug="late").exists()  # nothing half-written

    lifecycle.experiment_start(experiment=draft, user=boss)
    serving_manual.refresh()
    assert recommendation_serve(user_id=outside, k=2, layer="ranking").experiment == "draft"
    assert (live.layer_allocation.start, live.layer_allocation.end) == (0, 5_000)
    assert (draft.layer_allocation.start, draft.layer_allocation.end) == (5_000, 10_000)


def experiment_resolve_or_none(state, user_id):
    try:
        return experiment_resolve(state=state, slug=None, layer="ranking", user_id=user_id)
    except ApplicationError:
        return None


@pytest.mark.django_db
def test_postgres_refuses_overlapping_ranges_in_one_layer_but_not_across_layers(boss):
    one = layers.layer_create(slug="one", user=boss)
    two = layers.layer_create(slug="two", user=boss)
    e1, e2, e3 = (Experiment.objects.create(slug=f"e{i}", salt=f"s{i}") for i in (1, 2, 3))
    LayerAllocation.objects.create(layer=one, experiment=e1, start=0, end=5_000)
    LayerAllocation.objects.create(layer=two, experiment=e3, start=0, end=5_000)  # another layer: fine
    with pytest.raises(IntegrityError), transaction.atomic():
        LayerAllocation.objects.create(layer=one, experiment=e2, start=4_999, end=6_000)
    LayerAllocation.objects.create(layer=one, experiment=e2, start=5_000, end=6_000)  # touching is not overlapping
    with pytest.raises(IntegrityError), transaction.atomic():
        LayerAllocation.objects.filter(experiment=e2).update(start=10_000, end=10_001)


@pytest.mark.django_db
def test_bad_layer_requests_have_clear_errors(boss, serving_manual):
    with pytest.raises(ApplicationError) as err:
        lifecycle.experiment_create(slug="x", arms=ARMS, user=boss, layer="ghost")
    assert (err.value.code, err.value.status, err.value.field) == ("layer_not_found", 404, "layer")
    layers.layer_create(slug="ranking", user=boss)
    for share, code in ((0.0, "invalid_share"), (1.5, "invalid_share"), (True, "invalid_share")):
        with pytest.raises(ApplicationError) as err:
            lifecycle.experiment_create(slug="x", arms=ARMS, user=boss, layer="ranking", layer_share=share)
        assert err.value.code == code
    with pytest.raises(ApplicationError) as err:
        lifecycle.experiment_create(slug="x", arms=ARMS, user=boss, layer_share=0.5)
    assert err.value.code == "required"
    with pytest.raises(ApplicationError) as err:
        layers.layer_create(slug="ranking", user=boss)
    assert (err.value.code, err.value.status) == ("layer_exists", 409)
    state = serving_manual.refresh()
    with pytest.raises(ApplicationError) as err:
        experiment_resolve(state=state, slug=None, layer="ranking", user_id="u")
    assert (err.value.code, err.value.status) == ("layer_not_found", 404)  # no serving experiment in it yet
    with pytest.raises(ApplicationError) as err:
        experiment_resolve(state=state, slug="x", layer="ranking", user_id="u")
    assert err.value.code == "ambiguous"
