"""The dashboard's state: a snapshot plus the live events since equals a fresh snapshot."""

import pytest

from experiments.selectors import dashboard as dashboard_selectors
from tests.experiments.stats_support import add_rollup, make_experiment

pytestmark = pytest.mark.django_db


def test_snapshot_plus_events_equals_a_fresh_snapshot_across_thinning():
    from experiments.services import stats_tick as tick_services

    experiment, (control, treat) = make_experiment()
    add_rollup(arm=control, impressions=[5, 6, 7], clicks=[1, 0, 2])
    tick_services.stats_tick(experiment_id=experiment.id)
    state = dashboard_selectors.dashboard_state(experiment=experiment)
    events = []
    for i in range(4):
        add_rollup(arm=treat, impressions=[3 + i], clicks=[1], prefix=f"tick{i}")
        events.append(tick_services.stats_tick(experiment_id=experiment.id))
    for event in events:
        state = dashboard_selectors.dashboard_state_apply(state, event)

    fresh = dashboard_selectors.dashboard_state(experiment=experiment)

    assert [e["replaces_last"] for e in events] == [False, True, True, True]
    assert state == fresh
    assert len(fresh["history"]) == 2
    assert fresh["figures"]["ctr"]["data"][2]["y"][-1] == pytest.approx(3 / 18)


def test_an_event_already_in_the_snapshot_is_skipped():
    from experiments.services import stats_tick as tick_services

    experiment, (control, _) = make_experiment()
    add_rollup(arm=control, impressions=[5], clicks=[1])
    event = tick_services.stats_tick(experiment_id=experiment.id)
    state = dashboard_selectors.dashboard_state(experiment=experiment)

    assert dashboard_selectors.dashboard_state_apply(state, event) == state
