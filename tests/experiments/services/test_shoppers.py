"""Serving's catalogue check: items posted a moment ago are served, not refused as an empty catalogue."""

from __future__ import annotations

import pytest

from experiments.errors import ApplicationError
from experiments.services.events import recommendation_serve
from tests.support.serving import catalogue_make, experiment_make

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("serving_manual")]


def test_items_posted_before_this_process_refreshed_are_served_not_refused(serving_manual):
    experiment_make(arms=(("a", "popularity", 1.0),))
    serving_manual.refresh()  # this process's snapshot: the experiment, no items yet
    assert serving_manual.current().catalogue.n == 0
    catalogue_make(n=12)  # committed by another process; this one has not refreshed (the announcement is on its way)

    served = recommendation_serve(user_id="u-1", k=5)
    assert len(served.items) == 5
    assert serving_manual.current().catalogue.n == 12  # the re-read catalogue is this process's snapshot now


def test_a_catalogue_that_is_really_empty_is_still_refused_and_the_snapshot_kept(serving_manual):
    experiment_make(arms=(("a", "popularity", 1.0),))
    state = serving_manual.refresh()
    with pytest.raises(ApplicationError) as refused:
        recommendation_serve(user_id="u-1", k=5)
    assert refused.value.code == "empty_catalogue" and refused.value.status == 400
    assert serving_manual.current() is state  # the stamp matched: nothing re-read, nothing published


def test_an_interleaved_experiment_rereads_the_catalogue_too(serving_manual):
    experiment = experiment_make(arms=(("a", "popularity", 1.0), ("b", "popularity", 1.0)))
    experiment.mode = "interleaved"
    experiment.save(update_fields=["mode"])
    serving_manual.refresh()
    catalogue_make(n=12)

    served = recommendation_serve(user_id="u-2", k=4)
    assert len(served.items) == 4 and {item.arm for item in served.items} <= {"a", "b"}
